//! The stand-in's state (guests, snapshots, tasks) and how it is seeded from the catalog.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Lxc,
    Qemu,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Lxc => "lxc",
            Kind::Qemu => "qemu",
        }
    }
    pub(super) fn prefix(self) -> &'static str {
        match self {
            Kind::Lxc => "CT",
            Kind::Qemu => "VM",
        }
    }
    pub(super) fn task(self, what: &str) -> String {
        match self {
            Kind::Lxc => format!("vz{what}"),
            Kind::Qemu => format!("qm{what}"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub name: String,
    pub description: String,
    pub snaptime: i64,
    pub parent: Option<String>,
    pub config: BTreeMap<String, Value>,
    pub lab_marker: String,
    pub vmstate: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Guest {
    pub vmid: u32,
    pub kind: Kind,
    pub node: String,
    pub running: bool,
    pub started_at: i64,
    /// Applied config (hostname/name, memory, cores, description, ...).
    pub config: BTreeMap<String, Value>,
    pub lock: Option<String>,
    /// Current parent snapshot.
    pub parent: Option<String>,
    pub snapshots: Vec<Snapshot>,
    /// Stands for the guest's disk content: restored by a rollback.
    pub lab_marker: String,
    pub fail_next: Option<String>,
    pub slow_ms: u64,
    /// Managed by the HA stack (`ha-manager add ct:N`): start/stop become `hastart`/`hastop`
    /// request tasks, and the guest changes state only later.
    pub ha_managed: bool,
    /// The HA resource's requested state (`started` / `stopped`), as `hastate` shows it.
    pub ha_state: String,
    /// The next N operations that take the guest's config flock time out.
    pub flock_timeouts: u32,
}

impl Guest {
    pub(super) fn name(&self) -> String {
        let key = if self.kind == Kind::Lxc {
            "hostname"
        } else {
            "name"
        };
        self.config
            .get(key)
            .and_then(|v| v.as_str())
            .map(String::from)
            .unwrap_or_else(|| match self.kind {
                Kind::Lxc => format!("CT{}", self.vmid),
                Kind::Qemu => format!("VM {}", self.vmid),
            })
    }
    pub(super) fn maxmem(&self) -> i64 {
        self.config.get("memory").and_then(num).unwrap_or(512) * 1024 * 1024
    }
    pub(super) fn digest(&self) -> String {
        use sha2::Digest;
        let text =
            serde_json::to_string(&(&self.config, &self.parent, &self.lock)).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(text.as_bytes()))[..40].to_string()
    }
    pub(super) fn uptime(&self) -> i64 {
        if self.running {
            (now() - self.started_at).max(1)
        } else {
            0
        }
    }
    /// The volumes that hold the guest's disks (`rootfs`/`mpN`, `scsiN`/`virtioN`/...), no CD-ROMs.
    pub(super) fn volumes(&self) -> Vec<String> {
        self.config
            .iter()
            .filter(|(k, _)| {
                let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
                let numbered = base.len() < k.len();
                match self.kind {
                    Kind::Lxc => k.as_str() == "rootfs" || (base == "mp" && numbered),
                    Kind::Qemu => {
                        numbered
                            && matches!(
                                base,
                                "scsi" | "virtio" | "sata" | "ide" | "efidisk" | "tpmstate"
                            )
                    }
                }
            })
            .filter_map(|(_, v)| v.as_str().map(String::from))
            .filter(|v| !v.contains("media=cdrom") && !v.starts_with("none"))
            .collect()
    }
    /// Whether every disk sits on storage that can snapshot. The lab's storages: `local-lvm`
    /// (lvmthin), `local-zfs`, `ceph` can; `local` (a directory) and `nfs*` can only with qcow2
    /// images (raw files and container subvolumes there cannot).
    pub(super) fn can_snapshot(&self) -> bool {
        self.volumes().iter().all(|v| {
            let (storage, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
            let file_based = storage == "local" || storage.starts_with("nfs");
            let volume = rest.split(',').next().unwrap_or_default();
            !file_based || volume.ends_with(".qcow2")
        })
    }
    /// The file `PVE::LXC::Config` / `PVE::QemuConfig` flock the config with.
    pub(super) fn lock_file(&self) -> String {
        match self.kind {
            Kind::Lxc => format!("/run/lock/lxc/pve-config-{}.lock", self.vmid),
            Kind::Qemu => format!("/var/lock/qemu-server/lock-{}.conf", self.vmid),
        }
    }
    /// Take the config flock: `Err` with the real text (`PVE::Tools::lock_file_full`) when an
    /// injected timeout is due.
    pub(super) fn flock(&mut self) -> Result<(), String> {
        if self.flock_timeouts > 0 {
            self.flock_timeouts -= 1;
            return Err(format!(
                "can't lock file '{}' - got timeout",
                self.lock_file()
            ));
        }
        Ok(())
    }
    pub(super) fn locked_msg(&self) -> Option<String> {
        self.lock
            .as_ref()
            .map(|l| format!("{} is locked ({l})", self.kind.prefix()))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    pub user: String,
    pub tokenid: Option<String>,
    pub log: Vec<String>,
    pub exitstatus: Option<String>,
    pub endtime: Option<i64>,
}

#[derive(Debug, serde::Serialize)]
pub struct LabState {
    pub nodes: Vec<String>,
    pub guests: BTreeMap<u32, Guest>,
    pub tasks: Vec<Task>,
    #[serde(skip)]
    pub(super) tickets: HashMap<String, String>,
    pub task_ms: u64,
    /// Number of `/api2` requests served (lets tests prove that no request was sent).
    pub requests: u64,
    pub(super) next_pid: u32,
    #[serde(skip)]
    pub(super) fingerprint: String,
}

impl LabState {
    /// Invalidate every login ticket (as a restarted or re-keyed server would).
    pub fn revoke_tickets(&mut self) {
        self.tickets.clear();
    }
}

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) fn num(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

pub(super) fn rand_hex(n: usize) -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..n)
        .map(|_| format!("{:x}", r.random_range(0..16u8)))
        .collect()
}

pub(super) fn uuid() -> String {
    let h = rand_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---------------------------------------------------------------------------------------------
// Seeding

pub(super) struct Seed {
    pub(super) vmid: u32,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) node: Option<String>,
    pub(super) running: bool,
    pub(super) ha: bool,
    /// Storage of the disks (default `local-lvm`).
    pub(super) storage: &'static str,
}

pub(super) fn builtin_seeds() -> Vec<Seed> {
    let s = |vmid, name: &str, kind, node: Option<&str>, running| Seed {
        vmid,
        name: name.to_string(),
        kind,
        node: node.map(String::from),
        running,
        ha: false,
        storage: "local-lvm",
    };
    vec![
        s(2010, "postgresql", Kind::Lxc, Some("pve"), true),
        s(2012, "gitea", Kind::Lxc, Some("pve"), true),
        s(2013, "vaultwarden", Kind::Lxc, Some("pve"), false),
        s(10015, "semaphore", Kind::Lxc, Some("pve"), true),
        s(4012, "n8n", Kind::Lxc, Some("pve2"), false),
        s(4013, "exo", Kind::Qemu, Some("pve2"), true),
        s(9000, "lab-vm", Kind::Qemu, Some("pve2"), false),
        // Managed by HA: start/stop only ask the HA stack, which acts a little later.
        Seed {
            ha: true,
            ..s(2030, "ha-proxy", Kind::Lxc, Some("pve"), false)
        },
        // Its root disk is a directory-storage subvolume: snapshots fail ("snapshot feature is
        // not available").
        Seed {
            storage: "local",
            ..s(2031, "file-share", Kind::Lxc, Some("pve"), true)
        },
    ]
}

/// Walk any YAML shape and collect `guest:` entries (an integer vmid, or a map with `vmid` and `node`).
pub(super) fn collect_guests(v: &crate::yaml::Value, key_name: Option<&str>, out: &mut Vec<Seed>) {
    use crate::yaml::Value as Y;
    match v {
        Y::Mapping(m) => {
            if let Some(g) = m.get(Y::from("guest")) {
                let name = m
                    .get(Y::from("name"))
                    .and_then(|n| n.as_str())
                    .or(key_name)
                    .unwrap_or("guest")
                    .to_string();
                let (vmid, node, kind) = match g {
                    Y::Number(n) => (n.as_u64(), None, None),
                    Y::String(s) => (s.parse().ok(), None, None),
                    Y::Mapping(gm) => (
                        gm.get(Y::from("vmid"))
                            .and_then(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok())),
                        gm.get(Y::from("node"))
                            .and_then(|x| x.as_str())
                            .map(String::from),
                        gm.get(Y::from("type"))
                            .or_else(|| gm.get(Y::from("kind")))
                            .and_then(|x| x.as_str())
                            .map(|k| {
                                if k == "qemu" || k == "vm" {
                                    Kind::Qemu
                                } else {
                                    Kind::Lxc
                                }
                            }),
                    ),
                    _ => (None, None, None),
                };
                if let Some(vmid) = vmid.filter(|v| (100..1_000_000_000).contains(v)) {
                    let vmid = vmid as u32;
                    out.push(Seed {
                        vmid,
                        name: sanitize_hostname(&name),
                        kind: kind.unwrap_or(Kind::Lxc),
                        node,
                        running: vmid % 5 != 3,
                        ha: false,
                        storage: "local-lvm",
                    });
                }
            }
            for (k, val) in m {
                collect_guests(val, k.as_str(), out);
            }
        }
        Y::Sequence(s) => {
            for x in s {
                collect_guests(x, None, out);
            }
        }
        _ => {}
    }
}

pub(super) fn sanitize_hostname(s: &str) -> String {
    let h: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let h = h.trim_matches('-').to_string();
    if h.is_empty() {
        "guest".into()
    } else {
        h
    }
}

pub(super) fn seeds(catalog_dir: Option<&PathBuf>) -> Vec<Seed> {
    let mut out = Vec::new();
    if let Some(dir) = catalog_dir {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                let is_yaml =
                    matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
                if !is_yaml {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&f) else {
                    continue;
                };
                for doc in crate::yaml::Deserializer::from_str(&text) {
                    match <crate::yaml::Value as serde::Deserialize>::deserialize(doc) {
                        Ok(v) => collect_guests(&v, None, &mut out),
                        Err(_) => break,
                    }
                }
            }
        }
    }
    for b in builtin_seeds() {
        if !out.iter().any(|s| s.vmid == b.vmid) {
            out.push(b);
        }
    }
    out
}

