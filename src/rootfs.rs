//! The merged filesystem of an image's layers, as a container runtime would see it.
//!
//! Each layer's listing (paths and metadata, no contents) is kept in the store's cache per layer
//! digest, so an image is read once, however many platforms or checks look at it; a layer the
//! build writes is listed from the very header bytes it wrote.
//!
//! Layers are applied in order with OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`); symlinks (also
//! of directories, as in usr-merged bases where `/bin` points to `usr/bin`) and hard links are
//! followed when a path is resolved. Only metadata is kept, never file contents: in uncompressed
//! layers the contents are skipped with seeks, so listing a layer of a 100 GB weights file reads
//! a few blocks; compressed layers are read in a single streaming pass.
//!
//! Every tar stream read from outside (layers, and OCI and Docker archives) goes through
//! [`TarReader`], which holds nothing in memory because a header says so: the limits of
//! [`crate::limits`] (entries, path lengths, extension headers) bound what it keeps.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use oci_spec::image::Descriptor;

use crate::error::{Error, Result};
use crate::image::{layer_compression, Compression};
use crate::limits::{
    MAX_ENTRIES, MAX_PATH, MAX_PATH_BYTES, MAX_TAR_EXTENSION, MAX_ZSTD_WINDOW_LOG,
};
use crate::store::Store;

/// Metadata of one path in the merged filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Node {
    Dir {
        mode: u32,
        uid: u64,
        gid: u64,
    },
    File {
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
    },
    Symlink {
        target: String,
    },
    /// A hard link to another path of the image.
    Hardlink {
        target: String,
    },
    Other,
}

/// Paths (relative, without a leading `/`) and their metadata.
#[derive(Debug, Default, Clone)]
pub struct RootFs {
    pub entries: BTreeMap<String, Node>,
    /// For each path, the index of the layer that last wrote it.
    pub origin: BTreeMap<String, usize>,
    layers_applied: usize,
}

/// Open a layer blob as an uncompressed tar stream that skips file contents cheaply: by seeking
/// in an uncompressed blob, by decompressing and discarding in a compressed one.
///
/// A compressed layer is cut off, with an [`Error::Limit`] (wrapped in the `io::Error` of the
/// read), when it expands beyond what the store allows ([`Store::expansion`]): its reading time
/// stays in proportion to its size.
pub fn open_layer(store: &Store, desc: &Descriptor) -> Result<Skipping> {
    let compression = layer_compression(desc.media_type())?;
    let file = store.open_blob(desc.digest())?;
    let bounded = |r: Box<dyn Read>| Expanding::new(r, desc, store.expansion());
    Ok(match compression {
        Compression::None => Skipping::file(file),
        Compression::Gzip => Skipping::stream(Box::new(bounded(Box::new(
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)),
        )))),
        Compression::Zstd => {
            let bad = |e: io::Error| Error::corrupt(format!("layer {}: {e}", desc.digest()));
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, file))
                    .map_err(bad)?;
            // The decoder holds the window a frame declares.
            decoder.window_log_max(MAX_ZSTD_WINDOW_LOG).map_err(bad)?;
            Skipping::stream(Box::new(bounded(Box::new(decoder))))
        }
    })
}

/// The error of reading layer `digest`: the limit a read met (a layer expanding too far), found
/// however deep a tar reader wrapped it, or else the read error as corrupt content.
pub fn layer_read_error(digest: &impl std::fmt::Display, e: io::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        let inner = c.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
        if let Some(Error::Limit { what, hint }) = inner.and_then(|i| i.downcast_ref::<Error>()) {
            return Error::Limit {
                what: what.clone(),
                hint: hint.clone(),
            };
        }
        cause = match inner {
            Some(i) => Some(i as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    Error::corrupt(format!("layer {digest}: {e}"))
}

/// The decompressed stream `inner` of the compressed layer `desc`, cut off with an
/// [`Error::Limit`] (inside the `io::Error` of the read) when it expands beyond `expansion`
/// allows: for every reader of decompressed layers, wherever they come from.
pub fn bound_expansion<'r>(
    inner: Box<dyn Read + 'r>,
    desc: &Descriptor,
    expansion: &std::sync::Arc<crate::store::Expansion>,
) -> Box<dyn Read + 'r> {
    Box::new(Expanding::new(inner, desc, expansion))
}

