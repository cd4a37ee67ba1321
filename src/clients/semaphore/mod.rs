//! semaphore client (not yet implemented).
