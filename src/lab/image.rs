//! The tiny local Docker image the lab's apps (and the Docker tests) run, built from this machine's
//! own programs: `/bin/sh` and a handful of tools, each with the shared libraries it links (as
//! `ldd` reports them), copied into an empty root file system and loaded with `docker import`.
//! Nothing is pulled or downloaded, no base image is needed, and no extra package either (the
//! busybox-static package the lab used to need is not on a fresh machine).

use crate::error::{RResult, RalfError};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The programs in the image, found on `PATH` of this machine. `sh` and `sleep`/`cat`/`grep` are
/// what the lab app, its healthcheck and the Docker tests run.
pub const TOOLS: &[&str] = &[
    "sh", "cat", "echo", "env", "false", "grep", "ls", "mkdir", "mv", "rm", "sleep", "true",
];

/// True when the image `tag` is in the local engine.
pub fn exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Build the image `tag` unless it exists; `work` holds the root file system while it is built.
pub fn ensure(tag: &str, work: &Path) -> RResult<()> {
    if exists(tag) {
        return Ok(());
    }
    let root = work.join("image-root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin"))?;
    let mut libs = BTreeSet::new();
    for tool in TOOLS {
        let path = which(tool).ok_or_else(|| {
            RalfError::unavailable(format!(
                "lab image {tag}: `{tool}` is not on PATH, so the image cannot be built from this machine's programs"
            ))
        })?;
        copy_file(&path, &root.join("bin").join(tool))?;
        libs.extend(linked_libraries(&path)?);
    }
    for lib in &libs {
        let rel = lib.strip_prefix("/").unwrap_or(lib);
        copy_file(lib, &root.join(rel))?;
    }
    // Programs called as /usr/bin/NAME find the same files.
    std::fs::create_dir_all(root.join("usr"))?;
    if !root.join("usr/bin").exists() {
        std::os::unix::fs::symlink("../bin", root.join("usr/bin"))?;
    }
    for d in ["tmp", "app", "etc"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    import(tag, &root)?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// `tar` the root file system into `docker import` (no build step, no registry).
fn import(tag: &str, root: &Path) -> RResult<()> {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["--owner=0", "--group=0", "-cf", "-", "."])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RalfError::io(format!("lab image {tag}: cannot start tar: {e}")))?;
    let out = Command::new("docker")
        .args(["import", "--change", "CMD [\"/bin/sh\"]", "-", tag])
        .stdin(tar.stdout.expect("piped"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| RalfError::io(format!("lab image {tag}: cannot start docker import: {e}")))?;
    if !out.status.success() {
        return Err(RalfError::io(format!(
            "lab image {tag}: docker import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The first executable `name` on `PATH` (symlinks resolved, so `/bin/sh` gives dash itself).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| is_elf(p))
        .and_then(|p| std::fs::canonicalize(p).ok())
}

/// Only real ELF programs go in (a shell-script wrapper would need its interpreter's tools too).
fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map(|_| magic == *b"\x7fELF")
        .unwrap_or(false)
}

/// The shared libraries (and the dynamic loader) `prog` links, as absolute paths, from `ldd`.
/// A static program has none.
fn linked_libraries(prog: &Path) -> RResult<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(prog)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| RalfError::io(format!("lab image: cannot run ldd: {e}")))?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2 (0x…)`
/// lines give their paths; `linux-vdso.so.1 (0x…)` and "not a dynamic executable" give none.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Copy the contents (symlinks followed) and the mode of `from` to `to`, making parent folders.
fn copy_file(from: &Path, to: &Path) -> RResult<()> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p)?;
    }
    let bytes = std::fs::read(from)
        .map_err(|e| RalfError::io(format!("lab image: cannot read {}: {e}", from.display())))?;
    let mut f = std::fs::File::create(to)?;
    f.write_all(&bytes)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_and_loader_paths_only() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibpcre2-8.so.0 => /lib/x86_64-linux-gnu/libpcre2-8.so.0 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libpcre2-8.so.0"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
        assert!(parse_ldd("\tstatically linked\n").is_empty());
    }

    #[test]
    fn every_tool_is_an_elf_program_here() {
        for t in TOOLS {
            assert!(
                which(t).is_some(),
                "{t} not found as an ELF program on PATH"
            );
        }
    }
}
