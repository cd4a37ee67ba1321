//! docker client (not yet implemented).
