//! Progress bars for long transfers: shown on a terminal once a transfer has run for about a
//! second, never when stderr is piped or `--json` output was asked for.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count progress display that stays invisible for short transfers.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    allowed: bool,
    shown: bool,
}

/// How long a transfer runs before its bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

impl Progress {
    /// A bar for `total` bytes labelled `what` (e.g. "upload"); `quiet` suppresses it.
    pub fn new(what: &str, total: u64, quiet: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Progress {
            bar,
            started: Instant::now(),
            allowed: !quiet && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    /// Record that `done` bytes of the total are through.
    pub fn set(&mut self, done: u64) {
        self.bar.set_position(done);
        if self.allowed && !self.shown && self.started.elapsed() >= SHOW_AFTER {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Remove the bar (if it was shown) before printing results.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
