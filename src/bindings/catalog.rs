//! `catalog::`: the service catalog, the planner, service status.

use crate::bindings::{host, AtCall};
use crate::catalog::{Catalog, LoadOpts, Plan, PlanOpts, Service};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::decode::{self, to_json};
use crate::session::default_catalog_path;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use std::sync::Arc;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<CatalogRef>("Catalog");
    engine.register_type_with_name::<ServiceRef>("Service");
    engine.register_type_with_name::<PlanRef>("Plan");
    engine.register_static_module("catalog", exported_module!(catalog_mod).into());
}

/// A loaded, validated catalog.
#[derive(Clone)]
pub(crate) struct CatalogRef(pub Arc<Catalog>);

/// One service of a catalog.
#[derive(Clone)]
pub(crate) struct ServiceRef {
    pub cat: Arc<Catalog>,
    pub idx: usize,
}

impl ServiceRef {
    pub fn svc(&self) -> &Service {
        &self.cat.services[self.idx]
    }
}

/// A rollout plan.
#[derive(Clone)]
pub(crate) struct PlanRef {
    pub plan: Arc<Plan>,
    pub cat: Arc<Catalog>,
}

fn load_opts(h: &Host) -> LoadOpts {
    LoadOpts {
        allow_priority_inversion: h
            .cfg()
            .catalog
            .as_ref()
            .map(|c| c.allow_priority_inversion)
            .unwrap_or(false),
    }
}

/// Under `--dry-run`, the statuses `catalog::mark` would have recorded: reads of a service's
/// status see them, so a dry run follows its own plan (dependents of a "deployed" service go on);
/// the state store is never touched.
#[derive(Clone, Default)]
struct DryMarks(Arc<parking_lot::Mutex<std::collections::HashMap<String, String>>>);

fn dry_marks(h: &Host) -> DryMarks {
    h.extension(DryMarks::default)
}

fn statuses(h: &Host) -> RResult<std::collections::HashMap<String, String>> {
    let mut m = match crate::session::existing_store(h)? {
        Some(st) => st.statuses()?,
        None => Default::default(),
    };
    if h.opts.dry_run {
        m.extend(dry_marks(h).0.lock().clone());
    }
    Ok(m)
}

fn service_status(h: &Host, name: &str) -> RResult<String> {
    if h.opts.dry_run {
        if let Some(s) = dry_marks(h).0.lock().get(name) {
            return Ok(s.clone());
        }
    }
    Ok(match crate::session::existing_store(h)? {
        Some(st) => st
            .service_status(name)?
            .map(|r| r.status)
            .unwrap_or_else(|| "pending".into()),
        None => "pending".into(),
    })
}

fn service_map(s: &Service) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), s.name.clone().into());
    m.insert("description".into(), s.description.clone().into());
    m.insert("priority".into(), s.priority.as_str().into());
    m.insert(
        "group".into(),
        s.group.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert("depends_on".into(), to_json(&s.depends_on));
    m.insert(
        "host".into(),
        s.host.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert("guest".into(), guest_dyn(s));
    m.insert("semaphore".into(), semaphore_dyn(s));
    m.insert("snapshot".into(), to_json(&s.snapshot));
    m.insert("smoke".into(), to_json(&s.smoke));
    m.insert("tags".into(), to_json(&s.tags));
    m.insert("self_heal".into(), to_json(&s.self_heal));
    m.insert("file".into(), s.file.display().to_string().into());
    m
}

fn guest_dyn(s: &Service) -> Dynamic {
    match &s.guest {
        None => Dynamic::UNIT,
        Some(g) => {
            let mut m = Map::new();
            m.insert("vmid".into(), (g.vmid as i64).into());
            m.insert(
                "node".into(),
                g.node.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
            );
            m.into()
        }
    }
}

fn semaphore_dyn(s: &Service) -> Dynamic {
    let spec = s.semaphore.clone().unwrap_or_default();
    let mut m = Map::new();
    let opt = |o: Option<String>| o.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    m.insert("template".into(), opt(spec.template));
    m.insert("smoke_template".into(), opt(spec.smoke_template));
    m.insert("playbook".into(), opt(spec.playbook));
    m.insert("inventory".into(), opt(spec.inventory));
    let env: Map = spec
        .env
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    m.insert("env".into(), env.into());
    m.into()
}

fn mark_impl(ctx: &NativeCallContext, name: &str, status: &str, details: Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    if name.trim().is_empty() {
        return Err(RalfError::invalid("catalog::mark: service name is empty").into());
    }
    if !crate::state::model::SERVICE_STATUSES.contains(&status) {
        let hint = crate::text::did_you_mean(
            status,
            crate::state::model::SERVICE_STATUSES.iter().copied(),
        )
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
        return Err(RalfError::invalid(format!(
            "catalog::mark: unknown status `{status}` (one of: {}){hint}",
            crate::state::model::SERVICE_STATUSES.join(", ")
        ))
        .into());
    }
    let details: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(details))
        .map_err(|e| {
            RalfError::invalid(format!("catalog::mark: details are not plain data: {e}"))
        })?;
    let details = crate::host::redact_json(details);
    let version = ["version", "commit"]
        .iter()
        .find_map(|k| details.get(*k))
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    if h.dry_run("catalog::mark", format!("mark {name} as {status}")) {
        dry_marks(&h)
            .0
            .lock()
            .insert(name.to_string(), status.to_string());
        let mut m = Map::new();
        m.insert("service".into(), name.into());
        m.insert("status".into(), status.into());
        m.insert("dry_run".into(), true.into());
        return Ok(m);
    }
    let rc = crate::session::run_ctx(&h).at(ctx)?;
    let rec = rc
        .store
        .mark(name, status, Some(&rc.run_id), version.as_deref(), &details)
        .at(ctx)?;
    h.record_event(
        "service_status",
        serde_json::json!({ "service": name, "status": status }),
    );
    Ok(to_json(&rec).try_cast::<Map>().unwrap_or_default())
}

