//! Typed errors of the library.
//!
//! Every error names what it is about (a file, a reference, an option) and, where the user can
//! do something about it, carries a hint. The binary prints the message, the chain of causes and
//! the hint; nothing here panics on user input.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed on a named path.
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The user's input (a model directory, an option, a reference, a project file) is not usable.
    #[error("{what}")]
    Invalid { what: String, hint: Option<String> },
    /// A named image is not where it was looked for.
    #[error("image {reference} not found in {place}")]
    NotFound {
        reference: String,
        place: String,
        hint: Option<String>,
    },
    /// Content does not match its digest or size, or an image document cannot be parsed.
    #[error("{what}")]
    Corrupt { what: String },
    /// A feature that exists in the interface but cannot work in this build or context.
    #[error("{what}")]
    Unsupported { what: String, hint: Option<String> },
    /// Input goes beyond one of the bounds of [`crate::limits`]: refused before it costs
    /// unbounded memory, stack or time.
    #[error("{what}")]
    Limit { what: String, hint: Option<String> },
}

impl Error {
    /// An invalid-input error with a message.
    pub fn invalid(what: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            hint: None,
        }
    }

    /// A corrupt-content error with a message.
    pub fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into() }
    }

    /// An input-beyond-a-limit error: `what` names the input and the limit.
    pub fn limit(what: impl Into<String>) -> Self {
        Error::Limit {
            what: what.into(),
            hint: Some(
                "modelcar refuses input beyond the limits its README lists under \
                 \"Limits and failure behaviour\"; check where the image comes from"
                    .into(),
            ),
        }
    }

    /// Attach (or replace) the hint telling the user what to do.
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        match &mut self {
            Error::Invalid { hint, .. }
            | Error::NotFound { hint, .. }
            | Error::Unsupported { hint, .. }
            | Error::Limit { hint, .. } => *hint = Some(text.into()),
            _ => {}
        }
        self
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Invalid { hint, .. }
            | Error::NotFound { hint, .. }
            | Error::Unsupported { hint, .. }
            | Error::Limit { hint, .. } => hint.as_deref(),
            Error::Io { source, .. } if is_disk_full(source) => Some(DISK_FULL_HINT),
            _ => None,
        }
    }
}

/// What to do when a write fails because the disk (or the user's quota) is full.
pub const DISK_FULL_HINT: &str = "the disk holding that path is full: free space on it (df -h shows what is left) or write somewhere else (--store or MODELCAR_STORE for the store), then run the command again; what was half-written has been removed";

/// Whether an I/O error says the disk or the user's quota is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Build a `map_err` closure that turns an `io::Error` into [`Error::Io`] for `path`.
pub fn io_err(op: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> Error {
    let path = path.as_ref().to_path_buf();
    move |source| Error::Io { op, path, source }
}
