//! Model layers: the files of a model directory as reproducible tar layers under `/models`.
//!
//! A layer is written in one pass: tar entries go through a SHA-256 of the uncompressed stream
//! (the diff ID), the compressor and a SHA-256 of the compressed stream (the digest) straight into
//! a temporary blob of the store; nothing is held in memory whole and each model byte is read
//! once. Entries carry fixed owner, modes and mtime and no user names or extended attributes, so
//! the bytes depend only on file contents, paths and settings.
//!
//! Large files (at or above a threshold) get a layer each, so an unchanged weights file keeps its
//! digest across versions and registries can receive layers in parallel; the rest share a layer.
//! A cache keyed on each file's path and `stat` fields lets an unchanged rebuild reuse a layer
//! without reading the files again.
//!
//! The writer also takes each file's SHA-256 from the same read that puts the file into the layer
//! (on a thread of its own, so the build stays at the speed of one hash), for the bill of
//! materials and model signing; the layer caches keep those digests with the layer, so a cache
//! hit needs no read either. A cached layer without them is written again. After `touch`, a file
//! is read once and its SHA-256 compared with the one kept, instead of comparing the file with
//! the stored layer (two reads).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::compress::{zstd_encoder, ParGzip};
use crate::digest::{FileFeed, FileHashes, HashingWriter};
use crate::error::{io_err, Error, Result};
use crate::image::Compression;
use crate::model::{EntryKind, ModelEntry, ModelTree};
use crate::readbuf::ReadBuf;
use crate::store::{read_cache, write_cache, BlobWriter, Store};

/// Directory of the model inside the image (and inside each layer tar, without the slash).
pub const MODEL_ROOT: &str = "models";
/// Bumped whenever the bytes written for the same inputs change, to invalidate the cache.
pub(crate) const LAYER_FORMAT_VERSION: u32 = 2;
pub(crate) const IO_BUFFER: usize = 1 << 20;
/// Files at least this large go into uncompressed store blobs by an in-kernel copy.
const KERNEL_COPY_MIN: u64 = 1 << 20;
/// Bytes sampled per layer to decide whether compression pays.
const SAMPLE_BUDGET: usize = 4 << 20;
const SAMPLE_WINDOW: u64 = 128 << 10;
/// Compression levels: the defaults of gzip and zstd.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;
/// Compress only when sampling shows at least this much saving.
const AUTO_MIN_SAVING: f64 = 0.10;

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CompressionChoice {
    None,
    Gzip,
    Zstd,
    /// Compress (gzip) only where a sample of the content shrinks by at least 10%.
    #[default]
    Auto,
}

impl std::str::FromStr for CompressionChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            "auto" => Ok(Self::Auto),
            _ => Err(Error::invalid(format!("compression `{s}` is not known"))
                .with_hint("use one of none, gzip, zstd, auto")),
        }
    }
}

/// How layer bytes are compressed: the choice, and how many threads a compressor may use (the
/// bytes do not depend on the thread count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub choice: CompressionChoice,
    pub threads: usize,
}

impl From<CompressionChoice> for Codec {
    fn from(choice: CompressionChoice) -> Self {
        Codec { choice, threads: 1 }
    }
}

/// How model files are split into layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LayerMode {
    /// Files at or above the threshold get a layer each; the rest share one.
    #[default]
    Split,
    /// One layer for the whole model.
    Single,
}

impl std::str::FromStr for LayerMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "split" => Ok(Self::Split),
            "single" => Ok(Self::Single),
            _ => Err(Error::invalid(format!("layers `{s}` is not known"))
                .with_hint("use split (a layer per large file) or single")),
        }
    }
}

/// Ownership, modes and time of every entry in the model layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntrySettings {
    pub uid: u64,
    pub gid: u64,
    pub dir_mode: u32,
    pub file_mode: u32,
    /// Seconds since the epoch written as every entry's mtime.
    pub mtime: u64,
}

/// One layer to write: which entries of the tree it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// Indices into [`ModelTree::entries`] of the directories written (all ancestors of the
    /// files, and for the shared layer every directory).
    pub dirs: Vec<usize>,
    /// Indices of files and symlinks.
    pub items: Vec<usize>,
}

/// Split the tree into layers.
///
/// With [`LayerMode::Split`], each file of at least `threshold` bytes gets its own layer (at most
/// `max_layers - 1` of them; beyond that large files are grouped in path order) and everything else
/// shares one layer, which also carries every directory so empty directories survive.
pub fn plan_layers(
    tree: &ModelTree,
    mode: LayerMode,
    threshold: u64,
    max_layers: usize,
) -> Vec<LayerPlan> {
    let all_dirs: Vec<usize> = (0..tree.entries.len())
        .filter(|&i| tree.entries[i].kind == EntryKind::Dir)
        .collect();
    let non_dirs = (0..tree.entries.len()).filter(|&i| tree.entries[i].kind != EntryKind::Dir);
    if mode == LayerMode::Single {
        return vec![LayerPlan {
            dirs: all_dirs,
            items: non_dirs.collect(),
        }];
    }
    let (big, small): (Vec<usize>, Vec<usize>) = non_dirs.partition(
        |&i| matches!(tree.entries[i].kind, EntryKind::File { size } if size >= threshold),
    );
    let mut plans = Vec::new();
    if !small.is_empty() || big.is_empty() || !all_dirs.is_empty() {
        plans.push(LayerPlan {
            dirs: all_dirs,
            items: small,
        });
    }
    let slots = max_layers.saturating_sub(plans.len()).max(1);
    let per_layer = big.len().div_ceil(slots).max(1);
    for group in big.chunks(per_layer) {
        plans.push(LayerPlan {
            dirs: ancestors(tree, group),
            items: group.to_vec(),
        });
    }
    plans
}

