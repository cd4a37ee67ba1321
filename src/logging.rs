//! Logging on stderr through `tracing`: human (coloured on a TTY unless `NO_COLOR`; RFC 3339
//! timestamps when stderr is not a terminal) or one JSON object per line with the run id (for
//! cron). Fields are keys: a script's `log::info(msg, #{ service })`, the built-in events'
//! `task_id`, `template`, `status`, `upid`, `duration`, and the `step`/`service` of the
//! `run::step` a line was logged in. Every line is redacted and written with progress bars suspended.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub(crate) enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Timestamps on human log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub(crate) enum LogTime {
    /// When stderr is not a terminal (cron, a file); not on a terminal.
    #[default]
    Auto,
    Always,
    /// Never (journald stamps lines itself).
    Never,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// True when logs are JSON lines (`--log-format json`).
pub(crate) fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// Colour on `stderr`: a terminal, and `NO_COLOR` unset or empty (no-color.org).
pub(crate) fn color_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The field that carries a JSON object of extra fields (a script's `log::info(msg, fields)`,
/// an uncaught error's location): its keys become top-level keys of a JSON line.
pub(crate) const FIELDS: &str = "fields";

/// Keys of a JSON line that fields never overwrite.
const RESERVED: &[&str] = &["ts", "level", "target", "run_id", "message"];

fn merge_fields(m: &mut serde_json::Map<String, serde_json::Value>, json_text: &str) {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(json_text) {
        for (k, v) in o {
            if !RESERVED.contains(&k.as_str()) {
                m.insert(k, v);
            }
        }
    }
}

/// A writer that buffers one formatted event, redacts it and writes it with bars suspended.
pub(crate) struct LineWriter {
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = crate::redact::redact(&String::from_utf8_lossy(&self.buf));
        crate::progress::Progress::new().suspend(|| {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(text.as_bytes());
            let _ = e.flush();
        });
    }
}

#[derive(Clone, Copy)]
pub(crate) struct MakeLineWriter;

impl<'a> MakeWriter<'a> for MakeLineWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::new() }
    }
}

/// JSON lines: {"ts","level","target","run_id","message", ...fields}
struct JsonFormat {
    run_id: String,
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == FIELDS {
            return merge_fields(self.0, &format!("{value:?}"));
        }
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == FIELDS {
            return merge_fields(self.0, value);
        }
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut m = serde_json::Map::new();
        m.insert(
            "ts".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        m.insert(
            "level".into(),
            event.metadata().level().to_string().to_lowercase().into(),
        );
        m.insert("target".into(), event.metadata().target().into());
        m.insert("run_id".into(), self.run_id.clone().into());
        // The fields of the spans the event is in (outermost first): `step`, `service`.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    merge_fields(&mut m, f.fields.as_str());
                }
            }
        }
        event.record(&mut JsonVisitor(&mut m));
        writeln!(w, "{}", serde_json::Value::Object(m))
    }
}

/// RFC 3339 UTC with milliseconds, as on JSON lines.
struct Rfc3339;

impl tracing_subscriber::fmt::time::FormatTime for Rfc3339 {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        write!(w, "{now}")
    }
}

/// Install the global subscriber. `verbosity`: -1 quiet, 0 info, 1 debug, 2+ trace.
/// `RALF_LOG` (EnvFilter syntax) overrides it.
pub(crate) fn init(format: LogFormat, time: LogTime, verbosity: i8, run_id: &str) {
    let _ = FORMAT.set(format);
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RALF_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,ralf_sh={level},ralf={level},ralf::dry_run=info"
        ))
    });
    let stamped = match time {
        LogTime::Auto => !std::io::stderr().is_terminal(),
        LogTime::Always => true,
        LogTime::Never => false,
    };
    let human = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MakeLineWriter)
        .with_ansi(color_on_stderr())
        .with_target(verbosity > 0);
    use tracing_subscriber::layer::SubscriberExt;
    let result = match (format, stamped) {
        (LogFormat::Human, true) => tracing::subscriber::set_global_default(
            human.with_timer(Rfc3339).finish().with(JournalLayer),
        ),
        (LogFormat::Human, false) => tracing::subscriber::set_global_default(
            human.without_time().finish().with(JournalLayer),
        ),
        (LogFormat::Json, _) => tracing::subscriber::set_global_default(
            human
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(JsonFormat {
                    run_id: run_id.to_string(),
                })
                .finish()
                .with(JournalLayer),
        ),
    };
    let _ = result;
}

/// Where log lines of a recorded run go besides stderr: the run journal (`log` events), so the
/// dashboard can show and stream them. Set by the state store when the run is recorded.
type Sink = std::sync::Arc<dyn Fn(&str, &str, &str) + Send + Sync>;
static JOURNAL_SINK: parking_lot::RwLock<Option<Sink>> = parking_lot::RwLock::new(None);

/// Send info-and-above log lines (level, target, message) to `sink` from now on.
pub(crate) fn set_journal_sink(sink: Sink) {
    *JOURNAL_SINK.write() = Some(sink);
}

thread_local! {
    /// Set while a line is being journaled (a failing journal write logs a warning: not again).
    static IN_SINK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set on the state store's own threads: their lines go to stderr only.
    static NOT_JOURNALED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// From now on, log lines of this thread go to stderr only, never into the run journal. The state
/// store calls it on its own threads: a line journaled from inside the store (its pool losing a
/// connection, say) would wait for the store on the store's own thread, for ever.
pub(crate) fn never_journal_this_thread() {
    NOT_JOURNALED.with(|f| f.set(true));
}

/// Targets whose lines are never journaled, wherever they run: the PostgreSQL client and its pool
/// (they speak of the store itself, and journaling them would use the connection they report on).
const STORE_TARGETS: &[&str] = &["deadpool", "tokio_postgres", "postgres"];

fn journaled(target: &str) -> bool {
    !NOT_JOURNALED.with(|f| f.get())
        && !STORE_TARGETS.iter().any(|t| {
            target
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '.']))
        })
}

struct JournalLayer;

struct MessageOf(String);

impl tracing::field::Visit for MessageOf {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        if f.name() == "message" {
            self.0 = v.to_string();
        }
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        if f.name() == "message" {
            self.0 = format!("{v:?}");
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, ev: &Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if *ev.metadata().level() > tracing::Level::INFO || !journaled(ev.metadata().target()) {
            return;
        }
        let Some(sink) = JOURNAL_SINK.read().clone() else {
            return;
        };
        if IN_SINK.with(|f| f.replace(true)) {
            return;
        }
        let mut m = MessageOf(String::new());
        ev.record(&mut m);
        let msg = crate::redact::redact(&m.0);
        sink(ev.metadata().level().as_str(), ev.metadata().target(), &msg);
        IN_SINK.with(|f| f.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stores_own_lines_are_never_journaled() {
        assert!(journaled("ralf::deploy"));
        assert!(!journaled("deadpool.postgres"));
        assert!(!journaled("tokio_postgres::connection"));
        assert!(!journaled("postgres"));
        assert!(
            journaled("postgresql_notes"),
            "only the store's own targets"
        );
        std::thread::spawn(|| {
            never_journal_this_thread();
            assert!(!journaled("ralf::state"));
        })
        .join()
        .unwrap();
        assert!(journaled("ralf::state"), "only on the thread that asked");
    }
}
