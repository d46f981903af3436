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
// Model format checks

/// Bytes read from the start of a model file to tell what it is (pickle opcodes, an XGBoost or
/// LightGBM header, a file's magic). Every format is recognisable from far less.
pub const FORMAT_HEAD: u64 = 4096;

/// Largest small document a format check reads whole: `config.json`, a shard index,
/// `MLmodel`, `config.pbtxt`, `config.properties`. The index of a 400B-parameter model is about
/// 100 KB; anything larger is not one of these files.
pub const FORMAT_SMALL_FILE: u64 = 4 << 20;

/// Largest safetensors JSON header modelcar reads. Real headers are tens of kilobytes (a few
/// hundred bytes per tensor); the safetensors library itself refuses headers over 100 MB
/// ([`SAFETENSORS_HEADER_REFUSED`]). Between the two, the shard is reported as not checked.
pub const SAFETENSORS_HEADER: u64 = 4 << 20;

/// Header size the safetensors library refuses to load (its `MAX_HEADER_SIZE`).
pub const SAFETENSORS_HEADER_REFUSED: u64 = 100_000_000;

/// Safetensors files checked in one model directory; each costs at most one header read, so
/// this bounds what a check of a hostile directory reads.
pub const SAFETENSORS_FILES: usize = 1024;

/// Top-level protobuf fields walked in an ONNX ModelProto before giving up on finding its opset:
/// a ModelProto has about a dozen, each skipped by its length without reading it.
pub const ONNX_FIELDS: usize = 64;
