//! Every bound modelcar puts on what it reads, waits for and keeps, in one place with its reason.
//!
//! modelcar reads images, layouts, archives and registries that other people control, so each
//! depth, size, count and wait below is a limit on hostile input as much as a default. Code that
//! checks a limit names the constant from here; no limit is a literal where it is checked. The
//! README's "Limits and failure behaviour" section lists the ones a user can meet.
//!
//! Sections: documents (JSON read from any source), walks (recursion over documents), layers
//! (tar entries and listings), network (timeouts and waits), the store (temporary files).

// ---------------------------------------------------------------------------------------------
// Documents

/// Largest JSON document (index, manifest, config, the layout's own `index.json`) read from any
/// source. Real manifests and configs are kilobytes; an index of a few thousand images stays
/// far below this. Larger documents are refused before they are read whole.
pub const MAX_DOCUMENT: u64 = 8 << 20;

// ---------------------------------------------------------------------------------------------
// Network

/// Time to open a connection (TCP and TLS) to a registry or token service. A registry that is
/// up answers in milliseconds; this only bounds how long a dead address is waited for.
/// `--connect-timeout` / `MODELCAR_CONNECT_TIMEOUT` change it.
pub const CONNECT_TIMEOUT_SECS: u64 = 30;

/// Longest silence tolerated on an open connection: no byte of an answer for this long (while
/// waiting for the status line or between two reads of a body) ends the request. It is not a
/// limit on a whole transfer: a 100 GB blob may take hours as long as bytes keep coming.
/// Requests that carry a blob up wait for their answer without it (sending may take hours).
/// `--read-timeout` / `MODELCAR_READ_TIMEOUT` change it.
pub const READ_TIMEOUT_SECS: u64 = 60;

/// Longest `Retry-After` honoured from a registry that answers 429 or 503. A registry may ask
/// for days; longer requests are cut to this, so a command never sleeps unboundedly on a
/// server's say-so. `--max-retry-wait` / `MODELCAR_MAX_RETRY_WAIT` change it.
pub const MAX_RETRY_WAIT_SECS: u64 = 60;

/// Attempts after the first for a request that failed temporarily (a dropped connection, a
/// timeout, 429, 5xx). Integrity failures and refusals are never retried.
pub const RETRIES: u32 = 5;

/// First backoff between attempts; doubled after each one.
pub const BACKOFF_MILLIS: u64 = 250;

/// Longest backoff between attempts, whatever the attempt number.
pub const MAX_BACKOFF_SECS: u64 = 30;

/// Bytes of a registry's error answer read to find its error codes and message. Real error
/// bodies are a few hundred bytes; the rest of a longer one is not read.
pub const MAX_ERROR_BODY: u64 = 64 << 10;

/// Longest `WWW-Authenticate` header parsed. Real challenges are a few hundred bytes.
pub const MAX_CHALLENGE: usize = 8 << 10;

/// Parameters kept from one `WWW-Authenticate` challenge (realm, service, scope, error...).
pub const MAX_CHALLENGE_PARAMS: usize = 16;