/// A decompressed layer stream that counts what it gives and stops at the store's expansion
/// limit: `size` (the compressed size) times the ratio, then what the shared allowance has left.
struct Expanding<'r> {
    inner: Box<dyn Read + 'r>,
    digest: String,
    size: u64,
    out: u64,
    expansion: std::sync::Arc<crate::store::Expansion>,
}

impl<'r> Expanding<'r> {
    fn new(
        inner: Box<dyn Read + 'r>,
        desc: &Descriptor,
        expansion: &std::sync::Arc<crate::store::Expansion>,
    ) -> Self {
        Expanding {
            inner,
            digest: desc.digest().to_string(),
            size: desc.size(),
            out: 0,
            expansion: expansion.clone(),
        }
    }
}

impl Read for Expanding<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        let n = self.inner.read(buf)?;
        let ratio = self.expansion.ratio;
        if ratio == 0 || n == 0 {
            return Ok(n);
        }
        let own = self.size.saturating_mul(ratio);
        let before = self.out;
        self.out += n as u64;
        // Bytes of this read beyond the layer's own share draw on the shared allowance.
        let excess = self.out.saturating_sub(own.max(before)).min(n as u64);
        if excess > 0 {
            let drawn = self.expansion.allowance.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |left| left.checked_sub(excess),
            );
            if drawn.is_err() {
                let allowance = crate::limits::LAYER_EXPANSION_ALLOWANCE;
                return Err(Error::Limit {
                    what: format!(
                        "layer {} expands to more than {} bytes: more than {ratio} times its compressed size ({} bytes), beyond the {} MiB that layers may expand past that together; a layer expanding this far is a decompression bomb, or holds long runs of one byte (a sparse file)",
                        self.digest,
                        before,
                        self.size,
                        allowance >> 20
                    ),
                    hint: Some(format!(
                        "if you trust where the image comes from, allow more with --max-layer-expansion (now {ratio}; 0 for no limit) or MODELCAR_MAX_LAYER_EXPANSION"
                    )),
                }
                .into_io());
            }
        }
        Ok(n)
    }
}

/// A buffered layer stream whose only seek is a forward skip from the current position (what
/// [`tar::Archive::entries_with_seek`] asks for). Short skips stay inside the buffer (a plain
/// `BufReader` drops its buffer on every seek); long ones seek the file, or for a decompressor
/// read and discard.
pub struct Skipping {
    source: Source,
    /// Bytes of the uncompressed stream before the next one read.
    pos: u64,
}

enum Source {
    File(BufReader<std::fs::File>),
    Stream(BufReader<Box<dyn Read>>),
}

impl Skipping {
    fn file(f: std::fs::File) -> Self {
        Skipping {
            source: Source::File(BufReader::with_capacity(256 << 10, f)),
            pos: 0,
        }
    }

    fn stream(r: Box<dyn Read>) -> Self {
        Skipping {
            source: Source::Stream(BufReader::with_capacity(256 << 10, r)),
            pos: 0,
        }
    }
}

impl Read for Skipping {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.source {
            Source::File(r) => r.read(buf)?,
            Source::Stream(r) => r.read(buf)?,
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Skipping {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let n = match pos {
            SeekFrom::Current(n @ 0..) => n as u64,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a layer stream only skips forward",
                ))
            }
        };
        match &mut self.source {
            Source::File(r) => r.seek_relative(n as i64)?,
            Source::Stream(r) => {
                if io::copy(&mut r.take(n), &mut io::sink())? < n {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
        self.pos += n;
        Ok(self.pos)
    }
}

/// Normalise a tar path: no leading `./` or `/`, no trailing `/`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// What one layer holds: each entry's cleaned path and metadata, in archive order (whiteouts
/// included, as entries named `.wh.*`).
pub type Listing = Vec<(String, Node)>;

/// Bumped whenever [`Listing`] or how it is read changes (2: read within the limits of
/// [`crate::limits`], so listings cached before them are not trusted).
const LISTING_VERSION: u32 = 2;

fn listing_cache(store: &Store, digest: &oci_spec::image::Digest) -> std::path::PathBuf {
    store.cache_dir().join("listings").join(format!(
        "v{LISTING_VERSION}-{}-{}.json",
        digest.algorithm(),
        digest.digest()
    ))
}

/// The listing of a layer in the store: from the listing cache (kept per layer digest, so it is
/// as trustworthy as the blob), else read from the blob and cached.
pub fn layer_listing(store: &Store, desc: &Descriptor) -> Result<Listing> {
    let cache = listing_cache(store, desc.digest());
    if let Some(listing) = crate::store::read_cache::<Listing>(&cache) {
        if Budget::default().charge_all(&listing).is_ok() {
            return Ok(listing);
        }
    }
    let listing = read_listing(open_layer(store, desc)?)
        .map_err(|e| e.about(&format!("layer {}", desc.digest())))?;
    remember_listing(store, desc.digest(), &listing);
    Ok(listing)
}

/// Keep the listing of a layer in the store's cache.
pub fn remember_listing(store: &Store, digest: &oci_spec::image::Digest, listing: &Listing) {
    crate::store::write_cache(&listing_cache(store, digest), listing);
}

/// Why a layer could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The stream is not a readable tar archive.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The layer goes beyond a limit of [`crate::limits`]; says what, as the end of a sentence
    /// about the layer.
    #[error("{0}")]
    Limit(String),
}

