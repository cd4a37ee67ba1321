//! Proxmox identifiers checked client-side: snapshot names (`pve-configid`) and task UPIDs.

/// Guest kind as Proxmox names it in paths and `/cluster/resources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Lxc,
    Qemu,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lxc => "lxc",
            Kind::Qemu => "qemu",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "lxc" => Some(Kind::Lxc),
            "qemu" => Some(Kind::Qemu),
            _ => None,
        }
    }
    /// Prefix Proxmox uses in messages: `CT 100 ...` / `VM 100 ...`.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Lxc => "CT",
            Kind::Qemu => "VM",
        }
    }
}

/// Check a snapshot name against Proxmox's rules (`pve-configid`: `^[a-z][a-z0-9_-]+$`, case-insensitive,
/// at most 40 characters; `current` reserved for both kinds, `vzdump` for containers, `pending` for VMs).
/// `Err` carries the reason.
pub fn check_snapshot_name(name: &str, kind: Option<Kind>) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid snapshot name `{name}`: {why}"));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() < 2 {
        return bad("it must be at least 2 characters long");
    }
    if name.len() > 40 {
        return bad(&format!(
            "it is {} characters long, at most 40 are allowed",
            name.len()
        ));
    }
    let first = name.chars().next().unwrap_or(' ');
    if !first.is_ascii_alphabetic() {
        return bad("it must start with a letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return bad(&format!(
            "character `{c}` is not allowed (only letters, digits, `_` and `-`)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower == "current" {
        return bad("`current` is reserved (it names the guest's present state)");
    }
    if kind == Some(Kind::Lxc) && lower == "vzdump" {
        return bad("`vzdump` is reserved for containers");
    }
    if kind == Some(Kind::Qemu) && lower == "pending" {
        return bad("`pending` is reserved for VMs");
    }
    Ok(())
}

/// A parsed task id: `UPID:node:pid:pstart:starttime:type:id:user:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    pub user: String,
}

impl Upid {
    pub fn parse(s: &str) -> Result<Upid, String> {
        let err = |why: &str| Err(format!("`{s}` is not a Proxmox task id (UPID): {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
            return err(
                "expected UPID:node:pid:pstart:starttime:type:id:user: (9 fields, trailing colon)",
            );
        }
        let node = parts[1];
        let node_ok = !node.is_empty()
            && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !node.starts_with('-')
            && !node.ends_with('-');
        if !node_ok {
            return err("bad node name");
        }
        let hex = |f: &str, min: usize, max: usize| {
            f.len() >= min && f.len() <= max && f.chars().all(|c| c.is_ascii_hexdigit())
        };
        if !hex(parts[2], 8, 8) || !hex(parts[3], 8, 9) || !hex(parts[4], 8, 8) {
            return err("pid, pstart and starttime must be 8-digit hex");
        }
        let plain = |f: &str| !f.chars().any(|c| c.is_whitespace() || c == '/');
        if parts[5].is_empty()
            || !plain(parts[5])
            || !plain(parts[6])
            || parts[7].is_empty()
            || !plain(parts[7])
        {
            return err("bad type, id or user field");
        }
        Ok(Upid {
            node: node.to_string(),
            pid: u32::from_str_radix(parts[2], 16).unwrap_or(0),
            pstart: u64::from_str_radix(parts[3], 16).unwrap_or(0),
            starttime: i64::from_str_radix(parts[4], 16).unwrap_or(0),
            kind: parts[5].to_string(),
            id: parts[6].to_string(),
            user: parts[7].to_string(),
        })
    }

    pub fn format(&self) -> String {
        format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

/// `user@realm!name`: the token id form Proxmox accepts.
pub fn check_token_id(id: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "token id `{id}` must look like USER@REALM!TOKENNAME (e.g. root@pam!ralf)"
        ))
    };
    let Some((user, name)) = id.split_once('!') else {
        return bad();
    };
    let Some((u, realm)) = user.split_once('@') else {
        return bad();
    };
    let mut chars = name.chars();
    let name_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if u.is_empty() || realm.is_empty() || !name_ok {
        return bad();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        assert!(check_snapshot_name("pre-install", Some(Kind::Lxc)).is_ok());
        assert!(check_snapshot_name("Pre_Install2", None).is_ok());
        assert!(check_snapshot_name("a", None)
            .unwrap_err()
            .contains("at least 2"));
        assert!(check_snapshot_name("1x", None)
            .unwrap_err()
            .contains("start with a letter"));
        assert!(check_snapshot_name("pre install", None)
            .unwrap_err()
            .contains("` `"));
        assert!(check_snapshot_name("pre.install", None)
            .unwrap_err()
            .contains("`.`"));
        assert!(check_snapshot_name(&"a".repeat(41), None)
            .unwrap_err()
            .contains("41"));
        assert!(check_snapshot_name(&"a".repeat(40), None).is_ok());
        assert!(check_snapshot_name("CURRENT", None)
            .unwrap_err()
            .contains("reserved"));
        assert!(check_snapshot_name("vzdump", Some(Kind::Lxc)).is_err());
        assert!(check_snapshot_name("vzdump", Some(Kind::Qemu)).is_ok());
        assert!(check_snapshot_name("Pending", Some(Kind::Qemu)).is_err());
    }

    #[test]
    fn upids_roundtrip() {
        let s = "UPID:pve:000A1B2C:0123ABCD:66F1E2D3:vzstart:100:root@pam:";
        let u = Upid::parse(s).unwrap();
        assert_eq!(u.node, "pve");
        assert_eq!(u.kind, "vzstart");
        assert_eq!(u.id, "100");
        assert_eq!(u.format(), s);
        assert!(Upid::parse("UPID:pve:1:2:3:x:1:root@pam").is_err());
        assert!(Upid::parse("hello").is_err());
        // 9-digit pstart after long uptimes
        assert!(Upid::parse("UPID:pve:000A1B2C:10123ABCD:66F1E2D3:qmstart::root@pam!t:").is_ok());
    }

    #[test]
    fn token_ids() {
        assert!(check_token_id("root@pam!ralf").is_ok());
        assert!(check_token_id("root@pam").is_err());
        assert!(check_token_id("root!x").is_err());
        assert!(check_token_id("root@pam!1x").is_err());
    }
}
