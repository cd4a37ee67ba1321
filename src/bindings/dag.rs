//! `parallel_dag`: run a closure over items that depend on each other, each item as soon as the
//! items it depends on have finished, at most `limit` at once.
//!
//! Ready items are started by priority: the longest weighted chain of work that hangs below them
//! (their own weight plus the heaviest path through their dependents; weight 1 each unless
//! `weight` estimates it), so the critical path is never starved by short side branches; ties go
//! to input order. The scheduling core ([`Graph`], [`Ready`]) is plain Rust, tested on its own.

use crate::bindings::host;
use crate::error::{RalfError, RhaiResult};
use parking_lot::{Condvar, Mutex};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext};
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(dag_mod).into());
}

/// A dependency graph over item indices.
#[derive(Debug)]
pub(crate) struct Graph {
    /// Indices each item waits for (only items in the set).
    pub deps: Vec<Vec<usize>>,
    /// Indices waiting for each item.
    pub dependents: Vec<Vec<usize>>,
    /// Priority: weight of the heaviest chain from the item down through its dependents.
    pub rank: Vec<f64>,
}

impl Graph {
    /// Build the graph; `Err(path)` names a cycle as a list of indices (first == last).
    pub fn new(deps: Vec<Vec<usize>>, weight: &[f64]) -> Result<Graph, Vec<usize>> {
        let n = deps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        // Topological order (Kahn); leftovers are on or behind a cycle.
        let mut missing: Vec<usize> = deps.iter().map(|d| d.len()).collect();
        let mut order: Vec<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
        let mut k = 0;
        while k < order.len() {
            let i = order[k];
            k += 1;
            for &j in &dependents[i] {
                missing[j] -= 1;
                if missing[j] == 0 {
                    order.push(j);
                }
            }
        }
        if order.len() < n {
            return Err(find_cycle(&deps, &missing));
        }
        let mut rank = vec![0.0; n];
        for &i in order.iter().rev() {
            let below = dependents[i]
                .iter()
                .map(|&j| rank[j])
                .fold(0.0_f64, f64::max);
            rank[i] = weight[i] + below;
        }
        Ok(Graph {
            deps,
            dependents,
            rank,
        })
    }
}

