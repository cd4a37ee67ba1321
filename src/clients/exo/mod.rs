//! exo client (not yet implemented).
