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
    /// A registry (or its token service) could not be reached or refused a request.
    #[error(transparent)]
    Registry(#[from] Box<RegistryError>),
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
            Error::Registry(r) => r.hint = Some(text.into()),
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
            Error::Registry(r) => r.hint.as_deref(),
            Error::Io { source, .. } if is_disk_full(source) => Some(DISK_FULL_HINT),
            _ => None,
        }
    }

    /// Whether trying the same operation again may succeed (a dropped connection, a timeout,
    /// a registry asking to slow down or failing on its side). Everything else (refusals,
    /// content that does not match its digest, bad input) fails the same way every time.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Registry(r) if r.is_temporary())
    }

    /// The registry error, if this is one.
    pub fn registry(&self) -> Option<&RegistryError> {
        match self {
            Error::Registry(r) => Some(r),
            _ => None,
        }
    }

    /// Carry this error through an `io::Write` or `io::Read` implementation; [`Error::from_io`]
    /// gets it back intact on the other side.
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// The error an [`Error::into_io`] wrapped, or the `io::Error` itself when it wraps none.
    pub fn from_io(e: io::Error) -> Result<Error, io::Error> {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Err(e);
        }
        let kind = e.kind();
        match e.into_inner() {
            Some(inner) => inner
                .downcast::<Error>()
                .map(|inner| *inner)
                .map_err(|other| io::Error::new(kind, other)),
            None => Err(io::Error::from(kind)),
        }
    }
}

/// What kind of failure a registry error is: it decides whether it is retried and how it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// No connection could be made (refused, unresolvable, TLS handshake failed).
    Unreachable,
    /// The connection dropped or broke in the middle of a request.
    Dropped,
    /// The registry sent no bytes for the read timeout (or did not accept a connection within
    /// the connect timeout).
    TimedOut,
    /// The registry asks to slow down (429 / TOOMANYREQUESTS).
    TooManyRequests,
    /// The registry failed on its side (5xx / UNAVAILABLE).
    Unavailable,
    /// The registry or its token service refused the credentials or the access (401, 403,
    /// DENIED, UNAUTHORIZED).
    Denied,
    /// What was asked for does not exist (404, *_UNKNOWN).
    NotFound,
    /// The registry refused the request for another reason (4xx: MANIFEST_INVALID, ...).
    Refused,
    /// The registry answered something that does not follow the distribution API.
    Protocol,
    /// A setting or an answer that modelcar refuses for safety (a token realm over plain
    /// HTTP for a TLS registry, an unsupported authentication scheme).
    Refusing,
    /// The registry asked to wait longer before trying again than modelcar waits.
    WaitTooLong,
}

impl RegistryErrorKind {
    /// A stable name for machine-readable output (`unreachable`, `timed-out`, `denied`...).
    pub fn name(self) -> &'static str {
        match self {
            RegistryErrorKind::Unreachable => "unreachable",
            RegistryErrorKind::Dropped => "dropped",
            RegistryErrorKind::TimedOut => "timed-out",
            RegistryErrorKind::TooManyRequests => "too-many-requests",
            RegistryErrorKind::Unavailable => "unavailable",
            RegistryErrorKind::Denied => "denied",
            RegistryErrorKind::NotFound => "not-found",
            RegistryErrorKind::Refused => "refused",
            RegistryErrorKind::Protocol => "protocol",
            RegistryErrorKind::Refusing => "refusing",
            RegistryErrorKind::WaitTooLong => "wait-too-long",
        }
    }
}

/// One entry of a registry's JSON error answer (`{"errors":[{"code":..,"message":..}]}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCode {
    /// The distribution API error code: `DENIED`, `BLOB_UNKNOWN`, `MANIFEST_INVALID`, ...
    pub code: String,
    pub message: String,
}

/// A failed exchange with a registry: which registry, what modelcar was doing, what kind of
/// failure, the HTTP status and the registry's own error codes, and the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// host[:port] of the registry (or of the token service).
    pub registry: String,
    pub kind: RegistryErrorKind,
    /// The HTTP status, when the registry answered.
    pub status: Option<u16>,
    /// The registry's error codes, in the order it sent them.
    pub codes: Vec<RegistryCode>,
    /// How long the registry asked to wait before trying again (`Retry-After`), as received.
    pub retry_after: Option<std::time::Duration>,
    message: String,
    hint: Option<String>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RegistryError {
    /// A registry error with a message naming the registry and what was being done.
    pub fn new(registry: impl Into<String>, kind: RegistryErrorKind, message: String) -> Self {
        RegistryError {
            registry: registry.into(),
            kind,
            status: None,
            codes: Vec::new(),
            retry_after: None,
            message,
            hint: None,
            source: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_codes(mut self, codes: Vec<RegistryCode>) -> Self {
        self.codes = codes;
        self
    }

    pub fn with_retry_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_kind(mut self, kind: RegistryErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Add to the message (what happened next: the attempts made, the wait refused).
    pub fn extend_message(mut self, more: &str) -> Self {
        self.message.push_str(more);
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether the registry sent this error code.
    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.code == code)
    }

    /// Whether the same request may succeed when tried again.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self.kind,
            RegistryErrorKind::Dropped
                | RegistryErrorKind::TimedOut
                | RegistryErrorKind::TooManyRequests
                | RegistryErrorKind::Unavailable
        )
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Registry(Box::new(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_carried_through_io_comes_back_whole() {
        let e = Error::from(
            RegistryError::new("r.example", RegistryErrorKind::Denied, "denied".into())
                .with_hint("log in"),
        );
        let back = Error::from_io(e.into_io()).expect("an Error inside");
        assert_eq!(back.registry().unwrap().kind, RegistryErrorKind::Denied);
        assert_eq!(back.hint(), Some("log in"));
        let plain = io::Error::new(io::ErrorKind::StorageFull, "disk full");
        let kept = Error::from_io(plain).unwrap_err();
        assert_eq!(kept.kind(), io::ErrorKind::StorageFull);
    }
}
