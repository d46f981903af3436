//! The local image store: an OCI image layout on disk.
//!
//! The store is a plain [OCI image layout], so `skopeo` and `umoci` read it as `oci:PATH:REF`.
//! Each image is an entry of `index.json` whose `org.opencontainers.image.ref.name` annotation
//! holds its full reference (`quay.io/org/repo:tag`). Private state lives under `.modelcar/`:
//! temporary files, the layer cache and two lock files.
//!
//! Writes are atomic. A blob is written to a temporary file, checked against its digest and
//! renamed into `blobs/sha256/`; `index.json` is rewritten to a temporary file and renamed over
//! the old one while holding an exclusive lock. A process killed at any moment leaves at most
//! stray temporary files, and never a name pointing at missing or partial content. Temporary
//! files are locked by their writer ([`crate::scratch`]), so the next [`Store::open`] of any
//! process removes those of writers that are gone and never one still being written. Every open
//! [`Store`] holds a shared lock for its lifetime; garbage collection takes it exclusively, so it
//! never deletes the blobs of a build still running.
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType};

use crate::digest::{self, ThreadedHashingWriter};
use crate::error::{io_err, Error, Result};
use crate::json;
use crate::scratch::{self, Reclaimed};

/// Annotation holding an image's reference in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Names a store holds, also while another process is creating it.
const OWN_NAMES: [&str; 4] = [".modelcar", "blobs", "oci-layout", "index.json"];
/// Blobs up to this size are synced to disk before they are moved into place.
const SYNC_MAX: u64 = 1 << 20;
use crate::limits::MAX_DESCRIPTORS;
/// Largest image document (manifest, index, config) read into memory.
pub use crate::limits::MAX_DOCUMENT;

/// An open OCI layout used as the local store.
pub struct Store {
    root: PathBuf,
    lock: File,
    /// Temporary files of killed processes removed when the store was opened.
    reclaimed: Reclaimed,
    /// How far the layers read through this store may expand (see [`Store::expansion`]).
    expansion: std::sync::Arc<Expansion>,
}

