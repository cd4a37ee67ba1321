//! Values for people and for pipes. [`pretty`] is what the REPL, `-e` and `print` of a map or
//! array show: multi-line `key: value`, unit fields hidden, arrays of maps (and maps of maps, such
//! as `ssh::run_all` results) as aligned tables, handles by their `to_string`, epoch times under
//! `*time` keys as RFC 3339. [`to_json`] is `--output json`: the same value as JSON, handles as
//! their text.

use rhai::{Array, Dynamic, Map};

/// How a handle (a custom type) is shown: its registered `to_string`.
pub(crate) type Leaf<'a> = &'a dyn Fn(&Dynamic) -> String;

/// A value as readable, possibly multi-line text.
pub(crate) fn pretty(v: &Dynamic, leaf: Leaf) -> String {
    if let Some(m) = v.read_lock::<Map>() {
        if let Some(t) = map_of_maps_table(&m, leaf) {
            return t;
        }
        return map_lines(&m, leaf);
    }
    if let Some(a) = v.read_lock::<Array>() {
        if let Some(t) = rows_table(&a, leaf) {
            return t;
        }
        if a.iter().all(is_scalar) {
            return inline(v, leaf);
        }
        return a
            .iter()
            .map(|x| indent(&pretty(x, leaf), "- ", "  "))
            .collect::<Vec<_>>()
            .join("\n");
    }
    scalar(v, leaf)
}

/// A value as JSON for `--output json`: handles as their text, `()` as null.
pub(crate) fn to_json(v: &Dynamic, leaf: Leaf) -> serde_json::Value {
    use serde_json::Value;
    if v.is_unit() {
        return Value::Null;
    }
    if let Some(m) = v.read_lock::<Map>() {
        return Value::Object(
            m.iter()
                .map(|(k, x)| (k.to_string(), to_json(x, leaf)))
                .collect(),
        );
    }
    if let Some(a) = v.read_lock::<Array>() {
        return Value::Array(a.iter().map(|x| to_json(x, leaf)).collect());
    }
    if let Ok(i) = v.as_int() {
        return i.into();
    }
    if let Ok(f) = v.as_float() {
        return serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    }
    if let Ok(b) = v.as_bool() {
        return b.into();
    }
    if v.is_string() || v.is_char() {
        return v.to_string().into();
    }
    if let Some(e) = crate::error::RalfError::from_dynamic(v) {
        return serde_json::json!({"kind": e.kind.to_string(), "message": e.message});
    }
    leaf(v).into()
}

fn is_scalar(v: &Dynamic) -> bool {
    !(v.is_map() || v.is_array())
}

/// A scalar (or handle) on one line: strings bare.
fn scalar(v: &Dynamic, leaf: Leaf) -> String {
    if v.is_unit() {
        return "()".into();
    }
    if v.is_string() || v.is_char() || v.is_int() || v.is_float() || v.is_bool() {
        return v.to_string();
    }
    if let Some(e) = crate::error::RalfError::from_dynamic(v) {
        return e.to_string();
    }
    leaf(v)
}

/// Any value on one line (inside a table cell or a short list).
fn inline(v: &Dynamic, leaf: Leaf) -> String {
    if let Some(m) = v.read_lock::<Map>() {
        let parts: Vec<String> = m
            .iter()
            .filter(|(_, x)| !x.is_unit())
            .map(|(k, x)| format!("{k}: {}", inline(x, leaf)))
            .collect();
        return format!("{{{}}}", parts.join(", "));
    }
    if let Some(a) = v.read_lock::<Array>() {
        // Strings quoted inside a list, so that items with commas or spaces stay apart.
        let parts: Vec<String> = a
            .iter()
            .map(|x| {
                if x.is_string() {
                    format!("{:?}", x.to_string())
                } else {
                    inline(x, leaf)
                }
            })
            .collect();
        return format!("[{}]", parts.join(", "));
    }
    scalar(v, leaf)
}

/// `key: value` lines; nested maps and lists indented under their key.
fn map_lines(m: &Map, leaf: Leaf) -> String {
    let mut out = Vec::new();
    for (k, x) in m.iter().filter(|(_, x)| !x.is_unit()) {
        if let Some(t) = epoch_time(k, x) {
            out.push(format!("{k}: {t}"));
        } else if is_scalar(x)
            || x.read_lock::<Array>()
                .is_some_and(|a| a.iter().all(is_scalar))
        {
            out.push(format!("{k}: {}", inline(x, leaf)));
        } else {
            let inner = pretty(x, leaf);
            if inner.is_empty() {
                out.push(format!("{k}: {{}}"));
            } else {
                out.push(format!("{k}:\n{}", indent(&inner, "  ", "  ")));
            }
        }
    }
    out.join("\n")
}

