//! The harness of the integration tests (`tests/build.rs`, `errors.rs`, `store.rs`,
//! `registry.rs` and `faults.rs`), one helper for each job:
//!
//! - [`cmd`]: running modelcar and external programs, and what they did ([`cmd::Outcome`]);
//! - [`env`]: a hermetic environment (HOME, auth file, store, working directory) for runs that
//!   talk to registries;
//! - [`fixtures`]: the repository's example models, the base images of
//!   `tests/fixtures/make-bases.sh`, a large image, and model directories made for a test;
//! - [`files`]: temporary directories, pseudo-random data, digests, modes and a directory walk;
//! - [`images`]: reading images with skopeo, umoci and GNU tar, and the files of an OCI layout;
//! - [`kserve`]: validating KServe manifests against KServe's CRDs, strictly;
//! - [`snapshot`]: store snapshots that prove a failed command changed nothing;
//! - [`registries`], [`token`], [`proxy`] and [`http`]: real registries, a token service and a
//!   fault-injecting proxy;
//! - [`venv`]: Python reference tools from PyPI, in venvs made once.
//!
//! Every test uses a store and a temporary directory of its own (tests run in parallel under
//! `cargo test` and in separate processes under `cargo nextest`); the fixtures are made once and
//! shared read-only. A tool that is not installed fails the test, never skips it.

// Each test binary uses only part of the harness.
#![allow(dead_code)]

pub mod cmd;
pub mod env;
pub mod files;
pub mod fixtures;
pub mod http;
pub mod images;
pub mod kserve;
pub mod proxy;
pub mod registries;
pub mod snapshot;
pub mod token;
pub mod venv;
