//! deploy_all over a generated 60-service catalog with a random dependency DAG, in the lab.
//!
//! The catalog (seeded, so every run has the same DAG and durations) has 60 services of priority
//! P2; each depends on 0-3 earlier services; each service's Semaphore task takes 1-3 s in the lab
//! stand-in. `deploy_all.rhai --all --parallel 8 --no-advisor --dag` runs against a `ralf-sh lab serve`
//! process. Result: wall time / lower bound, where the lower bound is max(critical path, total
//! work / 8). Beside it, in the same run: the wave schedule (`deploy_all` without `--dag`, run) and
//! the seed flow's time (computed, not run: it would take 10 minutes), one service at a time with
//! a fixed 10 s poll, i.e. the sum of every task's duration rounded up to the next multiple of 10 s.

use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

const N: usize = 60;
const PAR: usize = 8;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(60);
    let mut deps: Vec<Vec<usize>> = Vec::new();
    let mut dur_ms: Vec<u64> = Vec::new();
    for i in 0..N {
        let k = if i == 0 {
            0
        } else {
            rng.random_range(0..=3.min(i))
        };
        let mut d: Vec<usize> = (0..k).map(|_| rng.random_range(0..i)).collect();
        d.sort();
        d.dedup();
        let ms = rng.random_range(1000..=3000);
        let name = format!("svc{i:02}");
        let dl = d
            .iter()
            .map(|j| format!("svc{j:02}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            cat.join(format!("{name}.yaml")),
            format!(
                "name: {name}\npriority: P2\ngroup: bench\ndepends_on: [{dl}]\nsemaphore:\n  template: Bench {name} Apply\n"
            ),
        )
        .unwrap();
        deps.push(d);
        dur_ms.push(ms);
    }
    // Lower bound.
    let mut finish = vec![0u64; N];
    for i in 0..N {
        let start = deps[i].iter().map(|j| finish[*j]).max().unwrap_or(0);
        finish[i] = start + dur_ms[i];
    }
    let critical = *finish.iter().max().unwrap() as f64 / 1000.0;
    let total: f64 = dur_ms.iter().map(|m| *m as f64 / 1000.0).sum();
    let lower = critical.max(total / PAR as f64);
    let baseline: f64 = dur_ms
        .iter()
        .map(|m| ((*m as f64 / 1000.0) / 10.0).ceil() * 10.0)
        .sum();

    let bin = env!("CARGO_BIN_EXE_ralf-sh");
    let home = dir.path();
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
        let c = ralf_sh::clients::http_builder().build().unwrap();
        for (i, ms) in dur_ms.iter().enumerate() {
            let r = c
                .post(format!(
                    "{sem}/_lab/templates/Bench svc{i:02} Apply/behaviour"
                ))
                .json(&serde_json::json!({"duration_ms": ms, "lines": 5, "outcome": "success"}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "behaviour: {}", r.status());
        }
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deploy_all.rhai");
    // One run per schedule, each with its own (empty) state store, so both deploy all 60 services.
    let run = |schedule: &str| -> f64 {
        let cfg = home.join(format!("ralf-{schedule}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "{yaml}state:\n  path: {:?}\n",
                home.join(format!("state-{schedule}.db"))
                    .display()
                    .to_string()
            ),
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
                &PAR.to_string(),
                "--no-advisor",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if schedule == "dag" {
            cmd.arg("--dag");
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let t0 = Instant::now();
        let status = cmd.status().unwrap();
        let wall = t0.elapsed().as_secs_f64();
        assert!(status.success(), "deploy_all ({schedule}) failed: {status}");
        wall
    };
    let dag = run("dag");
    let waves = run("waves");
    let _ = lab.kill();
    let _ = lab.wait();
    println!(
        "| deploy: deploy_all, 60-service random DAG, tasks 1-3 s, parallel {PAR}, --dag (wall / lower bound; lower bound {lower:.1} s = max(critical path {critical:.1} s, work {total:.1} s / {PAR})) | {dag:.1} s, ratio {:.2} | seed-style: one at a time, fixed 10 s polling, computed from the same durations: {baseline:.0} s; wave schedule (run): {waves:.1} s, ratio {:.2} | {:.1}x faster than seed-style | wall / lower bound <= 1.05 |",
        dag / lower,
        waves / lower,
        baseline / dag
    );
}
