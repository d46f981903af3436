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

/// Largest JSON document (index, manifest, config, the `index.json` of a layout, an archive or
/// the store, an archive's `manifest.json`) read from any source. Real manifests and configs are
/// kilobytes and an index of a few thousand images stays far below this; parsed, a document
/// costs a few times its size in memory, so this keeps every command within tens of MB. Larger
/// documents are refused before they are read whole.
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

/// Most descriptors one document may list (the entries of an index, the layers of a manifest,
/// the images of an archive's `manifest.json`). A multi-platform index lists tens of manifests,
/// a manifest at most about 127 layers (what container runtimes accept), the store's own index
/// one entry per tag; this leaves room for a store of that many tags while bounding the work of
/// every walk, which visits each entry.
pub const MAX_DESCRIPTORS: usize = 10_000;

/// Longest value of one annotation (of an index, manifest or descriptor) or label (of a
/// config). Kubernetes caps all the annotations of an object at 256 KiB together; values are
/// printed by `inspect` and `verify`, so a longer one is refused rather than shown.
pub const MAX_ANNOTATION: usize = 256 << 10;

// ---------------------------------------------------------------------------------------------
// Walks

/// Most levels of indexes nested inside an index that a walk over an image follows. Images nest
/// at most two or three (an index of platform manifests, perhaps inside an index of a layout);
/// walks recurse once per level, so this keeps them far from the end of the stack whatever the
/// input.
pub const MAX_INDEX_DEPTH: usize = 8;

// ---------------------------------------------------------------------------------------------
// Layers

/// Most entries the layers of one image may hold together (and so one layer alone) for their
/// listings (`verify`, `inspect --files`, the base check), which are held in memory while the
/// image is checked. The largest base images (a distribution with CUDA and Python) hold tens of
/// thousands of entries; an entry costs a few hundred bytes in memory and about 130 in the
/// store's listing cache, so this keeps a listing within tens of MB.
pub const MAX_ENTRIES: usize = 200_000;

/// Most bytes of paths and link targets the listings of one image may hold together, for the
/// same reason: real paths average well under 100 bytes, so only an image made to exhaust
/// memory with long paths meets this before [`MAX_ENTRIES`].
pub const MAX_PATH_BYTES: usize = 16 << 20;

/// Longest path or link target of a layer entry, in bytes: Linux's `PATH_MAX`. A runtime cannot
/// create a longer one, so no valid layer holds it.
pub const MAX_PATH: usize = 4096;

/// Largest PAX extended header or GNU long-name entry of a layer read into memory. They hold a
/// few records of at most `MAX_PATH` bytes each; tar readers that trust the size they declare
/// can be made to allocate gigabytes.
pub const MAX_TAR_EXTENSION: u64 = 64 << 10;

/// Largest zstd window (as a power of two: 32 MiB) a layer is decompressed with. The decoder
/// holds a window of the size a frame declares; zstd's levels up to 19 use at most 8 MiB, and
/// only `--ultra` levels and `--long` mode more, which no container tool writes by default.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 25;

// ModelPack artifacts

/// Most layers a ModelPack artifact may list. Packagers write a layer per file or per group of
/// files, so real models have a few to a few hundred; each layer costs requests (its listing,
/// its bytes), so this bounds the work of reading a hostile artifact.
pub const MAX_MODELPACK_LAYERS: usize = 1024;

/// Bytes of the start of each file of a compressed ModelPack tar layer kept in memory after the
/// pass that lists it, for the format checks (which read a file's first bytes): reading them
/// again would mean decompressing the layer from its start. Beyond this, a check that asks is
/// served by decompressing again.
pub const MODELPACK_HEADS: usize = 32 << 20;

/// Most bytes a compressed layer may expand to, per byte of its compressed size (its
/// descriptor's size, checked against the blob). Listing a compressed layer means decompressing
/// all of it, file contents included, so what a layer expands to is the time it costs to read.
/// Real layers expand 2 to 10 times (text and binaries), tar headers of empty files a few tens;
/// only long runs of one byte go further (gzip reaches about 1000, zstd tens of thousands and
/// more), which is what decompression bombs are made of. A weights file compresses by a few
/// percent at most, so a 100 GB model layer is far from this. `--max-layer-expansion` /
/// `MODELCAR_MAX_LAYER_EXPANSION` change it (0: no limit).
pub const MAX_LAYER_EXPANSION: u64 = 100;

