//! What differs between the Proxmox VE releases the stand-in models (`lab.setup.pve`), from
//! `../shared/specs/UPSTREAM.md` §2 and the upstream sources named there:
//!
//! | | 7.2 | 8.2 (before the 2025 http-server update) | 9.2 |
//! |---|---|---|---|
//! | error text in the JSON body (`message`) | no | no | yes (libpve-http-server-perl ≥ 5.2.0, `9a2112e6`) |
//! | error text in the HTTP reason phrase (first line) | yes | yes | yes |
//! | rollback `start` parameter | no: 400 `errors.start` | yes | yes (pve-container `666e7ea`, qemu-server `76b29aaf`, PVE 7.3) |
//! | task log `limit=0` | zero lines (total still counted) | whole log | whole log (pve-common `f0c1b0c`, 7.3-1) |

use super::*;
use crate::lab::profiles::PveVersion;

/// The behaviours of one modelled PVE release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub version: PveVersion,
}

impl Profile {
    pub fn new(version: PveVersion) -> Profile {
        Profile { version }
    }

    /// `GET /version`.
    pub fn version_json(&self) -> Value {
        let (version, release, repoid) = self.triple();
        json!({"version": version, "release": release, "repoid": repoid})
    }

    /// `pveversion` as `GET /nodes/{node}/status` shows it.
    pub fn pveversion(&self) -> String {
        let (version, _, repoid) = self.triple();
        format!("pve-manager/{version}/{repoid}")
    }

    /// The node's kernel, as `GET /nodes/{node}/status` shows it.
    pub fn kversion(&self) -> &'static str {
        match self.version {
            PveVersion::V7_2 => "Linux 5.15.60-2-pve #1 SMP PVE 5.15.60-2",
            PveVersion::V8_2 => "Linux 6.8.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2",
            PveVersion::V9_2 => "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2",
        }
    }

    fn triple(&self) -> (&'static str, &'static str, &'static str) {
        match self.version {
            PveVersion::V7_2 => ("7.2-11", "7.2", "b76d3178"),
            PveVersion::V8_2 => ("8.2.4", "8.2", "faa83925c9641325"),
            PveVersion::V9_2 => ("9.2.11", "9.2", "14a22df35955"),
        }
    }

    /// Error bodies carry `message` (libpve-http-server-perl 5.2.0, January 2025). Before that
    /// the body is `{"data": null}` (plus `errors`) and the text is only in the reason phrase.
    pub fn message_in_body(&self) -> bool {
        self.version == PveVersion::V9_2
    }

    /// Both rollback endpoints know `start` (PVE 7.3, "fix #4228").
    pub fn rollback_start(&self) -> bool {
        self.version != PveVersion::V7_2
    }

    /// `limit=0` on a task log means "the whole log" (libpve-common-perl 7.3-1); before, it
    /// returns no line at all while `total` still counts them.
    pub fn log_limit0_is_whole(&self) -> bool {
        self.version != PveVersion::V7_2
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new(PveVersion::default())
    }
}