/// The directories above `items` (indices into the tree), as indices, in tree order.
pub fn ancestors(tree: &ModelTree, items: &[usize]) -> Vec<usize> {
    let mut wanted = BTreeSet::new();
    for &i in items {
        let rel = &tree.entries[i].rel;
        let mut end = 0;
        while let Some(pos) = rel[end..].find('/') {
            wanted.insert(rel[..end + pos].to_string());
            end += pos + 1;
        }
    }
    (0..tree.entries.len())
        .filter(|&i| {
            tree.entries[i].kind == EntryKind::Dir && wanted.contains(&tree.entries[i].rel)
        })
        .collect()
}

/// A model layer in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub compression: Compression,
    /// Model files in the layer (relative paths), for annotations and output.
    pub files: Vec<String>,
    /// Uncompressed bytes of file content.
    pub content_bytes: u64,
    /// Each model file's SHA-256 (hex) by relative path, taken while the layer was written
    /// (`None` only in caches written by earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_digests: Option<BTreeMap<String, String>>,
    /// Whether the layer came from the cache without reading the files.
    #[serde(skip)]
    pub cached: bool,
    /// A layer of the model's source used as it is, and how it reached the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<Adopted>,
}

impl BuiltLayer {
    pub fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.size,
            self.digest
                .parse::<Digest>()
                .expect("digest written by this crate"),
        );
        if self.files.len() == 1 {
            let mut a = std::collections::HashMap::new();
            a.insert(
                "org.opencontainers.image.title".to_string(),
                self.files[0].clone(),
            );
            d.set_annotations(Some(a));
        }
        d
    }
}

/// A layer writer that may take a file's bytes by an in-kernel copy instead of through this
/// process (a store blob, when the layer is not compressed).
pub trait AppendFile: Write {
    /// Append the next `part.len` bytes of `part.file`; `Ok(false)` if this writer cannot, and
    /// the caller copies them through it instead.
    fn append_file(&mut self, _part: FilePart<'_>, _tick: &dyn Fn(u64)) -> io::Result<bool> {
        Ok(false)
    }
}

/// The next `len` bytes of an open model file, its path for messages, and where its bytes go
/// for the file's own digest (under a key), if anywhere.
pub struct FilePart<'a> {
    pub file: &'a mut File,
    pub path: &'a Path,
    pub len: u64,
    pub also: Option<(&'a FileFeed, usize)>,
}

impl AppendFile for BlobWriter {
    fn append_file(&mut self, part: FilePart<'_>, tick: &dyn Fn(u64)) -> io::Result<bool> {
        self.append_file(part.file, part.path, part.len, tick, part.also)?;
        Ok(true)
    }
}

impl<W: Write> AppendFile for crate::digest::ThreadedHashingWriter<W> {}

/// Where the compressed bytes of a layer go: a blob of the store, or an upload to a registry.
pub trait LayerDestination: Sync {
    type Writer: AppendFile;
    /// Whether the destination already holds this blob (a cache hit is used only then).
    fn has(&self, digest: &Digest, size: u64) -> bool;
    /// Start a blob.
    fn begin(&self) -> Result<Self::Writer>;
    /// A blob whose bytes are all written and hashed, not yet in place.
    type Sealed;
    /// Finish writing a blob: its digest and size, computed from the bytes written. Every
    /// reader of the blob's sources is done when this returns; the blob is not yet in place.
    fn seal(&self, writer: Self::Writer) -> Result<(Self::Sealed, Digest, u64)>;
    /// Put a sealed blob in place (a registry's closing PUT; the store's rename).
    fn commit(&self, sealed: Self::Sealed) -> Result<()>;
    /// Finish a blob and put it in place: its digest and size.
    fn finish(&self, writer: Self::Writer) -> Result<(Digest, u64)> {
        let (sealed, digest, size) = self.seal(writer)?;
        self.commit(sealed)?;
        Ok((digest, size))
    }
    /// Put a blob that exists elsewhere, as it is: nothing when the destination holds it, else
    /// its bytes from `open` (`what` names it in messages), checked against `desc`. A registry
    /// destination mounts it from `from`, a repository of the same registry that holds it.
    fn adopt<'r>(
        &self,
        desc: &Descriptor,
        from: Option<&crate::reference::ImageRef>,
        open: &dyn Fn() -> Result<Box<dyn Read + 'r>>,
        what: &str,
    ) -> Result<Adopted> {
        let _ = from;
        if self.has(desc.digest(), desc.size()) {
            return Ok(Adopted::Present);
        }
        copy_blob(self, desc, open, what)?;
        Ok(Adopted::Copied)
    }
}

/// How [`LayerDestination::adopt`] put a blob in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Adopted {
    /// The destination held it.
    Present,
    /// A registry mounted it from another repository: no byte was sent.
    Mounted,
    /// Its bytes were copied.
    Copied,
}