#[export_module]
mod catalog_mod {
    use super::*;

    /// Load and validate the catalog from the config's `catalog.path` (or `./catalog/projects`).
    /// Every problem (YAML errors, unknown keys, duplicates, unknown dependencies, cycles,
    /// priority inversions) is reported at once, each with `file:line`.
    ///
    /// ```rhai
    /// let cat = catalog::load();
    /// print(cat.services.len());
    /// ```
    #[rhai_fn(name = "load", return_raw)]
    pub fn load0(ctx: NativeCallContext) -> RhaiResult<CatalogRef> {
        let h = host(&ctx)?;
        let path = default_catalog_path(&h).at(&ctx)?;
        Catalog::load_with(&path, load_opts(&h))
            .map(|c| CatalogRef(Arc::new(c)))
            .at(&ctx)
    }

    /// Load and validate the catalog in `path` (a folder of `*.yaml` files, or one file).
    ///
    /// ```rhai,no_run
    /// let cat = catalog::load("catalog/projects");
    /// assert(cat.get("postgresql").priority == "P0");
    /// ```
    #[rhai_fn(name = "load", return_raw)]
    pub fn load1(ctx: NativeCallContext, path: &str) -> RhaiResult<CatalogRef> {
        let h = host(&ctx)?;
        Catalog::load_with(path, load_opts(&h))
            .map(|c| CatalogRef(Arc::new(c)))
            .at(&ctx)
    }

    /// Record a service's status in the state store (`deployed`, `failed`, `rolled_back`, `pending`)
    /// with details (a `version` or `commit` key is kept as the version). The catalog YAML is never
    /// written. Returns the record.
    ///
    /// ```rhai
    /// let cat = catalog::load();
    /// catalog::mark(cat.get("minio"), "deployed", #{ task_id: 42, version: "2024.10" });
    /// assert(cat.get("minio").status == "deployed");
    /// catalog::mark("minio", "pending");
    /// ```
    #[rhai_fn(name = "mark", return_raw)]
    pub fn mark_svc(
        ctx: NativeCallContext,
        svc: ServiceRef,
        status: &str,
        details: Map,
    ) -> RhaiResult<Map> {
        mark_impl(&ctx, &svc.svc().name, status, details)
    }

    /// `catalog::mark(svc, status)` without details.
    ///
    /// ```rhai
    /// let cat = catalog::load();
    /// catalog::mark(cat.get("minio"), "failed");
    /// catalog::mark(cat.get("minio"), "pending");
    /// ```
    #[rhai_fn(name = "mark", return_raw)]
    pub fn mark_svc2(ctx: NativeCallContext, svc: ServiceRef, status: &str) -> RhaiResult<Map> {
        mark_impl(&ctx, &svc.svc().name, status, Map::new())
    }

