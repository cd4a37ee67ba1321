//! What a lab run is set up with: which server version each stand-in models and which catalog
//! seeds it. Chosen on the command line (`ralf-sh lab --semaphore-version 2.10 --pve-version 7.2
//! --llm ollama --catalog DIR`) and handed to every stand-in's `start` through [`super::Lab::setup`].

use std::path::PathBuf;

/// The Semaphore UI release a stand-in behaves like (`../shared/specs/UPSTREAM.md` §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SemaphoreVersion {
    /// v2.10: no tags, template env wins over task env, no reject route, overrides applied unchecked.
    #[value(name = "2.10")]
    V2_10,
    /// A 2.16-era server: overrides gated by `task_params`, omitempty template fields, empty 500s.
    #[value(name = "2.16")]
    V2_16,
    /// The newest develop behaviour.
    #[default]
    #[value(name = "latest")]
    Latest,
}

/// The Proxmox VE release a stand-in behaves like (`../shared/specs/UPSTREAM.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PveVersion {
    /// PVE 7.2: rollback has no `start`, `limit=0` log reads return nothing, no `message` in errors.
    #[value(name = "7.2")]
    V7_2,
    /// PVE 8.2 without the 2025 http-server update: error text only in the reason phrase.
    #[value(name = "8.2")]
    V8_2,
    /// PVE 9.2, the newest.
    #[default]
    #[value(name = "9.2")]
    V9_2,
}

/// Which OpenAI-compatible server the LLM stand-in behaves like (`../shared/specs/UPSTREAM.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LlmProfile {
    /// exo v1 (port 52415 upstream): model catalog in /v1/models, instances, keep-alive comments.
    #[default]
    Exo,
    /// Ollama's /v1 compatibility layer.
    Ollama,
    /// llama.cpp's llama-server.
    Llamacpp,
}

/// Everything a lab is started with.
#[derive(Debug, Clone, Default)]
pub struct LabSetup {
    pub semaphore: SemaphoreVersion,
    pub pve: PveVersion,
    pub llm: LlmProfile,
    /// The catalog folder that seeds the stand-ins (templates, guests, smoke endpoints) and that
    /// the run's config points at. `None`: `$RALF_LAB_CATALOG`, else `./catalog/projects`.
    pub catalog_dir: Option<PathBuf>,
}

impl LabSetup {
    /// The catalog folder to seed from (see [`LabSetup::catalog_dir`]).
    pub fn catalog(&self) -> PathBuf {
        self.catalog_dir
            .clone()
            .or_else(|| std::env::var_os("RALF_LAB_CATALOG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("catalog/projects"))
    }
}

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// Where a lab's catalog came from (for the summary line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogOrigin {
    /// `--catalog DIR`
    Flag,
    /// `$RALF_LAB_CATALOG`
    Env,
    /// `./catalog/projects` of the current folder (a checkout of the repository)
    Cwd,
    /// The example catalog embedded in the binary, written into the lab's temporary folder.
    Embedded,
}

impl LabSetup {
    /// Settle the catalog folder: `--catalog`, else `$RALF_LAB_CATALOG`, else `./catalog/projects`,
    /// else the embedded example written into `work`. A named folder that does not exist is a
    /// `config` error. Returns where it came from and how many service files it has.
    pub fn resolve_catalog(
        &mut self,
        work: &std::path::Path,
    ) -> crate::error::RResult<(CatalogOrigin, usize)> {
        use crate::error::RalfError;
        let named = match (&self.catalog_dir, std::env::var_os("RALF_LAB_CATALOG")) {
            (Some(d), _) => Some((d.clone(), CatalogOrigin::Flag, "--catalog")),
            (None, Some(d)) if !d.is_empty() => {
                Some((PathBuf::from(d), CatalogOrigin::Env, "RALF_LAB_CATALOG"))
            }
            _ => None,
        };
        let (dir, origin) = match named {
            Some((d, origin, what)) => {
                if !d.is_dir() {
                    return Err(RalfError::config(format!(
                        "lab: {what} {}: no such folder",
                        d.display()
                    )));
                }
                (d, origin)
            }
            None if std::path::Path::new("catalog/projects").is_dir() => {
                (PathBuf::from("catalog/projects"), CatalogOrigin::Cwd)
            }
            None => {
                let d = work.join("catalog");
                std::fs::create_dir_all(&d)?;
                for (name, text) in EMBEDDED_CATALOG {
                    std::fs::write(d.join(name), text)?;
                }
                (d, CatalogOrigin::Embedded)
            }
        };
        let dir = std::fs::canonicalize(&dir)?;
        let count = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.path()
                    .extension()
                    .map(|x| x == "yaml" || x == "yml")
                    .unwrap_or(false)
            })
            .count();
        self.catalog_dir = Some(dir);
        Ok((origin, count))
    }
}
