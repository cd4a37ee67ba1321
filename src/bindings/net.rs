//! `net::` bindings: smoke checks over HTTP(S) and TCP. A failed check is a result (`ok: false`
//! with `error`), never a throw; bad URLs and options throw `invalid`.

use crate::bindings::{host, AtCall};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::script::decode::decode;
use crate::text::is_loopback_host;
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("net", exported_module!(net_mod).into());
}

/// Bodies returned to scripts are cut at this many bytes (`contains` still sees the whole body up
/// to [`SCAN_CAP`]).
pub(crate) const BODY_CAP: usize = 64 * 1024;
/// How much of a body is read at most.
pub(crate) const SCAN_CAP: usize = 4 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `net::http`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpOpts {
    /// GET (default), HEAD, POST, PUT, DELETE, PATCH, OPTIONS.
    method: Option<String>,
    /// Expected status: a number or an array of numbers (default: any 2xx).
    expect: Option<Expect>,
    /// Text the body must contain.
    contains: Option<String>,
    /// Whole-request timeout (default 10 s).
    timeout: Option<Secs>,
    /// Accept any TLS certificate (default false: verified).
    insecure: Option<bool>,
    /// Extra request headers.
    headers: Option<BTreeMap<String, String>>,
    /// Request body (text).
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    One(i64),
    Many(Vec<i64>),
}

/// Options of `net::tcp`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpOpts {
    timeout: Option<Secs>,
}

#[derive(Clone)]
struct Clients {
    verified: reqwest::Client,
    insecure: reqwest::Client,
}

fn build_client(insecure: bool, only_loopback: bool) -> RResult<reqwest::Client> {
    // With `net.only_loopback`, an HTTP redirect must not lead the check off loopback either.
    let policy = if only_loopback {
        reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if is_loopback_host(attempt.url().host_str().unwrap_or_default()) {
                attempt.follow()
            } else {
                let to = attempt.url().to_string();
                attempt.error(refuse("net::http redirect", &to))
            }
        })
    } else {
        reqwest::redirect::Policy::default()
    };
    crate::clients::http_builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(insecure)
        .redirect(policy)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("ralf-sh/", env!("CARGO_PKG_VERSION"), " smoke"))
        .build()
        .map_err(|e| RalfError::internal(format!("net::http: http client: {e}")))
}

/// The host's HTTP clients, built once per run (the `Err` of a failed build is kept too).
fn clients(h: &crate::host::Host) -> RResult<Clients> {
    let only_loopback = h.cfg().net.only_loopback;
    h.extension(|| -> Result<Clients, RalfError> {
        Ok(Clients {
            verified: build_client(false, only_loopback)?,
            insecure: build_client(true, only_loopback)?,
        })
    })
}

/// The result of one HTTP check (plain data; turned into a Rhai map by the binding).
#[derive(Debug, Default)]
pub(crate) struct HttpResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub body: String,
    pub duration: f64,
    pub error: Option<String>,
}

fn parse_method(m: Option<&str>) -> RResult<reqwest::Method> {
    let m = m.unwrap_or("GET").to_ascii_uppercase();
    match m.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => {
            Ok(reqwest::Method::from_bytes(m.as_bytes()).expect("valid method"))
        }
        _ => Err(RalfError::invalid(format!(
            "net::http: unknown method `{m}` (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS)"
        ))),
    }
}

fn parse_url(url: &str) -> RResult<reqwest::Url> {
    let u = reqwest::Url::parse(url)
        .map_err(|e| RalfError::invalid(format!("net::http: invalid URL `{url}`: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(RalfError::invalid(format!(
            "net::http: URL must start with http:// or https://, got `{url}`"
        )));
    }
    if u.host_str().is_none() {
        return Err(RalfError::invalid(format!(
            "net::http: URL `{url}` has no host"
        )));
    }
    Ok(u)
}

