use super::*;
use std::collections::HashMap;

fn src(files: &[(&str, &str)]) -> Vec<(PathBuf, Vec<u8>)> {
    files
        .iter()
        .map(|(n, t)| (PathBuf::from(n), t.as_bytes().to_vec()))
        .collect()
}

fn problems(files: &[(&str, &str)]) -> Vec<String> {
    problems_with(files, LoadOpts::default())
}

fn problems_with(files: &[(&str, &str)], opts: LoadOpts) -> Vec<String> {
    match Catalog::from_sources(Path::new("cat"), src(files), opts) {
        Ok(_) => vec![],
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

fn ok(files: &[(&str, &str)]) -> Catalog {
    Catalog::from_sources(Path::new("cat"), src(files), LoadOpts::default())
        .unwrap_or_else(|p| panic!("{:#?}", p.iter().map(|p| p.to_string()).collect::<Vec<_>>()))
}

const PG: &str = "name: postgresql\npriority: P0\nguest: 2010\n";

#[test]
fn yaml_syntax_error_has_file_line() {
    let p = problems(&[("a.yaml", "name: a\npriority: [P0\n")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("a.yaml:3:1: "), "{p:?}");
}

#[test]
fn wrong_type_and_bad_priority() {
    let p = problems(&[
        ("a.yaml", "name: a\npriority: P0\ndepends_on: 5\n"),
        ("b.yaml", "name: b\npriority: P7\n"),
    ]);
    assert_eq!(
        p,
        vec![
            "a.yaml:3:13: depends_on: invalid type: integer `5`, expected a sequence".to_string(),
            "b.yaml:2:11: priority: unknown value `P7`, expected one of `P0`, `P1`, `P2`, `P3`, `P4`".to_string(),
        ]
    );
}

#[test]
fn all_unknown_keys_at_once_with_did_you_mean_and_later_type_error() {
    let p = problems(&[(
        "vw.yaml",
        "name: vw\npriorty: P1\ndepend_on:\n  - postgresql\npriority: P1\nguest: many\n",
    )]);
    assert_eq!(
        p,
        vec![
            "vw.yaml:2: unknown key `priorty`; did you mean `priority`?".to_string(),
            "vw.yaml:3: unknown key `depend_on`; did you mean `depends_on`?".to_string(),
            "vw.yaml:6:8: guest: invalid type: string \"many\", expected a vmid (number) or a map with `vmid` and optional `node`"
                .to_string(),
        ]
    );
}

#[test]
fn unknown_key_does_not_hide_unknown_dependency() {
    let p = problems(&[
        ("pg.yaml", PG),
        (
            "vw.yaml",
            "name: vaultwarden\npriorty: P1\npriority: P1\ndepends_on:\n  - postgress\n",
        ),
    ]);
    assert_eq!(
        p,
        vec![
            "vw.yaml:2: unknown key `priorty`; did you mean `priority`?".to_string(),
            "vw.yaml:5: `vaultwarden` depends on unknown service `postgress`; did you mean `postgresql`?".to_string(),
        ]
    );
}

#[test]
fn nested_unknown_key() {
    let p = problems(&[(
        "a.yaml",
        "name: a\npriority: P0\nsemaphore:\n  templte: X\n",
    )]);
    assert_eq!(
        p,
        vec![
            "a.yaml:4:3: unknown key `templte` in `semaphore`; did you mean `template`?"
                .to_string()
        ]
    );
}

#[test]
fn duplicate_names_name_both_files() {
    let p = problems(&[
        ("a.yaml", PG),
        ("b.yaml", "# copy\nname: postgresql\npriority: P0\n"),
    ]);
    assert_eq!(
        p,
        vec!["b.yaml:2: duplicate service name `postgresql`: also defined in a.yaml:1".to_string()]
    );
}

#[test]
fn unknown_dependency_with_suggestion_at_item_line() {
    let p = problems(&[
        ("pg.yaml", PG),
        (
            "vw.yaml",
            "name: vaultwarden\npriority: P1\ndepends_on:\n  - traefik\n  - postgress\n",
        ),
    ]);
    assert_eq!(
        p,
        vec![
            "vw.yaml:4: `vaultwarden` depends on unknown service `traefik`".to_string(),
            "vw.yaml:5: `vaultwarden` depends on unknown service `postgress`; did you mean `postgresql`?".to_string(),
        ]
    );
}

#[test]
fn cycle_prints_path() {
    let p = problems(&[
        ("a.yaml", "name: a\npriority: P1\ndepends_on: [c]\n"),
        ("b.yaml", "name: b\npriority: P1\ndepends_on:\n  - a\n"),
        ("c.yaml", "name: c\npriority: P1\ndepends_on:\n  - b\n"),
        ("d.yaml", "name: d\npriority: P1\ndepends_on: [a]\n"),
        ("s.yaml", "name: s\npriority: P1\ndepends_on: [s]\n"),
    ]);
    assert_eq!(
        p,
        vec![
            "a.yaml:3: dependency cycle: a -> c -> b -> a".to_string(),
            "s.yaml:3: dependency cycle: s -> s".to_string(),
        ]
    );
}

#[test]
fn priority_inversion_unless_allowed() {
    let files = [
        ("pg.yaml", "name: pg\npriority: P2\n"),
        ("vw.yaml", "name: vw\npriority: P1\ndepends_on:\n  - pg\n"),
    ];
    assert_eq!(
        problems(&files),
        vec!["vw.yaml:4: priority inversion: `vw` (P1) depends on `pg` (P2), which has a lower priority; raise `pg` to P1 \
              or set `catalog.allow_priority_inversion: true` in the config"
            .to_string()]
    );
    assert!(problems_with(
        &files,
        LoadOpts {
            allow_priority_inversion: true
        }
    )
    .is_empty());
}

#[test]
fn smoke_checks_are_checked() {
    let p = problems(&[(
        "a.yaml",
        "name: a\npriority: P0\nsmoke:\n  - tcp: nohost\n  - http: http://x\n    tcp: y:1\n  - script: s.rhai\n    threshold: 11/10\n",
    )]);
    assert_eq!(
        p,
        vec![
            "a.yaml:3: smoke[0]: tcp check `nohost` must be host:port".to_string(),
            "a.yaml:3: smoke[1]: a smoke check needs exactly one of `http`, `tcp`, `command`, `script` (found 2)".to_string(),
            "a.yaml:3: smoke[2]: the script check has no host to run on: set `on: ALIAS` on the check or `host:` on the service".to_string(),
            "a.yaml:3: smoke[2]: threshold `11/10` must look like \"7/10\" (passed/total, passed <= total)".to_string(),
        ]
    );
}

#[test]
fn broken_file_does_not_cascade_into_unknown_deps() {
    let p = problems(&[
        ("pg.yaml", "name: postgresql\npriority: high\n"),
        (
            "vw.yaml",
            "name: vw\npriority: P1\ndepends_on: [postgresql]\n",
        ),
    ]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("pg.yaml:2:11: priority: unknown value `high`"),
        "{p:?}"
    );
}

#[test]
fn not_a_mapping_empty_and_non_utf8() {
    let files: Vec<(PathBuf, Vec<u8>)> = vec![
        (PathBuf::from("a.yaml"), b"- just\n- a list\n".to_vec()),
        (PathBuf::from("b.yaml"), b"  \n".to_vec()),
        (PathBuf::from("c.yaml"), b"name: c\n\xff\xfe\n".to_vec()),
    ];
    let p: Vec<String> = Catalog::from_sources(Path::new("x"), files, LoadOpts::default())
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        p,
        vec![
            "a.yaml:1: expected a mapping of service keys (name, priority, ...), found a list"
                .to_string(),
            "b.yaml:1: empty file (expected a service definition: name, priority, ...)".to_string(),
            "c.yaml:2:1: not valid UTF-8 text (invalid byte 0xff)".to_string(),
        ]
    );
}

#[test]
fn garbage_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet: &[u8] = b"name:priority P0[]{}-#&*!|>'\"\n  \t,?%@`\\depends_on";
    for i in 0..400 {
        let len = rng.random_range(0..200);
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.random()).collect()
        } else {
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect()
        };
        let r = Catalog::from_sources(
            Path::new("g"),
            vec![(PathBuf::from("g.yaml"), bytes)],
            LoadOpts::default(),
        );
        if let Err(ps) = r {
            for p in ps {
                assert!(p.to_string().starts_with("g.yaml:"), "{p}");
            }
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(&[
        ("a.yaml", "name: a\npriority: P0\ncolour: red\n"),
        ("b.yaml", "name: b\npriority: P1\ndepends_on: [nope]\n"),
        ("c.yaml", "name: c\npriority: P1\ndepends_on: [c]\n"),
        ("d.yaml", "name: [\n"),
    ]);
    assert_eq!(p.len(), 4, "{p:#?}");
    let e = problems_error(
        Path::new("cat"),
        &Catalog::from_sources(
            Path::new("cat"),
            src(&[("a.yaml", "name: a\npriority: P0\ncolour: red\n")]),
            LoadOpts::default(),
        )
        .unwrap_err(),
    );
    assert_eq!(e.message, "catalog cat: 1 problem\n  a.yaml:3: unknown key `colour`; expected one of: name, description, priority, group, depends_on, host, guest, semaphore, snapshot, smoke, tags, self_heal");
}

#[test]
fn example_catalog_is_valid() {
    let cat = Catalog::load(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/projects")).unwrap();
    assert!(cat.services.len() >= 12);
    let vw = cat.get("vaultwarden").unwrap();
    assert!(vw.depends_on.contains(&"postgresql".to_string()));
    assert_eq!(
        cat.get("postgresql").unwrap().guest.as_ref().unwrap().vmid,
        2010
    );
    assert_eq!(
        cat.get("semaphore").unwrap().guest.as_ref().unwrap().vmid,
        10015
    );
    assert_eq!(
        vw.semaphore.as_ref().unwrap().template.as_deref(),
        Some("RALF Vault Apply")
    );
}

// ---- planner ----------------------------------------------------------------------------

/// A random acyclic catalog without priority inversions (deps only on earlier services).
fn random_catalog(seed: u64, n: usize) -> Catalog {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut files = Vec::new();
    let mut prios = Vec::new();
    for i in 0..n {
        let mut deps = Vec::new();
        if i > 0 {
            for _ in 0..rng.random_range(0..4) {
                let j = rng.random_range(0..i);
                if !deps.contains(&j) {
                    deps.push(j);
                }
            }
        }
        let min_p = deps.iter().map(|&j| prios[j]).max().unwrap_or(0);
        let p = rng.random_range(min_p..=4usize);
        prios.push(p);
        let d: Vec<String> = deps.iter().map(|j| format!("s{j:03}")).collect();
        files.push((
            PathBuf::from(format!("s{i:03}.yaml")),
            format!(
                "name: s{i:03}\npriority: P{p}\ndepends_on: [{}]\n",
                d.join(", ")
            )
            .into_bytes(),
        ));
    }
    Catalog::from_sources(Path::new("r"), files, LoadOpts::default()).unwrap()
}

#[test]
fn planner_orders_after_deps_with_minimal_waves_and_skips_deployed() {
    use rand::{Rng, SeedableRng};
    for seed in 0..20 {
        let cat = random_catalog(seed, 60);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 100);
        let mut status = HashMap::new();
        for s in &cat.services {
            if rng.random_bool(0.3) {
                status.insert(s.name.clone(), "deployed".to_string());
            } else if rng.random_bool(0.1) {
                status.insert(s.name.clone(), "failed".to_string());
            }
        }
        let prio = ["P0", "P1", "P2", "P3", "P4", "<=P2"][seed as usize % 6];
        let opts = PlanOpts {
            priority: Some(plan::OneOrMany::One(prio.into())),
            ..Default::default()
        };
        let plan = cat.plan(&opts, &status).unwrap();
        let pos: HashMap<&str, usize> = plan
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.as_str(), i))
            .collect();
        let wave: HashMap<&str, usize> = plan
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.wave))
            .collect();
        for e in &plan.entries {
            assert_ne!(
                status.get(&e.name).map(|s| s.as_str()),
                Some("deployed"),
                "deployed {} planned",
                e.name
            );
            let mut max_dep_wave = 0;
            for d in &e.depends_on {
                if status.get(d).map(|s| s == "deployed").unwrap_or(false) {
                    continue;
                }
                // Every unmet dependency is planned, earlier, in an earlier wave.
                let dp = *pos
                    .get(d.as_str())
                    .unwrap_or_else(|| panic!("{} needs {d}, not planned", e.name));
                assert!(dp < pos[e.name.as_str()]);
                assert!(wave[d.as_str()] < e.wave);
                max_dep_wave = max_dep_wave.max(wave[d.as_str()]);
            }
            // Minimal: exactly one wave after the latest planned dependency.
            assert_eq!(
                e.wave,
                max_dep_wave + 1,
                "{} not in its earliest wave",
                e.name
            );
        }
        // Every selected pending service is planned; deployed ones are listed as skipped.
        for s in &cat.services {
            let selected =
                prio == "<=P2" && s.priority <= Priority::P2 || s.priority.as_str() == prio;
            if !selected {
                continue;
            }
            if status
                .get(&s.name)
                .map(|x| x == "deployed")
                .unwrap_or(false)
            {
                assert!(plan.skipped.iter().any(|(n, _)| n == &s.name));
            } else {
                assert!(pos.contains_key(s.name.as_str()), "{} missing", s.name);
            }
        }
        // Deterministic.
        let again = cat.plan(&opts, &status).unwrap();
        assert_eq!(plan.to_string(), again.to_string());
    }
}

