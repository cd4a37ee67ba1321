//! The catalog schema: one YAML file per service.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Deployment priority: P0 (first, most important) .. P4 (last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum Priority {
    P0,
    P1,
    P2,
    P3,
    P4,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::P0,
        Priority::P1,
        Priority::P2,
        Priority::P3,
        Priority::P4,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service of the catalog (`catalog/projects/<name>.yaml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name (lowercase letters, digits, `-`, `_`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// P0 .. P4 (P0 is deployed first).
    pub priority: Priority,
    /// Free-form group: vault, automation, communication, ai, ...
    #[serde(default)]
    pub group: Option<String>,
    /// Names of services that must be deployed before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// SSH alias (from the config's `hosts`) the service runs on.
    #[serde(default)]
    pub host: Option<String>,
    /// Proxmox guest (LXC container or VM) the service runs in: a vmid, or `{ vmid, node }`.
    #[serde(default)]
    pub guest: Option<Guest>,
    /// How Semaphore deploys it.
    #[serde(default)]
    pub semaphore: Option<SemaphoreSpec>,
    /// Take a pre-install snapshot of the guest: `true` (name `ralf-pre-<service>`) or a name.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
    /// Smoke checks run after the deployment.
    #[serde(default)]
    pub smoke: Vec<SmokeCheck>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// What a fix proposed by the advisor may do after a failed deployment (off when absent).
    #[serde(default)]
    pub self_heal: Option<SelfHeal>,
    /// File the service was read from (not part of the YAML).
    #[serde(skip)]
    pub file: PathBuf,
    /// Line of the `name:` key in that file.
    #[serde(skip)]
    pub line: usize,
}

/// The allow-list for fixes the advisor proposes: one adjusted retry may change only these
/// `semaphore.env` keys; a restart of the guest only when `restart` is true.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelfHeal {
    /// Environment keys a retry may set (names only; values come from the proposal).
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether the service's guest may be restarted.
    #[serde(default)]
    pub restart: bool,
}

/// A Proxmox guest reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guest {
    pub vmid: u32,
    pub node: Option<String>,
}

impl<'de> Deserialize<'de> for Guest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            vmid: u32,
            #[serde(default)]
            node: Option<String>,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Guest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vmid (number) or a map with `vmid` and optional `node`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Guest, E> {
                u32::try_from(v)
                    .map(|vmid| Guest { vmid, node: None })
                    .map_err(|_| E::custom(format!("vmid {v} is out of range")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Guest, E> {
                if v < 0 {
                    return Err(E::custom(format!("vmid must be positive, got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Guest, A::Error> {
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Guest {
                    vmid: f.vmid,
                    node: f.node,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Semaphore templates and parameters for a service.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SemaphoreSpec {
    /// Template that deploys the service: its name, or its numeric id (kept as the decimal string).
    #[serde(default, deserialize_with = "name_or_id")]
    pub template: Option<String>,
    /// Template that runs the smoke test, if any.
    #[serde(default, deserialize_with = "name_or_id")]
    pub smoke_template: Option<String>,
    #[serde(default)]
    pub playbook: Option<String>,
    #[serde(default)]
    pub inventory: Option<String>,
    /// Environment passed to the task (`SERVICE_NAME` is added by the deploy flow).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn name_or_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum R {
        I(u64),
        S(String),
    }
    match Option::<R>::deserialize(d) {
        Ok(None) => Ok(None),
        Ok(Some(R::I(i))) => Ok(Some(i.to_string())),
        Ok(Some(R::S(s))) => Ok(Some(s)),
        Err(_) => Err(serde::de::Error::custom(
            "invalid type: expected a template name (string) or id (number)",
        )),
    }
}

/// `snapshot: true` / `snapshot: "pre-upgrade"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Snapshot {
    Enabled(bool),
    Named(String),
}

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Snapshot;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true/false or a snapshot name")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Snapshot, E> {
                Ok(Snapshot::Enabled(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Snapshot, E> {
                Ok(Snapshot::Named(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One smoke check. Exactly one of `http`, `tcp`, `command`, `script` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// Optional label shown in reports.
    #[serde(default)]
    pub name: Option<String>,
    /// URL to GET.
    #[serde(default)]
    pub http: Option<String>,
    /// Expected HTTP status (default 200).
    #[serde(default)]
    pub expect: Option<u16>,
    /// Text the HTTP body must contain.
    #[serde(default)]
    pub contains: Option<String>,
    /// `host:port` that must accept a TCP connection.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Shell command that must exit 0 ...
    #[serde(default)]
    pub command: Option<String>,
    /// ... on this SSH alias (default: the service's host).
    #[serde(default)]
    pub on: Option<String>,
    /// Script (path) whose checks must pass at least `threshold` ("7/10").
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub threshold: Option<String>,
    /// Per-check timeout in seconds (default 10).
    #[serde(default)]
    pub timeout: Option<crate::text::Secs>,
}

impl SmokeCheck {
    pub fn kind(&self) -> &'static str {
        if self.http.is_some() {
            "http"
        } else if self.tcp.is_some() {
            "tcp"
        } else if self.command.is_some() {
            "command"
        } else if self.script.is_some() {
            "script"
        } else {
            "none"
        }
    }
}

/// The top-level keys of a service file (for did-you-mean and the unknown-key scan).
pub const SERVICE_KEYS: &[&str] = &[
    "name",
    "description",
    "priority",
    "group",
    "depends_on",
    "host",
    "guest",
    "semaphore",
    "snapshot",
    "smoke",
    "tags",
    "self_heal",
];

/// Parse a `"7/10"` threshold.
pub fn parse_threshold(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('/')?;
    let a: u32 = a.trim().parse().ok()?;
    let b: u32 = b.trim().parse().ok()?;
    (b > 0 && a <= b).then_some((a, b))
}
