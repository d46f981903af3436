//! modelcar packs machine-learning models into OCI images that KServe serves straight from a
//! registry (`storageUri: oci://...`), without a container engine.
//!
//! The crate is organised around a small image vocabulary ([`image`], [`reference`], [`digest`])
//! that every part speaks:
//!
//! - [`model`] scans and checks a model directory; [`formats`] knows what MLServer loads;
//! - [`layer`] turns model files into reproducible tar layers, streaming and hashing once;
//! - [`store`] is the local OCI layout; [`transport`] moves images between it and OCI layouts,
//!   OCI archives and Docker archives;
//! - [`rootfs`] merges an image's layers to see what a runtime would see (for the base check);
//! - [`build`] is the pipeline from base image and model directory to a tagged image;
//! - [`registry`] pulls from and pushes to registries, with their authentication;
//! - [`project`] reads `modelcar.toml`; [`kserve`] writes InferenceService and
//!   LLMInferenceService manifests, with the runtimes KServe ships ([`kserve::runtimes`]);
//! - [`limits`] holds every bound on hostile input; [`text`] escapes outside text for printing.
//!
//! ```no_run
//! use modelcar::{build, layer, progress::Progress, store::Store};
//! # fn main() -> modelcar::error::Result<()> {
//! let store = Store::open(Store::default_path())?;
//! let spec = build::BuildSpec {
//!     reference: "quay.io/me/mlserver-sklearn:v1".parse()?,
//!     models: "models/mlserver/sklearn".into(),
//!     base: "oci:base-layout:busybox".parse()?,
//!     format: Some("sklearn".into()),
//!     uid: 1001, gid: 0, dir_mode: 0o555, file_mode: 0o444, user: "1001".into(),
//!     layers: layer::LayerMode::Split,
//!     layer_threshold: build::DEFAULT_LAYER_THRESHOLD,
//!     max_model_layers: build::DEFAULT_MAX_MODEL_LAYERS,
//!     compression: layer::CompressionChoice::Auto,
//!     platform: None, epoch: 0, base_check: true, threads: 2,
//! };
//! let outcome = build::build(&store, &spec, None, None, &Progress::hidden())?;
//! println!("{}@{}", outcome.reference, outcome.digest);
//! # Ok(()) }
//! ```

pub mod build;
pub mod compress;
pub mod digest;
pub mod error;
pub mod formats;
pub mod image;
pub mod json;
pub mod kserve;
pub mod layer;
pub mod limits;
pub mod model;
pub mod progress;
pub mod project;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;
pub mod text;
pub mod transport;
pub mod verify;
