//! Docker test helpers: detect the engine (loud SKIP when absent) and build a tiny local image
//! from this machine's own programs (`ralf_sh::lab::image`), without any registry.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

pub const IMAGE: &str = "ralf-test-tools:1";

/// True when the docker CLI talks to a running daemon; otherwise prints a loud SKIP line.
pub fn available() -> bool {
    available_for("docker tests")
}

/// Like [`available`], naming the tests that are skipped (`what`) in the SKIP line.
pub fn available_for(what: &str) -> bool {
    let ok = ralf_sh::lab::hosts::docker_ok();
    if !ok {
        crate::common::skip_suite(
            what,
            "no Docker engine on this machine (`docker info` failed)",
            "install Docker Engine and start the daemon",
        );
    }
    ok
}

/// Build the test image if it is not there yet (the lab's image builder).
pub fn ensure_image(work: &Path) {
    ralf_sh::lab::image::ensure(IMAGE, work).expect("build the docker test image");
}

/// A compose file with one service `web` running the test image, with the given healthcheck command.
pub fn compose_yaml(health_cmd: &str) -> String {
    format!(
        "version: \"2.4\"\nservices:\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo hello-from-web; echo err-line >&2; while true; do sleep 1; done\"]\n    stop_grace_period: 1s\n    healthcheck:\n      test: [\"CMD\", \"{health_cmd}\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n"
    )
}

/// `docker-compose down` / `docker compose down` in `dir` when dropped (cleanup on test failure).
pub struct Down(pub std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        for prog in [&["docker", "compose"][..], &["docker-compose"][..]] {
            let ok = Command::new(prog[0])
                .args(&prog[1..])
                .args(["down", "-t", "1"])
                .current_dir(&self.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
        }
    }
}
