//! `docker::` bindings: the docker CLI and compose on a host, over its SSH session.

use crate::bindings::ssh::handle_from_dynamic;
use crate::bindings::{host, AtCall};
use crate::clients::docker::{Compose, Docker, UpOpts};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use std::sync::Arc;

/// `Docker` handle: the engine on one host.
#[derive(Clone)]
pub(crate) struct DockerHandle {
    pub docker: Arc<Docker>,
}

/// `Compose` handle: a compose project directory on a host.
#[derive(Clone)]
pub(crate) struct ComposeHandle {
    pub docker: Arc<Docker>,
    pub dir: String,
}

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<DockerHandle>("Docker");
    engine.register_type_with_name::<ComposeHandle>("Compose");
    engine.register_static_module("docker", exported_module!(docker_mod).into());
    engine.register_global_module(exported_module!(docker_methods).into());
}

/// Options of `docker::on`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnOpts {
    /// `DOCKER_HOST` for every docker call on that host (e.g. "unix:///run/user/1000/docker.sock").
    pub docker_host: Option<String>,
}

/// Options of `d.ps`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PsOpts {
    /// Include stopped containers.
    pub all: Option<bool>,
}

/// Options of `d.logs`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsOpts {
    /// Last N lines.
    pub tail: Option<i64>,
    /// Only lines since this time ("10m", RFC 3339, unix seconds) as `docker logs --since` takes it.
    pub since: Option<String>,
}

/// Options of `compose.up`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpOptions {
    /// Only these services (default: all).
    pub services: Option<Vec<String>>,
    /// Pull images first.
    pub pull: Option<bool>,
    /// Wait until every container is running and healthy (if it has a healthcheck).
    pub wait: Option<bool>,
    /// How long to wait (default 300s).
    pub timeout: Option<Secs>,
}

fn to_dyn(v: serde_json::Value) -> RResult<Dynamic> {
    rhai::serde::to_dynamic(v)
        .map_err(|e| RalfError::internal(format!("docker: cannot convert value: {e}")))
}

fn list_to_array(v: Vec<serde_json::Value>) -> RResult<Array> {
    v.into_iter().map(to_dyn).collect()
}

fn on_impl(ctx: &NativeCallContext, target: &Dynamic, opts: &Map) -> RResult<DockerHandle> {
    let h = host(ctx)?;
    let o: OnOpts = decode(opts, "docker::on")?;
    let exec = handle_from_dynamic(&h, target, "docker::on")?;
    Ok(DockerHandle {
        docker: Arc::new(Docker::new(exec, o.docker_host)),
    })
}

fn wait<T>(h: &Host, what: &str, fut: impl std::future::Future<Output = RResult<T>>) -> RResult<T> {
    let r = block_on(h, what, None, fut);
    if let Err(e) = &r {
        if e.kind == crate::error::ErrorKind::Cancelled {
            let p = crate::session::ssh::pool(h);
            h.rt.block_on(p.finish_kills(std::time::Duration::from_secs(5)));
        }
    }
    r
}

#[export_module]
mod docker_mod {
    use super::*;

    /// Docker on a host: an `SshHost` (from `ssh::connect` / `ssh::local()`) or an alias string.
    /// Every call runs the docker CLI over that host's multiplexed SSH session.
    ///
    /// ```rhai,no_run
    /// let d = docker::on("rtx1080");
    /// print(d.ping());
    /// ```
    #[rhai_fn(name = "on", return_raw)]
    pub fn on1(ctx: NativeCallContext, target: Dynamic) -> RhaiResult<DockerHandle> {
        on_impl(&ctx, &target, &Map::new()).at(&ctx)
    }

    /// `docker::on` with options `#{ docker_host }` (sets `DOCKER_HOST` for every call).
    ///
    /// ```rhai,no_run
    /// let d = docker::on(ssh::connect("thinkpad"), #{ docker_host: "unix:///run/user/1000/docker.sock" });
    /// d.ps();
    /// ```
    #[rhai_fn(name = "on", return_raw)]
    pub fn on2(ctx: NativeCallContext, target: Dynamic, opts: Map) -> RhaiResult<DockerHandle> {
        on_impl(&ctx, &target, &opts).at(&ctx)
    }
}