    /// `catalog::mark(name, status, details)` by service name.
    ///
    /// ```rhai
    /// catalog::mark("minio", "rolled_back", #{ reason: "smoke test failed" });
    /// catalog::mark("minio", "pending");
    /// ```
    #[rhai_fn(name = "mark", return_raw)]
    pub fn mark_name(
        ctx: NativeCallContext,
        name: &str,
        status: &str,
        details: Map,
    ) -> RhaiResult<Map> {
        mark_impl(&ctx, name, status, details)
    }

    /// `catalog::mark(name, status)` by service name, without details.
    ///
    /// ```rhai
    /// catalog::mark("minio", "pending");
    /// ```
    #[rhai_fn(name = "mark", return_raw)]
    pub fn mark_name2(ctx: NativeCallContext, name: &str, status: &str) -> RhaiResult<Map> {
        mark_impl(&ctx, name, status, Map::new())
    }

    /// Recent runs, most recent first: `#{ id, script, args, status, exit_code, started_at, ended_at, ... }`.
    ///
    /// ```rhai
    /// for r in catalog::history() { print(`${r.id} ${r.status}`); }
    /// ```
    #[rhai_fn(name = "history", return_raw)]
    pub fn history0(ctx: NativeCallContext) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let Some(st) = crate::session::existing_store(&h).at(&ctx)? else {
            return Ok(Array::new());
        };
        let runs = st.runs(50).at(&ctx)?;
        Ok(runs.iter().map(to_json).collect())
    }

    /// Status changes of one service, most recent first: `#{ status, at, run_id, version, details }`.
    ///
    /// ```rhai
    /// for h in catalog::history("vaultwarden") { print(`${h.at} ${h.status}`); }
    /// ```
    #[rhai_fn(name = "history", return_raw)]
    pub fn history1(ctx: NativeCallContext, name: &str) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let Some(st) = crate::session::existing_store(&h).at(&ctx)? else {
            return Ok(Array::new());
        };
        let rows = st.service_history(name, 100).at(&ctx)?;
        Ok(rows.iter().map(to_json).collect())
    }

    /// The `limit` most recent status changes of one service.
    ///
    /// ```rhai
    /// let last = catalog::history("vaultwarden", 1);
    /// ```
    #[rhai_fn(name = "history", return_raw)]
    pub fn history2(ctx: NativeCallContext, name: &str, limit: rhai::INT) -> RhaiResult<Array> {
        if limit < 1 {
            return Err(RalfError::invalid(format!(
                "catalog::history: limit must be at least 1, got {limit}"
            ))
            .into());
        }
        let h = host(&ctx)?;
        let Some(st) = crate::session::existing_store(&h).at(&ctx)? else {
            return Ok(Array::new());
        };
        let rows = st.service_history(name, limit as usize).at(&ctx)?;
        Ok(rows.iter().map(to_json).collect())
    }

    // ---- Catalog ----

    /// Every service, sorted by name.
    ///
    /// ```rhai
    /// for s in catalog::load().services { print(s.name); }
    /// ```
    #[rhai_fn(global, get = "services", pure)]
    pub fn cat_services(c: &mut CatalogRef) -> Array {
        (0..c.0.services.len())
            .map(|idx| {
                Dynamic::from(ServiceRef {
                    cat: c.0.clone(),
                    idx,
                })
            })
            .collect()
    }

    /// Service names, sorted.
    ///
    /// ```rhai
    /// assert(catalog::load().names.contains("gitea"));
    /// ```
    #[rhai_fn(global, get = "names", pure)]
    pub fn cat_names(c: &mut CatalogRef) -> Array {
        c.0.names().map(|n| Dynamic::from(n.to_string())).collect()
    }

    /// Where the catalog was loaded from.
    ///
    /// ```rhai
    /// print(catalog::load().path);
    /// ```
    #[rhai_fn(global, get = "path", pure)]
    pub fn cat_path(c: &mut CatalogRef) -> String {
        c.0.path.display().to_string()
    }

    /// Number of services.
    ///
    /// ```rhai
    /// assert(catalog::load().len() > 10);
    /// ```
    #[rhai_fn(global, name = "len", pure)]
    pub fn cat_len(c: &mut CatalogRef) -> i64 {
        c.0.services.len() as i64
    }

    /// True when the catalog has a service called `name`.
    ///
    /// ```rhai
    /// assert(catalog::load().contains("n8n"));
    /// ```
    #[rhai_fn(global, name = "contains", pure)]
    pub fn cat_contains(c: &mut CatalogRef, name: &str) -> bool {
        c.0.get(name).is_some()
    }

    /// The service called `name`; throws `not_found` (with a did-you-mean) otherwise.
    ///
    /// ```rhai
    /// let vw = catalog::load().get("vaultwarden");
    /// assert(vw.depends_on.contains("postgresql"));
    /// ```
    #[rhai_fn(global, name = "get", pure, return_raw)]
    pub fn cat_get(
        ctx: NativeCallContext,
        c: &mut CatalogRef,
        name: &str,
    ) -> RhaiResult<ServiceRef> {
        match c.0.index_of(name) {
            Some(idx) => Ok(ServiceRef {
                cat: c.0.clone(),
                idx,
            }),
            None => Err(crate::bindings::at(&ctx, c.0.not_found(name))),
        }
    }

    /// Plan a rollout of pending services: options `priority` ("P2", "<=P2" or a list), `only`
    /// (names), `group`, `exclude`, `include_deps` (default true: unmet dependencies are pulled in),
    /// `redeploy` (default false: deployed services are skipped). Services are grouped into waves:
    /// each in the earliest wave after all its planned dependencies.
    ///
    /// ```rhai
    /// let plan = catalog::load().plan(#{ priority: "P2" });
    /// print(plan);
    /// for wave in plan.waves { for svc in wave { print(svc.name); } }
    /// ```
    #[rhai_fn(global, name = "plan", pure, return_raw)]
    pub fn cat_plan(ctx: NativeCallContext, c: &mut CatalogRef, opts: Map) -> RhaiResult<PlanRef> {
        let h = host(&ctx)?;
        let o: PlanOpts = decode::decode(&opts, "plan").at(&ctx)?;
        let st = statuses(&h).at(&ctx)?;
        let plan = c.0.plan(&o, &st).at(&ctx)?;
        Ok(PlanRef {
            plan: Arc::new(plan),
            cat: c.0.clone(),
        })
    }

    /// Plan every pending service (same as `plan(#{})`).
    ///
    /// ```rhai
    /// print(catalog::load().plan());
    /// ```
    #[rhai_fn(global, name = "plan", pure, return_raw)]
    pub fn cat_plan0(ctx: NativeCallContext, c: &mut CatalogRef) -> RhaiResult<PlanRef> {
        cat_plan(ctx, c, Map::new())
    }

    /// Short description of the catalog.
    ///
    /// ```rhai
    /// print(catalog::load());
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn cat_to_string(c: &mut CatalogRef) -> String {
        format!(
            "Catalog({} services from {})",
            c.0.services.len(),
            c.0.path.display()
        )
    }

    /// Debug form of the catalog.
    ///
    /// ```rhai
    /// debug(catalog::load());
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn cat_to_debug(c: &mut CatalogRef) -> String {
        cat_to_string(c)
    }

    // ---- Service ----

    /// Service name.
    ///
    /// ```rhai
    /// assert(catalog::load().get("gitea").name == "gitea");
    /// ```
    #[rhai_fn(global, get = "name", pure)]
    pub fn svc_name(s: &mut ServiceRef) -> String {
        s.svc().name.clone()
    }

    /// Description.
    ///
    /// ```rhai
    /// print(catalog::load().get("gitea").description);
    /// ```
    #[rhai_fn(global, get = "description", pure)]
    pub fn svc_description(s: &mut ServiceRef) -> String {
        s.svc().description.clone()
    }

    /// Priority "P0".."P4".
    ///
    /// ```rhai
    /// assert(catalog::load().get("postgresql").priority == "P0");
    /// ```
    #[rhai_fn(global, get = "priority", pure)]
    pub fn svc_priority(s: &mut ServiceRef) -> String {
        s.svc().priority.as_str().to_string()
    }

    /// Group (vault, automation, communication, ai, ...) or `()`.
    ///
    /// ```rhai
    /// print(catalog::load().get("vaultwarden").group);
    /// ```
    #[rhai_fn(global, get = "group", pure)]
    pub fn svc_group(s: &mut ServiceRef) -> Dynamic {
        s.svc()
            .group
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }

    /// Names of the services it depends on.
    ///
    /// ```rhai
    /// print(catalog::load().get("vaultwarden").depends_on);
    /// ```
    #[rhai_fn(global, get = "depends_on", pure)]
    pub fn svc_depends_on(s: &mut ServiceRef) -> Array {
        s.svc()
            .depends_on
            .iter()
            .map(|d| Dynamic::from(d.clone()))
            .collect()
    }

    /// SSH alias it runs on, or `()`.
    ///
    /// ```rhai
    /// print(catalog::load().get("exo").host);
    /// ```
    #[rhai_fn(global, get = "host", pure)]
    pub fn svc_host(s: &mut ServiceRef) -> Dynamic {
        s.svc()
            .host
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }

    /// Proxmox guest `#{ vmid, node }`, or `()`.
    ///
    /// ```rhai
    /// assert(catalog::load().get("postgresql").guest.vmid == 2010);
    /// ```
    #[rhai_fn(global, get = "guest", pure)]
    pub fn svc_guest(s: &mut ServiceRef) -> Dynamic {
        guest_dyn(s.svc())
    }

    /// Semaphore settings `#{ template, smoke_template, playbook, inventory, env }` (missing ones are `()`).
    ///
    /// ```rhai
    /// print(catalog::load().get("vaultwarden").semaphore.template);
    /// ```
    #[rhai_fn(global, get = "semaphore", pure)]
    pub fn svc_semaphore(s: &mut ServiceRef) -> Dynamic {
        semaphore_dyn(s.svc())
    }

    /// Smoke checks, as maps (`http`/`expect`/`contains`, `tcp`, `command`/`on`, `script`/`threshold`).
    ///
    /// ```rhai
    /// for c in catalog::load().get("gitea").smoke { print(c); }
    /// ```
    #[rhai_fn(global, get = "smoke", pure)]
    pub fn svc_smoke(s: &mut ServiceRef) -> Dynamic {
        to_json(&s.svc().smoke)
    }

    /// Snapshot setting: `()`, `true`/`false` or a snapshot name.
    ///
    /// ```rhai
    /// print(catalog::load().get("postgresql").snapshot);
    /// ```
    #[rhai_fn(global, get = "snapshot", pure)]
    pub fn svc_snapshot(s: &mut ServiceRef) -> Dynamic {
        to_json(&s.svc().snapshot)
    }

    /// What a fix proposed by the advisor may do (`self_heal:` in the catalog): `#{ env: [keys],
    /// restart: bool }`, or `()` when the service allows no automatic fix.
    ///
    /// ```rhai
    /// let h = catalog::load().get("n8n").self_heal;
    /// if h != () { print(`a retry may change ${h.env}`); }
    /// ```
    #[rhai_fn(global, get = "self_heal", pure)]
    pub fn svc_self_heal(s: &mut ServiceRef) -> Dynamic {
        to_json(&s.svc().self_heal)
    }

    /// Tags.
    ///
    /// ```rhai
    /// print(catalog::load().get("gitea").tags);
    /// ```
    #[rhai_fn(global, get = "tags", pure)]
    pub fn svc_tags(s: &mut ServiceRef) -> Array {
        s.svc()
            .tags
            .iter()
            .map(|d| Dynamic::from(d.clone()))
            .collect()
    }

    /// The YAML file the service is defined in.
    ///
    /// ```rhai
    /// print(catalog::load().get("gitea").file);
    /// ```
    #[rhai_fn(global, get = "file", pure)]
    pub fn svc_file(s: &mut ServiceRef) -> String {
        s.svc().file.display().to_string()
    }

    /// Current status from the state store: `pending` (never recorded), `deployed`, `failed`, `rolled_back`.
    ///
    /// ```rhai
    /// print(catalog::load().get("gitea").status);
    /// ```
    #[rhai_fn(global, get = "status", pure, return_raw)]
    pub fn svc_status(ctx: NativeCallContext, s: &mut ServiceRef) -> RhaiResult<String> {
        let h = host(&ctx)?;
        service_status(&h, &s.svc().name).at(&ctx)
    }

    /// Every field as an object map.
    ///
    /// ```rhai
    /// print(catalog::load().get("gitea").to_map());
    /// ```
    #[rhai_fn(global, name = "to_map", pure)]
    pub fn svc_to_map(s: &mut ServiceRef) -> Map {
        service_map(s.svc())
    }

    /// `Service(name P1 group)`.
    ///
    /// ```rhai
    /// print(catalog::load().get("gitea"));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn svc_to_string(s: &mut ServiceRef) -> String {
        let v = s.svc();
        let mut out = format!("Service({} {}", v.name, v.priority);
        if let Some(g) = &v.group {
            out.push_str(&format!(" {g}"));
        }
        if !v.depends_on.is_empty() {
            out.push_str(&format!(" needs {}", v.depends_on.join(",")));
        }
        out.push(')');
        out
    }

    /// Debug form: every field.
    ///
    /// ```rhai
    /// debug(catalog::load().get("gitea"));
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn svc_to_debug(s: &mut ServiceRef) -> String {
        format!("{:?}", service_map(s.svc()))
    }

    // ---- Plan ----

    /// The waves: an array of arrays of services; a wave only depends on earlier waves.
    ///
    /// ```rhai
    /// let plan = catalog::load().plan();
    /// for (wave, i) in plan.waves { print(`wave ${i + 1}: ${wave.map(|s| s.name)}`); }
    /// ```
    #[rhai_fn(global, get = "waves", pure)]
    pub fn plan_waves(p: &mut PlanRef) -> Array {
        p.plan
            .waves()
            .into_iter()
            .map(|w| {
                let a: Array = w
                    .into_iter()
                    .filter_map(|e| p.cat.index_of(&e.name))
                    .map(|idx| {
                        Dynamic::from(ServiceRef {
                            cat: p.cat.clone(),
                            idx,
                        })
                    })
                    .collect();
                Dynamic::from_array(a)
            })
            .collect()
    }

    /// Every planned service in execution order.
    ///
    /// ```rhai
    /// let names = catalog::load().plan().services.map(|s| s.name);
    /// ```
    #[rhai_fn(global, get = "services", pure)]
    pub fn plan_services(p: &mut PlanRef) -> Array {
        p.plan
            .entries
            .iter()
            .filter_map(|e| p.cat.index_of(&e.name))
            .map(|idx| {
                Dynamic::from(ServiceRef {
                    cat: p.cat.clone(),
                    idx,
                })
            })
            .collect()
    }

    /// Planned entries as maps `#{ name, priority, wave, depends_on, status, reason }`.
    ///
    /// ```rhai
    /// for e in catalog::load().plan().entries { print(`${e.wave} ${e.name}: ${e.reason}`); }
    /// ```
    #[rhai_fn(global, get = "entries", pure)]
    pub fn plan_entries(p: &mut PlanRef) -> Dynamic {
        to_json(&p.plan.entries)
    }

    /// Selected services left out because they are deployed: `#{ name, reason }`.
    ///
    /// ```rhai
    /// print(catalog::load().plan().skipped);
    /// ```
    #[rhai_fn(global, get = "skipped", pure)]
    pub fn plan_skipped(p: &mut PlanRef) -> Array {
        pairs(&p.plan.skipped)
    }

    /// Selected services that cannot run because a dependency is excluded: `#{ name, reason }`.
    ///
    /// ```rhai
    /// print(catalog::load().plan(#{ exclude: ["postgresql"] }).blocked);
    /// ```
    #[rhai_fn(global, get = "blocked", pure)]
    pub fn plan_blocked(p: &mut PlanRef) -> Array {
        pairs(&p.plan.blocked)
    }

    /// Warnings (e.g. a dependency that is neither deployed nor planned with `include_deps: false`).
    ///
    /// ```rhai
    /// print(catalog::load().plan(#{ only: "vaultwarden", include_deps: false }).warnings);
    /// ```
    #[rhai_fn(global, get = "warnings", pure)]
    pub fn plan_warnings(p: &mut PlanRef) -> Array {
        p.plan
            .warnings
            .iter()
            .map(|w| Dynamic::from(w.clone()))
            .collect()
    }

    /// Number of planned services.
    ///
    /// ```rhai
    /// print(catalog::load().plan().len());
    /// ```
    #[rhai_fn(global, name = "len", pure)]
    pub fn plan_len(p: &mut PlanRef) -> i64 {
        p.plan.entries.len() as i64
    }

    /// True when nothing is to be done.
    ///
    /// ```rhai
    /// if catalog::load().plan().is_empty() { print("all deployed"); }
    /// ```
    #[rhai_fn(global, name = "is_empty", pure)]
    pub fn plan_is_empty(p: &mut PlanRef) -> bool {
        p.plan.entries.is_empty()
    }

    /// The plan as a table (wave, service, priority, depends on, why).
    ///
    /// ```rhai
    /// print(catalog::load().plan(#{ priority: "<=P1" }));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn plan_to_string(p: &mut PlanRef) -> String {
        p.plan.to_string().trim_end().to_string()
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// debug(catalog::load().plan());
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn plan_to_debug(p: &mut PlanRef) -> String {
        plan_to_string(p)
    }
}

fn pairs(v: &[(String, String)]) -> Array {
    v.iter()
        .map(|(n, r)| {
            let mut m = Map::new();
            m.insert("name".into(), n.clone().into());
            m.insert("reason".into(), r.clone().into());
            Dynamic::from_map(m)
        })
        .collect()
}
