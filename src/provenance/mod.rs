//! Provenance: proof of where an image's model came from, made in the same pass that builds it.
//!
//! - [`model_signing`]: OpenSSF model signatures (`/models/model.sig`), signed with an
//!   elliptic-curve key as the `model-signing` reference tool's "key" method does, and checked
//!   against an image's files from its layers.

pub mod model_signing;