async fn http_check(
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    o: HttpOpts,
    expect: Vec<u16>,
    timeout: Duration,
) -> HttpResult {
    let start = Instant::now();
    let mut req = client.request(method, url).timeout(timeout);
    for (k, v) in o.headers.iter().flatten() {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(b) = o.body {
        req = req.body(b);
    }
    let mut r = HttpResult::default();
    let fetched = async {
        let mut resp = req.send().await?;
        let status = resp.status().as_u16();
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            buf.extend_from_slice(&chunk);
            if buf.len() >= SCAN_CAP {
                buf.truncate(SCAN_CAP);
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, buf))
    };
    match fetched.await {
        Err(e) => {
            r.error = Some(describe_reqwest(&e, timeout));
        }
        Ok((status, buf)) => {
            r.status = Some(status);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let status_ok = if expect.is_empty() {
                (200..300).contains(&status)
            } else {
                expect.contains(&status)
            };
            let contains_ok = o.contains.as_deref().is_none_or(|c| text.contains(c));
            r.ok = status_ok && contains_ok;
            if !status_ok {
                let want = if expect.is_empty() {
                    "2xx".to_string()
                } else {
                    expect
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                };
                r.error = Some(format!("HTTP {status}, expected {want}"));
            } else if !contains_ok {
                r.error = Some(format!(
                    "body does not contain {:?}",
                    o.contains.as_deref().unwrap_or_default()
                ));
            }
            let mut end = text.len().min(BODY_CAP);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            r.body = text[..end].to_string();
        }
    }
    r.duration = start.elapsed().as_secs_f64();
    r
}

fn describe_reqwest(e: &reqwest::Error, timeout: Duration) -> String {
    use std::error::Error;
    if e.is_timeout() {
        return format!("timed out after {}", crate::text::human_duration(timeout));
    }
    // The innermost cause is the useful part ("Connection refused", "invalid peer certificate").
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{what}: {msg}")
}

fn refuse(what: &str, target: &str) -> RalfError {
    RalfError::new(
        crate::error::ErrorKind::Forbidden,
        format!(
            "{what}: refusing to connect to {target}: only loopback targets are allowed here (net.only_loopback in the config)"
        ),
    )
}

/// Apply the config's `net` section to an HTTP check: the URL actually requested and the original
/// URL (sent as `X-Ralf-Original-Url`) when it was redirected.
pub(crate) fn route_http(
    net: &crate::config::NetConfig,
    u: reqwest::Url,
) -> RResult<(reqwest::Url, Option<String>)> {
    let (u, original) = match &net.redirect_all {
        Some(to) => {
            let mut r = reqwest::Url::parse(&format!("http://{to}/")).map_err(|e| {
                RalfError::config(format!("net.redirect_all `{to}` is not host:port: {e}"))
            })?;
            r.set_path(u.path());
            r.set_query(u.query());
            (r, Some(u.to_string()))
        }
        None => (u, None),
    };
    if net.only_loopback && !is_loopback_host(u.host_str().unwrap_or_default()) {
        return Err(refuse("net::http", u.as_str()));
    }
    Ok((u, original))
}

/// Apply the config's `net` section to a TCP check: the `host:port` actually connected to.
pub(crate) fn route_tcp(
    net: &crate::config::NetConfig,
    host: &str,
    target: String,
) -> RResult<String> {
    match &net.redirect_all {
        Some(to) => {
            let h = to.rsplit_once(':').map(|(h, _)| h).unwrap_or(to);
            if net.only_loopback && !is_loopback_host(h) {
                return Err(refuse("net::tcp", to));
            }
            Ok(to.clone())
        }
        None => {
            if net.only_loopback && !is_loopback_host(host) {
                return Err(refuse("net::tcp", &target));
            }
            Ok(target)
        }
    }
}

