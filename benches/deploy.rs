//! deploy_all over generated catalogs with a random dependency DAG, in the lab.
//!
//! Each catalog is seeded, so every run has the same DAG and durations; every service depends on
//! 0-3 earlier ones. `deploy_all.rhai --all --parallel P --no-advisor --dag` runs against a
//! `ralf-sh lab serve` process of its own. Result: wall time / lower bound, where the lower bound is
//! max(critical path, total work / P), plus ralf-sh's CPU time per service and its peak RSS
//! (read with wait4 from the deploy_all process).
//!
//! - 60 services, tasks 1-3 s, parallel 8: beside it, in the same run, the wave schedule (run) and
//!   the seed flow's time (computed, not run: one service at a time, fixed 10 s poll).
//! - 100 and 1,000 services, tasks 0.1-0.3 s, parallel 32: the per-service cost must stay flat in
//!   the catalog size (CPU per service at 1,000 within 1.3x of at 100; RSS growth per service).

use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

struct Catalog {
    n: usize,
    par: usize,
    deps: Vec<Vec<usize>>,
    dur_ms: Vec<u64>,
    lower: f64,
    critical: f64,
    total: f64,
}

fn name(n: usize, i: usize) -> String {
    if n > 100 {
        format!("svc{i:04}")
    } else {
        format!("svc{i:02}")
    }
}

/// Writes the catalog to `cat` and computes its lower bound.
fn generate(cat: &Path, n: usize, par: usize, ms: (u64, u64), seed: u64) -> Catalog {
    std::fs::create_dir_all(cat).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut deps: Vec<Vec<usize>> = Vec::new();
    let mut dur_ms: Vec<u64> = Vec::new();
    for i in 0..n {
        let k = if i == 0 {
            0
        } else {
            rng.random_range(0..=3.min(i))
        };
        let mut d: Vec<usize> = (0..k).map(|_| rng.random_range(0..i)).collect();
        d.sort();
        d.dedup();
        let svc = name(n, i);
        let dl = d.iter().map(|j| name(n, *j)).collect::<Vec<_>>().join(", ");
        std::fs::write(
            cat.join(format!("{svc}.yaml")),
            format!(
                "name: {svc}\npriority: P2\ngroup: bench\ndepends_on: [{dl}]\nsemaphore:\n  template: Bench {svc} Apply\n"
            ),
        )
        .unwrap();
        deps.push(d);
        dur_ms.push(rng.random_range(ms.0..=ms.1));
    }
    let mut finish = vec![0u64; n];
    for i in 0..n {
        let start = deps[i].iter().map(|j| finish[*j]).max().unwrap_or(0);
        finish[i] = start + dur_ms[i];
    }
    let critical = *finish.iter().max().unwrap() as f64 / 1000.0;
    let total: f64 = dur_ms.iter().map(|m| *m as f64 / 1000.0).sum();
    Catalog {
        n,
        par,
        lower: critical.max(total / par as f64),
        critical,
        total,
        deps,
        dur_ms,
    }
}

/// max(critical path, total / par) over per-service times in seconds.
fn bound(deps: &[Vec<usize>], secs: &[f64], par: usize) -> (f64, f64, f64) {
    let mut finish = vec![0f64; secs.len()];
    for i in 0..secs.len() {
        let start = deps[i].iter().map(|j| finish[*j]).fold(0f64, f64::max);
        finish[i] = start + secs[i];
    }
    let critical = finish.iter().cloned().fold(0f64, f64::max);
    let total: f64 = secs.iter().sum();
    (critical.max(total / par as f64), critical, total)
}