/// How far compressed layers read through a store may expand when decompressed: each up to
/// `ratio` times its compressed size, and all of them together by `allowance` bytes more.
#[derive(Debug)]
pub struct Expansion {
    /// Bytes per compressed byte; 0 for no limit.
    pub ratio: u64,
    /// Bytes still allowed beyond `ratio`, for all layers together.
    pub allowance: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Where the store lives: `MODELCAR_STORE`, else `$XDG_DATA_HOME/modelcar/store`, else
    /// `~/.local/share/modelcar/store`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("MODELCAR_STORE").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("modelcar").join("store")
    }

    /// Open the layout at `root`, creating it when absent, and take the shared lock.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        if root.exists() && !root.join(LAYOUT_FILE).exists() {
            // Only what a store being created by another process may already hold is allowed.
            let foreign = fs::read_dir(&root)
                .map_err(io_err("read the store directory", &root))?
                .flatten()
                .any(|e| !OWN_NAMES.contains(&e.file_name().to_string_lossy().as_ref()));
            if foreign {
                return Err(Error::invalid(format!(
                    "{} is not empty and is not an OCI image layout",
                    root.display()
                ))
                .with_hint("point MODELCAR_STORE (or --store) at an empty or new directory"));
            }
        }
        let private = root.join(".modelcar");
        for dir in [
            root.join("blobs/sha256"),
            private.join("tmp"),
            private.join("cache"),
        ] {
            fs::create_dir_all(&dir).map_err(io_err("create the store directory", &dir))?;
        }
        let lock_path = private.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open the store lock", &lock_path))?;
        let mut store = Store {
            root,
            lock,
            reclaimed: Reclaimed::default(),
            expansion: std::sync::Arc::new(Expansion {
                ratio: crate::limits::MAX_LAYER_EXPANSION,
                allowance: crate::limits::LAYER_EXPANSION_ALLOWANCE.into(),
            }),
        };
        if !store.index_path().exists() {
            // Creating: one process at a time writes the layout files.
            store
                .lock
                .lock()
                .map_err(io_err("lock the store", &lock_path))?;
            if !store.root.join(LAYOUT_FILE).exists() {
                store.write_atomic(&store.root.join(LAYOUT_FILE), LAYOUT_CONTENT)?;
            }
            if !store.index_path().exists() {
                store.write_index(&[])?;
            }
        }
        store
            .lock
            .lock_shared()
            .map_err(io_err("lock the store", &lock_path))?;
        store.reclaimed = store.reclaim_temporary_files();
        if store.reclaimed.files > 0 {
            tracing::info!(
                "removed {} temporary files ({} bytes) left in {} by commands that were killed",
                store.reclaimed.files,
                store.reclaimed.bytes,
                store.root.display()
            );
        }
        Ok(store)
    }

    /// Temporary files of killed processes that opening this store removed.
    pub fn reclaimed(&self) -> Reclaimed {
        self.reclaimed
    }

    /// Remove the temporary files whose writer is gone: everything of the kind in `tmp`, and
    /// the cache's own temporary files.
    fn reclaim_temporary_files(&self) -> Reclaimed {
        let mut done = scratch::reclaim(&self.tmp_dir(), |_| true);
        if let Ok(dirs) = fs::read_dir(self.cache_dir()) {
            for d in dirs.flatten() {
                done.add(scratch::reclaim(&d.path(), scratch::is_hidden_temp));
            }
        }
        done
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory for this crate's caches inside the store.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(".modelcar/cache")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".modelcar/tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Path of a blob, whether or not it exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// Whether the blob is present with the expected size.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Open a blob for streaming.
    /// How far compressed layers read through this store may expand
    /// ([`crate::limits::MAX_LAYER_EXPANSION`] times their size by default).
    pub fn expansion(&self) -> &std::sync::Arc<Expansion> {
        &self.expansion
    }

    /// Let each compressed layer read through this store expand to `ratio` times its size
    /// (0: without limit), besides the shared allowance.
    pub fn set_max_layer_expansion(&mut self, ratio: u64) {
        self.expansion = std::sync::Arc::new(Expansion {
            ratio,
            allowance: crate::limits::LAYER_EXPANSION_ALLOWANCE.into(),
        });
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::corrupt(format!(
                    "blob {digest} is missing from the store at {}",
                    self.root.display()
                ))
            } else {
                io_err("open blob", &path)(e)
            }
        })
    }

    /// Read a small document blob, checking its size and digest.
    pub fn read_document(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        crate::image::check_document_size(
            desc.size(),
            &format!("document {} in the store", desc.digest()),
        )?;
        let mut bytes = Vec::with_capacity(desc.size() as usize);
        self.open_blob(desc.digest())?
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("read blob", self.blob_path(desc.digest())))?;
        let actual = digest::sha256_of(&bytes);
        if &actual != desc.digest() || bytes.len() as u64 != desc.size() {
            return Err(Error::corrupt(format!(
                "blob {} in the store does not match its digest or size (found {actual}, {} bytes)",
                desc.digest(),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Start writing a blob. Nothing is visible until [`BlobWriter::commit`].
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.tmp_dir();
        let file = scratch::create(&dir, "blob-", "")
            .map_err(io_err("create a temporary blob in", &dir))?;
        Ok(BlobWriter {
            inner: ThreadedHashingWriter::new(file),
        })
    }

    /// Store bytes as a blob and return their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = digest::sha256_of(bytes);
        if self.has_blob(&digest, bytes.len() as u64) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(io_err("write a blob in", self.tmp_dir()))?;
        w.commit(self, Some((&digest, bytes.len() as u64)))?;
        Ok(digest)
    }

    /// Store a document and return its descriptor.
    pub fn put_document(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
        let digest = self.put_bytes(bytes)?;
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    }

    /// The entries of `index.json`.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        let path = self.index_path();
        let bytes = read_document_file(&path)?;
        let index = crate::image::parse_index(&bytes, &path.display().to_string())?;
        Ok(index.manifests().clone())
    }

    /// Find the entry tagged `reference`.
    pub fn lookup(&self, reference: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|d| ref_name(d) == Some(reference)))
    }

    /// Point `reference` at `target`, replacing any previous entry of that name.
    pub fn tag(&self, reference: &str, target: &Descriptor) -> Result<()> {
        let mut entry = target.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), reference.to_string());
        entry.set_annotations(Some(annotations));
        self.update_index(|entries| {
            entries.retain(|d| ref_name(d) != Some(reference));
            entries.push(entry);
            entries.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        })
    }

    /// Add an untagged entry (an artifact that refers to an image, such as its bill of
    /// materials), unless the index already has it.
    pub fn add_untagged(&self, target: &Descriptor) -> Result<()> {
        self.update_index(|entries| {
            if !entries
                .iter()
                .any(|d| d.digest() == target.digest() && ref_name(d).is_none())
            {
                entries.push(target.clone());
            }
        })
    }

    /// Add an untagged entry in place of the untagged entries `replaced` (digests), in one
    /// update of the index: a newer artifact for the same image supersedes the older ones.
    pub fn replace_untagged(&self, replaced: &[String], target: &Descriptor) -> Result<()> {
        self.update_index(|entries| {
            entries.retain(|d| {
                ref_name(d).is_some()
                    || d.digest() == target.digest()
                    || !replaced.iter().any(|r| r == d.digest().as_ref())
            });
            if !entries
                .iter()
                .any(|d| d.digest() == target.digest() && ref_name(d).is_none())
            {
                entries.push(target.clone());
            }
        })
    }

    /// Remove the entries named `references`; returns the names that were present.
    pub fn untag(&self, references: &[String]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        self.update_index(|entries| {
            entries.retain(|d| match ref_name(d) {
                Some(name) if references.iter().any(|r| r == name) => {
                    removed.push(name.to_string());
                    false
                }
                _ => true,
            })
        })?;
        Ok(removed)
    }

    fn update_index(&self, change: impl FnOnce(&mut Vec<Descriptor>)) -> Result<()> {
        let lock_path = self.root.join(".modelcar/index.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open the index lock", &lock_path))?;
        lock.lock().map_err(io_err("lock", &lock_path))?;
        let mut entries = self.entries()?;
        let before = entries.len();
        change(&mut entries);
        let bytes = index_bytes(&entries);
        // An index beyond the document limits could not be read back: the store would be
        // unusable, `clean` included.
        if entries.len() > before
            && (entries.len() > MAX_DESCRIPTORS || bytes.len() as u64 > MAX_DOCUMENT)
        {
            return Err(Error::limit(format!(
                "the store at {} would list {} images in {} bytes, beyond the {MAX_DESCRIPTORS} \
                 images or {MAX_DOCUMENT} bytes its index may hold",
                self.root.display(),
                entries.len(),
                bytes.len()
            ))
            .with_hint("remove images you no longer need with modelcar clean"));
        }
        self.write_atomic(&self.index_path(), &bytes)
    }

    fn write_index(&self, entries: &[Descriptor]) -> Result<()> {
        self.write_atomic(&self.index_path(), &index_bytes(entries))
    }

    /// Write a small file atomically: temporary file, fsync, rename, fsync of the directory.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = self.tmp_dir();
        let mut tmp = scratch::create(&dir, "doc-", "")
            .map_err(io_err("create a temporary file in", &dir))?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("sync", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| io_err("replace", path)(e.error))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")));
        Ok(())
    }

    /// Delete every blob no tagged image reaches, and the temporary files of killed commands.
    ///
    /// Waits for running builds (which hold the shared lock) to finish.
    pub fn gc(&self) -> Result<GcReport> {
        let lock_path = self.root.join(".modelcar/lock");
        self.lock
            .lock()
            .map_err(io_err("lock the store exclusively", &lock_path))?;
        let result = self.gc_locked();
        // Back to shared: this handle stays usable.
        let _ = self.lock.lock_shared();
        result
    }

    fn gc_locked(&self) -> Result<GcReport> {
        let mut live = BTreeSet::new();
        let entries = self.entries()?;
        for entry in entries.iter().filter(|e| ref_name(e).is_some()) {
            self.mark(entry, &mut live)?;
        }
        // An untagged artifact that refers to an image (its bill of materials) lives as long as
        // the image; other untagged entries stay.
        let mut orphans = BTreeSet::new();
        for entry in entries.iter().filter(|e| ref_name(e).is_none()) {
            match self.subject_of(entry) {
                Some(subject) if !live.contains(&subject) => {
                    orphans.insert(entry.digest().to_string());
                }
                _ => self.mark(entry, &mut live)?,
            }
        }
        if !orphans.is_empty() {
            self.update_index(|entries| {
                entries
                    .retain(|d| ref_name(d).is_some() || !orphans.contains(&d.digest().to_string()))
            })?;
        }
        let mut report = GcReport::default();
        let blobs = self.root.join("blobs/sha256");
        for item in fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
            let item = item.map_err(io_err("list", &blobs))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                let len = item.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(item.path()).map_err(io_err("remove", item.path()))?;
                report.blobs += 1;
                report.bytes += len;
            }
        }
        let mut temporary = self.reclaimed;
        temporary.add(self.reclaim_temporary_files());
        report.temporary_files = temporary.files;
        report.temporary_bytes = temporary.bytes;
        Ok(report)
    }

    /// The hex digest of the `subject` of a manifest entry, if it has one.
    fn subject_of(&self, entry: &Descriptor) -> Option<String> {
        if crate::image::Document::classify(entry.media_type())
            != crate::image::DocumentKind::Manifest
        {
            return None;
        }
        let manifest = crate::image::read_manifest(self, entry).ok()?;
        Some(manifest.subject().as_ref()?.digest().digest().to_string())
    }

    /// Add `desc` and everything it references to `live` (hex digests).
    fn mark(&self, desc: &Descriptor, live: &mut BTreeSet<String>) -> Result<()> {
        let name = format!("image {} in the store", desc.digest());
        crate::image::walk(desc, &name, &mut Mark { store: self, live })
    }
}