fn http_impl(ctx: &NativeCallContext, url: &str, opts: &Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let mut o: HttpOpts = decode(opts, "net::http").at(ctx)?;
    let u = parse_url(url).at(ctx)?;
    let (u, original) = route_http(&h.cfg().net, u).at(ctx)?;
    if let Some(orig) = original {
        o.headers
            .get_or_insert_with(BTreeMap::new)
            .insert("X-Ralf-Original-Url".into(), orig);
    }
    let method = parse_method(o.method.as_deref()).at(ctx)?;
    let expect: Vec<u16> = match &o.expect {
        None => Vec::new(),
        Some(Expect::One(n)) => vec![*n],
        Some(Expect::Many(v)) => v.clone(),
    }
    .into_iter()
    .map(|n| {
        if (100..=599).contains(&n) {
            Ok(n as u16)
        } else {
            Err(RalfError::invalid(format!(
                "net::http: expect must be HTTP status codes (100..599), got {n}"
            )))
        }
    })
    .collect::<RResult<_>>()
    .at(ctx)?;
    if let Some(hs) = &o.headers {
        for (k, v) in hs {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(RalfError::invalid(format!(
                    "net::http: invalid header `{k}`"
                )))
                .at(ctx);
            }
        }
    }
    let timeout = o.timeout.map(|s| s.0).unwrap_or(DEFAULT_TIMEOUT);
    let cs = clients(&h).at(ctx)?;
    let client = if o.insecure.unwrap_or(false) {
        tracing::warn!(
            target: "ralf::net",
            "net::http {}: TLS certificate verification is off (insecure: true)",
            crate::redact::redact(url)
        );
        cs.insecure
    } else {
        cs.verified
    };
    let r = crate::script::bridge::block_on(
        &h,
        "net::http",
        Some(timeout + Duration::from_secs(5)),
        async move { Ok(http_check(client, method, u, o, expect, timeout).await) },
    )
    .at(ctx)?;
    let mut m = Map::new();
    m.insert("ok".into(), r.ok.into());
    m.insert(
        "status".into(),
        r.status
            .map(|s| Dynamic::from_int(s as i64))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("body".into(), crate::redact::redact(&r.body).into());
    m.insert("duration".into(), Dynamic::from_float(r.duration));
    m.insert(
        "error".into(),
        r.error
            .map(|e| Dynamic::from(crate::redact::redact(&e)))
            .unwrap_or(Dynamic::UNIT),
    );
    Ok(m)
}

fn tcp_impl(ctx: &NativeCallContext, hostname: &str, port: i64, opts: &Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let o: TcpOpts = decode(opts, "net::tcp").at(ctx)?;
    if !(1..=65535).contains(&port) {
        return Err(RalfError::invalid(format!(
            "net::tcp: port must be between 1 and 65535, got {port}"
        )))
        .at(ctx);
    }
    if hostname.is_empty() || hostname.contains(['/', ' ']) {
        return Err(RalfError::invalid(format!(
            "net::tcp: invalid host `{hostname}`"
        )))
        .at(ctx);
    }
    let timeout = o.timeout.map(|s| s.0).unwrap_or(DEFAULT_TIMEOUT);
    let target = format!(
        "{}:{port}",
        hostname.trim_start_matches('[').trim_end_matches(']')
    );
    let target = if hostname.contains(':') && !hostname.starts_with('[') {
        format!("[{hostname}]:{port}")
    } else {
        target
    };
    let target = route_tcp(&h.cfg().net, hostname, target).at(ctx)?;
    let start = Instant::now();
    let r = crate::script::bridge::block_on(
        &h,
        "net::tcp",
        Some(timeout + Duration::from_secs(5)),
        async move {
            Ok(
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
                    Err(_) => Err(format!(
                        "timed out after {}",
                        crate::text::human_duration(timeout)
                    )),
                    Ok(Err(e)) => Err(format!("cannot connect to {target}: {e}")),
                    Ok(Ok(_s)) => Ok(()),
                },
            )
        },
    )
    .at(ctx)?;
    let mut m = Map::new();
    m.insert("ok".into(), r.is_ok().into());
    m.insert(
        "duration".into(),
        Dynamic::from_float(start.elapsed().as_secs_f64()),
    );
    m.insert(
        "error".into(),
        r.err().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    Ok(m)
}

#[export_module]
mod net_mod {
    use super::*;

    /// GET a URL and check that it answers 2xx. Returns `#{ ok, status, body, duration, error }`:
    /// `ok` is false (with `error` saying why) when the server cannot be reached, times out or
    /// answers otherwise; it never throws for a failed check. `body` is cut at 64 KiB.
    /// TLS certificates are verified. Throws `invalid` for a malformed URL.
    ///
    /// ```rhai
    /// let r = net::http("http://127.0.0.1:1/health");   // nothing listens on port 1
    /// assert(!r.ok);
    /// assert(r.status == ());
    /// print(r.error);
    /// ```
    #[rhai_fn(name = "http", return_raw)]
    pub fn http1(ctx: NativeCallContext, url: &str) -> RhaiResult<Map> {
        http_impl(&ctx, url, &Map::new())
    }

