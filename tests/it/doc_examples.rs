//! Every Rhai example in a doc comment (`ralf-sh docs --format json`) is run: ```rhai blocks
//! execute against the lab stand-ins (`ralf-sh lab serve`), ```rhai,no_run blocks (which need a
//! real remote host or a terminal) are compiled and checked with `ralf-sh check`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

struct LabProcess(Child);
impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_lab(home: &std::path::Path) -> (LabProcess, serde_json::Value) {
    let mut c = common::cmd(home);
    c.args(["lab", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("lab serve");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("lab info line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("lab prints one JSON line");
    (LabProcess(child), info)
}

/// The namespace of a qualified name, or for methods the handle family ("" for globals).
fn ns_of(name: &str) -> String {
    name.split("::")
        .next()
        .filter(|_| name.contains("::"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn every_doc_example_runs() {
    let home = tempfile::tempdir().unwrap();
    let (_lab, info) = start_lab(home.path());
    let (mut yaml, env) = ralf_sh::lab::client_config(&info);
    // The example catalog and a private state store, as `ralf-sh lab` sets them up.
    yaml.push_str(&format!(
        "catalog:\n  path: {:?}\nstate:\n  path: {:?}\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/projects"),
        home.path().join("state.db").display().to_string()
    ));
    std::fs::write(home.path().join("ralf.yaml"), yaml).unwrap();

    let mut c = common::cmd(home.path());
    c.args(["docs", "--format", "json"]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{err}");
    let fns: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut jobs = Vec::new();
    let mut undocumented = Vec::new();
    for f in &fns {
        let name = match f["namespace"].as_str().unwrap_or("") {
            "" => f["name"].as_str().unwrap().to_string(),
            ns => format!("{ns}::{}", f["name"].as_str().unwrap()),
        };
        if name.contains('$') {
            continue;
        }
        let doc = f["doc"].as_str().unwrap_or("");
        let mut cur: Option<(String, bool)> = None;
        let mut n = 0;
        for line in doc.lines() {
            let t = line.trim();
            match &mut cur {
                None if t.starts_with("```rhai") => {
                    cur = Some((String::new(), !t.contains("no_run")))
                }
                Some(_) if t.starts_with("```") => {
                    let (code, runnable) = cur.take().unwrap();
                    jobs.push((format!("{name}#{n}"), code, runnable, ns_of(&name)));
                    n += 1;
                }
                Some((code, _)) => {
                    code.push_str(line);
                    code.push('\n');
                }
                None => {}
            }
        }
        if n == 0 {
            undocumented.push(name);
        }
    }
    undocumented.sort();
    undocumented.dedup();
    assert!(
        undocumented.is_empty(),
        "functions without a ```rhai example: {undocumented:?}"
    );
    assert!(jobs.len() > 20, "too few examples found: {}", jobs.len());

    // Examples of one namespace share lab objects (guests, templates): they run one after the
    // other; different namespaces run side by side.
    let mut queues: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, j) in jobs.iter().enumerate() {
        queues.entry(j.3.clone()).or_default().push(i);
    }
    let queues: Vec<Vec<usize>> = queues.into_values().collect();
    let failures = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let q = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(queue) = queues.get(q) else {
                    break;
                };
                for &i in queue {
                    let (name, code, runnable, _) = &jobs[i];
                    let file = home.path().join(format!("ex{i}.rhai"));
                    std::fs::write(&file, code).unwrap();
                    let mut c = common::cmd(home.path());
                    for (k, v) in &env {
                        c.env(k, v);
                    }
                    if *runnable {
                        c.arg(&file);
                    } else {
                        c.arg("check").arg(&file);
                    }
                    c.stdin(Stdio::null());
                    let (rc, out, err) = common::run(c);
                    if rc != 0 {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{name} (exit {rc}):\n{code}\n{out}{err}"));
                    }
                }
            });
        }
    });
    let f = failures.into_inner().unwrap();
    assert!(
        f.is_empty(),
        "{} failing doc examples:\n{}",
        f.len(),
        f.join("\n")
    );
    let _ = Command::new("true").status();
}
