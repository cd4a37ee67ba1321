//! Progress spinners and bars (indicatif) that share stderr with the log without garbling it.
//!
//! On a TTY, bindings show a spinner during long waits; on a pipe nothing is drawn. Log lines
//! are written through [`Progress::suspend`], so a bar is cleared, the line printed, the bar redrawn.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Clone)]
pub(crate) struct Progress {
    multi: MultiProgress,
    enabled: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

static GLOBAL: once_cell::sync::OnceCell<Progress> = once_cell::sync::OnceCell::new();

impl Progress {
    /// The process-wide progress area (shared with the log writer).
    pub fn new() -> Progress {
        GLOBAL
            .get_or_init(|| {
                let enabled = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
                let multi = MultiProgress::with_draw_target(if enabled {
                    ProgressDrawTarget::stderr()
                } else {
                    ProgressDrawTarget::hidden()
                });
                Progress { multi, enabled }
            })
            .clone()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A spinner with a message; finish it with [`Spinner::finish`] (dropping also clears it).
    pub fn spinner(&self, msg: impl Into<String>) -> Spinner {
        let pb = if self.enabled {
            let pb = self.multi.add(ProgressBar::new_spinner());
            pb.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        } else {
            ProgressBar::hidden()
        };
        pb.set_message(
            crate::text::visible_controls(&crate::redact::redact(&msg.into())).into_owned(),
        );
        self.wrap(pb)
    }

    fn wrap(&self, pb: ProgressBar) -> Spinner {
        Spinner {
            pb,
            multi: self.enabled.then(|| self.multi.clone()),
        }
    }

    /// Run `f` with the bars cleared (for writing to stderr/stdout).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.enabled {
            self.multi.suspend(f)
        } else {
            f()
        }
    }
}

/// A live spinner or bar; taken off the display when finished (indicatif would otherwise keep a
/// finished bar below a long-running one, and every redraw would walk the pile).
pub(crate) struct Spinner {
    pb: ProgressBar,
    multi: Option<MultiProgress>,
}

impl Spinner {
    pub fn set_message(&self, msg: impl Into<String>) {
        self.pb.set_message(
            crate::text::visible_controls(&crate::redact::redact(&msg.into())).into_owned(),
        );
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if !self.pb.is_finished() {
            self.pb.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            m.remove(&self.pb);
        }
    }
}
