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

/// Most images of an index whose manifests `modelcar kserve` fetches from a registry to read
/// their annotations and layer types. Model images carry one to four platforms; a larger index
/// would cost a request per entry for a manifest that only names the image.
pub const MAX_INDEX_IMAGES_READ: usize = 64;