/// The walk of [`Store::mark`].
struct Mark<'a> {
    store: &'a Store,
    live: &'a mut BTreeSet<String>,
}

impl crate::image::Walker for Mark<'_> {
    fn enter(&mut self, desc: &Descriptor, _depth: usize) -> Result<Vec<Descriptor>> {
        use crate::image::{Document, DocumentKind};
        if !self.live.insert(desc.digest().digest().to_string()) {
            return Ok(Vec::new());
        }
        match Document::classify(desc.media_type()) {
            DocumentKind::Index => crate::image::present_children(self.store, desc),
            DocumentKind::Manifest => {
                let manifest = crate::image::read_manifest(self.store, desc)?;
                self.live
                    .insert(manifest.config().digest().digest().to_string());
                for layer in manifest.layers() {
                    self.live.insert(layer.digest().digest().to_string());
                }
                Ok(Vec::new())
            }
            DocumentKind::Other => Ok(Vec::new()),
        }
    }
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct GcReport {
    /// Blobs no image reaches.
    pub blobs: u64,
    /// Their total size.
    pub bytes: u64,
    /// Temporary files of killed commands, counting those removed when the store was opened.
    pub temporary_files: u64,
    /// Their total size.
    pub temporary_bytes: u64,
}

/// A JSON entry of one of the store's caches, if it is there and readable.
pub fn read_cache<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// Write a JSON entry of one of the store's caches, atomically. Best effort: a cache only saves
/// time, so failing to write it must not fail what was being done.
pub fn write_cache<T: serde::Serialize>(path: &Path, value: &T) {
    let Some(dir) = path.parent() else { return };
    if fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(bytes) = serde_json::to_vec(value) else {
        return;
    };
    if let Ok(mut tmp) = scratch::create(dir, ".", scratch::SUFFIX) {
        if tmp.write_all(&bytes).is_ok() {
            let _ = tmp.persist(path);
        }
    }
}

