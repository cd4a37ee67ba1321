//! Semaphore wait latency: time from "task finished" in the lab stand-in to `Client::wait()` returning.
//!
//! Measured over 50 tasks with the websocket path (the default) and 50 with the adaptive-polling
//! fallback, beside a fixed 10-second poller (what the n8n flow does) measured in the same run on a
//! shortened count: 8 tasks in parallel, each poller starting at a random phase of its 10 s period
//! (first poll 0-10 s after the task was created, then every 10 s), so the run takes ~10 s, not minutes.
//! Prints rows of the shared table: | benchmark | result | baseline | ratio | target |.

use ralf_sh::clients::semaphore::{Auth, Client, ClientOptions, RunRequest, WaitOptions};
use ralf_sh::config::IdOrName;
use ralf_sh::lab::semaphore::{spawn, Behaviour, LabOptions};
use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lab = spawn(LabOptions::default()).await.unwrap();
        let quick = Behaviour {
            duration_ms: 30,
            lines: 3,
            starting_ms: 5,
            ..Default::default()
        };
        lab.set_behaviour("RALF Vault Smoke", quick.clone()).unwrap();
        lab.set_behaviour("Lab Parallel", quick.clone()).unwrap();
        let connect = |ws: bool| {
            let o = ClientOptions {
                url: lab.url.clone(),
                project: Some(IdOrName::Id(1)),
                auth: Auth::Token(lab.token.clone()),
                timeout: Duration::from_secs(10),
                ca_file: None,
                insecure: false,
                websocket: ws,
                max_output: ralf_sh::clients::semaphore::DEFAULT_MAX_OUTPUT,
            };
            Client::connect(o)
        };
        let ws_client = connect(true).await.unwrap();
        let poll_client = connect(false).await.unwrap();
        let tpl = ws_client.template(&IdOrName::Name("RALF Vault Smoke".into())).await.unwrap();
        let wo = WaitOptions {
            timeout: Duration::from_secs(60),
            follow_output: false,
            ..Default::default()
        };
        let measure = |c: std::sync::Arc<Client>| {
            let lab = &lab;
            let tpl = tpl.clone();
            let wo = wo.clone();
            async move {
                let mut lat = Vec::new();
                for _ in 0..50 {
                    let t = c.run(&tpl, &RunRequest::default()).await.unwrap();
                    let fin = c.wait(t.id, &wo, &mut |_| {}).await.unwrap();
                    let returned = Instant::now();
                    assert_eq!(fin.status, "success");
                    let done = lab.finished_at(t.id).expect("finished in the lab");
                    lat.push(returned.duration_since(done).as_secs_f64() * 1000.0);
                }
                lat
            }
        };
        let mut ws_lat = measure(ws_client.clone()).await;
        let mut poll_lat = measure(poll_client.clone()).await;

        // Fixed 10 s poller, shortened count, measured for real.
        let ptpl = ws_client.template(&IdOrName::Name("Lab Parallel".into())).await.unwrap();
        let mut handles = Vec::new();
        for _ in 0..8 {
            let c = ws_client.clone();
            let ptpl = ptpl.clone();
            let phase = Duration::from_millis(rand::random::<u64>() % 10_000);
            handles.push(tokio::spawn(async move {
                let t = c.run(&ptpl, &RunRequest::default()).await.unwrap();
                tokio::time::sleep(phase).await;
                loop {
                    let s = c.task(t.id).await.unwrap();
                    if s.is_terminal() {
                        return (t.id, Instant::now());
                    }
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }));
        }
        let mut fixed = Vec::new();
        for h in handles {
            let (id, seen) = h.await.unwrap();
            let done = lab.finished_at(id).unwrap();
            fixed.push(seen.duration_since(done).as_secs_f64() * 1000.0);
        }
        let (f50, f99) = (pct(&mut fixed.clone(), 50.0), pct(&mut fixed, 99.0));
        let (w50, w99) = (pct(&mut ws_lat.clone(), 50.0), pct(&mut ws_lat, 99.0));
        let (p50, p99) = (pct(&mut poll_lat.clone(), 50.0), pct(&mut poll_lat, 99.0));
        let ratio = |ours: f64, base: f64| format!("{:.0}x faster", base / ours.max(0.001));
        println!(
            "| semaphore: wait latency p50 | {w50:.1} ms | {f50:.0} ms (10s poller) | {} | <= 50 ms |",
            ratio(w50, f50)
        );
        println!(
            "| semaphore: wait latency p99 | {w99:.1} ms | {f99:.0} ms (10s poller) | {} | <= 250 ms |",
            ratio(w99, f99)
        );
        println!(
            "| semaphore: wait latency p50, polling fallback (no ws) | {p50:.1} ms | {f50:.0} ms (10s poller) | {} | <= 50 ms |",
            ratio(p50, f50)
        );
        println!(
            "| semaphore: wait latency p99, polling fallback (no ws) | {p99:.1} ms | {f99:.0} ms (10s poller) | {} | <= 250 ms |",
            ratio(p99, f99)
        );
        eprintln!("(websocket and polling: 50 tasks each; 10s poller: 8 tasks, random phase, measured in the same run)");
    });
}
