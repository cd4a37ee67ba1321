//! Deterministic planner: select services, pull in unmet dependencies, group into waves.

use super::{Catalog, Priority};
use crate::error::{RResult, RalfError};
use crate::text::did_you_mean;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Options of `cat.plan(#{ ... })`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOpts {
    /// "P2" (exactly), "<=P2" (P0..P2), or a list ["P0", "P1"]. Default: every priority.
    pub priority: Option<OneOrMany>,
    /// Only these services (name or list of names).
    pub only: Option<OneOrMany>,
    /// Only these groups.
    pub group: Option<OneOrMany>,
    /// Pull in dependencies that are not deployed yet (default true).
    pub include_deps: Option<bool>,
    /// Never plan these services (services needing them, not deployed, are blocked).
    pub exclude: Option<OneOrMany>,
    /// Also plan selected services that are already deployed (default false).
    pub redeploy: Option<bool>,
}

/// One planned service.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub name: String,
    pub priority: Priority,
    /// 1-based wave number.
    pub wave: usize,
    pub depends_on: Vec<String>,
    /// Current status from the state store ("pending" when never recorded).
    pub status: String,
    /// Why it is in the plan.
    pub reason: String,
}

/// The result of planning.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Entries in execution order (wave, then priority, then name).
    pub entries: Vec<PlanEntry>,
    /// Number of waves.
    pub wave_count: usize,
    /// Selected services left out, with the reason (already deployed).
    pub skipped: Vec<(String, String)>,
    /// Selected services that cannot run (a dependency is excluded and not deployed).
    pub blocked: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

impl Plan {
    /// Entries grouped by wave (index 0 = wave 1).
    pub fn waves(&self) -> Vec<Vec<&PlanEntry>> {
        let mut w: Vec<Vec<&PlanEntry>> = vec![Vec::new(); self.wave_count];
        for e in &self.entries {
            w[e.wave - 1].push(e);
        }
        w
    }
}

fn list(o: &Option<OneOrMany>) -> Option<Vec<String>> {
    o.as_ref().map(|x| x.items())
}

fn priority_filter(o: &Option<OneOrMany>) -> RResult<Option<BTreeSet<Priority>>> {
    let Some(items) = list(o) else {
        return Ok(None);
    };
    let mut set = BTreeSet::new();
    for it in items {
        let t = it.trim();
        let (op, p) = if let Some(r) = t.strip_prefix("<=") {
            ("<=", r)
        } else if let Some(r) = t.strip_prefix(">=") {
            (">=", r)
        } else {
            ("=", t)
        };
        let p = Priority::parse(p).ok_or_else(|| {
            RalfError::invalid(format!(
                "plan: priority `{it}` is not one of P0..P4 (also accepted: \"<=P2\", \">=P3\", a list)"
            ))
        })?;
        for q in Priority::ALL {
            let keep = match op {
                "<=" => q <= p,
                ">=" => q >= p,
                _ => q == p,
            };
            if keep {
                set.insert(q);
            }
        }
    }
    Ok(Some(set))
}

fn short_list(names: &[String]) -> String {
    if names.len() <= 3 {
        names.join(", ")
    } else {
        format!("{}, +{} more", names[..3].join(", "), names.len() - 3)
    }
}

impl Catalog {
    /// Topological order of all services (dependencies first; ties by priority then name).
    pub fn topo_order(&self) -> Vec<usize> {
        let n = self.services.len();
        let mut indeg = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, s) in self.services.iter().enumerate() {
            for d in &s.depends_on {
                if let Some(j) = self.index_of(d) {
                    indeg[i] += 1;
                    dependents[j].push(i);
                }
            }
        }
        let key = |i: usize| (self.services[i].priority, i);
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(Priority, usize)>> = (0..n)
            .filter(|&i| indeg[i] == 0)
            .map(|i| std::cmp::Reverse(key(i)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse((_, i))) = ready.pop() {
            order.push(i);
            for &t in &dependents[i] {
                indeg[t] -= 1;
                if indeg[t] == 0 {
                    ready.push(std::cmp::Reverse(key(t)));
                }
            }
        }
        order
    }