/// An epoch time under a `…time` key (e.g. a snapshot's `snaptime`) as RFC 3339.
fn epoch_time(k: &str, x: &Dynamic) -> Option<String> {
    let secs = x.as_int().ok()?;
    if !k.ends_with("time") || !(1_000_000_000..4_000_000_000).contains(&secs) {
        return None;
    }
    let t = chrono::DateTime::from_timestamp(secs, 0)?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Every line of `s` indented: the first with `first`, the others with `rest`.
fn indent(s: &str, first: &str, rest: &str) -> String {
    s.lines()
        .enumerate()
        .map(|(i, l)| format!("{}{l}", if i == 0 { first } else { rest }))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An array of maps as a table (columns: the keys in order of first appearance).
fn rows_table(a: &Array, leaf: Leaf) -> Option<String> {
    if a.is_empty() || !a.iter().all(Dynamic::is_map) {
        return None;
    }
    let maps: Vec<Map> = a
        .iter()
        .filter_map(|x| x.read_lock::<Map>().map(|m| m.clone()))
        .collect();
    Some(table_of(&maps, None, leaf))
}

/// A map whose values are all maps (per host, per service): a table keyed by the map's keys.
fn map_of_maps_table(m: &Map, leaf: Leaf) -> Option<String> {
    if m.len() < 2 || !m.values().all(Dynamic::is_map) {
        return None;
    }
    let maps: Vec<Map> = m
        .iter()
        .filter_map(|(k, x)| {
            let mut row = Map::new();
            row.insert("".into(), Dynamic::from(k.to_string()));
            for (kk, vv) in x.read_lock::<Map>()?.iter() {
                row.insert(kk.clone(), vv.clone());
            }
            Some(row)
        })
        .collect();
    Some(table_of(&maps, None, leaf))
}

/// A column of [`table_of`]: the key and its title.
pub(crate) struct Column {
    pub key: String,
    pub title: String,
}

/// Rows (maps) as a table: the given columns, or every key in order of first appearance
/// (`name`, `service` or `id` first); unit and missing cells as `-`.
pub(crate) fn table_of(rows: &[Map], columns: Option<&[Column]>, leaf: Leaf) -> String {
    let cols: Vec<Column> = match columns {
        Some(c) => c
            .iter()
            .map(|c| Column {
                key: c.key.clone(),
                title: c.title.clone(),
            })
            .collect(),
        None => {
            let mut keys: Vec<String> = Vec::new();
            for r in rows {
                for (k, v) in r.iter() {
                    if !keys.iter().any(|x| x == k.as_str()) && !v.is_unit() {
                        keys.push(k.to_string());
                    }
                }
            }
            // What names a row comes first (maps keep their keys sorted).
            for lead in ["id", "service", "name"] {
                if let Some(i) = keys.iter().position(|k| k == lead) {
                    let k = keys.remove(i);
                    keys.insert(0, k);
                }
            }
            keys.into_iter()
                .map(|k| Column {
                    title: k.clone(),
                    key: k,
                })
                .collect()
        }
    };
    let headers: Vec<String> = cols.iter().map(|c| c.title.clone()).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| match r.get(c.key.as_str()) {
                    None => "-".into(),
                    Some(v) if v.is_unit() => "-".into(),
                    Some(v) => epoch_time(&c.key, v).unwrap_or_else(|| inline(v, leaf)),
                })
                .collect()
        })
        .collect();
    crate::text::table(&headers, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(v: &Dynamic) -> String {
        format!("<{}>", v.type_name())
    }

    fn map(pairs: &[(&str, Dynamic)]) -> Dynamic {
        let mut m = Map::new();
        for (k, v) in pairs {
            m.insert((*k).into(), v.clone());
        }
        Dynamic::from_map(m)
    }

    #[test]
    fn maps_are_lines_without_unit_fields_and_nested_maps_indented() {
        let v = map(&[
            ("name", "redis".into()),
            ("error", Dynamic::UNIT),
            ("deps", Dynamic::from_array(vec!["a".into(), "b".into()])),
            ("smoke", map(&[("ok", true.into()), ("n", 3_i64.into())])),
            ("snaptime", 1_764_806_400_i64.into()),
        ]);
        assert_eq!(
            pretty(&v, &leaf),
            "deps: [\"a\", \"b\"]\nname: redis\nsmoke:\n  n: 3\n  ok: true\nsnaptime: 2025-12-04T00:00:00Z"
        );
    }

    #[test]
    fn arrays_of_maps_and_maps_of_maps_are_tables() {
        let rows = Dynamic::from_array(vec![
            map(&[("service", "redis".into()), ("status", "deployed".into())]),
            map(&[
                ("service", "n8n".into()),
                ("status", Dynamic::UNIT),
                ("task", 7_i64.into()),
            ]),
        ]);
        assert_eq!(
            pretty(&rows, &leaf),
            "service  status    task\nredis    deployed  -\nn8n      -         7"
        );
        let per_host = map(&[
            ("vps", map(&[("ok", true.into())])),
            ("thinkpad", map(&[("ok", false.into())])),
        ]);
        assert_eq!(
            pretty(&per_host, &leaf),
            "          ok\nthinkpad  false\nvps       true"
        );
    }

    #[test]
    fn json_keeps_types_and_shows_handles_as_text() {
        let v = map(&[
            ("n", 2_i64.into()),
            ("f", 1.5_f64.into()),
            ("none", Dynamic::UNIT),
            ("h", Dynamic::from(std::time::Duration::from_secs(1))),
        ]);
        let j = to_json(&v, &leaf);
        assert_eq!(j["n"], 2);
        assert_eq!(j["f"], 1.5);
        assert!(j["none"].is_null());
        assert!(j["h"].as_str().unwrap().starts_with('<'));
    }
}
