//! Provenance: proof of where an image's model came from and what is in it, made in the same
//! pass that builds it, in the formats admission controllers and supply-chain tools read.
//!
//! - [`model_signing`]: OpenSSF model signatures (`/models/model.sig`), signed with an
//!   elliptic-curve key as the `model-signing` reference tool's "key" method does, and checked
//!   against an image's files from its layers;
//! - [`cosign`]: cosign-compatible keys and image signatures (simple-signing payloads stored
//!   under the `sha256-<hex>.sig` tag, where cosign, sigstore's policy-controller and Kyverno
//!   look for them);
//! - [`bom`]: the CycloneDX 1.6 ML-BOM every build records;
//! - [`referrers`]: artifacts that refer to an image (its BOM, its signatures), kept in the store
//!   next to the image and pushed with it as OCI 1.1 referrers.

pub mod bom;
pub mod cosign;
pub mod model_signing;
pub mod referrers;