#[export_module]
mod docker_methods {
    use super::*;

    /// Check the daemon answers: `#{ ok, host, server_version, api_version, client_version }`.
    /// Raises `unavailable` when the daemon is not running, `forbidden` without socket access.
    ///
    /// ```rhai,no_run
    /// let v = docker::on("vps").ping();
    /// print(`docker ${v.server_version} on ${v.host}`);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn ping(ctx: NativeCallContext, d: &mut DockerHandle) -> RhaiResult<Dynamic> {
        let h = host(&ctx)?;
        let v = wait(&h, "docker ping", d.docker.ping()).at(&ctx)?;
        to_dyn(v).at(&ctx)
    }

    /// Running containers: `[#{ id, name, names, image, command, state, status, health, ports, labels, ... }]`.
    ///
    /// ```rhai,no_run
    /// for c in docker::on("vps").ps() { print(`${c.name}: ${c.state} (${c.health})`); }
    /// ```
    #[rhai_fn(global, name = "ps", return_raw)]
    pub fn ps0(ctx: NativeCallContext, d: &mut DockerHandle) -> RhaiResult<Array> {
        ps_impl(&ctx, d, &Map::new()).at(&ctx)
    }

    /// Containers with options `#{ all }` (`all: true` includes stopped ones).
    ///
    /// ```rhai,no_run
    /// let stopped = docker::on("vps").ps(#{ all: true }).filter(|c| c.state == "exited");
    /// ```
    #[rhai_fn(global, name = "ps", return_raw)]
    pub fn ps1(ctx: NativeCallContext, d: &mut DockerHandle, opts: Map) -> RhaiResult<Array> {
        ps_impl(&ctx, d, &opts).at(&ctx)
    }

    /// `docker inspect` of a container as a map (`not_found` when there is no such container).
    ///
    /// ```rhai,no_run
    /// let c = docker::on("vps").inspect("traefik");
    /// print(c.State.Status);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn inspect(
        ctx: NativeCallContext,
        d: &mut DockerHandle,
        name: &str,
    ) -> RhaiResult<Dynamic> {
        let h = host(&ctx)?;
        let v = wait(&h, "docker inspect", d.docker.inspect(name)).at(&ctx)?;
        to_dyn(v).at(&ctx)
    }

    /// Health of a container: "healthy", "unhealthy", "starting" or "none" (no healthcheck).
    ///
    /// ```rhai,no_run
    /// if docker::on("vps").health("traefik") != "healthy" { throw "traefik is not healthy"; }
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn health(ctx: NativeCallContext, d: &mut DockerHandle, name: &str) -> RhaiResult<String> {
        let h = host(&ctx)?;
        wait(&h, "docker health", d.docker.health(name)).at(&ctx)
    }

    /// Logs of a container (stdout and stderr interleaved).
    ///
    /// ```rhai,no_run
    /// print(docker::on("vps").logs("traefik"));
    /// ```
    #[rhai_fn(global, name = "logs", return_raw)]
    pub fn logs1(ctx: NativeCallContext, d: &mut DockerHandle, name: &str) -> RhaiResult<String> {
        logs_impl(&ctx, d, name, &Map::new()).at(&ctx)
    }

    /// Logs with options `#{ tail, since }`.
    ///
    /// ```rhai,no_run
    /// print(docker::on("vps").logs("traefik", #{ tail: 100, since: "10m" }));
    /// ```
    #[rhai_fn(global, name = "logs", return_raw)]
    pub fn logs2(
        ctx: NativeCallContext,
        d: &mut DockerHandle,
        name: &str,
        opts: Map,
    ) -> RhaiResult<String> {
        logs_impl(&ctx, d, name, &opts).at(&ctx)
    }

    /// A compose project in a directory on the host (the directory holding `docker-compose.yml` /
    /// `compose.yaml`). Works with the compose v2 plugin and the old `docker-compose` v1 (detected).
    ///
    /// ```rhai,no_run
    /// let app = docker::on("vps").compose("/srv/traefik");
    /// app.up(#{ wait: true, pull: true, timeout: "5m" });
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn compose(d: &mut DockerHandle, dir: &str) -> RhaiResult<ComposeHandle> {
        if dir.trim().is_empty() {
            return Err(RalfError::invalid("docker.compose: the directory is empty").into());
        }
        Ok(ComposeHandle {
            docker: d.docker.clone(),
            dir: dir.to_string(),
        })
    }

    /// `up -d` every service; returns the project's containers (like `ps`).
    ///
    /// ```rhai,no_run
    /// docker::on("vps").compose("/srv/traefik").up();
    /// ```
    #[rhai_fn(global, name = "up", return_raw)]
    pub fn up0(ctx: NativeCallContext, c: &mut ComposeHandle) -> RhaiResult<Array> {
        up_impl(&ctx, c, &Map::new()).at(&ctx)
    }

    /// `up` with options `#{ services, pull, wait, timeout }`. With `wait`, returns once every
    /// container is running and healthy (`--wait` on compose v2; polled on v1); a container that
    /// exits or turns unhealthy raises `command_failed`, a deadline `timeout`.
    ///
    /// ```rhai,no_run
    /// let app = docker::on("vps").compose("/srv/homelab");
    /// app.up(#{ services: ["traefik"], pull: true, wait: true, timeout: 120 });
    /// ```
    #[rhai_fn(global, name = "up", return_raw)]
    pub fn up1(ctx: NativeCallContext, c: &mut ComposeHandle, opts: Map) -> RhaiResult<Array> {
        up_impl(&ctx, c, &opts).at(&ctx)
    }

    /// Pull the project's images.
    ///
    /// ```rhai,no_run
    /// docker::on("vps").compose("/srv/traefik").pull();
    /// ```
    #[rhai_fn(global, name = "pull", return_raw)]
    pub fn pull(ctx: NativeCallContext, c: &mut ComposeHandle) -> RhaiResult<()> {
        let h = host(&ctx)?;
        refuse_pull(&h, &c.dir).at(&ctx)?;
        if h.dry_run(
            "docker",
            format!("compose pull in {} on {}", c.dir, c.docker.host_name()),
        ) {
            return Ok(());
        }
        let comp = Compose {
            docker: &c.docker,
            dir: c.dir.clone(),
        };
        wait(&h, "compose pull", comp.pull(&[])).at(&ctx)
    }

    /// The project's containers (stopped ones included):
    /// `[#{ id, name, service, image, state, status, health, exit_code }]`.
    ///
    /// ```rhai,no_run
    /// for c in docker::on("vps").compose("/srv/traefik").ps() { print(`${c.service}: ${c.state}`); }
    /// ```
    #[rhai_fn(global, name = "ps", return_raw)]
    pub fn compose_ps(ctx: NativeCallContext, c: &mut ComposeHandle) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let comp = Compose {
            docker: &c.docker,
            dir: c.dir.clone(),
        };
        let v = wait(&h, "compose ps", comp.ps()).at(&ctx)?;
        list_to_array(v).at(&ctx)
    }

    /// Stop and remove the project's containers and networks.
    ///
    /// ```rhai,no_run
    /// docker::on("vps").compose("/srv/traefik").down();
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn down(ctx: NativeCallContext, c: &mut ComposeHandle) -> RhaiResult<()> {
        let h = host(&ctx)?;
        if h.dry_run(
            "docker",
            format!("compose down in {} on {}", c.dir, c.docker.host_name()),
        ) {
            return Ok(());
        }
        let comp = Compose {
            docker: &c.docker,
            dir: c.dir.clone(),
        };
        wait(&h, "compose down", comp.down()).at(&ctx)
    }

    /// Restart the project's services.
    ///
    /// ```rhai,no_run
    /// docker::on("vps").compose("/srv/traefik").restart();
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn restart(ctx: NativeCallContext, c: &mut ComposeHandle) -> RhaiResult<()> {
        let h = host(&ctx)?;
        if h.dry_run(
            "docker",
            format!("compose restart in {} on {}", c.dir, c.docker.host_name()),
        ) {
            return Ok(());
        }
        let comp = Compose {
            docker: &c.docker,
            dir: c.dir.clone(),
        };
        wait(&h, "compose restart", comp.restart(&[])).at(&ctx)
    }

    /// The resolved compose configuration as a map; raises `invalid` when the file is invalid.
    ///
    /// ```rhai,no_run
    /// let cfg = docker::on("vps").compose("/srv/traefik").config();
    /// print(cfg.services.keys());
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn config(ctx: NativeCallContext, c: &mut ComposeHandle) -> RhaiResult<Dynamic> {
        let h = host(&ctx)?;
        let comp = Compose {
            docker: &c.docker,
            dir: c.dir.clone(),
        };
        let v = wait(&h, "compose config", comp.config()).at(&ctx)?;
        to_dyn(v).at(&ctx)
    }

    /// The host this handle talks to.
    ///
    /// ```rhai
    /// assert(docker::on(ssh::local()).host == "local");
    /// ```
    #[rhai_fn(global, get = "host", pure)]
    pub fn get_host(d: &mut DockerHandle) -> String {
        d.docker.host_name().to_string()
    }

    /// The project directory.
    ///
    /// ```rhai
    /// assert(docker::on(ssh::local()).compose("/srv/app").dir == "/srv/app");
    /// ```
    #[rhai_fn(global, get = "dir", pure)]
    pub fn get_dir(c: &mut ComposeHandle) -> String {
        c.dir.clone()
    }

    /// `Docker(host)`.
    ///
    /// ```rhai
    /// print(docker::on(ssh::local()));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn d_to_string(d: &mut DockerHandle) -> String {
        format!("Docker({})", d.docker.host_name())
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// debug(docker::on(ssh::local()));
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn d_to_debug(d: &mut DockerHandle) -> String {
        format!("Docker({})", d.docker.host_name())
    }

    /// `Compose(host:dir)`.
    ///
    /// ```rhai
    /// print(docker::on(ssh::local()).compose("/srv/app"));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn c_to_string(c: &mut ComposeHandle) -> String {
        format!("Compose({}:{})", c.docker.host_name(), c.dir)
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// debug(docker::on(ssh::local()).compose("/srv/app"));
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn c_to_debug(c: &mut ComposeHandle) -> String {
        format!("Compose({}:{})", c.docker.host_name(), c.dir)
    }
}