    /// Plan a rollout. `status` maps service name -> recorded status (missing = pending).
    pub fn plan(&self, opts: &PlanOpts, status: &HashMap<String, String>) -> RResult<Plan> {
        let check_names = |what: &str, names: &[String]| -> RResult<()> {
            for n in names {
                if self.get(n).is_none() {
                    let hint = did_you_mean(n, self.names())
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    // A selection is asked for before anything runs: bad input, exit 2.
                    return Err(RalfError::not_found(format!(
                        "plan: `{what}` names unknown service `{n}`{hint}"
                    ))
                    .with("service", n.as_str())
                    .with("exit_code", 2));
                }
            }
            Ok(())
        };
        let only = list(&opts.only);
        let exclude: BTreeSet<String> = list(&opts.exclude)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(o) = &only {
            check_names("only", o)?;
        }
        check_names("exclude", &exclude.iter().cloned().collect::<Vec<_>>())?;
        let prio = priority_filter(&opts.priority)?;
        let groups = list(&opts.group);
        let include_deps = opts.include_deps.unwrap_or(true);
        let redeploy = opts.redeploy.unwrap_or(false);
        let status_of = |name: &str| {
            status
                .get(name)
                .cloned()
                .unwrap_or_else(|| "pending".to_string())
        };
        let deployed = |name: &str| status.get(name).map(|s| s == "deployed").unwrap_or(false);

        let n = self.services.len();
        let mut reason: Vec<Option<String>> = vec![None; n];
        let mut skipped = Vec::new();
        let mut warnings = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            if exclude.contains(&s.name) {
                continue;
            }
            if let Some(o) = &only {
                if !o.contains(&s.name) {
                    continue;
                }
            }
            if let Some(p) = &prio {
                if !p.contains(&s.priority) {
                    continue;
                }
            }
            if let Some(g) = &groups {
                if !s.group.as_ref().map(|x| g.contains(x)).unwrap_or(false) {
                    continue;
                }
            }
            let st = status_of(&s.name);
            if st == "deployed" && !redeploy {
                skipped.push((s.name.clone(), "already deployed".to_string()));
                continue;
            }
            reason[i] = Some(format!("selected ({}, {st})", s.priority));
        }
        // Pull in unmet dependencies, transitively (dependents first => reverse topo order).
        let order = self.topo_order();
        if include_deps {
            let mut needed_by: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            for &i in order.iter().rev() {
                if reason[i].is_none() {
                    match needed_by.get_mut(&i) {
                        Some(by) if !exclude.contains(&self.services[i].name) => {
                            by.sort();
                            reason[i] = Some(format!(
                                "needed by {} ({})",
                                short_list(by),
                                status_of(&self.services[i].name)
                            ));
                        }
                        _ => continue,
                    }
                }
                for d in &self.services[i].depends_on {
                    if let Some(j) = self.index_of(d) {
                        if !deployed(d) && reason[j].is_none() {
                            needed_by
                                .entry(j)
                                .or_default()
                                .push(self.services[i].name.clone());
                        }
                    }
                }
            }
        }
        // Blocked: an unmet dependency that is not in the plan (excluded, or include_deps: false).
        let mut blocked = Vec::new();
        let mut in_plan: Vec<bool> = reason.iter().map(|r| r.is_some()).collect();
        for &i in &order {
            if !in_plan[i] {
                continue;
            }
            let s = &self.services[i];
            for d in &s.depends_on {
                let Some(j) = self.index_of(d) else { continue };
                if in_plan[j] || deployed(d) {
                    continue;
                }
                if exclude.contains(d) || blocked.iter().any(|(b, _): &(String, String)| b == d) {
                    in_plan[i] = false;
                    blocked.push((
                        s.name.clone(),
                        format!("needs `{d}`, which is excluded or blocked and not deployed"),
                    ));
                    break;
                }
                warnings.push(format!(
                    "`{}` needs `{d}` ({}), which is not in this plan",
                    s.name,
                    status_of(d)
                ));
            }
        }
        // Waves: earliest wave after all planned dependencies.
        let mut wave = vec![0usize; n];
        for &i in &order {
            if !in_plan[i] {
                continue;
            }
            let w = self.services[i]
                .depends_on
                .iter()
                .filter_map(|d| self.index_of(d))
                .filter(|&j| in_plan[j])
                .map(|j| wave[j])
                .max()
                .unwrap_or(0);
            wave[i] = w + 1;
        }
        let mut entries: Vec<PlanEntry> = (0..n)
            .filter(|&i| in_plan[i])
            .map(|i| {
                let s = &self.services[i];
                PlanEntry {
                    name: s.name.clone(),
                    priority: s.priority,
                    wave: wave[i],
                    depends_on: s.depends_on.clone(),
                    status: status_of(&s.name),
                    reason: reason[i].clone().unwrap_or_default(),
                }
            })
            .collect();
        entries.sort_by(|a, b| (a.wave, a.priority, &a.name).cmp(&(b.wave, b.priority, &b.name)));
        let wave_count = entries.iter().map(|e| e.wave).max().unwrap_or(0);
        Ok(Plan {
            entries,
            wave_count,
            skipped,
            blocked,
            warnings,
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            writeln!(
                f,
                "plan: nothing to do ({} already deployed)",
                self.skipped.len()
            )?;
        } else {
            writeln!(
                f,
                "plan: {} service{} in {} wave{}",
                self.entries.len(),
                if self.entries.len() == 1 { "" } else { "s" },
                self.wave_count,
                if self.wave_count == 1 { "" } else { "s" }
            )?;
            let rows: Vec<Vec<String>> = self
                .entries
                .iter()
                .map(|e| {
                    let deps = if e.depends_on.is_empty() {
                        "-".into()
                    } else {
                        e.depends_on.join(", ")
                    };
                    vec![
                        e.wave.to_string(),
                        e.name.clone(),
                        e.priority.as_str().to_string(),
                        deps,
                        e.reason.clone(),
                    ]
                })
                .collect();
            let headers = ["wave", "service", "prio", "depends on", "why"].map(String::from);
            writeln!(f, "{}", crate::text::table(&headers, &rows))?;
        }
        if !self.skipped.is_empty() {
            let names: Vec<&str> = self.skipped.iter().map(|(n, _)| n.as_str()).collect();
            writeln!(f, "skipped (already deployed): {}", names.join(", "))?;
        }
        for (n, r) in &self.blocked {
            writeln!(f, "blocked: {n}: {r}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}