    /// An HTTP check with options: `method` (GET, HEAD, POST, ...), `expect` (status or array of
    /// statuses; default any 2xx), `contains` (text the body must contain), `timeout` (default 10 s),
    /// `insecure` (skip TLS verification; default false), `headers` (map), `body` (text).
    ///
    /// ```rhai
    /// let r = net::http("http://127.0.0.1:1/", #{ expect: [200, 204], contains: "ok", timeout: "2s" });
    /// assert(!r.ok);
    /// try { net::http("ftp://example.org"); } catch (e) { assert(e.kind == "invalid"); }
    /// try { net::http("http://127.0.0.1:1/", #{ timout: 1 }); } catch (e) { assert(e.message.contains("did you mean `timeout`")); }
    /// ```
    #[rhai_fn(name = "http", return_raw)]
    pub fn http2(ctx: NativeCallContext, url: &str, opts: Map) -> RhaiResult<Map> {
        http_impl(&ctx, url, &opts)
    }

    /// Open a TCP connection to `host:port` (then close it). Returns `#{ ok, duration, error }`;
    /// a refused or timed-out connection is `ok: false`, never a throw.
    ///
    /// ```rhai
    /// let r = net::tcp("127.0.0.1", 1);
    /// assert(!r.ok);
    /// assert(r.error.contains("cannot connect"));
    /// ```
    #[rhai_fn(name = "tcp", return_raw)]
    pub fn tcp2(ctx: NativeCallContext, host: &str, port: i64) -> RhaiResult<Map> {
        tcp_impl(&ctx, host, port, &Map::new())
    }

    /// A TCP check with options: `timeout` (default 10 s).
    ///
    /// ```rhai
    /// let r = net::tcp("127.0.0.1", 1, #{ timeout: 2 });
    /// assert(!r.ok);
    /// ```
    #[rhai_fn(name = "tcp", return_raw)]
    pub fn tcp3(ctx: NativeCallContext, host: &str, port: i64, opts: Map) -> RhaiResult<Map> {
        tcp_impl(&ctx, host, port, &opts)
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;
    use crate::config::NetConfig;

    #[test]
    fn redirect_keeps_path_and_query_and_stays_on_loopback() {
        let net = NetConfig {
            redirect_all: Some("127.0.0.1:4711".into()),
            only_loopback: true,
        };
        let u = reqwest::Url::parse("https://vault.example.net/alive?x=1").unwrap();
        let (to, orig) = route_http(&net, u).unwrap();
        assert_eq!(to.as_str(), "http://127.0.0.1:4711/alive?x=1");
        assert_eq!(orig.as_deref(), Some("https://vault.example.net/alive?x=1"));
        let t = route_tcp(&net, "10.10.20.10", "10.10.20.10:5432".into()).unwrap();
        assert_eq!(t, "127.0.0.1:4711");
    }

    #[test]
    fn only_loopback_refuses_other_targets() {
        let net = NetConfig {
            redirect_all: None,
            only_loopback: true,
        };
        let u = reqwest::Url::parse("https://vault.example.net/alive").unwrap();
        let e = route_http(&net, u).unwrap_err();
        assert!(e.message.contains("only loopback"), "{}", e.message);
        assert!(route_tcp(&net, "10.10.20.10", "10.10.20.10:5432".into()).is_err());
        assert!(route_tcp(&net, "127.0.0.1", "127.0.0.1:5432".into()).is_ok());
        assert!(route_tcp(&net, "[::1]", "[::1]:5432".into()).is_ok());
        // A redirect that is not loopback is refused too.
        let bad = NetConfig {
            redirect_all: Some("10.0.0.1:80".into()),
            only_loopback: true,
        };
        let u = reqwest::Url::parse("http://127.0.0.1/").unwrap();
        assert!(route_http(&bad, u).is_err());
        assert!(route_tcp(&bad, "127.0.0.1", "127.0.0.1:80".into()).is_err());
    }
}
