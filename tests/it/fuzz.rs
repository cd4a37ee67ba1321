//! Bounded, seeded fuzzing of the three inputs an operator writes: the config, catalog files and
//! scripts. Each case is a real file mutated (bytes flipped, YAML/Rhai punctuation inserted, lines
//! duplicated or cut, deep nesting, a BOM, invalid UTF-8). Every case must end in a parse result
//! or an error that names file and line, without a panic and quickly.

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CASES: usize = 300;
/// Far above what any case takes (microseconds to milliseconds); catches quadratic blow-ups.
const SLOW: Duration = Duration::from_secs(2);

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn seeds(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(repo(dir))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().map(|x| x == ext).unwrap_or(false))
        .collect();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One mutation of `input`.
fn mutate(rng: &mut StdRng, input: &[u8], punct: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    let rounds = rng.random_range(1..6);
    for _ in 0..rounds {
        let at = if b.is_empty() {
            0
        } else {
            rng.random_range(0..b.len())
        };
        match rng.random_range(0..9) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.random_range(0..8),
            1 => b.insert(at, punct[rng.random_range(0..punct.len())]),
            2 if !b.is_empty() => {
                let end = (at + rng.random_range(1..40)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                // Duplicate a line.
                let start = b[..at]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map(|p| p + 1)
                    .unwrap_or(0);
                let end = b[at..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map(|p| at + p + 1)
                    .unwrap_or(b.len());
                let line = b[start..end].to_vec();
                drop(b.splice(start..start, line));
            }
            4 => {
                let n = rng.random_range(10..3000);
                let open = punct[rng.random_range(0..punct.len())];
                drop(b.splice(at..at, std::iter::repeat_n(open, n)));
            }
            5 => drop(b.splice(0..0, *b"\xef\xbb\xbf")),
            6 => b.insert(at, 0xff),
            7 => {
                let n = rng.random_range(0..400);
                drop(b.splice(at..at, std::iter::repeat_n(b' ', n)));
            }
            _ => b.truncate(at),
        }
    }
    b
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what}: panicked"));
    let took = t.elapsed();
    assert!(took < SLOW, "{what}: took {took:?}");
    r
}

/// `path:LINE` (and optionally `:COL`) somewhere in `msg`.
fn names_line(msg: &str, path: &str) -> bool {
    msg.match_indices(path).any(|(i, _)| {
        let rest = &msg[i + path.len()..];
        rest.starts_with(':') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
    })
}

#[test]
fn config_fuzz() {
    let mut rng = StdRng::seed_from_u64(0x5eed_c0f1);
    let mut inputs = vec![{
        b"semaphore:\n  url: https://sem\n  token_env: T\nhosts:\n  vps: { address: 203.0.113.7, port: 22, labels: { role: prod } }\nssh:\n  known_hosts: strict\nnet:\n  only_loopback: true\n".to_vec()
    }];
    inputs.push(b"proxmox:\n  url: https://pve:8006\n  token_id: \"a@pam!b\"\n  token_secret_env: X\nnotify:\n  channels:\n    - type: ntfy\n      url: https://ntfy.sh\n      topic: t\n".to_vec());
    let path = Path::new("/etc/ralf/fuzz.yaml");
    let (mut ok, mut errs) = (0, 0);
    for i in 0..CASES {
        let seed = &inputs[i % inputs.len()];
        let case = mutate(&mut rng, seed, b"[]{}:-\"'\n\t #&*!|>%@`,?");
        let r = timed(&format!("config case {i}"), || {
            match ralf_sh::yaml::text(&case) {
                Err(p) => Err(format!(
                    "{}:{}:{}: {}",
                    path.display(),
                    p.line,
                    p.column,
                    p.message
                )),
                Ok(t) => ralf_sh::config::parse(t, path)
                    .map(|_| ())
                    .map_err(|e| e.message),
            }
        });
        match r {
            Ok(()) => ok += 1,
            Err(msg) => {
                errs += 1;
                assert!(
                    names_line(&msg, "/etc/ralf/fuzz.yaml"),
                    "case {i}: no file:line in {msg:?}"
                );
            }
        }
    }
    eprintln!("config fuzz: {ok} parsed, {errs} errors, all with file:line");
    assert!(errs > CASES / 4, "the mutations should break most inputs");
}

#[test]
fn catalog_fuzz() {
    let mut rng = StdRng::seed_from_u64(0x5eed_ca7a);
    let files = seeds("catalog/projects", "yaml");
    let names: Vec<PathBuf> = (0..files.len())
        .map(|i| PathBuf::from(format!("c/f{i}.yaml")))
        .collect();
    let (mut ok, mut errs) = (0, 0);
    for i in 0..CASES {
        let k = i % files.len();
        let case = mutate(&mut rng, &files[k], b"[]{}:-\"'\n\t #&*!|>%@`,?");
        let mut sources: Vec<(PathBuf, Vec<u8>)> =
            names.iter().cloned().zip(files.iter().cloned()).collect();
        sources[k].1 = case;
        let r = timed(&format!("catalog case {i}"), || {
            ralf_sh::catalog::Catalog::from_sources(Path::new("c"), sources, Default::default())
        });
        match r {
            Ok(_) => ok += 1,
            Err(problems) => {
                errs += 1;
                assert!(!problems.is_empty());
                for p in problems {
                    let s = p.to_string();
                    assert!(
                        p.line >= 1 && names_line(&s, &p.file.display().to_string()),
                        "case {i}: {s}"
                    );
                }
            }
        }
    }
    eprintln!("catalog fuzz: {ok} loaded, {errs} with problems, all with file:line");
    assert!(errs > CASES / 4);
}

#[test]
fn script_fuzz() {
    let mut rng = StdRng::seed_from_u64(0x5eed_5c21);
    let mut files = seeds("scripts", "rhai");
    files.extend(seeds("stdlib", "rhai"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host =
        ralf_sh::host::Host::new(Default::default(), rt.handle().clone(), Default::default());
    let se = ralf_sh::engine::build(&host);
    let (mut ok, mut errs) = (0, 0);
    for i in 0..CASES {
        let case = mutate(
            &mut rng,
            &files[i % files.len()],
            b"(){}[];,.`\"'\n#$|&!+-*/=<>",
        );
        let text = String::from_utf8_lossy(&case).into_owned();
        let name = format!("fuzz{i}.rhai");
        let r = timed(&format!("script case {i}"), || {
            se.compile_text(&name, &text).map(|_| ())
        });
        match r {
            Ok(()) => ok += 1,
            Err(msg) => {
                errs += 1;
                assert!(names_line(&msg, &name), "case {i}: no file:line in {msg:?}");
            }
        }
    }
    eprintln!("script fuzz: {ok} compiled, {errs} errors, all with file:line");
    assert!(errs > CASES / 4);
}
