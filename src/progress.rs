//! Progress display: a byte counter on a terminal, silence elsewhere.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// A progress reporter shared by the threads of one operation.
pub struct Progress {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// Shows bars only when `enabled` and standard error is a terminal.
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled: enabled && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            bar: Mutex::new(None),
        }
    }

    /// A reporter that never draws.
    pub fn hidden() -> Progress {
        Progress {
            enabled: false,
            bar: Mutex::new(None),
        }
    }

    /// Start a bar counting `total` bytes.
    pub fn start_bytes(&self, total: u64, message: &str) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        // Messages name images and blobs from outside: escaped, as all human output is.
        bar.set_message(crate::text::escape(message).into_owned());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            b.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }
}
