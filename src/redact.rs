//! The redactor: every secret value loaded is registered here (with its encoded forms), and every
//! text that leaves the process (logs, errors, journal, REPL output, LLM prompts) passes through
//! [`redact`]. A leaf: it imports nothing of the crate but the shell quoting in `text`.

use parking_lot::RwLock;

/// Placeholder written where a secret was.
pub const MASK: &str = "«redacted»";

/// Secrets shorter than this are not scrubbed (they would mangle ordinary text) and are refused.
pub const MIN_LEN: usize = 4;

/// Every registered secret (raw), and every form it may take on the way out, longest first.
struct Registry {
    raw: Vec<String>,
    forms: Vec<String>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    raw: Vec::new(),
    forms: Vec::new(),
});

/// Register a secret value with the redactor, in every form it can take in output: raw,
/// JSON-escaped, shell-quoted, percent-encoded (URL and form style), and base64 at each of the
/// three byte alignments (so it is found inside `base64("user:" + secret)` of HTTP basic auth).
/// Values shorter than [`MIN_LEN`] are ignored.
pub fn register(value: &str) {
    let v = value.trim_end_matches(['\n', '\r']);
    if v.len() < MIN_LEN {
        return;
    }
    let mut reg = REGISTRY.write();
    if reg.raw.iter().any(|s| s == v) {
        return;
    }
    reg.raw.push(v.to_string());
    for f in forms(v) {
        if f.len() >= MIN_LEN && !reg.forms.contains(&f) {
            reg.forms.push(f);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    reg.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// The encoded forms of `v` (its raw form included).
fn forms(v: &str) -> Vec<String> {
    let mut out = vec![v.to_string()];
    let json = serde_json::to_string(v).unwrap_or_default();
    out.push(json[1..json.len().saturating_sub(1)].to_string());
    // The JSON form inside another JSON string (a JSON document logged as a string field).
    let json2 = serde_json::to_string(&json[1..json.len().saturating_sub(1)]).unwrap_or_default();
    out.push(json2[1..json2.len().saturating_sub(1)].to_string());
    let q = crate::text::quote(v);
    out.push(
        q.trim_start_matches('\'')
            .trim_end_matches('\'')
            .to_string(),
    );
    for (form, upper) in [(false, true), (false, false), (true, true), (true, false)] {
        out.push(percent(v, form, upper));
    }
    out.extend(base64_cores(v.as_bytes()));
    // Rhai's own debug form of a string (`to_debug`, error values).
    out.push(format!("{v:?}").trim_matches('"').to_string());
    out.sort();
    out.dedup();
    out
}

/// Percent-encoding of every byte outside `A-Z a-z 0-9 - . _ ~`; `form` writes a space as `+`.
pub(crate) fn percent(v: &str, form: bool, upper: bool) -> String {
    let mut s = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                s.push(b as char)
            }
            b' ' if form => s.push('+'),
            _ if upper => s.push_str(&format!("%{b:02X}")),
            _ => s.push_str(&format!("%{b:02x}")),
        }
    }
    s
}

/// For each alignment k in 0..3 (the secret starting at byte k mod 3 of an encoded string), the
/// base64 characters that depend only on the secret's bytes: any base64 text that encodes the
/// secret at that alignment contains them.
fn base64_cores(v: &[u8]) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(v);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf);
        // Characters before this index mix in the k leading bytes; after `end` the trailing ones.
        let start = (k * 4).div_ceil(3);
        let end = (buf.len() / 3) * 4;
        if end > start + 6 {
            let core = &enc[start..end];
            out.push(core.to_string());
            out.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    out
}

/// True when at least one secret is registered.
pub fn any_registered() -> bool {
    !REGISTRY.read().raw.is_empty()
}

/// Scrub every registered secret, in each of its forms, from `text`; a raw secret split by line
/// breaks (wrapped output) is masked too.
pub fn redact(text: &str) -> String {
    let reg = REGISTRY.read();
    if reg.raw.is_empty() {
        return text.to_string();
    }
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in reg.forms.iter() {
        if out.contains(s.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    if out.contains('\n') {
        for s in reg.raw.iter() {
            if let Some(masked) = mask_split(&out, s) {
                out = std::borrow::Cow::Owned(masked);
            }
        }
    }
    out.into_owned()
}

/// `text` with every occurrence of `secret` that line breaks (`\n`, `\r`) interrupt masked, or
/// None when there is none.
fn mask_split(text: &str, secret: &str) -> Option<String> {
    // The text without line breaks, and where each kept byte stood in `text`.
    let mut flat = String::with_capacity(text.len());
    let mut at = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if c != '\n' && c != '\r' {
            flat.push(c);
            at.extend(std::iter::repeat_n(i, c.len_utf8()));
        }
    }
    if !flat.contains(secret) {
        return None;
    }
    let mut out = String::new();
    let mut done = 0;
    let mut from = 0;
    while let Some(p) = flat[from..].find(secret) {
        let s = at[from + p];
        let last = at[from + p + secret.len() - 1];
        let e = last + text[last..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&text[done..s]);
        out.push_str(MASK);
        done = e;
        from += p + secret.len();
    }
    out.push_str(&text[done..]);
    Some(out)
}