/// The bytes of an `index.json` listing `entries`.
fn index_bytes(entries: &[Descriptor]) -> Vec<u8> {
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(entries.to_vec());
    json::canonical(&index)
}

/// Read a document file of a layout (its `index.json`), refusing one beyond
/// [`MAX_DOCUMENT`] before it is read.
pub fn read_document_file(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(io_err("read", path))?;
    let what = path.display().to_string();
    let len = file.metadata().map_err(io_err("read", path))?.len();
    crate::image::check_document_size(len, &what)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    crate::image::check_document_size(bytes.len() as u64, &what)?;
    Ok(bytes)
}

/// The `ref.name` annotation of an index entry.
pub fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fn sync_dir(dir: &Path) {
    // Best effort: some filesystems refuse fsync on directories.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A blob being written; hashed as it goes, invisible until committed.
pub struct BlobWriter {
    inner: ThreadedHashingWriter<tempfile::NamedTempFile>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.written()
    }

    /// Finish the blob: check it against `expected` when given, sync it and move it into
    /// place. Returns its digest and size. On any error the temporary file is removed.
    pub fn commit(self, store: &Store, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let sealed = self.seal(store)?;
        if let Some((want, want_size)) = expected {
            if want != &sealed.digest || want_size != sealed.size {
                return Err(Error::corrupt(format!(
                    "content does not match its descriptor: expected {want} ({want_size} bytes), got {} ({} bytes)",
                    sealed.digest, sealed.size
                )));
            }
        }
        sealed.commit(store)
    }

    /// Finish writing and hashing, and check that every file appended by range kept still
    /// meanwhile; the blob is not in the store until [`SealedBlob::commit`].
    pub fn seal(self, store: &Store) -> Result<SealedBlob> {
        let (tmp, digest, size) = self
            .inner
            .finish()
            .map_err(io_err("write a blob in", store.tmp_dir()))?;
        Ok(SealedBlob { tmp, digest, size })
    }

    /// Append the next `len` bytes of `src` by an in-kernel copy; see
    /// [`ThreadedHashingWriter::append_file`].
    pub fn append_file(
        &mut self,
        src: &mut File,
        path: &Path,
        len: u64,
        tick: &dyn Fn(u64),
        also: Option<(&crate::digest::FileFeed, usize)>,
    ) -> io::Result<()> {
        self.inner.append_file(src, path, len, tick, also)
    }
}

