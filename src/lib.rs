//! modelcar packs machine-learning models into OCI images that KServe serves straight from a
//! registry (`storageUri: oci://...`), without a container engine.
//!
//! The crate is organised around a small image vocabulary ([`image`], [`reference`], [`digest`])
//! that every part speaks:
//!
//! - [`model`] scans and checks a model directory; [`formats`] knows what each KServe runtime loads;
//! - [`layer`] turns model files into reproducible tar layers, streaming and hashing once;
//! - [`store`] is the local OCI layout; [`transport`] moves images between it and OCI layouts,
//!   OCI archives and Docker archives;
//! - [`rootfs`] merges an image's layers to see what a runtime would see (for the base check);
//! - [`build`] is the pipeline from base image and model directory to a tagged image;
//! - [`registry`] pulls from and pushes to registries, with their authentication;
//! - [`project`] reads `modelcar.toml`; [`kserve`] writes InferenceService and
//!   LLMInferenceService manifests, with the runtimes KServe ships ([`kserve::runtimes`]);
//! - [`modelpack`] is the CNCF ModelPack vocabulary (media types, layer roles): it reads
//!   ModelPack artifacts as the model of a build ([`modelpack::source`]) and writes the ModelPack
//!   manifest a build publishes beside the runnable image ([`modelpack::publish`]);
//! - [`provenance`] signs the model files inside the image, signs images for cosign and records
//!   each build's CycloneDX ML-BOM;
//! - [`limits`] holds every bound on hostile input; [`text`] escapes outside text for printing;
//! - [`scratch`] makes temporary files that the next run reclaims if their writer is killed.
//!
//! ```no_run
//! use modelcar::{build, layer, progress::Progress, store::Store};
//! # fn main() -> modelcar::error::Result<()> {
//! let store = Store::open(Store::default_path())?;
//! let spec = build::BuildSpec {
//!     reference: "quay.io/me/mlserver-sklearn:v1".parse()?,
//!     models: "models/mlserver/sklearn".into(),
//!     base: "oci:base-layout:busybox".parse()?,
//!     format: Some("sklearn".into()), custom_format: false,
//!     uid: 1001, gid: 0, dir_mode: 0o555, file_mode: 0o444, user: "1001".into(),
//!     layers: layer::LayerMode::Split,
//!     layer_threshold: build::DEFAULT_LAYER_THRESHOLD,
//!     max_model_layers: build::DEFAULT_MAX_MODEL_LAYERS,
//!     compression: layer::CompressionChoice::Auto,
//!     platform: None, epoch: 0, base_check: true, allow_failing_checks: false, threads: 2,
//!     sign_model: None, model_source: None, modelpack: false,
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
pub mod modelpack;
pub mod progress;
pub mod project;
pub mod provenance;
pub mod readbuf;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod scratch;
pub mod store;
pub mod text;
pub mod transport;
pub mod verify;
