//! Registries: pull images into the store and push them out, with real authentication.
//!
//! [`Client`] speaks the OCI distribution API over HTTPS (HTTP only for loopback registries and
//! those marked `tls-verify = false`), answers `WWW-Authenticate` challenges (Basic, and Bearer
//! tokens cached per registry and scope), bounds every wait (connect and idle read timeouts, a
//! cap on `Retry-After`), and retries with backoff only what fails temporarily (5xx, 429,
//! timeouts, dropped connections), never an integrity failure or a refusal. [`pull`] and [`push`] move images between a registry
//! and the local [`Store`](crate::store::Store), verifying every byte against its digest.

pub mod artifacts;
pub mod auth;
mod client;
pub mod pull;
pub mod push;
mod upload;
pub use upload::Piece;

pub use client::{
    network_error, unexpected, Client, Options, PreparedUpload, Scope, Timeouts, Transfer,
    UploadBody,
};
