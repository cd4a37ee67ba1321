//! Catalog benchmark: load + validate + plan a generated 5,000-service catalog from disk.
//! Prints one row of the benchmark table (median of several runs).

use ralf_sh::catalog::{Catalog, LoadOpts, PlanOpts};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn generate(dir: &std::path::Path, n: usize) {
    // Deterministic pseudo-random layering: deps only on earlier services, priority never inverted.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut prio = Vec::with_capacity(n);
    for i in 0..n {
        let mut deps: Vec<usize> = Vec::new();
        if i > 0 {
            for _ in 0..(next() % 4) {
                let j = (next() as usize) % i;
                if !deps.contains(&j) {
                    deps.push(j);
                }
            }
        }
        let min = deps.iter().map(|&j| prio[j]).max().unwrap_or(0);
        let p = min + (next() as usize % (5 - min));
        prio.push(p);
        let mut text = format!(
            "name: svc-{i:05}\ndescription: generated service {i}\npriority: P{p}\ngroup: g{}\n",
            i % 7
        );
        if !deps.is_empty() {
            text.push_str("depends_on:\n");
            for d in &deps {
                text.push_str(&format!("  - svc-{d:05}\n"));
            }
        }
        text.push_str(&format!(
            "guest: {}\nsemaphore:\n  template: RALF Svc {i} Apply\n  env:\n    SERVICE_NAME: svc-{i:05}\nsmoke:\n  - http: http://10.0.{}.{}:8080/health\n    expect: 200\ntags: [generated]\n",
            1000 + i,
            i / 250,
            i % 250
        ));
        std::fs::write(dir.join(format!("svc-{i:05}.yaml")), text).unwrap();
    }
}

fn main() {
    let n = 5000;
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path(), n);
    let mut status = HashMap::new();
    for i in (0..n).step_by(3) {
        status.insert(format!("svc-{i:05}"), "deployed".to_string());
    }
    let mut times: Vec<Duration> = Vec::new();
    let mut planned = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let cat =
            Catalog::load_with(dir.path(), LoadOpts::default()).expect("valid generated catalog");
        let plan = cat.plan(&PlanOpts::default(), &status).expect("plan");
        times.push(t.elapsed());
        planned = plan.entries.len();
        assert_eq!(cat.services.len(), n);
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "catalog: {n} services, {planned} planned, runs: {:?}",
        times.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!(
        "| catalog: load+validate+plan {n} services | {:.1} ms | - | - | <= 300 ms |",
        median.as_secs_f64() * 1000.0
    );
}