#[test]
fn plan_reasons_exclude_and_only() {
    let cat = ok(&[
        ("pg.yaml", PG),
        ("tr.yaml", "name: traefik\npriority: P0\n"),
        (
            "vw.yaml",
            "name: vaultwarden\npriority: P1\ndepends_on: [postgresql, traefik]\n",
        ),
        (
            "gt.yaml",
            "name: gitea\npriority: P1\ndepends_on: [postgresql]\n",
        ),
    ]);
    let mut st = HashMap::new();
    st.insert("traefik".to_string(), "deployed".to_string());
    let only = PlanOpts {
        only: Some(plan::OneOrMany::One("vaultwarden".into())),
        ..Default::default()
    };
    let p = cat.plan(&only, &st).unwrap();
    let rows: Vec<(String, usize, String)> = p
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.wave, e.reason.clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "postgresql".into(),
                1,
                "needed by vaultwarden (pending)".into()
            ),
            ("vaultwarden".into(), 2, "selected (P1, pending)".into()),
        ]
    );
    let table = p.to_string();
    assert!(
        table.contains("wave  service      prio  depends on           why"),
        "{table}"
    );
    let ex = PlanOpts {
        exclude: Some(plan::OneOrMany::Many(vec!["postgresql".into()])),
        ..Default::default()
    };
    let p = cat.plan(&ex, &st).unwrap();
    assert!(p.entries.is_empty(), "{p}");
    assert_eq!(p.blocked.len(), 2);
    assert_eq!(
        p.skipped,
        vec![("traefik".to_string(), "already deployed".to_string())]
    );
    let bad = PlanOpts {
        only: Some(plan::OneOrMany::One("vaultwardn".into())),
        ..Default::default()
    };
    assert_eq!(
        cat.plan(&bad, &st).unwrap_err().message,
        "plan: `only` names unknown service `vaultwardn`; did you mean `vaultwarden`?"
    );
    let nodeps = PlanOpts {
        only: Some(plan::OneOrMany::One("gitea".into())),
        include_deps: Some(false),
        ..Default::default()
    };
    let p = cat.plan(&nodeps, &st).unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(
        p.warnings,
        vec!["`gitea` needs `postgresql` (pending), which is not in this plan".to_string()]
    );
}

