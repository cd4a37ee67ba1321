//! Service catalog: model, validation, dependency graph, planner (not yet implemented).
