//! What a fresh stand-in holds: the project, its resources and the templates (catalog and built-ins).

use super::*;

/// Built-in template names (used when no catalog is found, and always present).
pub const BUILTIN_TEMPLATES: &[&str] = &[
    "RALF Vault Apply",
    "RALF Vault Smoke",
    "RALF Automation Apply",
    "RALF Automation Smoke",
    "RALF Communication Apply",
    "RALF Communication Smoke",
    "RALF AI Apply",
    "RALF AI Smoke",
    "RALF Phase1 Config Apply",
    "RALF Phase1 Smoke",
    "RALF PostgreSQL Apply",
    "RALF Gitea Apply",
    "RALF Traefik Apply",
    "RALF Infra Plan",
    "Lab Fail",
    "Lab Hang",
    "Lab Slow",
    "Lab Confirm",
    "Lab Parallel",
];

/// Built-in behaviours of the lab-only templates (scripts can rely on them without the control API).
pub(super) fn builtin_behaviour(name: &str) -> Option<Behaviour> {
    let d = Behaviour::default();
    match name {
        "Lab Fail" => Some(Behaviour {
            outcome: "error".into(),
            ..d
        }),
        "Lab Hang" => Some(Behaviour { hang: true, ..d }),
        "Lab Slow" => Some(Behaviour {
            duration_ms: 3000,
            lines: 10,
            ..d
        }),
        "Lab Confirm" | "RALF Infra Plan" => Some(Behaviour { confirm: true, ..d }),
        _ => None,
    }
}

/// Template names named by catalog YAML files (`semaphore.template`, `semaphore.smoke_template`).
pub fn catalog_templates(dir: &std::path::Path) -> Vec<String> {
    fn walk(v: &crate::yaml::Value, out: &mut Vec<String>) {
        match v {
            crate::yaml::Value::Mapping(m) => {
                for (k, val) in m {
                    if k.as_str() == Some("semaphore") {
                        if let crate::yaml::Value::Mapping(sm) = val {
                            for key in ["template", "smoke_template", "apply_template"] {
                                if let Some(s) = sm.get(key).and_then(|x| x.as_str()) {
                                    out.push(s.to_string());
                                }
                            }
                        }
                    }
                    walk(val, out);
                }
            }
            crate::yaml::Value::Sequence(s) => s.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        if !matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for doc in crate::yaml::Deserializer::from_str(&text) {
            if let Ok(v) = crate::yaml::Value::deserialize(doc) {
                walk(&v, &mut out);
            }
        }
    }
    out
}

/// What a template lets a task override, as an operator would have set it up: every `… Apply`
/// template may be limited to hosts and tagged (`RALF Vault Apply` opts in to everything, branch,
/// inventory and arguments included); smoke and lab templates take only `env`/`message`/`dry_run`.
pub(super) fn seeded_task_params(name: &str) -> (Value, bool) {
    if name == "RALF Vault Apply" {
        let all = json!({"allow_debug": true, "allow_override_inventory": true, "allow_override_limit": true,
            "allow_override_tags": true, "allow_override_skip_tags": true, "limit": [], "tags": [], "skip_tags": []});
        return (all, true);
    }
    if name.ends_with(" Apply") {
        let some = json!({"allow_debug": true, "allow_override_inventory": false, "allow_override_limit": true,
            "allow_override_tags": true, "allow_override_skip_tags": true, "limit": [], "tags": [], "skip_tags": []});
        return (some, false);
    }
    (json!({}), false)
}

pub(super) fn seed(st: &mut St, names: &[String]) {
    let created = now();
    st.projects.push(
        json!({"id": 1, "name": "RALF", "created": created, "alert": false, "alert_chat": null,
        "max_parallel_tasks": 0, "type": ""}),
    );
    st.next_id = 0;
    st.keys.push(json!({"id": 1, "name": "None", "type": "none", "project_id": 1, "string": "",
        "login_password": {"login": "", "password": ""}, "ssh": {"login": "", "passphrase": "", "private_key": ""},
        "override_secret": false}));
    st.repositories.push(json!({"id": 1, "name": "ralf-homelab", "project_id": 1, "git_url": "https://git.example.invalid/ralf/homelab.git", "git_branch": "main", "ssh_key_id": 1}));
    st.inventory.push(
        json!({"id": 1, "name": "homelab", "project_id": 1, "inventory": "[all]\n", "ssh_key_id": 1,
        "become_key_id": null, "holder_id": null, "repository_id": null, "type": "static"}),
    );
    st.inventory.push(json!({"id": 2, "name": "staging", "project_id": 1, "inventory": "[all]\nstaging-host\n", "ssh_key_id": 1,
        "become_key_id": null, "holder_id": null, "repository_id": null, "type": "static"}));
    st.environment.push(json!({"id": 1, "name": "default", "project_id": 1, "password": null, "json": "{}", "env": "{}", "secrets": []}));
    st.environment.push(
        json!({"id": 2, "name": "pinned", "project_id": 1, "password": null,
        "json": "{\"APP_VERSION\": \"template\"}", "env": "{}", "secrets": []}),
    );
    let mut seen = HashSet::new();
    let mut tid = 0;
    for n in names {
        if !seen.insert(n.clone()) {
            continue;
        }
        tid += 1;
        let playbook = format!(
            "playbooks/{}.yml",
            n.to_lowercase()
                .trim_start_matches("ralf ")
                .replace(' ', "_")
        );
        let (task_params, open) = seeded_task_params(n);
        st.templates.push(json!({
            "id": tid, "project_id": 1, "inventory_id": 1, "repository_id": 1, "environment_id": 1,
            "environment_ids": [1], "name": n, "playbook": playbook, "arguments": "[]", "description": "",
            "allow_override_args_in_task": open, "allow_override_branch_in_task": open, "allow_parallel_tasks": n == "Lab Parallel",
            "app": "ansible", "git_branch": "main", "type": "", "autorun": false, "survey_vars": [], "vaults": [],
            "start_version": null, "build_template_id": null, "view_id": null, "suppress_success_alerts": false,
            "runner_tag": null, "task_params": task_params,
            // Catalog `env` keys are free-form: the operator allows any variable (S10).
            "allow_any_vars_in_task": true
        }));
        if let Some(b) = builtin_behaviour(n) {
            st.behaviours.insert(n.clone(), b);
        }
    }
    st.next_id = 0;
}
