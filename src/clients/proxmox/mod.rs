//! proxmox client (not yet implemented).
