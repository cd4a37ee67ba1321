//! A throwaway PostgreSQL cluster for the lab and the tests: Debian's server binaries
//! (`/usr/lib/postgresql/N/bin`), `initdb` in a temporary folder, run as an unprivileged user
//! (PostgreSQL refuses root), listening on 127.0.0.1 at a free port and on a unix socket in that
//! folder, password authentication (scram-sha-256) for the role `ralf`. Stopped on drop.

use ralf_sh::error::{RResult, RalfError};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The role, database and password of the cluster (a test secret, never a real one).
pub const USER: &str = "ralf";
pub const DB: &str = "ralf";
pub const PASSWORD: &str = "lab-pg-password-7f3a";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
}

/// The folder holding `initdb`, `pg_ctl` and `postgres` (the newest Debian version first, then PATH).
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, b)) = versions.pop() {
        return Some(b);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
    })
}

/// Uid and gid of an unprivileged account to run the server as, when we are root.
fn unprivileged() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let c = std::ffi::CString::new(name).ok()?;
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    None
}

fn free_port() -> RResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Cluster {
    /// initdb and start a cluster in `dir` (created; must not hold one yet).
    pub fn start(dir: &Path) -> RResult<Cluster> {
        let bin = bin_dir().ok_or_else(|| {
            RalfError::not_found(
                "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's `postgresql` package",
            )
        })?;
        std::fs::create_dir_all(dir)?;
        let user = unprivileged();
        let c = Cluster {
            dir: dir.to_path_buf(),
            port: free_port()?,
            bin,
            user,
        };
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD)?;
        if let Some((uid, gid)) = user {
            for p in [dir, pwfile.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
            }
            // The server's user must be able to reach its folder: open up our own temporary
            // folders on the way (a 0700 temp dir under a root umask of 077), nothing else.
            use std::os::unix::fs::PermissionsExt;
            let tmp = std::env::temp_dir();
            for a in dir.ancestors().skip(1) {
                if !a.starts_with(&tmp) || a == tmp {
                    break;
                }
                let mode = std::fs::metadata(a)?.permissions().mode();
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(
                        a,
                        std::fs::Permissions::from_mode((mode & 0o7777) | 0o711),
                    )?;
                }
            }
        }
        let data = c.data();
        c.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--pwfile",
                &pwfile.display().to_string(),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 60\nshared_buffers = 16MB\n",
            c.port,
            dir.display()
        );
        let mut pgconf = std::fs::read_to_string(data.join("postgresql.conf"))?;
        pgconf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pgconf)?;
        c.pg_ctl_start()?;
        // The database of the same name as the role (createdb reads the password from PGPASSWORD).
        c.run(
            "createdb",
            &[
                "-h",
                &dir.display().to_string(),
                "-p",
                &c.port.to_string(),
                "-U",
                USER,
                DB,
            ],
        )?;
        Ok(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `postgres://ralf@127.0.0.1:PORT/ralf` (the password goes separately).
    pub fn url(&self) -> String {
        self.url_for(DB)
    }

    /// The URL of another database of the cluster (made with `CREATE DATABASE`).
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(self.bin.join(prog));
        c.env("PGPASSWORD", PASSWORD)
            .env_remove("PGDATA")
            .current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn run(&self, prog: &str, args: &[&str]) -> RResult<()> {
        let out = self
            .cmd(prog)
            .args(args)
            .output()
            .map_err(|e| RalfError::io(format!("{prog}: {e}")))?;
        if !out.status.success() {
            return Err(RalfError::io(format!(
                "{prog} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> RResult<()> {
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stop the server at once (like a crash; the data stays).
    pub fn stop(&self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Start it again after [`Cluster::stop`].
    pub fn restart(&self) -> RResult<()> {
        self.pg_ctl_start()
    }

    /// Run SQL as the `ralf` role through `psql` (tests: checks and fault injection).
    pub fn psql(&self, sql: &str) -> RResult<String> {
        self.psql_in(DB, sql)
    }

    /// Run SQL in another database of the cluster.
    pub fn psql_in(&self, db: &str, sql: &str) -> RResult<String> {
        let out = self.client(
            "psql",
            &["-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        )?;
        Ok(out.trim().to_string())
    }

    /// A client program (`psql`, `pg_dump`) as the `ralf` role over the unix socket: its stdout.
    fn client(&self, prog: &str, args: &[&str]) -> RResult<String> {
        let out = self
            .cmd(prog)
            .args([
                "-h",
                &self.dir.display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
            ])
            .args(args)
            .output()
            .map_err(|e| RalfError::io(format!("{prog}: {e}")))?;
        if !out.status.success() {
            return Err(RalfError::io(format!(
                "{prog}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every row of a database as `pg_dump` prints it (tests: scans for secrets).
    pub fn dump(&self, db: &str) -> RResult<String> {
        self.client("pg_dump", &["--data-only", db])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
