//! Provenance: who made an image and what is in it, in the formats admission controllers and
//! supply-chain tools read.
//!
//! - [`cosign`]: cosign-compatible keys and image signatures (simple-signing payloads stored
//!   under the `sha256-<hex>.sig` tag, where cosign, sigstore's policy-controller and Kyverno
//!   look for them);
//! - [`bom`]: the CycloneDX 1.6 ML-BOM every build records;
//! - [`referrers`]: artifacts that refer to an image (its BOM, its signatures), kept in the store
//!   next to the image and pushed with it as OCI 1.1 referrers.

pub mod bom;
pub mod cosign;
pub mod referrers;