/// Copy a blob's bytes from `open` into `dest`, and check what arrived against `desc`.
pub fn copy_blob<'r, D: LayerDestination + ?Sized>(
    dest: &D,
    desc: &Descriptor,
    open: &dyn Fn() -> Result<Box<dyn Read + 'r>>,
    what: &str,
) -> Result<()> {
    let mut w = dest.begin()?;
    let mut r = open()?.take(desc.size() + 1);
    let mut buf = ReadBuf::new(IO_BUFFER);
    loop {
        let n = r.read(&mut buf).map_err(|e| {
            Error::from_io(e).unwrap_or_else(|e| Error::corrupt(format!("cannot read {what}: {e}")))
        })?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).map_err(|e| {
            Error::from_io(e)
                .unwrap_or_else(|e| Error::corrupt(format!("cannot write {what}: {e}")))
        })?;
    }
    let (digest, size) = dest.finish(w)?;
    if &digest != desc.digest() || size != desc.size() {
        return Err(Error::corrupt(format!(
            "{what} does not match its digest: expected {} ({} bytes), got {digest} ({size} bytes)",
            desc.digest(),
            desc.size()
        )));
    }
    Ok(())
}

impl LayerDestination for Store {
    type Writer = BlobWriter;
    fn has(&self, digest: &Digest, size: u64) -> bool {
        self.has_blob(digest, size)
    }
    fn begin(&self) -> Result<BlobWriter> {
        self.blob_writer()
    }
    type Sealed = crate::store::SealedBlob;
    fn seal(&self, writer: BlobWriter) -> Result<(Self::Sealed, Digest, u64)> {
        let sealed = writer.seal(self)?;
        let (digest, size) = (sealed.digest().clone(), sealed.size());
        Ok((sealed, digest, size))
    }
    fn commit(&self, sealed: Self::Sealed) -> Result<()> {
        sealed.commit(self).map(|_| ())
    }
}

