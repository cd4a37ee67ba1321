//! notify client (not yet implemented).
