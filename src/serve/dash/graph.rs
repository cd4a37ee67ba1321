//! The plan's dependency graph of a run as SVG: one box per service the run has steps for (or per
//! step when no step names a service), left to right by dependency depth, edges from the catalog's
//! `depends_on`, each box coloured by the status of the service's steps in the run.

use crate::state::StepRecord;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Escape text for SVG/XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A node's status from its steps: running > failed > interrupted > done.
fn status_of(steps: &[&StepRecord]) -> &'static str {
    let latest: HashMap<&str, &str> = steps
        .iter()
        .map(|s| (s.key.as_str(), s.status.as_str()))
        .collect();
    let has = |st: &str| latest.values().any(|v| *v == st);
    if has("running") {
        "running"
    } else if has("failed") {
        "failed"
    } else if has("interrupted") {
        "interrupted"
    } else {
        "done"
    }
}

fn colour(status: &str) -> (&'static str, &'static str) {
    match status {
        "running" => ("#cfe0fa", "#1552b5"),
        "failed" => ("#f5c9c9", "#a11a1a"),
        "interrupted" => ("#fde7c2", "#9a5a00"),
        "done" => ("#c9eed6", "#0b6b2c"),
        _ => ("#e8eaee", "#5a6170"),
    }
}

/// SVG of the run: `deps` maps a service to the services it depends on (from the catalog).
pub fn svg(steps: &[StepRecord], deps: &HashMap<String, Vec<String>>) -> String {
    // Nodes in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut of: BTreeMap<String, Vec<&StepRecord>> = BTreeMap::new();
    let by_service = steps.iter().any(|s| s.service.is_some());
    for s in steps {
        let node = match (&s.service, by_service) {
            (Some(sv), true) => sv.clone(),
            (None, true) => continue,
            _ => s.key.clone(),
        };
        if !of.contains_key(&node) {
            order.push(node.clone());
        }
        of.entry(node).or_default().push(s);
    }
    // Edges among present nodes; without services, the steps in sequence.
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    for (i, n) in order.iter().enumerate() {
        if by_service {
            for d in deps.get(n).into_iter().flatten() {
                if let Some(j) = index.get(d.as_str()) {
                    edges.push((*j, i));
                }
            }
        } else if i > 0 {
            edges.push((i - 1, i));
        }
    }
    // Depth = longest path from a root (edges only go to nodes whose deps are present).
    let mut depth = vec![0usize; order.len()];
    let mut changed = true;
    let mut rounds = 0;
    while changed && rounds <= order.len() {
        changed = false;
        rounds += 1;
        for (a, b) in &edges {
            if depth[*b] < depth[*a] + 1 {
                depth[*b] = depth[*a] + 1;
                changed = true;
            }
        }
    }
    let mut row_in: HashMap<usize, usize> = HashMap::new();
    let mut pos = vec![(0usize, 0usize); order.len()];
    for (i, d) in depth.iter().enumerate() {
        let r = row_in.entry(*d).or_default();
        pos[i] = (*d, *r);
        *r += 1;
    }
    let (w, h, dx, dy) = (150usize, 30usize, 190usize, 42usize);
    let cols = depth.iter().max().map_or(1, |m| m + 1);
    let rows = row_in.values().max().copied().unwrap_or(1);
    let (width, height) = (cols * dx + 20, rows * dy + 20);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"plan graph\">"
    );
    let xy = |i: usize| (10 + pos[i].0 * dx, 10 + pos[i].1 * dy);
    for (a, b) in &edges {
        let ((ax, ay), (bx, by)) = (xy(*a), xy(*b));
        let _ = write!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#9aa3b2\" stroke-width=\"1.2\"/>",
            ax + w,
            ay + h / 2,
            bx,
            by + h / 2
        );
    }
    for (i, n) in order.iter().enumerate() {
        let st = status_of(&of[n]);
        let (fill, stroke) = colour(st);
        let (x, y) = xy(i);
        let label: String = n.chars().take(20).collect();
        let _ = write!(
            out,
            "<g class=\"node st-{st}\" data-node=\"{}\" data-status=\"{st}\"><title>{} — {st}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\" fill=\"{stroke}\">{}</text></g>",
            esc(n),
            esc(n),
            x + 8,
            y + 19,
            esc(&label)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(key: &str, service: Option<&str>, status: &str) -> StepRecord {
        StepRecord {
            id: 0,
            run_id: "r".into(),
            key: key.into(),
            service: service.map(str::to_string),
            attempt: 1,
            started_at: String::new(),
            ended_at: None,
            status: status.into(),
            result: None,
            details: serde_json::json!({}),
            error: None,
        }
    }

    #[test]
    fn services_by_depth_coloured_by_status() {
        let steps = vec![
            step("pg/apply", Some("pg"), "done"),
            step("pg/mark", Some("pg"), "done"),
            step("n8n/apply", Some("n8n"), "failed"),
            step("redis/apply", Some("redis"), "running"),
            step("summary", None, "done"),
        ];
        let deps = HashMap::from([(
            "n8n".to_string(),
            vec!["pg".to_string(), "redis".to_string()],
        )]);
        let s = svg(&steps, &deps);
        assert!(s.contains("data-node=\"pg\" data-status=\"done\""), "{s}");
        assert!(s.contains("data-node=\"n8n\" data-status=\"failed\""));
        assert!(s.contains("data-node=\"redis\" data-status=\"running\""));
        assert!(!s.contains("summary"));
        assert_eq!(s.matches("<line").count(), 2);
        // Without services, the steps in sequence; text is escaped.
        let s = svg(
            &[step("a<b", None, "done"), step("c", None, "interrupted")],
            &HashMap::new(),
        );
        assert!(s.contains("a&lt;b") && !s.contains("a<b"));
        assert_eq!(s.matches("<line").count(), 1);
    }
}