/// Write (or reuse from the cache kept in `store`) one layer into `dest`.
///
/// Two caches, both in `store`, let a rebuild skip writing a layer that `dest` already holds:
/// - keyed on each file's path and `stat` fields: a hit reads nothing;
/// - keyed on the paths and sizes alone (after `touch`, a fresh checkout or a copy of the model
///   elsewhere): each file is read once and hashed, and the layer is reused only if every file
///   has the SHA-256 kept with the layer; otherwise it is written as usual.
pub fn write_layer<D: LayerDestination>(
    store: &Store,
    dest: &D,
    tree: &ModelTree,
    plan: &LayerPlan,
    settings: &EntrySettings,
    codec: Codec,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BuiltLayer> {
    let choice = codec.choice;
    let layers_dir = store.cache_dir().join("layers");
    let stat_file = layers_dir.join(format!(
        "{}.json",
        cache_key(tree, plan, settings, choice, true)
    ));
    let contents_file = layers_dir.join(format!(
        "{}.json",
        cache_key(tree, plan, settings, choice, false)
    ));
    let held = |layer: &BuiltLayer| {
        layer
            .digest
            .parse::<Digest>()
            .is_ok_and(|d| dest.has(&d, layer.size))
            && layer.file_digests.is_some()
    };
    let unasked = |mut layer: BuiltLayer| {
        layer.cached = true;
        layer
    };
    if let Some(hit) = read_cache::<BuiltLayer>(&stat_file).filter(held) {
        progress(hit.content_bytes);
        return Ok(unasked(hit));
    }
    if let Some(candidate) = read_cache::<BuiltLayer>(&contents_file).filter(held) {
        // The same paths, sizes and settings (the key): the same layer if every file still has
        // the SHA-256 kept with it.
        let kept = candidate
            .file_digests
            .as_ref()
            .expect("held layers have them");
        if same_files(tree, plan, kept, progress)? {
            write_cache(&stat_file, &candidate);
            return Ok(unasked(candidate));
        }
        tracing::debug!("layer {} changed; writing it again", candidate.digest);
    }
    let compression = match choice {
        CompressionChoice::None => Compression::None,
        CompressionChoice::Gzip => Compression::Gzip,
        CompressionChoice::Zstd => Compression::Zstd,
        CompressionChoice::Auto => {
            if compression_pays(tree, plan)? {
                Compression::Gzip
            } else {
                Compression::None
            }
        }
    };
    // A destination's own error (a registry's answer) travels through the writers as an
    // `io::Error`; it comes out whole, not as a store failure.
    let store_err = |e: io::Error| {
        Error::from_io(e).unwrap_or_else(|e| Error::Io {
            op: "write a layer into the store at",
            path: store.root().to_path_buf(),
            source: e,
        })
    };
    let mut sink = Sink::new(dest.begin()?, compression, codec.threads)?;
    let files = FileHashes::new();
    let feed = files.feed();
    let written = write_tar(
        &mut sink,
        tree,
        plan,
        settings,
        Some(&feed),
        progress,
        &store_err,
    )?;
    drop(feed);
    let (blob, diff) = sink.finish().map_err(store_err)?;
    let (sealed, digest, size) = dest.seal(blob)?;
    // Every reader of the files is done: the kernel-copy path's hashing thread ended with the
    // sealed blob.
    let file_digests: BTreeMap<String, String> = files
        .finish()
        .map_err(store_err)?
        .into_iter()
        .map(|(i, d)| (tree.entries[i].rel.clone(), d))
        .collect();
    if file_digests.len() != written.files.len() {
        return Err(Error::corrupt(format!(
            "{} of the {} files of a layer were hashed",
            file_digests.len(),
            written.files.len()
        )));
    }
    let diff_id = diff.map(|(d, _)| d).unwrap_or_else(|| digest.clone());
    let layer = BuiltLayer {
        media_type: compression.oci_media_type().to_string(),
        digest: digest.to_string(),
        size,
        diff_id: diff_id.to_string(),
        compression,
        files: written.files,
        content_bytes: written.content_bytes,
        file_digests: Some(file_digests),
        cached: false,
        reused: None,
    };
    // The caches are written before the blob is put in place: a hit counts only once the
    // destination holds the blob, and a build killed just after a registry took the closing PUT
    // (before its answer came back) then finds the layer on its next run instead of sending it
    // again.
    crate::rootfs::remember_listing(store, &digest, &written.listing);
    write_cache(&stat_file, &layer);
    write_cache(&contents_file, &layer);
    dest.commit(sealed)?;
    Ok(layer)
}

/// Write the uncompressed tar stream of a layer, handing each file's bytes to `files` (keyed by
/// the entry's index in the tree) for its own SHA-256. `sink_err` turns a failed write into the
/// error to report.
fn write_tar<W: AppendFile>(
    sink: &mut W,
    tree: &ModelTree,
    plan: &LayerPlan,
    settings: &EntrySettings,
    files: Option<&FileFeed>,
    progress: &(dyn Fn(u64) + Sync),
    sink_err: &dyn Fn(io::Error) -> Error,
) -> Result<Written> {
    let mut buf = ReadBuf::new(IO_BUFFER);
    let mut out = Written::default();
    let put = |sink: &mut W, h: Vec<u8>, out: &mut Written| -> Result<()> {
        sink.write_all(&h).map_err(sink_err)?;
        out.listing.push(listed(&h)?);
        Ok(())
    };
    let dir_header = |path: &str| {
        header(
            &format!("{path}/"),
            tar::EntryType::Directory,
            0,
            settings.dir_mode,
            None,
            settings,
        )
    };
    put(sink, dir_header(MODEL_ROOT)?, &mut out)?;
    let mut order: Vec<usize> = plan.dirs.iter().chain(&plan.items).copied().collect();
    order.sort_by(|&a, &b| tree.entries[a].rel.cmp(&tree.entries[b].rel));
    for i in order {
        let entry = &tree.entries[i];
        let path = format!("{MODEL_ROOT}/{}", entry.rel);
        match &entry.kind {
            EntryKind::Dir => put(sink, dir_header(&path)?, &mut out)?,
            EntryKind::Symlink { target } => {
                let h = header(
                    &path,
                    tar::EntryType::Symlink,
                    0,
                    0o777,
                    Some(target),
                    settings,
                )?;
                put(sink, h, &mut out)?;
            }
            EntryKind::File { size } => {
                let h = header(
                    &path,
                    tar::EntryType::Regular,
                    *size,
                    settings.file_mode,
                    None,
                    settings,
                )?;
                put(sink, h, &mut out)?;
                copy_file(
                    entry,
                    *size,
                    sink,
                    &mut buf,
                    files.map(|f| (f, i)),
                    progress,
                    sink_err,
                )?;
                pad(sink, *size).map_err(sink_err)?;
                out.content_bytes += size;
                out.files.push(entry.rel.clone());
            }
        }
    }
    // End of archive: two zero blocks.
    sink.write_all(&[0u8; 1024]).map_err(sink_err)?;
    Ok(out)
}

/// What [`write_tar`] wrote.
#[derive(Default)]
struct Written {
    /// The model files (relative paths).
    files: Vec<String>,
    /// Their total size.
    content_bytes: u64,
    /// Every entry as a reader of the layer sees it, read back from the header bytes written.
    listing: crate::rootfs::Listing,
}

/// The listing entry of a header written by [`header`], read back from its bytes by the same
/// reader that lists stored layers (the contents it announces are not there, and are not read).
pub(crate) fn listed(h: &[u8]) -> Result<(String, crate::rootfs::Node)> {
    let mut entries = crate::rootfs::read_listing(io::Cursor::new(h))
        .map_err(|e| Error::corrupt(format!("a tar header just written: {e}")))?;
    match (entries.pop(), entries.is_empty()) {
        (Some(entry), true) => Ok(entry),
        _ => Err(Error::corrupt(
            "a tar header just written does not read back as one entry",
        )),
    }
}

/// Whether every file of `plan` still has the SHA-256 kept with its layer (`kept`, by path).
///
/// Each file is read and hashed on this thread: one SHA-256 is all there is to do, and handing
/// buffers to another thread would only add a copy between cores. Layers are checked by as many
/// workers as the build has threads, which keeps every core busy on models of several files.
fn same_files(
    tree: &ModelTree,
    plan: &LayerPlan,
    kept: &BTreeMap<String, String>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<bool> {
    let mut buf = ReadBuf::new(IO_BUFFER);
    let mut checked = 0usize;
    for &i in &plan.items {
        let entry = &tree.entries[i];
        let EntryKind::File { size } = entry.kind else {
            continue;
        };
        let Some(expected) = kept.get(&entry.rel) else {
            return Ok(false);
        };
        checked += 1;
        let mut file =
            File::open(&entry.source).map_err(io_err("open model file", &entry.source))?;
        let mut hash = Sha256::new();
        let mut total = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(io_err("read model file", &entry.source))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n as u64;
            progress(n as u64);
        }
        if total != size || hex::encode(hash.finalize()) != *expected {
            // Changed since the directory was read, or since the layer was written.
            return Ok(false);
        }
    }
    Ok(checked == kept.len())
}

/// Copy one file into the layer, handing its bytes to `files` under its key as well: by an
/// in-kernel copy where the sink takes one (a thread of the sink then reads the file once for
/// both digests), else through this process.
fn copy_file<W: AppendFile>(
    entry: &ModelEntry,
    size: u64,
    sink: &mut W,
    buf: &mut [u8],
    files: Option<(&FileFeed, usize)>,
    progress: &(dyn Fn(u64) + Sync),
    sink_err: &dyn Fn(io::Error) -> Error,
) -> Result<()> {
    let mut file = File::open(&entry.source).map_err(io_err("open model file", &entry.source))?;
    let mut left = size;
    let part = FilePart {
        file: &mut file,
        path: &entry.source,
        len: size,
        also: files,
    };
    let mut kernel = false;
    if size >= KERNEL_COPY_MIN && sink.append_file(part, progress).map_err(sink_err)? {
        left = 0;
        kernel = true;
    }
    while left > 0 {
        // Through a buffer that then goes to the file hashing thread (and comes back).
        let mut piece = files.map(|(f, _)| f.buffer());
        let b: &mut [u8] = match piece.as_mut() {
            Some(p) => p,
            None => &mut *buf,
        };
        let want = b.len().min(left as usize);
        let n = file
            .read(&mut b[..want])
            .map_err(io_err("read model file", &entry.source))?;
        if n == 0 {
            return Err(Error::invalid(format!(
                "model file {} shrank while it was being read (expected {size} bytes)",
                entry.source.display()
            ))
            .with_hint("do not change model files during a build; run the build again"));
        }
        sink.write_all(&b[..n]).map_err(sink_err)?;
        if let (Some((feed, key)), Some(p)) = (files, piece) {
            feed.data(key, p, n).map_err(sink_err)?;
        }
        progress(n as u64);
        left -= n as u64;
    }
    if let (Some((feed, key)), false) = (files, kernel) {
        feed.end(key).map_err(sink_err)?;
    }
    // A file that grew would make the layer differ from what its header says: refuse it.
    if file
        .read(&mut buf[..1])
        .map_err(io_err("read model file", &entry.source))?
        != 0
    {
        return Err(Error::invalid(format!(
            "model file {} grew while it was being read (expected {size} bytes)",
            entry.source.display()
        ))
        .with_hint("do not change model files during a build; run the build again"));
    }
    Ok(())
}

pub(crate) fn pad<W: Write>(sink: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % 512) as usize;
    if rem != 0 {
        sink.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

/// The header block(s) of one tar entry: a PAX extended header when the path, link target or
/// size does not fit ustar, then the ustar header.
pub fn header(
    path: &str,
    kind: tar::EntryType,
    size: u64,
    mode: u32,
    link: Option<&str>,
    s: &EntrySettings,
) -> Result<Vec<u8>> {
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(s.uid);
    h.set_gid(s.gid);
    h.set_mtime(s.mtime);
    // Above 8 GiB the tar crate writes the size in GNU base-256; the PAX record says it again
    // for readers that know only POSIX. Both, because some scanners read only one of them.
    h.set_size(size);
    if size > 0o77777777777 {
        pax.push(("size", size.to_string().into_bytes()));
    }
    if !path.is_ascii() || h.set_path(path).is_err() {
        pax.push(("path", path.as_bytes().to_vec()));
        let short: String = path.chars().filter(char::is_ascii).take(99).collect();
        h.set_path(short)
            .map_err(|e| Error::invalid(format!("cannot write tar path {path}: {e}")))?;
    }
    if let Some(target) = link {
        if target.len() > 100 || !target.is_ascii() || h.set_link_name(target).is_err() {
            pax.push(("linkpath", target.as_bytes().to_vec()));
            // Readers take the PAX record; the ustar field gets the first 100 bytes, as GNU tar
            // writes (tar's setter refuses a path cut mid-component).
            if let Some(u) = h.as_ustar_mut() {
                let n = target.len().min(u.linkname.len());
                u.linkname = [0; 100];
                u.linkname[..n].copy_from_slice(&target.as_bytes()[..n]);
            }
        }
    }
    h.set_cksum();
    let mut out = Vec::with_capacity(1536);
    if !pax.is_empty() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))
            .map_err(|e| Error::invalid(format!("cannot write tar header for {path}: {e}")))?;
        out.extend_from_slice(b.get_ref());
    }
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

