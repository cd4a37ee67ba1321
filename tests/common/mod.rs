//! Shared helpers for the integration tests. Domain-specific harnesses live beside this file
//! (e.g. `tests/common/sshd.rs`) and are included by the tests that need them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ralf-sh"))
}

/// A command for the binary with a clean, isolated environment rooted in `home`:
/// no inherited RALF_* variables, XDG dirs inside `home`, CI set (no progress bars).
pub fn cmd(home: &Path) -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("RALF_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".state"))
        .env("CI", "1")
        .env("NO_COLOR", "1")
        .current_dir(home);
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run and return (code, stdout, stderr).
pub fn run(mut c: Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = c.output().expect("run ralf-sh");
    (status.code().unwrap_or(-1), text(&stdout), text(&stderr))
}
