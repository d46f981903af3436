//! Where errors, notes and log lines reach standard error, escaped, and the exit codes.
//!
//! Every error and note may quote text from outside (a file name in an image, a registry's
//! message), so each line is escaped whole with [`modelcar::text::escape`]: a newline or an
//! escape sequence in such text shows as `\n` or `\x1b` and cannot forge a line. Log lines go
//! through [`EscapingWriter`] for the same reason. Writes to standard error ignore failures: a
//! closed standard error is no reason to stop or to panic.

use std::io::{self, Write};

use modelcar::error::{Error, DISK_FULL_HINT};
use modelcar::text::escape;

/// Exit code of `verify` when the image fails a check (any command: 0 means success).
pub const EXIT_FAILED_CHECK: u8 = 1;
/// Exit code of `verify` when it could not judge the image (an error, not a verdict).
pub const EXIT_VERIFY_ERROR: u8 = 2;
/// Exit code of every other command on an error (usage errors from argument parsing are 2).
pub const EXIT_ERROR: u8 = 1;

pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MODELCAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("modelcar={level}")));
    // No colours: the writer escapes every control character, so its own would show as text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| EscapingWriter(Vec::new()))
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Collects one formatted log event and writes it to standard error escaped, as one line.
struct EscapingWriter(Vec<u8>);

impl Write for EscapingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EscapingWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let _ = io::stderr()
            .lock()
            .write_all(escaped_event(&self.0).as_bytes());
    }
}

/// A formatted log event as one escaped line: a newline inside it came from a message, which
/// may quote text from outside.
fn escaped_event(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    format!("{}\n", escape(text.strip_suffix('\n').unwrap_or(&text)))
}

/// Print a note to standard error, escaped.
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{}", escape(text));
}

/// A cause with a hint the command line adds where it knows more than the library: which image
/// was the base, or that a bare name was looked up on Docker Hub. Its hint comes before the
/// hints of the errors it wraps.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Hinted {
    pub fn wrap(err: anyhow::Error, message: String, hint: String) -> anyhow::Error {
        anyhow::Error::new(Hinted {
            message,
            hint,
            source: err.into(),
        })
    }
}

/// Print an error as `error: reason: cause: ...` and a `hint:` line when any error of the chain
/// has one, each escaped. With `json`, the same as one JSON object on standard output
/// (`{"error": ..., "hint": ..., "exit_code": ...}`, exact), and the human lines on standard
/// error as well, so a script that reads only standard output still sees what failed.
pub fn report(err: &anyhow::Error, json: bool, code: u8) {
    let message = err
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    let hint = hint(err);
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", escape(&message));
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {}", escape(hint));
    }
    // A failing `verify` has printed its report already: that is the JSON answer.
    if json && err.downcast_ref::<super::verify::ImageFails>().is_none() {
        let value = error_json(&message, hint, code);
        let _ = writeln!(io::stdout().lock(), "{value:#}");
    }
}

/// The JSON form of an error.
fn error_json(message: &str, hint: Option<&str>, code: u8) -> serde_json::Value {
    serde_json::json!({ "error": message, "hint": hint, "exit_code": code })
}

/// The first hint of the chain; a full disk gets one wherever it happened.
fn hint(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|c| {
            c.downcast_ref::<Hinted>()
                .map(|h| h.hint.as_str())
                .or_else(|| c.downcast_ref::<Error>().and_then(Error::hint))
        })
        .or_else(|| {
            err.chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(modelcar::error::is_disk_full)
                .then_some(DISK_FULL_HINT)
        })
}

/// A write to standard output that failed. Kept apart from other I/O errors so that only a
/// closed standard output, never a connection a registry closed, ends a command quietly.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output")]
pub struct StdoutError(#[source] pub io::Error);

/// Whether the command failed only because standard output was closed (`| head`): then it
/// ends quietly and successfully, as ripgrep does, since the reader has what it wanted.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<StdoutError>())
        .any(|e| e.0.kind() == io::ErrorKind::BrokenPipe)
}

/// The exit code for an error of a command: `verify` tells a failing image (1) from an error
/// (2); every other command exits 1.
pub fn exit_code(err: &anyhow::Error, verify: bool) -> u8 {
    if err.downcast_ref::<super::verify::ImageFails>().is_some() {
        EXIT_FAILED_CHECK
    } else if verify {
        EXIT_VERIFY_ERROR
    } else {
        EXIT_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_gets_a_hint_wherever_it_is_in_the_chain() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let err = anyhow::Error::new(Error::Io {
            op: "write a blob in",
            path: "/store/.modelcar/tmp".into(),
            source: full,
        })
        .context("building quay.io/x/y:v1");
        assert_eq!(hint(&err), Some(DISK_FULL_HINT));
        let other = anyhow::Error::new(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(hint(&other), None);
    }

    #[test]
    fn a_log_event_is_one_escaped_line() {
        assert_eq!(
            escaped_event(b" WARN layer x\n\x1b[32m  pass\n"),
            " WARN layer x\\n\\x1b[32m  pass\n"
        );
        assert_eq!(escaped_event(b" INFO plain\n"), " INFO plain\n");
    }

    #[test]
    fn a_hint_the_command_line_adds_comes_before_the_library_s() {
        let inner =
            anyhow::Error::new(Error::invalid("unreachable").with_hint("check the network"));
        let err =
            Hinted::wrap(inner, "base x".into(), "use a local base".into()).context("building");
        assert_eq!(hint(&err), Some("use a local base"));
        let v = error_json("building: base x: unreachable", hint(&err), 1);
        assert_eq!(v["hint"], "use a local base");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["error"], "building: base x: unreachable");
    }

    #[test]
    fn a_hint_deeper_in_the_chain_is_found() {
        let err = anyhow::Error::new(Error::invalid("bad").with_hint("do this")).context("outer");
        assert_eq!(hint(&err), Some("do this"));
    }

    #[test]
    fn only_a_closed_standard_output_counts_as_a_quiet_end() {
        let closed = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(StdoutError(closed))));
        // A registry that closed its connection is an error like any other.
        let network = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(!is_broken_pipe(
            &anyhow::Error::new(network).context("pushing")
        ));
    }
}