/// Where layer bytes go: straight into the blob, or through a diff-ID hash and a compressor.
pub(crate) enum Sink<W: Write> {
    Raw(W),
    Gzip(HashingWriter<ParGzip<W>>),
    Zstd(HashingWriter<zstd::stream::write::Encoder<'static, W>>),
}

impl<W: Write> Sink<W> {
    pub(crate) fn new(blob: W, c: Compression, threads: usize) -> Result<Sink<W>> {
        let failed = |e: io::Error| Error::invalid(format!("cannot start the compressor: {e}"));
        Ok(match c {
            Compression::None => Sink::Raw(blob),
            Compression::Gzip => Sink::Gzip(HashingWriter::new(
                ParGzip::new(blob, GZIP_LEVEL, threads).map_err(failed)?,
            )),
            Compression::Zstd => Sink::Zstd(HashingWriter::new(
                zstd_encoder(blob, ZSTD_LEVEL, threads).map_err(failed)?,
            )),
        })
    }

    /// The blob writer and, for compressed layers, the diff ID and uncompressed size.
    pub(crate) fn finish(self) -> io::Result<(W, Option<(Digest, u64)>)> {
        Ok(match self {
            Sink::Raw(b) => (b, None),
            Sink::Gzip(h) => {
                let (enc, d, n) = h.finish();
                (enc.finish()?, Some((d, n)))
            }
            Sink::Zstd(h) => {
                let (enc, d, n) = h.finish();
                (enc.finish()?, Some((d, n)))
            }
        })
    }
}

impl<W: AppendFile> AppendFile for Sink<W> {
    fn append_file(&mut self, part: FilePart<'_>, tick: &dyn Fn(u64)) -> io::Result<bool> {
        match self {
            Sink::Raw(w) => w.append_file(part, tick),
            Sink::Gzip(_) | Sink::Zstd(_) => Ok(false),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Raw(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_all(buf),
            Sink::Gzip(w) => w.write_all(buf),
            Sink::Zstd(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Raw(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

/// Decide from a bounded sample of the layer's content whether compression saves enough.
///
/// Up to three windows per file (start, middle, end) are read, [`SAMPLE_BUDGET`] bytes in all,
/// and compressed with fast zstd; the result depends only on the content.
fn compression_pays(tree: &ModelTree, plan: &LayerPlan) -> Result<bool> {
    let mut sample = Vec::new();
    for &i in &plan.items {
        let entry = &tree.entries[i];
        let EntryKind::File { size } = entry.kind else {
            continue;
        };
        if sample.len() >= SAMPLE_BUDGET {
            break;
        }
        let mut f = File::open(&entry.source).map_err(io_err("open model file", &entry.source))?;
        let offsets = if size <= 3 * SAMPLE_WINDOW {
            vec![(0, size)]
        } else {
            vec![
                (0, SAMPLE_WINDOW),
                (size / 2 - SAMPLE_WINDOW / 2, SAMPLE_WINDOW),
                (size - SAMPLE_WINDOW, SAMPLE_WINDOW),
            ]
        };
        for (off, len) in offsets {
            let len = len.min((SAMPLE_BUDGET - sample.len().min(SAMPLE_BUDGET)) as u64);
            if len == 0 {
                break;
            }
            f.seek(SeekFrom::Start(off))
                .map_err(io_err("read model file", &entry.source))?;
            let start = sample.len();
            (&mut f)
                .take(len)
                .read_to_end(&mut sample)
                .map_err(io_err("read model file", &entry.source))?;
            debug_assert!(sample.len() >= start);
        }
    }
    sample_compresses(&sample)
}

/// Whether a sample of a layer's content shrinks enough for compression to pay
/// ([`CompressionChoice::Auto`]).
pub(crate) fn sample_compresses(sample: &[u8]) -> Result<bool> {
    if sample.is_empty() {
        return Ok(false);
    }
    let compressed = zstd::bulk::compress(sample, 1)
        .map_err(|e| Error::invalid(format!("zstd failed while sampling: {e}")))?;
    Ok((compressed.len() as f64) <= (1.0 - AUTO_MIN_SAVING) * sample.len() as f64)
}

/// Bytes of each file sampled to decide compression (start of the file), and for a layer.
pub(crate) const SAMPLE_SIZES: (u64, usize) = (SAMPLE_WINDOW, SAMPLE_BUDGET);

#[derive(Serialize)]
struct CacheKeyInput<'a> {
    version: u32,
    settings: &'a EntrySettings,
    choice: CompressionChoice,
    /// Where the model lives; absent from the key of the contents cache.
    root: Option<PathBuf>,
    /// Each entry's path, kind and size, and (in the stat cache) its `stat` fields.
    entries: Vec<(&'a str, &'a EntryKind, Option<&'a crate::model::StatKey>)>,
}

impl Serialize for EntryKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            EntryKind::Dir => s.serialize_str("dir"),
            EntryKind::File { size } => s.serialize_str(&format!("file:{size}")),
            EntryKind::Symlink { target } => s.serialize_str(&format!("link:{target}")),
        }
    }
}

/// The key of a layer in the stat cache (`with_stat`) or in the contents cache.
fn cache_key(
    tree: &ModelTree,
    plan: &LayerPlan,
    settings: &EntrySettings,
    choice: CompressionChoice,
    with_stat: bool,
) -> String {
    let mut idx: Vec<usize> = plan.dirs.iter().chain(&plan.items).copied().collect();
    idx.sort();
    let input = CacheKeyInput {
        version: LAYER_FORMAT_VERSION,
        settings,
        choice,
        root: with_stat.then(|| fs::canonicalize(&tree.root).unwrap_or_else(|_| tree.root.clone())),
        entries: idx
            .iter()
            .map(|&i| {
                let e = &tree.entries[i];
                (e.rel.as_str(), &e.kind, with_stat.then_some(&e.stat))
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&input).expect("cache key serialises");
    hex::encode(Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EntrySettings {
        EntrySettings {
            uid: 1001,
            gid: 0,
            dir_mode: 0o555,
            file_mode: 0o444,
            mtime: 0,
        }
    }

    fn tree_with(files: &[(&str, usize)]) -> (tempfile::TempDir, ModelTree) {
        let d = tempfile::tempdir().unwrap();
        for (name, size) in files {
            let p = d.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, vec![b'x'; *size]).unwrap();
        }
        let t = ModelTree::scan(d.path()).unwrap();
        (d, t)
    }

    #[test]
    fn big_files_get_their_own_layers() {
        let (_d, t) = tree_with(&[("a/big1", 100), ("big2", 200), ("small", 5), ("a/tiny", 1)]);
        let plans = plan_layers(&t, LayerMode::Split, 100, 64);
        assert_eq!(plans.len(), 3);
        let names = |p: &LayerPlan| {
            p.items
                .iter()
                .map(|&i| t.entries[i].rel.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&plans[0]), ["a/tiny", "small"]);
        assert_eq!(names(&plans[1]), ["a/big1"]);
        assert_eq!(t.entries[plans[1].dirs[0]].rel, "a");
        assert_eq!(names(&plans[2]), ["big2"]);
        assert!(plans[2].dirs.is_empty());
        let single = plan_layers(&t, LayerMode::Single, 100, 64);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].items.len(), 4);
    }

    #[test]
    fn the_layer_count_stays_within_the_budget() {
        let files: Vec<(String, usize)> = (0..50).map(|i| (format!("shard-{i:03}"), 10)).collect();
        let refs: Vec<(&str, usize)> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let (_d, t) = tree_with(&refs);
        let plans = plan_layers(&t, LayerMode::Split, 10, 8);
        assert!(plans.len() <= 8, "{}", plans.len());
        let total: usize = plans.iter().map(|p| p.items.len()).sum();
        assert_eq!(total, 50);
    }

    #[test]
    fn long_paths_and_huge_sizes_use_pax_records() {
        // A 9 GiB file and a path no ustar prefix/name split can hold.
        let long = format!("models/{}/weights.bin", "x".repeat(180));
        let h = header(
            &long,
            tar::EntryType::Regular,
            9 << 30,
            0o444,
            None,
            &settings(),
        )
        .unwrap();
        assert_eq!(
            h.len(),
            512 * 3,
            "PAX header, its records, then the entry header"
        );
        let mut a = tar::Archive::new(io::Cursor::new([h.clone(), vec![0u8; 1024]].concat()));
        let mut entries = a.entries().unwrap();
        let e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str().unwrap(), long);
        assert_eq!(e.size(), 9 << 30);
        // Scanners that ignore PAX records (Quay's Clair did) read the ustar size field: it
        // holds the size too, in GNU base-256 (top bit set, big-endian), not 0.
        let ustar = &h[h.len() - 512..];
        let field = &ustar[124..136];
        assert_eq!(field[0], 0x80, "base-256 marker: {field:?}");
        let mut size = 0u64;
        for b in &field[4..] {
            size = size << 8 | u64::from(*b);
        }
        assert_eq!(size, 9 << 30);
        assert!(field[1..4].iter().all(|b| *b == 0));
        let records = String::from_utf8_lossy(&h[512..1024]);
        assert!(
            records.contains(&format!("size={}", 9u64 << 30)),
            "{records}"
        );
        // An ordinary entry needs no PAX header.
        let h = header(
            "models/model.bst",
            tar::EntryType::Regular,
            10,
            0o444,
            None,
            &settings(),
        )
        .unwrap();
        assert_eq!(h.len(), 512);
    }

    #[test]
    fn auto_compression_follows_the_content() {
        let (_d, t) = tree_with(&[("zeros", 1 << 20)]);
        let plan = &plan_layers(&t, LayerMode::Single, 1, 64)[0];
        assert!(compression_pays(&t, plan).unwrap());
        let d = tempfile::tempdir().unwrap();
        let mut state = 0x12345678u64;
        let random: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        fs::write(d.path().join("w"), random).unwrap();
        let t = ModelTree::scan(d.path()).unwrap();
        let plan = &plan_layers(&t, LayerMode::Single, 1, 64)[0];
        assert!(!compression_pays(&t, plan).unwrap());
    }

    #[test]
    fn layers_are_reproducible_and_cached() {
        let (d, t) = tree_with(&[("model.joblib", 3000), ("sub/x", 10)]);
        let sd = tempfile::tempdir().unwrap();
        let store = Store::open(sd.path()).unwrap();
        let plan = &plan_layers(&t, LayerMode::Single, 1, 64)[0];
        let a = write_layer(
            &store,
            &store,
            &t,
            plan,
            &settings(),
            CompressionChoice::Gzip.into(),
            &|_| {},
        )
        .unwrap();
        assert!(!a.cached);
        let b = write_layer(
            &store,
            &store,
            &t,
            plan,
            &settings(),
            CompressionChoice::Gzip.into(),
            &|_| {},
        )
        .unwrap();
        assert!(b.cached);
        assert_eq!(a.digest, b.digest);
        // Same content, new stat fields: read again, same bytes.
        let copy = tempfile::tempdir().unwrap();
        fs::create_dir(copy.path().join("sub")).unwrap();
        fs::copy(
            d.path().join("model.joblib"),
            copy.path().join("model.joblib"),
        )
        .unwrap();
        fs::copy(d.path().join("sub/x"), copy.path().join("sub/x")).unwrap();
        let t2 = ModelTree::scan(copy.path()).unwrap();
        let c = write_layer(
            &store,
            &store,
            &t2,
            &plan_layers(&t2, LayerMode::Single, 1, 64)[0],
            &settings(),
            CompressionChoice::Gzip.into(),
            &|_| {},
        )
        .unwrap();
        assert!(c.cached, "same names, sizes and bytes: the layer is reused");
        assert_eq!(a.digest, c.digest);
        assert_eq!(a.diff_id, c.diff_id);
        // The layer unpacks to the expected entries.
        let blob = store.open_blob(&a.digest.parse().unwrap()).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let got: Vec<(String, u32, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("models/".to_string(), 0o555, 1001, 0),
                ("models/model.joblib".to_string(), 0o444, 1001, 0),
                ("models/sub/".to_string(), 0o555, 1001, 0),
                ("models/sub/x".to_string(), 0o444, 1001, 0),
            ]
        );
    }

    /// Build the single layer of `t` into `store`.
    fn build(store: &Store, t: &ModelTree, choice: CompressionChoice) -> BuiltLayer {
        let plan = &plan_layers(t, LayerMode::Single, 1, 64)[0];
        write_layer(store, store, t, plan, &settings(), choice.into(), &|_| {}).unwrap()
    }

    #[test]
    fn touched_files_are_compared_and_changed_ones_rewritten() {
        for choice in [CompressionChoice::None, CompressionChoice::Gzip] {
            let (d, t) = tree_with(&[("model.bin", 3 << 20), ("config.json", 100)]);
            let sd = tempfile::tempdir().unwrap();
            let store = Store::open(sd.path()).unwrap();
            let first = build(&store, &t, choice);
            assert!(!first.cached);

            // New mtime and ctime, same bytes: reused, nothing written.
            let f = File::options()
                .write(true)
                .open(d.path().join("model.bin"))
                .unwrap();
            f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
                .unwrap();
            let t = ModelTree::scan(d.path()).unwrap();
            let touched = build(&store, &t, choice);
            assert!(touched.cached, "{choice:?}");
            assert_eq!(touched.digest, first.digest);
            // And the stat cache now knows the new stat fields.
            assert!(build(&store, &t, choice).cached);

            // Same size, one byte changed near the end: a new layer.
            let mut bytes = fs::read(d.path().join("model.bin")).unwrap();
            let n = bytes.len();
            bytes[n - 3] ^= 1;
            fs::write(d.path().join("model.bin"), &bytes).unwrap();
            let t = ModelTree::scan(d.path()).unwrap();
            let changed = build(&store, &t, choice);
            assert!(!changed.cached, "{choice:?}");
            assert_ne!(changed.digest, first.digest);
            // The new layer holds the new bytes.
            let mut blob = Vec::new();
            let mut r = store.open_blob(&changed.digest.parse().unwrap()).unwrap();
            r.read_to_end(&mut blob).unwrap();
            let raw = match choice {
                CompressionChoice::None => blob,
                _ => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&blob[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
            };
            assert!(raw.windows(bytes.len()).any(|w| w == &bytes[..]));
        }
    }

    #[test]
    fn file_digests_come_from_the_write_and_stay_with_the_cached_layer() {
        // 2 MiB: large enough for the in-kernel copy of an uncompressed layer; an empty file;
        // a small one written through this process.
        let (d, t) = tree_with(&[
            ("weights.bin", 2 << 20),
            ("more.bin", (1 << 20) + 7),
            ("sub/config.json", 10),
            ("empty", 0),
        ]);
        let expected: BTreeMap<String, String> =
            ["weights.bin", "more.bin", "sub/config.json", "empty"]
                .iter()
                .map(|p| {
                    let bytes = fs::read(d.path().join(p)).unwrap();
                    (p.to_string(), hex::encode(Sha256::digest(&bytes)))
                })
                .collect();
        for mode in [LayerMode::Single, LayerMode::Split] {
            let plans = plan_layers(&t, mode, 1 << 20, 64);
            for choice in [CompressionChoice::None, CompressionChoice::Gzip] {
                let sd = tempfile::tempdir().unwrap();
                let store = Store::open(sd.path()).unwrap();
                let write = |plan: &LayerPlan| {
                    let codec = Codec { choice, threads: 2 };
                    write_layer(&store, &store, &t, plan, &settings(), codec, &|_| {}).unwrap()
                };
                let mut got = BTreeMap::new();
                for plan in &plans {
                    let layer = write(plan);
                    assert!(!layer.cached);
                    let digests = layer.file_digests.clone().unwrap();
                    assert_eq!(
                        digests.keys().collect::<Vec<_>>(),
                        layer.files.iter().collect::<Vec<_>>()
                    );
                    got.extend(digests);
                    // The cache keeps them: a hit reads nothing and still has them.
                    let again = write(plan);
                    assert!(again.cached);
                    assert_eq!(again.file_digests, layer.file_digests);
                }
                assert_eq!(got, expected, "{mode:?} {choice:?}");
            }
        }
    }

    #[test]
    fn a_cached_layer_without_file_digests_is_written_again() {
        let (_d, t) = tree_with(&[("weights.bin", 2 << 20)]);
        let sd = tempfile::tempdir().unwrap();
        let store = Store::open(sd.path()).unwrap();
        let first = build(&store, &t, CompressionChoice::None);
        // What an earlier version kept: the same layer, no digests.
        for f in fs::read_dir(store.cache_dir().join("layers")).unwrap() {
            let p = f.unwrap().path();
            let mut l: BuiltLayer = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            l.file_digests = None;
            fs::write(&p, serde_json::to_vec(&l).unwrap()).unwrap();
        }
        let again = build(&store, &t, CompressionChoice::None);
        assert!(!again.cached);
        assert_eq!(again.digest, first.digest);
        assert_eq!(again.file_digests, first.file_digests);
    }

    #[test]
    fn the_listing_kept_for_a_layer_is_what_a_reader_finds_in_it() {
        let long = format!("{}/weights.bin", "deep".repeat(40));
        let (d, _) = tree_with(&[(&long, 2 << 20), ("config.json", 10)]);
        std::os::unix::fs::symlink(&long, d.path().join("link-with-a-long-target")).unwrap();
        let t = ModelTree::scan(d.path()).unwrap();
        for choice in [CompressionChoice::None, CompressionChoice::Gzip] {
            let sd = tempfile::tempdir().unwrap();
            let store = Store::open(sd.path()).unwrap();
            let layer = build(&store, &t, choice);
            let desc = layer.descriptor();
            let kept = crate::rootfs::layer_listing(&store, &desc).unwrap();
            let read =
                crate::rootfs::read_listing(crate::rootfs::open_layer(&store, &desc).unwrap())
                    .unwrap();
            assert_eq!(kept, read, "{choice:?}");
            assert!(kept.iter().any(|(p, _)| p == &format!("models/{long}")));
            assert_eq!(
                kept.len(),
                5,
                "models/, the long directory, two files, the link"
            );
            assert!(kept
                .iter()
                .any(|(p, n)| p == "models/link-with-a-long-target"
                    && *n
                        == crate::rootfs::Node::Symlink {
                            target: long.clone()
                        }));
        }
    }
}