fn ps_impl(ctx: &NativeCallContext, d: &DockerHandle, opts: &Map) -> RResult<Array> {
    let h = host(ctx)?;
    let o: PsOpts = decode(opts, "docker.ps")?;
    let v = wait(&h, "docker ps", d.docker.ps(o.all.unwrap_or(false)))?;
    list_to_array(v)
}

fn logs_impl(ctx: &NativeCallContext, d: &DockerHandle, name: &str, opts: &Map) -> RResult<String> {
    let h = host(ctx)?;
    let o: LogsOpts = decode(opts, "docker.logs")?;
    wait(
        &h,
        "docker logs",
        d.docker.logs(name, o.tail, o.since.as_deref()),
    )
}

/// `docker.pull: never` in the config: no pull may be asked for.
fn refuse_pull(h: &Host, dir: &str) -> RResult<()> {
    if h.config.config.docker.pull == crate::config::PullPolicy::Never {
        return Err(RalfError::invalid(format!(
            "compose pull in {dir}: pulling is off in this configuration (docker.pull: never)"
        )));
    }
    Ok(())
}

fn up_impl(ctx: &NativeCallContext, c: &ComposeHandle, opts: &Map) -> RResult<Array> {
    let h = host(ctx)?;
    let o: UpOptions = decode(opts, "compose.up")?;
    let never_pull = h.config.config.docker.pull == crate::config::PullPolicy::Never;
    if o.pull == Some(true) {
        refuse_pull(&h, &c.dir)?;
    }
    let up = UpOpts {
        services: o.services.unwrap_or_default(),
        pull: o.pull.unwrap_or(false),
        never_pull,
        wait: o.wait.unwrap_or(false),
        timeout: o.timeout.map(|s| s.0),
    };
    if h.dry_run(
        "docker",
        format!(
            "compose up in {} on {}{}",
            c.dir,
            c.docker.host_name(),
            if up.services.is_empty() {
                String::new()
            } else {
                format!(" ({})", up.services.join(", "))
            }
        ),
    ) {
        return Ok(Array::new());
    }
    let comp = Compose {
        docker: &c.docker,
        dir: c.dir.clone(),
    };
    let v = wait(&h, "compose up", comp.up(&up))?;
    list_to_array(v)
}