/// Follow unfinished dependencies from a node left over by Kahn's algorithm until one repeats.
fn find_cycle(deps: &[Vec<usize>], missing: &[usize]) -> Vec<usize> {
    let start = (0..deps.len()).find(|&i| missing[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let Some(&next) = deps[cur].iter().find(|&&d| missing[d] > 0) else {
            return path;
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            cycle.reverse(); // dependency first: a -> b reads "b waits for a"
            return cycle;
        }
        path.push(next);
        cur = next;
    }
}

/// A ready item in the priority queue: higher rank first, then lower index.
#[derive(PartialEq)]
struct Entry(f64, usize);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// The scheduling state shared by the workers.
pub(crate) struct Ready {
    queue: BinaryHeap<Entry>,
    missing: Vec<usize>,
    finished: usize,
    started: usize,
    n: usize,
}

impl Ready {
    pub fn new(g: &Graph) -> Ready {
        let missing: Vec<usize> = g.deps.iter().map(|d| d.len()).collect();
        let queue = (0..g.deps.len())
            .filter(|&i| missing[i] == 0)
            .map(|i| Entry(g.rank[i], i))
            .collect();
        Ready {
            queue,
            missing,
            finished: 0,
            started: 0,
            n: g.deps.len(),
        }
    }

    /// The next item to start, if one is ready.
    pub fn take(&mut self) -> Option<usize> {
        let e = self.queue.pop()?;
        self.started += 1;
        Some(e.1)
    }

    /// Item `i` finished: its dependents whose dependencies are all finished become ready.
    pub fn finish(&mut self, g: &Graph, i: usize) {
        self.finished += 1;
        for &j in &g.dependents[i] {
            self.missing[j] -= 1;
            if self.missing[j] == 0 {
                self.queue.push(Entry(g.rank[j], j));
            }
        }
    }

    /// Nothing left to start (everything started, or finished work can unlock nothing more).
    pub fn exhausted(&self) -> bool {
        self.started == self.n || (self.queue.is_empty() && self.finished == self.started)
    }
}

/// Read `what` of an item: a closure `|item| ...`, or a field / property name.
fn read(ctx: &NativeCallContext, how: &Dynamic, item: &Dynamic, what: &str) -> RhaiResult<Dynamic> {
    if let Some(f) = how.read_lock::<FnPtr>() {
        return f.call_within_context::<Dynamic>(ctx, (item.clone(),));
    }
    let name = how.clone().into_immutable_string().map_err(|t| {
        RalfError::invalid(format!(
            "parallel_dag: `{what}` must be a closure or a field name, got {t}"
        ))
    })?;
    if let Some(m) = item.read_lock::<Map>() {
        // A missing `after` / `weight` field means none / the default; a missing key is an error.
        return match m.get(name.as_str()) {
            Some(v) => Ok(v.clone()),
            None if what != "key" => Ok(Dynamic::UNIT),
            None => Err(RalfError::invalid(format!(
                "parallel_dag: an item has no key field `{name}`: {}",
                item
            ))
            .into()),
        };
    }
    ctx.call_native_fn::<Dynamic>(&format!("get${name}"), (item.clone(),))
        .map_err(|_| {
            RalfError::invalid(format!(
                "parallel_dag: items of type {} have no property `{name}`",
                item.type_name()
            ))
            .into()
        })
}

/// How many arguments a script closure takes (after its captured variables), when it can be found.
fn arity(ctx: &NativeCallContext, f: &FnPtr) -> Option<usize> {
    let name = f.fn_name();
    ctx.iter_namespaces()
        .flat_map(|m| m.iter_script_fn_info())
        .filter(|(_, _, n, _, _)| *n == name)
        .map(|(_, _, _, params, _)| params.saturating_sub(f.curry().len()))
        .next()
}

struct Opts {
    limit: usize,
    key: Dynamic,
    after: Dynamic,
    weight: Option<Dynamic>,
}

fn decode(opts: &Map) -> RhaiResult<Opts> {
    const KNOWN: &[&str] = &["limit", "key", "after", "weight"];
    for k in opts.keys() {
        if !KNOWN.contains(&k.as_str()) {
            let hint = crate::text::did_you_mean(k, KNOWN.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(RalfError::invalid(format!(
                "parallel_dag: unknown option `{k}`{hint} (known: {})",
                KNOWN.join(", ")
            ))
            .into());
        }
    }
    let limit = match opts.get("limit") {
        None => 4,
        Some(v) => match v.as_int() {
            Ok(l) if l >= 1 => l as usize,
            Ok(l) => {
                return Err(RalfError::invalid(format!(
                    "parallel_dag: limit must be at least 1, got {l}"
                ))
                .into())
            }
            Err(t) => {
                return Err(RalfError::invalid(format!(
                    "parallel_dag: limit must be an integer, got {t}"
                ))
                .into())
            }
        },
    };
    Ok(Opts {
        limit,
        key: opts.get("key").cloned().unwrap_or_else(|| "name".into()),
        after: opts.get("after").cloned().unwrap_or_else(|| "after".into()),
        weight: opts.get("weight").cloned(),
    })
}

fn to_key(v: Dynamic, what: &str) -> RhaiResult<String> {
    if v.is_string() || v.is_int() {
        Ok(v.to_string())
    } else {
        Err(RalfError::invalid(format!(
            "parallel_dag: {what} must be a string or an integer, got {}",
            v.type_name()
        ))
        .into())
    }
}

fn run(ctx: &NativeCallContext, items: Array, opts: &Map, f: &FnPtr) -> RhaiResult<Array> {
    let o = decode(opts)?;
    let n = items.len();
    // Keys, dependencies and weights are read up front, on this thread.
    let mut keys = Vec::with_capacity(n);
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        let k = to_key(read(ctx, &o.key, it, "key")?, "a key")?;
        if let Some(j) = index.insert(k.clone(), i) {
            return Err(RalfError::invalid(format!(
                "parallel_dag: items {j} and {i} have the same key `{k}`"
            ))
            .into());
        }
        keys.push(k);
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
    let mut weight = Vec::with_capacity(n);
    for (i, it) in items.iter().enumerate() {
        let after = read(ctx, &o.after, it, "after")?;
        let list: Array = if after.is_unit() {
            Array::new()
        } else {
            after.into_array().map_err(|t| {
                RalfError::invalid(format!(
                    "parallel_dag: `after` of `{}` must be an array of keys, got {t}",
                    keys[i]
                ))
            })?
        };
        let mut ds = Vec::new();
        for d in list {
            // Dependencies outside the set are not this call's business (already done elsewhere).
            if let Some(&j) = index.get(&to_key(d, "a dependency")?) {
                if j == i {
                    return Err(RalfError::invalid(format!(
                        "parallel_dag: `{}` depends on itself",
                        keys[i]
                    ))
                    .into());
                }
                if !ds.contains(&j) {
                    ds.push(j);
                }
            }
        }
        deps.push(ds);
        let w = match &o.weight {
            None => 1.0,
            Some(how) => {
                let v = read(ctx, how, it, "weight")?;
                if v.is_unit() {
                    weight.push(1.0);
                    continue;
                }
                let w = v
                    .as_float()
                    .or_else(|_| v.as_int().map(|x| x as f64))
                    .map_err(|t| {
                        RalfError::invalid(format!(
                            "parallel_dag: the weight of `{}` must be a number, got {t}",
                            keys[i]
                        ))
                    })?;
                if w.is_finite() && w >= 0.0 {
                    w
                } else {
                    1.0
                }
            }
        };
        weight.push(w);
    }
    let g = Graph::new(deps, &weight).map_err(|cycle| {
        let path: Vec<&str> = cycle.iter().map(|&i| keys[i].as_str()).collect();
        RalfError::invalid(format!(
            "parallel_dag: dependency cycle: {}",
            path.join(" -> ")
        ))
    })?;
    if n == 0 {
        return Ok(Array::new());
    }
    let with_deps = match arity(ctx, f) {
        Some(1) => false,
        Some(2) | None => true,
        Some(k) => {
            return Err(RalfError::invalid(format!(
            "parallel_dag: the closure must take (item) or (item, deps), it takes {k} parameters"
        ))
            .into())
        }
    };
    let h = host(ctx)?;
    #[allow(deprecated)]
    let store = ctx.store_data();
    let engine = ctx.engine();
    let state = Mutex::new(Ready::new(&g));
    let wake = Condvar::new();
    let results: Vec<Mutex<Option<Map>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let h = &h;
    let work = || loop {
        let i = {
            let mut st = state.lock();
            loop {
                if h.cancel.is_cancelled() || st.exhausted() {
                    wake.notify_all();
                    return;
                }
                if let Some(i) = st.take() {
                    break i;
                }
                wake.wait_for(&mut st, Duration::from_millis(100));
            }
        };
        let mut done = Map::new();
        for &d in &g.deps[i] {
            if let Some(r) = results[d].lock().clone() {
                done.insert(keys[d].as_str().into(), r.into());
            }
        }
        #[allow(deprecated)]
        let c = store.create_context(engine);
        let out = if with_deps {
            f.call_within_context::<Dynamic>(&c, (items[i].clone(), done))
        } else {
            f.call_within_context::<Dynamic>(&c, (items[i].clone(),))
        };
        *results[i].lock() = Some(crate::bindings::core::outcome(out));
        state.lock().finish(&g, i);
        wake.notify_all();
    };
    std::thread::scope(|s| {
        crate::bindings::core::spawn_workers(s, o.limit.min(n), "parallel_dag", &work)
    })?;
    h.check_cancelled()?;
    Ok(results
        .into_iter()
        .map(|r| r.into_inner().map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        .collect())
}

#[export_module]
mod dag_mod {
    use super::*;

    /// Run `f(item, deps)` for items that depend on each other: each item starts as soon as every
    /// item it depends on has finished, at most `limit` at once. `deps` is a map key -> result of
    /// its finished dependencies (`#{ ok: true, value }` or `#{ ok: false, error }`), so `f` decides
    /// what a failed dependency means (`f` may also take only the item). Results come back in
    /// input order, like `parallel`.
    ///
    /// Options: `limit` (default 4); `key` (closure or field name, default "name"); `after` (closure
    /// or field name giving the keys an item waits for, default "after"; keys outside the set are
    /// ignored); `weight` (closure or field name estimating an item's duration, default 1 each).
    /// Ready items start heaviest remaining chain first. A cycle or a duplicate key is an `invalid`
    /// error before anything runs.
    ///
    /// ```rhai
    /// let steps = [#{ name: "db" }, #{ name: "app", after: ["db"] }, #{ name: "web", after: ["app"] }];
    /// let rs = parallel_dag(steps, #{ limit: 2 }, |s, deps| {
    ///     if deps.values().some(|d| !d.ok) { throw `skipped ${s.name}`; }
    ///     if s.name == "app" { throw "app broke"; }
    ///     s.name
    /// });
    /// assert(rs[0].value == "db");
    /// assert(!rs[1].ok && rs[1].error == "app broke");
    /// assert(rs[2].error == "skipped web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parallel_dag(
        ctx: NativeCallContext,
        items: Array,
        opts: Map,
        f: FnPtr,
    ) -> RhaiResult<Array> {
        run(&ctx, items, &opts, &f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(deps: Vec<Vec<usize>>, weight: &[f64], limit: usize) -> Vec<Vec<usize>> {
        // Simulate: every started item runs for `weight` time units; returns the batches started
        // at each instant.
        let g = Graph::new(deps, weight).unwrap();
        let mut r = Ready::new(&g);
        let mut running: Vec<(f64, usize)> = Vec::new();
        let mut t = 0.0;
        let mut out = Vec::new();
        loop {
            let mut batch = Vec::new();
            while running.len() < limit {
                match r.take() {
                    Some(i) => {
                        running.push((t + weight[i], i));
                        batch.push(i);
                    }
                    None => break,
                }
            }
            if !batch.is_empty() {
                out.push(batch);
            }
            if running.is_empty() {
                assert!(r.exhausted());
                return out;
            }
            // Everything that ends at the next instant finishes before anything new starts.
            t = running.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
            running.sort_by_key(|x| x.1);
            for (_, i) in running.iter().filter(|x| x.0 == t) {
                r.finish(&g, *i);
            }
            running.retain(|x| x.0 != t);
        }
    }

    #[test]
    fn dependencies_first_and_critical_chain_preferred() {
        // 0 and 1 are independent and listed first; 2 -> 3 -> 4 is the long chain.
        let deps = vec![vec![], vec![], vec![], vec![2], vec![3]];
        let w = [1.0; 5];
        // One worker: the chain head (rank 3) goes before the independents (rank 1), then the
        // chain's next link (rank 2), then input order among equals.
        assert_eq!(order(deps.clone(), &w, 1).concat(), vec![2, 3, 0, 1, 4]);
        // Two workers: the chain and an independent side by side.
        assert_eq!(order(deps, &w, 2), vec![vec![2, 0], vec![3, 1], vec![4]]);
    }

    #[test]
    fn weights_change_priority_and_ties_keep_input_order() {
        let deps = vec![vec![], vec![], vec![]];
        assert_eq!(order(deps.clone(), &[1.0, 1.0, 1.0], 1).concat(), [0, 1, 2]);
        assert_eq!(order(deps, &[1.0, 5.0, 2.0], 1).concat(), [1, 2, 0]);
    }

    #[test]
    fn no_item_starts_before_its_dependencies_finish() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let n = rng.random_range(1..40);
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|i| {
                    let mut d: Vec<usize> = (0..rng.random_range(0..=3.min(i)))
                        .map(|_| rng.random_range(0..i))
                        .collect();
                    d.sort();
                    d.dedup();
                    d
                })
                .collect();
            let w: Vec<f64> = (0..n).map(|_| rng.random_range(1..4) as f64).collect();
            let g = Graph::new(deps.clone(), &w).unwrap();
            let mut r = Ready::new(&g);
            let mut done = vec![false; n];
            let mut running = Vec::new();
            let mut count = 0;
            loop {
                while running.len() < 3 {
                    let Some(i) = r.take() else { break };
                    assert!(deps[i].iter().all(|&d| done[d]), "{i} started early");
                    running.push(i);
                }
                if running.is_empty() {
                    break;
                }
                let i = running.remove(rng.random_range(0..running.len()));
                done[i] = true;
                count += 1;
                r.finish(&g, i);
            }
            assert_eq!(count, n, "every item ran once");
            assert!(r.exhausted());
        }
    }

    #[test]
    fn cycles_are_named() {
        // 0 <- 1 <- 2 <- 1 (1 and 2 wait for each other), 3 waits for 2.
        let deps = vec![vec![], vec![0, 2], vec![1], vec![2]];
        let cycle = Graph::new(deps, &[1.0; 4]).unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        let mut inner = cycle[..cycle.len() - 1].to_vec();
        inner.sort();
        assert_eq!(inner, [1, 2]);
    }
}