#[test]
fn template_id_guest_map_and_snapshot_forms() {
    let cat = ok(&[(
        "a.yaml",
        "name: a\npriority: P0\nguest: { vmid: 2012, node: pve2 }\nsnapshot: pre-upgrade\nsemaphore:\n  template: 12\n  smoke_template: RALF Smoke Test\n",
    )]);
    let a = cat.get("a").unwrap();
    assert_eq!(
        a.guest,
        Some(Guest {
            vmid: 2012,
            node: Some("pve2".into())
        })
    );
    assert_eq!(a.snapshot, Some(Snapshot::Named("pre-upgrade".into())));
    let sem = a.semaphore.as_ref().unwrap();
    assert_eq!(sem.template.as_deref(), Some("12"));
    assert_eq!(sem.smoke_template.as_deref(), Some("RALF Smoke Test"));
    let p = problems(&[(
        "b.yaml",
        "name: b\npriority: P0\nguest: { vmid: 2012, nod: x }\n",
    )]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("b.yaml:3:") && p[0].contains("unknown key `nod`"),
        "{p:?}"
    );
}

#[test]
fn self_heal_is_checked_where_it_is_written() {
    let p = problems(&[
        (
            "a.yaml",
            "name: a\npriority: P0\nself_heal:\n  env: [GOOD_KEY, \"bad key\"]\n  restart: true\n",
        ),
        (
            "b.yaml",
            "name: b\npriority: P0\nself_heal: { env: [X], retries: 3 }\n",
        ),
    ]);
    let text = p;
    assert!(
        text.contains(&"a.yaml:3: self_heal.env: `bad key` is not an environment variable name (letters, digits, `_`)".to_string()),
        "{text:#?}"
    );
    assert!(
        text.contains(&"a.yaml:3: self_heal.restart needs a `guest` to restart".to_string()),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("b.yaml:3") && t.contains("retries")),
        "{text:#?}"
    );
    let c = ok(&[(
        "n.yaml",
        "name: n\npriority: P0\nguest: 200\nself_heal: { env: [N_LIMIT], restart: true }\n",
    )]);
    assert_eq!(
        c.get("n").unwrap().self_heal,
        Some(crate::catalog::model::SelfHeal {
            env: vec!["N_LIMIT".into()],
            restart: true
        })
    );
}
