//! HTTP details: API errors and their bodies, form decoding, auth headers, parameter checks.

use super::*;

/// An API error: status, message, optional per-parameter errors.
pub(super) struct ApiErr {
    pub(super) status: u16,
    pub(super) message: String,
    pub(super) errors: Option<Map<String, Value>>,
}

pub(super) fn err(status: u16, msg: impl Into<String>) -> ApiErr {
    ApiErr {
        status,
        message: msg.into(),
        errors: None,
    }
}

pub(super) fn param_err(name: &str, msg: impl Into<String>) -> ApiErr {
    let mut m = Map::new();
    m.insert(name.into(), Value::String(format!("{}\n", msg.into())));
    ApiErr {
        status: 400,
        message: "Parameter verification failed.".into(),
        errors: Some(m),
    }
}

pub(super) type ApiResult = Result<Value, ApiErr>;

pub(super) fn base_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("pve-api-daemon/3.0"));
    h.insert("cache-control", HeaderValue::from_static("max-age=0"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
}

pub(super) fn json_response(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    base_headers(&mut r);
    r
}

/// An error answer as the modelled release writes it: the text always in the HTTP reason phrase
/// (its first line, as `PVE::APIServer::AnyEvent::response` does), and in the body's `message`
/// only from libpve-http-server-perl 5.2.0 on; per-parameter `errors` in every release.
pub(super) fn error_response(profile: Profile, e: ApiErr) -> Response {
    let mut body = json!({"data": null});
    if profile.message_in_body() {
        body["message"] = json!(format!("{}\n", e.message.trim_end()));
    }
    if let Some(errs) = e.errors {
        body["errors"] = Value::Object(errs);
    }
    let mut r = json_response(e.status, body);
    let first = e.message.lines().next().unwrap_or_default().trim_end();
    if !first.is_empty() {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(first.as_bytes().to_vec()) {
            r.extensions_mut().insert(reason);
        }
    }
    r
}

pub(super) async fn unauthorized(app: &App) -> Response {
    tokio::time::sleep(app.auth_fail_delay).await;
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    base_headers(&mut r);
    r
}

pub(super) fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

/// Who made the request.
pub(super) struct Caller {
    pub(super) user: String,
    pub(super) tokenid: Option<String>,
    pub(super) ticket: bool,
}

pub(super) fn cookie_ticket(headers: &HeaderMap) -> Option<String> {
    for c in headers.get_all("cookie") {
        let Ok(s) = c.to_str() else { continue };
        for part in s.split(';') {
            if let Some(v) = part.trim().strip_prefix("PVEAuthCookie=") {
                return Some(url_decode(v));
            }
        }
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    auth.strip_prefix("PVEAuthCookie=").map(url_decode)
}

pub(super) fn token_header(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let rest = auth.strip_prefix("PVEAPIToken")?;
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(' '))?;
    let rest = rest.split(';').next().unwrap_or_default();
    let rest = url_decode(rest);
    let (id, secret) = rest.rsplit_once('=')?;
    Some((id.to_string(), secret.to_string()))
}

pub(super) fn not_impl(method: &Method, path: &str) -> ApiErr {
    err(501, format!("Method '{method} {path}' not implemented"))
}

/// Check that only `allowed` parameters were sent (schemas are additionalProperties: 0).
pub(super) fn check_params(params: &[(String, String)], allowed: &[&str]) -> Result<(), ApiErr> {
    let mut errors = Map::new();
    for (k, _) in params {
        if !allowed.contains(&k.as_str()) {
            errors.insert(
                k.clone(),
                Value::String(
                    "property is not defined in schema and the schema does not allow additional properties\n".into(),
                ),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiErr {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(errors),
        })
    }
}

pub(super) fn bool_param(params: &[(String, String)], name: &str) -> Result<bool, ApiErr> {
    match params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None => Ok(false),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(param_err(
            name,
            format!("type check ('boolean') failed - got '{other}'"),
        )),
    }
}

pub(super) fn int_param(params: &[(String, String)], name: &str) -> Result<Option<i64>, ApiErr> {
    match params.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| param_err(name, format!("type check ('integer') failed - got '{v}'"))),
    }
}

pub(super) fn str_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) fn valid_configid(s: &str) -> bool {
    let mut c = s.chars();
    s.len() >= 2
        && s.len() <= 40
        && c.next().is_some_and(|c| c.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        assert_eq!(
            parse_form("a=1&b=x+y%21&c"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), String::new())
            ]
        );
        assert_eq!(url_decode("100%"), "100%");
    }
}