/// Makespan of a greedy list schedule with `par` workers and no overhead at all: whenever a worker
/// is free it starts the ready service with the longest remaining path (critical-path first). What
/// a perfect scheduler of this kind reaches on these spans; max(critical path, work / P) is a bound
/// no schedule may reach.
fn list_schedule(deps: &[Vec<usize>], secs: &[f64], par: usize) -> f64 {
    let n = secs.len();
    let mut children = vec![Vec::new(); n];
    let mut missing = vec![0usize; n];
    for (i, d) in deps.iter().enumerate() {
        missing[i] = d.len();
        for j in d {
            children[*j].push(i);
        }
    }
    // Longest path from each node to the end (deps only point to earlier indices).
    let mut tail = vec![0f64; n];
    for i in (0..n).rev() {
        tail[i] = secs[i] + children[i].iter().map(|c| tail[*c]).fold(0f64, f64::max);
    }
    let mut ready: Vec<usize> = (0..n).filter(|i| missing[*i] == 0).collect();
    let mut running: Vec<(f64, usize)> = Vec::new();
    let mut now = 0f64;
    let mut done = 0;
    while done < n {
        ready.sort_by(|a, b| tail[*a].total_cmp(&tail[*b]));
        while running.len() < par {
            let Some(i) = ready.pop() else { break };
            running.push((now + secs[i], i));
        }
        running.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (t, i) = running.pop().expect("a running service");
        now = t;
        done += 1;
        for c in &children[i] {
            missing[*c] -= 1;
            if missing[*c] == 0 {
                ready.push(*c);
            }
        }
    }
    now
}