impl ListingError {
    /// The error of the library about the archive `what` (a layer, a file).
    pub fn about(self, what: &str) -> Error {
        match self {
            ListingError::Io(e) => match Error::from_io(e) {
                // A limit met while reading (a layer expanding too far) says so itself.
                Ok(inner) => inner,
                Err(e) => Error::corrupt(format!("{what} cannot be read as tar: {e}")),
            },
            ListingError::Limit(limit) => Error::limit(format!("{what} {limit}")),
        }
    }
}

/// What listings may still hold, so that one image's listings stay within [`MAX_ENTRIES`] and
/// [`MAX_PATH_BYTES`] together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    entries: usize,
    path_bytes: usize,
}

impl Budget {
    /// Count one entry of `path_bytes` bytes of path and link target.
    fn charge(&mut self, path_bytes: usize) -> std::result::Result<(), ListingError> {
        self.entries += 1;
        self.path_bytes += path_bytes;
        if self.entries > MAX_ENTRIES {
            return Err(ListingError::Limit(format!(
                "holds more than {MAX_ENTRIES} entries, the most modelcar lists for an image"
            )));
        }
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(ListingError::Limit(format!(
                "holds more than {MAX_PATH_BYTES} bytes of paths, the most modelcar lists for an image"
            )));
        }
        Ok(())
    }

    fn charge_all(&mut self, listing: &Listing) -> std::result::Result<(), ListingError> {
        for (path, node) in listing {
            self.charge(path.len() + link_of(node).map_or(0, str::len))?;
        }
        Ok(())
    }
}

fn link_of(node: &Node) -> Option<&str> {
    match node {
        Node::Symlink { target } | Node::Hardlink { target } => Some(target),
        _ => None,
    }
}

const BLOCK: u64 = 512;
/// Offsets of the "another sparse map block follows" flags of a GNU header and of a GNU sparse
/// map block.
const GNU_IS_EXTENDED: usize = 482;
const GNU_EXT_IS_EXTENDED: usize = 504;

/// Read the entries of one uncompressed layer tar stream, skipping file contents.
pub fn read_listing(reader: impl Read + Seek) -> std::result::Result<Listing, ListingError> {
    let mut tar = TarReader::new(reader);
    let mut out = Vec::new();
    while let Some(entry) = tar.next_entry()? {
        out.push(entry);
    }
    Ok(out)
}

/// The entries of an uncompressed tar stream (a layer, an OCI or Docker archive), one at a time,
/// each with its contents readable until the next.
///
/// Headers are parsed by the `tar` crate; the framing (extension headers, sizes, skips) is done
/// here so that nothing the archive declares decides what is held in memory: PAX and GNU
/// long-name entries are read only up to [`MAX_TAR_EXTENSION`] bytes, paths up to [`MAX_PATH`],
/// and the entries stop at the limits of [`Budget`]. Contents not read are skipped (by seeking
/// where the stream can).
pub struct TarReader<R> {
    r: R,
    budget: Budget,
    /// Contents of the current entry not yet read, and the padding after them.
    remaining: u64,
    padding: u64,
    /// The path of the entry returned last, as the archive spells it (before cleaning).
    raw_path: Vec<u8>,
}

