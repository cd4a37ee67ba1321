//! ssh client (not yet implemented).
