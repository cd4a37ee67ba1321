//! `ralf-sh lab serve --controller` and `ralf-sh lab push`: rehearse the whole trigger → deploy →
//! dashboard path on loopback. The controller is `ralf-sh serve` on the lab's config with a push
//! trigger (`lab-push`: repository ralf/infra, branch main, running deploy_all); `lab push` sends
//! it a push signed the way Gitea signs (`X-Gitea-Signature`, `X-Gitea-Event`, `X-Gitea-Delivery`).

use super::Session;
use crate::error::exit;
use crate::host::Host;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};

/// The variable that holds the lab's webhook secret (in the lab's `env` file).
pub(crate) const HOOK_SECRET_ENV: &str = "RALF_LAB_HOOK_SECRET";

/// The controller's config: the lab's, plus `serve` with the push trigger.
fn controller_config(s: &Session, script: &Path) -> String {
    format!(
        "{}serve:\n  listen: 127.0.0.1:0\n  triggers:\n    - name: lab-push\n      on: push\n      \
         repository: ralf/infra\n      branch: main\n      secret_env: {HOOK_SECRET_ENV}\n      script: {:?}\n",
        s.config,
        script.display().to_string()
    )
}

/// Starts `ralf-sh serve` on the lab (the config written to `dir/ralf.yaml`, its env to
/// `dir/env` with the hook secret added); returns the child and its listen URL.
pub(crate) fn start(host: &Host, s: &mut Session, dir: &Path) -> Result<(Child, String), String> {
    let script = std::env::current_dir()
        .map(|d| d.join("scripts/deploy_all.rhai"))
        .map_err(|e| e.to_string())?;
    if !script.exists() {
        return Err(format!(
            "{} not found: run `lab serve --controller` from the ralf-sh repository (or the folder holding scripts/)",
            script.display()
        ));
    }
    let secret = hex::encode(rand::random::<[u8; 20]>());
    crate::redact::register(&secret);
    s.env.push((HOOK_SECRET_ENV.into(), secret));
    s.config = controller_config(s, &script);
    s.write_config(dir).map_err(|e| e.to_string())?;
    let exe = crate::serve::runner::this_binary().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(dir.join("ralf.yaml"))
        .arg("serve")
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if host.opts.quiet {
        cmd.arg("-q");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start serve: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&line).map_err(|_| {
        let _ = child.kill();
        format!("serve did not start (it printed {line:?})")
    })?;
    let url = v["listen"].as_str().unwrap_or_default().to_string();
    Ok((child, url))
}

/// `ralf-sh lab push --to URL`: one push of `repository`/`branch` at `commit`, signed like Gitea.
pub(crate) fn push(
    host: &Host,
    to: &str,
    secret_env: &str,
    repository: &str,
    branch: &str,
    commit: &str,
) -> i32 {
    let fail = |msg: String| {
        eprintln!("error: lab push: {}", crate::redact::redact(&msg));
        exit::FAILED
    };
    let Ok(url) = reqwest::Url::parse(to) else {
        return fail(format!("--to {to}: not a URL"));
    };
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if !loopback {
        return fail(format!("--to {to}: the lab only sends to loopback"));
    }
    let secret = match std::env::var(secret_env) {
        Ok(v) if !v.is_empty() => v,
        _ => {
            return fail(format!(
            "the variable {secret_env} (the webhook secret) is not set; source the lab's env file"
        ))
        }
    };
    let body = serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": commit,
        "repository": { "full_name": repository, "name": repository.rsplit('/').next().unwrap_or(repository) },
        "pusher": { "login": "lab" },
    })
    .to_string();
    let sig = crate::serve::hooks::sign(secret.as_bytes(), body.as_bytes());
    let delivery = format!("lab-{}", hex::encode(rand::random::<[u8; 8]>()));
    let sent = host.rt.block_on(async {
        let r = crate::clients::http_builder()
            .build()
            .map_err(|e| e.to_string())?
            .post(url)
            .header("content-type", "application/json")
            .header("x-gitea-event", "push")
            .header("x-gitea-delivery", &delivery)
            .header("x-gitea-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let code = r.status().as_u16();
        let text = r.text().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((code, text))
    });
    match sent {
        Ok((code, text)) => {
            crate::outln!("{}", text.trim());
            if (200..300).contains(&code) {
                exit::OK
            } else {
                eprintln!("error: lab push: the controller answered {code}");
                exit::FAILED
            }
        }
        Err(e) => fail(e),
    }
}