pub(super) fn new_guest(s: Seed, nodes: &[String]) -> Guest {
    let node = s
        .node
        .filter(|n| nodes.contains(n))
        .unwrap_or_else(|| nodes[0].clone());
    let mut config = BTreeMap::new();
    match s.kind {
        Kind::Lxc => {
            config.insert("hostname".into(), json!(s.name));
            config.insert("arch".into(), json!("amd64"));
            config.insert("ostype".into(), json!("debian"));
            config.insert("memory".into(), json!(1024));
            config.insert("swap".into(), json!(512));
            config.insert("cores".into(), json!(2));
            let rootfs = if s.storage == "local" {
                format!("local:{0}/vm-{0}-disk-0.raw,size=8G", s.vmid)
            } else {
                format!("{}:vm-{}-disk-0,size=8G", s.storage, s.vmid)
            };
            config.insert("rootfs".into(), json!(rootfs));
            config.insert(
                "net0".into(),
                json!("name=eth0,bridge=vmbr0,ip=dhcp,type=veth"),
            );
            config.insert("unprivileged".into(), json!(1));
        }
        Kind::Qemu => {
            config.insert("name".into(), json!(s.name));
            config.insert("memory".into(), json!(4096));
            config.insert("cores".into(), json!(4));
            config.insert("sockets".into(), json!(1));
            config.insert("ostype".into(), json!("l26"));
            config.insert(
                "scsi0".into(),
                json!(format!("{}:vm-{}-disk-0,size=32G", s.storage, s.vmid)),
            );
            config.insert(
                "net0".into(),
                json!("virtio=BC:24:11:00:00:01,bridge=vmbr0"),
            );
            config.insert("agent".into(), json!("1"));
        }
    }
    Guest {
        vmid: s.vmid,
        kind: s.kind,
        node,
        running: s.running,
        started_at: now() - 3600,
        config,
        lock: None,
        parent: None,
        snapshots: Vec::new(),
        lab_marker: "initial".into(),
        fail_next: None,
        slow_ms: 0,
        ha_managed: s.ha,
        ha_state: if s.running { "started" } else { "stopped" }.into(),
        flock_timeouts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn seeds_from_catalog_leniently() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "services:\n  - name: postgresql\n    guest: 2010\n  - name: Gitea Server\n    guest: {vmid: 2012, node: pve2}\n  - name: nothing\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "n8n:\n  guest: '4012'\nbroken: [\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "vm:\n  guest: {vmid: 777, type: qemu}\n",
        )
        .unwrap();
        let s = seeds(Some(&dir.path().to_path_buf()));
        let g = s.iter().find(|s| s.vmid == 2012).unwrap();
        assert_eq!(g.name, "gitea-server");
        assert_eq!(g.node.as_deref(), Some("pve2"));
        assert!(s.iter().any(|s| s.vmid == 777 && s.kind == Kind::Qemu));
        assert!(s.iter().any(|s| s.vmid == 10015), "built-ins fill in");
        assert_eq!(s.iter().filter(|s| s.vmid == 2010).count(), 1);
    }
}
