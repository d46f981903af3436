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
// Values

/// Latest `SOURCE_DATE_EPOCH` accepted: 9999-12-31T23:59:59Z. RFC 3339 timestamps have four
/// year digits, and skopeo and umoci cannot parse a `created` beyond them.
pub const MAX_SOURCE_DATE_EPOCH: u64 = 253_402_300_799;

// ---------------------------------------------------------------------------------------------
// Provenance

/// Largest key file (cosign private or public key) read. Real ones are a few hundred bytes.
pub const MAX_KEY_FILE: u64 = 64 << 10;

/// Most memory scrypt may use to open an encrypted key (128 * r * N * p bytes). The key file
/// chooses the parameters; cosign's own (N = 65536, r = 8, p = 1) need 64 MiB.
pub const MAX_SCRYPT_MEMORY: u64 = 256 << 20;

/// Most signatures read from one image's cosign signature manifest when verifying. Each costs a
/// blob fetch; an image signed by more keys than this is not a case worth a thousand requests.
pub const MAX_SIGNATURES: usize = 64;

/// Largest `/models/model.sig` (a model signature: a JSON bundle listing every file with its
/// SHA-256, about 150 bytes a file) read from an image: room for a few hundred thousand files.
pub const MODEL_SIGNATURE_MAX: u64 = 64 << 20;