/// Each service's task as the stand-in ran it (created → end, seconds), for the tasks above
/// `after`: the server's own share of the time, which no client can shorten.
fn server_spans(sem: &str, n: usize, after: i64) -> (Vec<f64>, i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let read = || -> Vec<serde_json::Value> {
        rt.block_on(async {
            ralf_sh::clients::http_builder()
                .build()
                .unwrap()
                .get(format!("{sem}/_lab/tasks"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    // The client is done at the server's end event; the row with the end is written one write
    // later, so the last tasks may not show their end yet.
    let mut tasks = read();
    for _ in 0..50 {
        let unwritten = tasks
            .iter()
            .filter(|t| t["id"].as_i64().unwrap_or(0) > after && t["end"].is_null())
            .count();
        if n == 0 || unwritten == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        tasks = read();
    }
    let at = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp_micros() as f64 / 1e6)
    };
    let mut spans = vec![0f64; n];
    let mut last = 0;
    for t in &tasks {
        let id = t["id"].as_i64().unwrap_or(0);
        last = last.max(id);
        if id <= after {
            continue;
        }
        let name = t["template_name"].as_str().unwrap_or("");
        let Some(i) = name
            .strip_prefix("Bench svc")
            .and_then(|r| r.strip_suffix(" Apply"))
            .and_then(|d| d.parse::<usize>().ok())
        else {
            continue;
        };
        if let (Some(a), Some(b)) = (at(&t["created"]), at(&t["end"])) {
            spans[i] = b - a;
        }
    }
    (spans, last)
}

/// One deploy_all run's figures.
struct Figures {
    wall: f64,
    /// A zero-overhead critical-path-first list schedule over the same server spans.
    server_list: f64,
    /// The bound over the tasks as the stand-in ran them (max(critical path, work / P)).
    server_bound: f64,
    cpu: f64,
    rss_kib: i64,
    /// (unix seconds, RSS KiB) while the run ran.
    rss_samples: Vec<(f64, i64)>,
    /// Least-squares slope of RSS over services deployed (KiB per service) over the last 80 % of
    /// them, and the RSS at the start and end of that stretch (KiB).
    rss_slope: Option<(f64, i64, i64)>,
    /// CPU seconds the lab stand-ins (one process) used during this run.
    lab_cpu: f64,
}

/// utime + stime of a live process, from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let v = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    (v(11) + v(12)) / ticks
}

/// Starts a lab on `cat`, sets every template's duration, runs deploy_all once per schedule.
fn run_lab(dir: &Path, c: &Catalog, schedules: &[&str]) -> Vec<Figures> {
    let bin = env!("CARGO_BIN_EXE_ralf-sh");
    let cat = dir.join("catalog");
    let home = dir;
    let mut lab = Command::new(bin)
        .args(["lab", "serve"])
        .env("RALF_LAB_CATALOG", &cat)
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(lab.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let (mut yaml, mut env) = ralf_sh::lab::client_config(&info);
    let (net, net_env) = ralf_sh::lab::net_config(&info);
    yaml.push_str(&net);
    env.extend(net_env);
    yaml.push_str(&format!(
        "catalog:\n  path: {:?}\n",
        cat.display().to_string()
    ));
    let sem = info["semaphore"]["url"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = ralf_sh::clients::http_builder().build().unwrap();
        for (i, ms) in c.dur_ms.iter().enumerate() {
            let r = h
                .post(format!(
                    "{sem}/_lab/templates/Bench {} Apply/behaviour",
                    name(c.n, i)
                ))
                .json(&serde_json::json!({"duration_ms": ms, "lines": 5, "outcome": "success"}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "behaviour: {}", r.status());
        }
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deploy_all.rhai");
    // One run per schedule, each with its own (empty) state store, so each deploys every service.
    let figures: Vec<Figures> = schedules
        .iter()
        .map(|schedule| {
            let cfg = home.join(format!("ralf-{schedule}.yaml"));
            // `dag-again`: the dag run's store, every service set back to pending, so the scheduler
            // knows each service's last duration (what an operator's next deploy sees).
            let store = if *schedule == "dag-again" {
                "dag"
            } else {
                schedule
            };
            let db = home.join(format!("state-{store}.db"));
            std::fs::write(
                &cfg,
                format!("{yaml}state:\n  path: {:?}\n", db.display().to_string()),
            )
            .unwrap();
            let mut cmd = Command::new(bin);
            cmd.env("RALF_CONFIG", &cfg)
                .env("HOME", home)
                .env("XDG_STATE_HOME", home.join("state"))
                .env("CI", "1")
                .current_dir(home)
                .args([
                    script,
                    "--all",
                    "--parallel",
                    &c.par.to_string(),
                    "--no-advisor",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if schedule.starts_with("dag") {
                cmd.arg("--dag");
            }
            if *schedule == "dag-again" {
                let mut reset = Command::new(bin);
                reset
                    .env("RALF_CONFIG", &cfg)
                    .env("HOME", home)
                    .env("XDG_STATE_HOME", home.join("state"))
                    .env("CI", "1")
                    .current_dir(home)
                    .args([
                        "-q",
                        "-e",
                        "for n in catalog::load().names { catalog::mark(n, \"pending\"); }",
                    ])
                    .stdout(Stdio::null());
                for (k, v) in &env {
                    reset.env(k, v);
                }
                assert!(
                    reset.status().unwrap().success(),
                    "resetting the statuses failed"
                );
            }
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let (_, before) = server_spans(&sem, 0, i64::MAX);
            let lab_before = proc_cpu(lab.id());
            let mut f = run_measured(&mut cmd);
            f.lab_cpu = proc_cpu(lab.id()) - lab_before;
            let (spans, _) = server_spans(&sem, c.n, before);
            f.server_bound = bound(&c.deps, &spans, c.par).0;
            f.server_list = list_schedule(&c.deps, &spans, c.par);
            f.rss_slope = rss_slope(&db, &f.rss_samples, c.n);
            let deployed: i64 = rusqlite::Connection::open(&db)
                .unwrap()
                .query_row(
                    "SELECT count(*) FROM service_status WHERE status = 'deployed'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(
                deployed as usize, c.n,
                "deploy_all ({schedule}) left services undeployed"
            );
            f
        })
        .collect();
    let _ = lab.kill();
    let _ = lab.wait();
    figures
}

/// How RSS moved with the services deployed: each sample is paired with the number of services
/// marked deployed by then (the store's `service_status.at`), and a least-squares line is fitted
/// over the samples past the first 20 % of the services (start-up and the first allocations
/// left out). A slope near 0 means memory does not grow with finished services.
fn rss_slope(db: &Path, samples: &[(f64, i64)], n: usize) -> Option<(f64, i64, i64)> {
    let c = rusqlite::Connection::open(db).ok()?;
    let mut st = c
        .prepare("SELECT at FROM service_status WHERE status = 'deployed'")
        .ok()?;
    let mut done: Vec<f64> = st
        .query_map([], |r| r.get::<_, String>(0))
        .ok()?
        .flatten()
        .filter_map(|a| chrono::DateTime::parse_from_rfc3339(&a).ok())
        .map(|d| d.timestamp_micros() as f64 / 1e6)
        .collect();
    done.sort_by(|a, b| a.total_cmp(b));
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .map(|(t, kib)| (done.partition_point(|d| d <= t) as f64, *kib as f64))
        .filter(|(k, _)| *k >= 0.2 * n as f64)
        .collect();
    if pts.len() < 10 {
        return None;
    }
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / m, sy / m);
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if sxx == 0.0 {
        return None;
    }
    Some((sxy / sxx, pts[0].1 as i64, pts[pts.len() - 1].1 as i64))
}

/// Wall time, CPU time (user + system) and peak RSS of one child, read with wait4.
// The child is reaped with wait4 (to read its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> Figures {
    let t0 = Instant::now();
    let child = cmd.spawn().expect("spawn deploy_all");
    // RSS every 20 ms while it runs (wall-clock seconds, KiB), to see whether memory grows with
    // the services finished or levels off.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (pid, running) = (child.id(), running.clone());
        std::thread::spawn(move || {
            let mut v = Vec::new();
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kib) = st
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                {
                    v.push((chrono::Utc::now().timestamp_micros() as f64 / 1e6, kib));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            v
        })
    };
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let wall = t0.elapsed().as_secs_f64();
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_samples = sampler.join().unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "deploy_all failed: status {status}"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Figures {
        wall,
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        rss_kib: ru.ru_maxrss,
        rss_samples,
        rss_slope: None,
        lab_cpu: 0.0,
        server_bound: 0.0,
        server_list: 0.0,
    }
}

fn main() {
    let root = tempfile::tempdir().unwrap();

    // 60 services, 1-3 s tasks, parallel 8: DAG vs waves vs the seed flow.
    let d60 = root.path().join("n60");
    let c60 = generate(&d60.join("catalog"), 60, 8, (1000, 3000), 60);
    let f60 = run_lab(&d60, &c60, &["dag", "waves"]);
    let (dag, waves) = (f60[0].wall, f60[1].wall);
    let baseline: f64 = c60
        .dur_ms
        .iter()
        .map(|m| ((*m as f64 / 1000.0) / 10.0).ceil() * 10.0)
        .sum();
    println!(
        "| deploy: deploy_all, 60-service random DAG, tasks 1-3 s, parallel 8, --dag (wall / lower bound; lower bound {:.1} s = max(critical path {:.1} s, work {:.1} s / 8)) | {dag:.1} s, ratio {:.3}; CPU {:.1} ms/service; peak RSS {:.0} MB; over the tasks as the stand-in ran them (its start-up and status writes, ~0.17 s a task, included): ratio {:.3} | seed-style: one at a time, fixed 10 s polling, computed from the same durations: {baseline:.0} s; wave schedule (run): {waves:.1} s, ratio {:.3} | {:.1}x faster than seed-style | wall / lower bound <= 1.05 |",
        c60.lower,
        c60.critical,
        c60.total,
        dag / c60.lower,
        f60[0].cpu * 1000.0 / 60.0,
        f60[0].rss_kib as f64 / 1024.0,
        dag / f60[0].server_bound,
        waves / c60.lower,
        baseline / dag
    );

    // 100 and 1,000 services, 0.1-0.3 s tasks, parallel 32: the per-service cost.
    let mut scale = Vec::new();
    for (n, seed) in [(100usize, 100u64), (1000, 1000)] {
        let d = root.path().join(format!("n{n}"));
        let c = generate(&d.join("catalog"), n, 32, (100, 300), seed);
        let mut both = run_lab(&d, &c, &["dag", "dag-again"]);
        let again = both.remove(1);
        let f = both.remove(0);
        println!(
            "| deploy: deploy_all, {n}-service random DAG, tasks 0.1-0.3 s, parallel 32, --dag | {:.1} s, ratio {:.3} (lower bound {:.1} s = max(critical path {:.1} s, work {:.1} s / 32)); CPU {:.1} ms/service (+ lab stand-ins {:.1} ms/service; both on 2 cores: {:.1} s of CPU per wall second); peak RSS {:.0} MB; over the tasks as the stand-in ran them: bound {:.1} s, ratio {:.3}; a zero-overhead critical-path-first list schedule of those tasks takes {:.1} s, ratio {:.3} | lower bound | {:.3} | wall / lower bound <= 1.05 |",
            f.wall,
            f.wall / c.lower,
            c.lower,
            c.critical,
            c.total,
            f.cpu * 1000.0 / n as f64,
            f.lab_cpu * 1000.0 / n as f64,
            (f.cpu + f.lab_cpu) / f.wall,
            f.rss_kib as f64 / 1024.0,
            f.server_bound,
            f.wall / f.server_bound,
            f.server_list,
            f.wall / f.server_list,
            f.wall / c.lower
        );
        println!(
            "| deploy: the same {n} services deployed again, the scheduler knowing each one's last duration | {:.1} s; over the tasks as the stand-in ran them: bound {:.1} s, ratio {:.3}; zero-overhead critical-path-first list schedule {:.1} s, ratio {:.3}; CPU {:.1} ms/service | first run: {:.1} s | {:.3} | wall / lower bound <= 1.05 |",
            again.wall,
            again.server_bound,
            again.wall / again.server_bound,
            again.server_list,
            again.wall / again.server_list,
            again.cpu * 1000.0 / n as f64,
            f.wall,
            again.wall / again.server_bound
        );
        scale.push((n, f));
    }
    let (n1, a) = (scale[0].0 as f64, &scale[0].1);
    let (n2, b) = (scale[1].0 as f64, &scale[1].1);
    let (cpu1, cpu2) = (a.cpu / n1, b.cpu / n2);
    println!(
        "| deploy: CPU per service, 1,000 vs 100 services (same run) | {:.1} ms vs {:.1} ms | 100 services | {:.2} | <= 1.3 |",
        cpu2 * 1000.0,
        cpu1 * 1000.0,
        cpu2 / cpu1
    );
    for (n, f) in &scale {
        match f.rss_slope {
            Some((slope, from, to)) => println!(
                "| deploy: RSS while the {n}-service run deploys its last 80 % (least squares over samples every 20 ms) | {slope:.2} KiB per service deployed ({:.0} MB -> {:.0} MB) | peak {:.0} MB | - | printed |",
                from as f64 / 1024.0,
                to as f64 / 1024.0,
                f.rss_kib as f64 / 1024.0
            ),
            None => println!("| deploy: RSS while the {n}-service run deploys | too few samples | - | - | printed |"),
        }
    }
    println!(
        "| deploy: peak RSS growth per service, 100 -> 1,000 services (at 100 the DAG keeps fewer tasks in flight, so this also counts the extra parallelism) | {:.1} KiB/service ({:.0} MB -> {:.0} MB) | 60 services: {:.0} MB | {:.2} | printed |",
        (b.rss_kib - a.rss_kib) as f64 / (n2 - n1),
        a.rss_kib as f64 / 1024.0,
        b.rss_kib as f64 / 1024.0,
        f60[0].rss_kib as f64 / 1024.0,
        b.rss_kib as f64 / a.rss_kib as f64
    );
}