/// A blob whose bytes are all written and hashed, not yet in the store (dropped, it is removed).
pub struct SealedBlob {
    tmp: tempfile::NamedTempFile,
    digest: Digest,
    size: u64,
}

impl SealedBlob {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sync the blob and move it into place; its digest and size.
    pub fn commit(self, store: &Store) -> Result<(Digest, u64)> {
        let SealedBlob { tmp, digest, size } = self;
        let target = store.blob_path(&digest);
        if store.has_blob(&digest, size) {
            return Ok((digest, size));
        }
        // Documents are synced before they become visible. Layers are not: a killed process
        // cannot leave a partial blob behind (the rename is atomic), and syncing gigabytes would
        // make the build as slow as the disk instead of as fast as the page cache.
        if size <= SYNC_MAX {
            tmp.as_file()
                .sync_data()
                .map_err(io_err("sync", tmp.path()))?;
        }
        tmp.persist(&target)
            .map_err(|e| io_err("move a blob into", &target)(e.error))?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_is_an_oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        assert!(store.root().join("oci-layout").is_file());
        assert!(store.entries().unwrap().is_empty());
    }

    #[test]
    fn a_blob_with_the_wrong_digest_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"hello").unwrap();
        let wrong = digest::sha256_of(b"other");
        assert!(w.commit(&store, Some((&wrong, 5))).is_err());
        assert!(!store.has_blob(&wrong, 5));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn tagging_replaces_the_previous_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store
            .put_document(MediaType::ImageManifest, b"{\"a\":1}")
            .unwrap();
        let b = store
            .put_document(MediaType::ImageManifest, b"{\"b\":1}")
            .unwrap();
        store.tag("x/y:1", &a).unwrap();
        store.tag("x/y:1", &b).unwrap();
        let entries = store.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].digest(), b.digest());
    }

    #[test]
    fn garbage_collection_waits_for_open_stores() {
        let dir = tempfile::tempdir().unwrap();
        let builder = Store::open(dir.path()).unwrap();
        let orphan = builder
            .put_bytes(b"written by a build still running")
            .unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let path = dir.path().to_path_buf();
        let cleaner = std::thread::spawn(move || {
            let store = Store::open(&path).unwrap();
            let report = store.gc().unwrap();
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            report
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "gc ran while a store was open"
        );
        assert!(builder.has_blob(&orphan, 32));
        drop(builder);
        let report = cleaner.join().unwrap();
        assert_eq!(report.blobs, 1);
        assert!(!dir
            .path()
            .join("blobs/sha256")
            .join(orphan.digest())
            .exists());
    }

    #[test]
    fn tagging_beyond_what_the_index_may_hold_is_refused_and_the_store_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store
            .put_document(MediaType::ImageManifest, b"{\"a\":1}")
            .unwrap();
        let mut full: Vec<Descriptor> = Vec::new();
        for i in 0..MAX_DESCRIPTORS {
            let mut e = d.clone();
            e.set_annotations(Some([(REF_NAME.to_string(), format!("x/y:{i}"))].into()));
            full.push(e);
        }
        store.write_index(&full).unwrap();
        let err = store.tag("x/y:one-more", &d).unwrap_err();
        assert!(matches!(err, Error::Limit { .. }), "{err}");
        assert_eq!(store.entries().unwrap().len(), MAX_DESCRIPTORS);
        // Removing still works.
        store.untag(&["x/y:0".to_string()]).unwrap();
        store.tag("x/y:one-more", &d).unwrap();
    }

    #[test]
    fn opening_the_store_removes_temporary_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut live = store.blob_writer().unwrap();
        live.write_all(b"still being written").unwrap();
        // A killed writer's file: on disk, its lock gone with its process.
        let dead = scratch::create(&store.tmp_dir(), "blob-", "").unwrap();
        fs::write(dead.path(), b"12345678").unwrap();
        let (file, dead_path) = dead.keep().unwrap();
        drop(file);
        // And one of a cache entry being written.
        let layers = store.cache_dir().join("layers");
        fs::create_dir_all(&layers).unwrap();
        let (file, dead_entry) = scratch::create(&layers, ".", scratch::SUFFIX)
            .unwrap()
            .keep()
            .unwrap();
        drop(file);
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.reclaimed(), Reclaimed { files: 2, bytes: 8 });
        assert!(!dead_path.exists());
        assert!(!dead_entry.exists());
        let (digest, _) = live.commit(&store, None).unwrap();
        assert!(store.has_blob(&digest, 19));
        drop(store);
        // `clean` reports what opening the store removed too.
        assert_eq!(again.gc().unwrap().temporary_files, 2);
    }

    #[test]
    fn a_non_empty_foreign_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("something"), b"x").unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not an OCI image layout"), "{err}");
    }
}
