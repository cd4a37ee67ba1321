//! Logging on stderr through `tracing`: human (coloured on a TTY) or one JSON object per line
//! with the run id (for cron). Every line is redacted and written with progress bars suspended.

use std::io::{IsTerminal, Write};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A writer that buffers one formatted event, redacts it and writes it with bars suspended.
pub struct LineWriter {
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
        let text = crate::secrets::redact(&String::from_utf8_lossy(&self.buf));
        crate::progress::Progress::new().suspend(|| {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(text.as_bytes());
            let _ = e.flush();
        });
    }
}

#[derive(Clone, Copy)]
pub struct MakeLineWriter;

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
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
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
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
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
        event.record(&mut JsonVisitor(&mut m));
        writeln!(w, "{}", serde_json::Value::Object(m))
    }
}

/// Install the global subscriber. `verbosity`: -1 quiet, 0 info, 1 debug, 2+ trace.
/// `RALF_LOG` (EnvFilter syntax) overrides it.
pub fn init(format: LogFormat, verbosity: i8, run_id: &str) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RALF_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,ralf_sh={level},ralf={level},ralf::dry_run=info"))
    });
    let result = match format {
        LogFormat::Human => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(MakeLineWriter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(verbosity > 0)
            .without_time()
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(MakeLineWriter)
            .event_format(JsonFormat {
                run_id: run_id.to_string(),
            })
            .try_init(),
    };
    let _ = result;
}