impl<R: Read + Seek> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            budget: Budget::default(),
            remaining: 0,
            padding: 0,
            raw_path: Vec::new(),
        }
    }

    /// The path of the entry [`TarReader::next_entry`] returned last, exactly as the archive
    /// spells it (a cleaned path hides a leading `/` or a `..`, which a reader of untrusted
    /// archives refuses).
    pub fn raw_path(&self) -> &[u8] {
        &self.raw_path
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// The underlying stream, where the last entry read left it.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// The contents of the entry [`TarReader::next_entry`] returned last: at most the size its
    /// header declares.
    pub fn contents(&mut self) -> impl Read + '_ {
        Contents { tar: self }
    }

    /// The next entry's cleaned path and metadata (entries whose path cleans to nothing are
    /// left out); `None` at the end of the archive.
    pub fn next_entry(&mut self) -> std::result::Result<Option<(String, Node)>, ListingError> {
        let mut block = [0u8; BLOCK as usize];
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        loop {
            skip(&mut self.r, self.remaining + self.padding)?;
            self.remaining = 0;
            self.padding = 0;
            // As GNU tar and the `tar` crate do, the end of the stream ends the archive as an
            // empty block does.
            if !read_block(&mut self.r, &mut block)? || block.iter().all(|b| *b == 0) {
                return Ok(None);
            }
            let h = tar::Header::from_byte_slice(&block);
            check_checksum(h)?;
            let kind = h.entry_type();
            let mut size = h.entry_size()?;
            if kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
                let mut data = read_extension(&mut self.r, size)?;
                if !kind.is_pax_local_extensions() {
                    // GNU long names end with a NUL.
                    data.truncate(trim_nul(&data).len());
                }
                let slot = if kind.is_pax_local_extensions() {
                    &mut pax
                } else if kind.is_gnu_longname() {
                    &mut long_name
                } else {
                    &mut long_link
                };
                *slot = Some(data);
                continue;
            }
            if kind.is_pax_global_extensions() {
                self.padding = padded(size)?;
                continue;
            }
            let mut path = long_name
                .take()
                .unwrap_or_else(|| trim_nul(&h.path_bytes()).to_vec());
            let mut link = long_link
                .take()
                .or_else(|| h.link_name_bytes().map(|l| trim_nul(&l).to_vec()))
                .unwrap_or_default();
            let mut uid = h.uid().unwrap_or(0);
            let mut gid = h.gid().unwrap_or(0);
            if let Some(records) = pax.take() {
                for record in tar::PaxExtensions::new(&records) {
                    let record = record?;
                    let number = || -> io::Result<u64> {
                        record
                            .value()
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| {
                                invalid("a PAX record holds no number where one belongs")
                            })
                    };
                    match record.key_bytes() {
                        b"path" => path = record.value_bytes().to_vec(),
                        b"linkpath" => link = record.value_bytes().to_vec(),
                        b"size" => size = number()?,
                        b"uid" => uid = number()?,
                        b"gid" => gid = number()?,
                        _ => {}
                    }
                }
            }
            if path.len().max(link.len()) > MAX_PATH {
                return Err(ListingError::Limit(format!(
                    "holds a path or link target longer than {MAX_PATH} bytes"
                )));
            }
            let mode = h.mode().unwrap_or(0);
            if kind.is_gnu_sparse() && block[GNU_IS_EXTENDED] != 0 {
                // The sparse map continues in extension blocks, each saying whether another
                // follows.
                let mut ext = [0u8; BLOCK as usize];
                loop {
                    if !read_block(&mut self.r, &mut ext)? {
                        return Err(invalid("the archive ends inside a sparse map").into());
                    }
                    if ext[GNU_EXT_IS_EXTENDED] == 0 {
                        break;
                    }
                }
            }
            self.remaining = size;
            self.padding = padded(size)? - size;
            self.raw_path.clone_from(&path);
            let path = clean_path(&String::from_utf8_lossy(&path));
            if path.is_empty() {
                continue;
            }
            self.budget.charge(path.len() + link.len())?;
            let link = String::from_utf8_lossy(&link).into_owned();
            return Ok(Some((path, node_of(kind, mode, uid, gid, size, link))));
        }
    }
}