/// Bytes that the layers one store (one command) reads may expand to beyond
/// [`MAX_LAYER_EXPANSION`] times their size, together: room for a layer holding a sparse file of
/// zeros (a `lastlog` of a large UID, an empty preallocated file), which costs a second or two to
/// read, while many bombs together cost no more than one.
pub const LAYER_EXPANSION_ALLOWANCE: u64 = 1 << 30;

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

/// Most images of an index whose manifests `modelcar kserve` fetches from a registry to read
/// their annotations and layer types. Model images carry one to four platforms; a larger index
/// would cost a request per entry for a manifest that only names the image.
pub const MAX_INDEX_IMAGES_READ: usize = 64;

// Network

/// Time to open a connection (TCP and TLS) to a registry or token service. A registry that is
/// up answers in milliseconds; this only bounds how long a dead address is waited for.
/// `--connect-timeout` / `MODELCAR_CONNECT_TIMEOUT` change it.
pub const CONNECT_TIMEOUT_SECS: u64 = 30;

/// Longest silence tolerated on an open connection: no byte of an answer for this long (while
/// waiting for the status line or between two reads of a body) ends the request. It is not a
/// limit on a whole transfer: a 100 GB blob may take hours as long as bytes keep coming.
/// A request that carries a blob up is held to it in both directions: the registry must take
/// some of the body, and after the whole body send some of its answer, within this time.
/// `--read-timeout` / `MODELCAR_READ_TIMEOUT` change it.
pub const READ_TIMEOUT_SECS: u64 = 60;

/// Piece of a blob body handed to a connection at a time. Each piece the connection takes is
/// progress for the read timeout; the connection's own buffers hold a few hundred KB besides, so
/// an upload holds well under a MB in memory.
pub const UPLOAD_PIECE: usize = 256 << 10;

/// Longest `Retry-After` honoured from a registry that answers 429 or 503. A registry may ask
/// for days; longer requests are cut to this, so a command never sleeps unboundedly on a
/// server's say-so. `--max-retry-wait` / `MODELCAR_MAX_RETRY_WAIT` change it.
pub const MAX_RETRY_WAIT_SECS: u64 = 60;

/// Attempts after the first for a request that failed temporarily (a dropped connection, a
/// timeout, 429, 5xx). Integrity failures and refusals are never retried.
pub const RETRIES: u32 = 5;

/// First backoff between attempts; doubled after each one.
pub const BACKOFF_MILLIS: u64 = 250;

/// Longest backoff between attempts, whatever the attempt number.
pub const MAX_BACKOFF_SECS: u64 = 30;

/// Bytes of a registry's error answer read to find its error codes and message. Real error
/// bodies are a few hundred bytes; the rest of a longer one is not read.
pub const MAX_ERROR_BODY: u64 = 64 << 10;

/// Longest wait for a `docker-credential-*` helper's answer. Helpers that read a keychain
/// answer in milliseconds; one that asks the user (a desktop unlock prompt) gets this long before
/// it is stopped and the command fails, naming it, instead of hanging unseen in a pipeline.
/// `MODELCAR_CREDENTIAL_HELPER_TIMEOUT` (seconds) changes it.
pub const CREDENTIAL_HELPER_TIMEOUT_SECS: u64 = 60;

/// Largest answer read from a credential helper. Real ones are a JSON object of a few hundred
/// bytes (a few KB with a long identity token).
pub const MAX_CREDENTIAL_HELPER_ANSWER: u64 = 64 << 10;

/// Longest `WWW-Authenticate` header parsed. Real challenges are a few hundred bytes.
pub const MAX_CHALLENGE: usize = 8 << 10;

/// Parameters kept from one `WWW-Authenticate` challenge (realm, service, scope, error...).
pub const MAX_CHALLENGE_PARAMS: usize = 16;