/// The contents of the current entry of a [`TarReader`].
struct Contents<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let most = usize::try_from(self.tar.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.tar.r.read(&mut buf[..most])?;
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

/// Fill `block`; false at the end of the stream, an error when it ends inside the block.
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK as usize]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < block.len() {
        match r.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(invalid("the archive ends inside a header")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn check_checksum(h: &tar::Header) -> io::Result<()> {
    let bytes = h.as_bytes();
    let sum = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .fold(8 * 32, |a, b| a + u32::from(*b));
    if h.cksum()? != sum {
        return Err(invalid("a header's checksum does not match"));
    }
    Ok(())
}

/// The data of a PAX or GNU long-name entry, and its padding skipped.
fn read_extension(
    r: &mut (impl Read + Seek),
    size: u64,
) -> std::result::Result<Vec<u8>, ListingError> {
    if size > MAX_TAR_EXTENSION {
        return Err(ListingError::Limit(format!(
            "has a PAX or long-name header of {size} bytes, more than the {MAX_TAR_EXTENSION} accepted"
        )));
    }
    let mut data = Vec::with_capacity(size as usize);
    r.by_ref().take(size).read_to_end(&mut data)?;
    if (data.len() as u64) < size {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    skip(r, padded(size)? - size)?;
    Ok(data)
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> io::Result<u64> {
    size.checked_next_multiple_of(BLOCK)
        .ok_or_else(|| invalid("an entry's size is out of range"))
}

fn skip(r: &mut impl Seek, n: u64) -> io::Result<()> {
    if n > 0 {
        let n = i64::try_from(n).map_err(|_| invalid("an entry's size is out of range"))?;
        r.seek(SeekFrom::Current(n))?;
    }
    Ok(())
}

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    &b[..end]
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The metadata of a tar entry, from its header fields as PAX records may override them.
fn node_of(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64, link: String) -> Node {
    match kind {
        tar::EntryType::Directory => Node::Dir { mode, uid, gid },
        tar::EntryType::Regular | tar::EntryType::Continuous => Node::File {
            mode,
            uid,
            gid,
            size,
        },
        tar::EntryType::Symlink => Node::Symlink { target: link },
        tar::EntryType::Link => Node::Hardlink {
            target: clean_path(&link),
        },
        _ => Node::Other,
    }
}

impl RootFs {
    /// Apply the layers of an image in order.
    /// Apply the layers of an image in order, within the limits of [`Budget`] for all of them
    /// together.
    pub fn from_layers(store: &Store, layers: &[Descriptor]) -> Result<RootFs> {
        let mut fs = RootFs::default();
        let mut budget = Budget::default();
        for layer in layers {
            let listing = layer_listing(store, layer)?;
            budget.charge_all(&listing).map_err(|e| {
                Error::limit(format!("the layers up to {} together {e}", layer.digest()))
            })?;
            fs.apply_listing(&listing);
        }
        Ok(fs)
    }

    /// Apply one uncompressed layer tar stream.
    pub fn apply(&mut self, reader: impl Read + Seek) -> std::result::Result<(), ListingError> {
        self.apply_listing(&read_listing(reader)?);
        Ok(())
    }

    /// Apply one layer's listing: its whiteouts, then its entries.
    pub fn apply_listing(&mut self, listing: &[(String, Node)]) {
        let mut added: Vec<(String, Node)> = Vec::new();
        let mut whiteouts: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();
        for (path, node) in listing {
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (d.to_string(), n),
                None => (String::new(), path.as_str()),
            };
            if name == ".wh..wh..opq" {
                opaque.push(dir);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                whiteouts.push(if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                });
                continue;
            }
            added.push((path.clone(), node.clone()));
        }
        for dir in opaque {
            if dir.is_empty() {
                self.entries.clear();
                self.origin.clear();
            } else {
                // The directory stays; what is below it goes (by range, not a scan of every path).
                let kept = self.entries.remove(&dir);
                let origin = self.origin.remove(&dir);
                self.remove_tree(&dir);
                if let Some(node) = kept {
                    self.entries.insert(dir.clone(), node);
                }
                if let Some(o) = origin {
                    self.origin.insert(dir, o);
                }
            }
        }
        for gone in whiteouts {
            self.remove_tree(&gone);
        }
        for (path, node) in added {
            // A non-directory replaces a whole subtree.
            if !matches!(node, Node::Dir { .. }) {
                self.remove_tree(&path);
            }
            self.origin.insert(path.clone(), self.layers_applied);
            self.entries.insert(path, node);
        }
        self.layers_applied += 1;
    }

    fn remove_tree(&mut self, path: &str) {
        self.entries.remove(path);
        self.origin.remove(path);
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
            self.origin.remove(&k);
        }
    }

    /// Resolve a path following symlinks (in every component) and hard links. Returns the final
    /// path and its node, or `None` when it does not exist or links loop.
    pub fn resolve(&self, path: &str) -> Option<(String, &Node)> {
        let mut pending: Vec<String> = clean_path(path)
            .split('/')
            .rev()
            .map(str::to_string)
            .collect();
        let mut current = String::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part.is_empty() || part == "." {
                continue;
            }
            if part == ".." {
                current = current
                    .rsplit_once('/')
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_default();
                continue;
            }
            let candidate = if current.is_empty() {
                part.clone()
            } else {
                format!("{current}/{part}")
            };
            match self.entries.get(&candidate) {
                Some(Node::Symlink { target }) => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    for p in target.split('/').rev() {
                        pending.push(p.to_string());
                    }
                }
                Some(_) => current = candidate,
                // Directories implied by deeper paths exist even without an entry of their own.
                None if !pending.is_empty() && self.has_children(&candidate) => current = candidate,
                None => return None,
            }
        }
        let mut node = self.entries.get(&current)?;
        let mut final_path = current;
        if let Node::Hardlink { target } = node {
            final_path = target.clone();
            node = self.entries.get(&final_path)?;
        }
        Some((final_path, node))
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Find an executable by name on `search_path`, as a shell would. Returns the path searched
    /// and where it resolves to.
    pub fn find_executable(&self, name: &str, search_path: &[String]) -> Option<(String, String)> {
        for dir in search_path {
            let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
            if let Some((resolved, Node::File { mode, .. })) = self.resolve(&candidate) {
                if mode & 0o111 != 0 {
                    return Some((
                        format!("/{}", clean_path(&candidate)),
                        format!("/{resolved}"),
                    ));
                }
            }
        }
        None
    }
}

/// The `PATH` of an image config, or the default a runtime uses.
pub fn search_path(config: &serde_json::Value) -> Vec<String> {
    let env = config
        .pointer("/config/Env")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let path = env
        .iter()
        .filter_map(|v| v.as_str())
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn usr_merge_and_busybox_links_resolve() {
        use tar::EntryType::*;
        let mut fs = RootFs::default();
        fs.apply(io::Cursor::new(layer(&[
            ("usr/", Directory, ""),
            ("usr/bin/", Directory, ""),
            ("usr/bin/busybox", Regular, ""),
            ("usr/bin/sh", Symlink, "busybox"),
            ("bin", Symlink, "usr/bin"),
            ("usr/bin/ls", Link, "usr/bin/busybox"),
        ])))
        .unwrap();
        let path = vec!["/bin".to_string()];
        assert_eq!(
            fs.find_executable("sh", &path).unwrap().1,
            "/usr/bin/busybox"
        );
        assert_eq!(
            fs.find_executable("ls", &path).unwrap().1,
            "/usr/bin/busybox"
        );
        assert!(fs.find_executable("sleep", &path).is_none());
    }

    /// Read `len` zeros through an [`Expanding`] stream of a layer of `size` compressed bytes:
    /// how far it got, and the error that stopped it.
    fn expand(
        expansion: &Arc<crate::store::Expansion>,
        size: u64,
        len: u64,
    ) -> (u64, Option<String>) {
        let mut r = Expanding {
            inner: Box::new(io::repeat(0).take(len)),
            digest: "sha256:test".into(),
            size,
            out: 0,
            expansion: expansion.clone(),
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (got, None),
                Ok(n) => got += n as u64,
                Err(e) => {
                    let e = layer_read_error(&"sha256:test", e);
                    assert!(matches!(e, Error::Limit { .. }), "{e:?}");
                    return (got, Some(e.to_string()));
                }
            }
        }
    }

    fn expansion(ratio: u64) -> Arc<crate::store::Expansion> {
        Arc::new(crate::store::Expansion {
            ratio,
            allowance: crate::limits::LAYER_EXPANSION_ALLOWANCE.into(),
        })
    }

    #[test]
    fn layers_of_real_ratios_expand_freely_and_bombs_stop_at_the_limit() {
        use std::sync::atomic::Ordering;
        let allowance = crate::limits::LAYER_EXPANSION_ALLOWANCE;
        let limits = expansion(crate::limits::MAX_LAYER_EXPANSION);
        // Weights (gzip barely shrinks them) and text (about 5:1): read whole, nothing drawn
        // from the shared allowance.
        assert_eq!(expand(&limits, 900 << 20, 1 << 30), (1 << 30, None));
        assert_eq!(expand(&limits, 20 << 20, 100 << 20), (100 << 20, None));
        assert_eq!(limits.allowance.load(Ordering::Relaxed), allowance);
        // A layer of 1 MiB expanding past 100 times that: the rest comes from the allowance,
        // and the read stops when it runs out, with a limit error saying why.
        let (got, e) = expand(&limits, 1 << 20, 4 << 30);
        assert!(got <= (100 << 20) + allowance, "{got}");
        assert!(got >= (100 << 20) + allowance - (1 << 20), "{got}");
        let e = e.expect("refused");
        assert!(e.contains("more than 100 times its compressed size"), "{e}");
        // The allowance is shared: the next layer past its own share stops at once.
        let (got, e) = expand(&limits, 1 << 20, 200 << 20);
        assert!(got <= 100 << 20, "{got}");
        assert!(e.is_some());
        // Without a limit (0), anything goes.
        assert_eq!(expand(&expansion(0), 1, 2 << 30), (2 << 30, None));
    }

    #[test]
    fn whiteouts_hide_lower_layers() {
        use tar::EntryType::*;
        let mut fs = RootFs::default();
        fs.apply(io::Cursor::new(layer(&[
            ("bin/", Directory, ""),
            ("bin/sh", Regular, ""),
            ("etc/", Directory, ""),
            ("etc/a", Regular, ""),
        ])))
        .unwrap();
        fs.apply(io::Cursor::new(layer(&[
            ("bin/.wh.sh", Regular, ""),
            ("etc/.wh..wh..opq", Regular, ""),
            ("etc/b", Regular, ""),
        ])))
        .unwrap();
        assert!(fs.resolve("bin/sh").is_none());
        assert!(fs.resolve("etc/a").is_none());
        assert!(fs.resolve("etc/b").is_some());
    }

    #[test]
    fn link_loops_end() {
        use tar::EntryType::*;
        let mut fs = RootFs::default();
        fs.apply(io::Cursor::new(layer(&[
            ("a", Symlink, "b"),
            ("b", Symlink, "a"),
        ])))
        .unwrap();
        assert!(fs.resolve("a").is_none());
    }

    #[test]
    fn gnu_long_names_and_links_are_listed_whole() {
        let long = format!("models/{}/weights.bin", "d".repeat(150));
        let target = format!("{}/target", "t".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "models/link", &target).unwrap();
        let listing = read_listing(io::Cursor::new(b.into_inner().unwrap())).unwrap();
        assert_eq!(listing[0].0, long);
        assert!(matches!(listing[0].1, Node::File { size: 3, .. }));
        assert_eq!(listing[1].1, Node::Symlink { target });
    }

    #[test]
    fn layers_are_listed_alike_raw_and_compressed() {
        use std::io::Write;
        let mut b = tar::Builder::new(Vec::new());
        for (path, size) in [
            ("models/", 0usize),
            ("models/big", 3 << 20),
            ("models/z", 10),
        ] {
            let mut h = tar::Header::new_ustar();
            let dir = path.ends_with('/');
            h.set_entry_type(if dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(0o444);
            h.set_size(size as u64);
            b.append_data(&mut h, path, &vec![7u8; size][..]).unwrap();
        }
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();

        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let mut descs = Vec::new();
        for (bytes, mt) in [
            (&raw, oci_spec::image::MediaType::ImageLayer),
            (&gz, oci_spec::image::MediaType::ImageLayerGzip),
        ] {
            let mut w = store.blob_writer().unwrap();
            w.write_all(bytes).unwrap();
            let (digest, size) = w.commit(&store, None).unwrap();
            descs.push(Descriptor::new(mt, size, digest));
        }
        let listing = |fs: &RootFs| -> Vec<(String, Node)> {
            fs.entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let a = RootFs::from_layers(&store, &descs[..1]).unwrap();
        let b = RootFs::from_layers(&store, &descs[1..]).unwrap();
        assert_eq!(listing(&a), listing(&b));
        assert_eq!(
            a.entries.get("models/big"),
            Some(&Node::File {
                mode: 0o444,
                uid: 0,
                gid: 0,
                size: 3 << 20
            })
        );
        assert!(a.entries.contains_key("models/z"));
    }
}
