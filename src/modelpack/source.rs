//! A ModelPack artifact as the model of a build: `build --models modelpack:REF` turns a CNCF
//! ModelPack artifact (from a registry, or an OCI layout with `modelpack:oci:DIR[:TAG]`) into a
//! runnable modelcar.
//!
//! The artifact is read as hostile input, in two passes, and its weights never touch the local
//! disk on the way to a registry:
//!
//! 1. [`Artifact::open`] reads the manifest (within the document limits), then lists every tar
//!    layer by streaming it once (decompressed on the fly, contents hashed and skipped): paths
//!    are refused when absolute, when they hold `..`, when they would be whiteouts, and links
//!    when they leave the model or pass through a file; hard links and special files are refused.
//!    Raw layers are one file each, named by their `org.cncf.model.filepath` annotation, and are
//!    not read at all. The format checks then read headers only, through [`ModelFiles`]: a raw or
//!    uncompressed tar layer by range reads of its blob, a compressed tar layer from the first
//!    bytes of each file kept during the listing pass (within [`MODELPACK_HEADS`]), or by
//!    decompressing it again up to the bytes asked for.
//! 2. [`Artifact::write_layers`] writes the image's model layers into a [`LayerDestination`]
//!    (the store, or an upload streamed to the registry for `build --push`): each layer's tar
//!    stream is made from the source blobs as they arrive, with modelcar's owner, modes and
//!    mtime, and every source blob is checked against its digest on the way. A tar layer whose
//!    bytes are already what modelcar would write (its entries under `models/`, in order, with
//!    the same owner, modes and mtime, as the layers of a modelcar image are) is taken as it is:
//!    mounted from the source repository when both live on the same registry, copied otherwise.
//!
//! How source layers become image layers follows `--layers` and `--layer-threshold` as for a
//! directory: a layer of at least the threshold keeps a layer of its own (so a weights file keeps
//! its layer digest across versions), smaller ones share one, within the model layer budget.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

use oci_spec::image::{Descriptor, Digest};
use reqwest::header::RANGE;
use reqwest::StatusCode;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{
    parse_layer_media_type, Packing, ANNOTATION_FILEPATH, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE,
};
use crate::digest;
use crate::error::{Error, Result};
use crate::formats::ModelFiles;
use crate::image::{self, Compression, DocumentKind};
use crate::layer::{
    self, BuiltLayer, CompressionChoice, EntrySettings, LayerDestination, LayerMode, MODEL_ROOT,
};
use crate::limits::{
    FORMAT_HEAD, MAX_ENTRIES, MAX_MODELPACK_LAYERS, MAX_PATH, MAX_PATH_BYTES, MAX_ZSTD_WINDOW_LOG,
    MODELPACK_HEADS,
};
use crate::model::{EntryKind, ModelEntry, ModelTree, StatKey};
use crate::reference::{ImageRef, Location};
use crate::registry::{network_error, Client, Scope, Transfer};
use crate::rootfs::{Node, TarReader};
use crate::store::{read_cache, write_cache, Store};
use crate::text::escape;

/// The prefix of a `--models` value naming a ModelPack artifact.
pub const SCHEME: &str = "modelpack:";

/// Symlinks followed in one path before it is called a loop (Linux's `MAXSYMLINKS`).
const MAX_LINK_HOPS: usize = 40;

/// Where a ModelPack artifact is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// A registry reference (`modelpack:quay.io/org/model:v1`, `modelpack:docker://REF`).
    Registry(ImageRef),
    /// An OCI image layout and the `ref.name` (or digest) of the artifact in it
    /// (`modelpack:oci:DIR[:TAG]`).
    Layout {
        path: PathBuf,
        reference: Option<String>,
    },
}

impl SourceRef {
    /// The source a `--models` value names, if it starts with `modelpack:`.
    pub fn of_models_arg(text: &str) -> Option<Result<SourceRef>> {
        text.starts_with(SCHEME).then(|| text.parse())
    }
}

impl FromStr for SourceRef {
    type Err = Error;
    fn from_str(text: &str) -> Result<SourceRef> {
        let hint = "write modelpack:REGISTRY/REPOSITORY:TAG (or @sha256:...) for an artifact in a registry, or modelpack:oci:DIR[:TAG] for one in an OCI layout";
        let Some(rest) = text.strip_prefix(SCHEME) else {
            return Err(
                Error::invalid(format!("{} does not start with {SCHEME}", escape(text)))
                    .with_hint(hint),
            );
        };
        if rest.is_empty() {
            return Err(Error::invalid("modelpack: names no artifact").with_hint(hint));
        }
        match rest.parse::<Location>().map_err(|e| {
            Error::invalid(format!("{}: {e}", escape(text))).with_hint(hint)
        })? {
            Location::Registry(r) | Location::Remote(r) => Ok(SourceRef::Registry(r)),
            Location::OciDir { path, reference } => Ok(SourceRef::Layout { path, reference }),
            Location::OciArchive { .. } | Location::DockerArchive { .. } => Err(Error::invalid(
                format!("{}: a ModelPack artifact is read from a registry or an OCI layout directory", escape(text)),
            )
            .with_hint("unpack the archive into a directory (mkdir DIR && tar -xf FILE -C DIR) and name it modelpack:oci:DIR")),
        }
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceRef::Registry(r) => write!(f, "{SCHEME}{r}"),
            SourceRef::Layout { path, reference } => {
                write!(f, "{SCHEME}oci:{}", path.display())?;
                if let Some(r) = reference {
                    write!(f, ":{r}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where the artifact's blobs are read from.
enum Blobs<'a> {
    Registry { client: &'a Client, image: ImageRef },
    Layout { dir: PathBuf },
}

/// A blob read from the start, hashed and counted on the way: more bytes than the descriptor
/// says fail at once, and [`Verified::check`] compares digest and size at the end.
struct Verified<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    size: u64,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.size {
            return Err(io::Error::other(format!(
                "the blob holds more than the {} bytes its descriptor says",
                self.size
            )));
        }
        Ok(n)
    }
}

impl<R: Read> Verified<R> {
    fn new(inner: R, size: u64) -> Self {
        Verified {
            inner,
            hasher: Sha256::new(),
            read: 0,
            size,
        }
    }

    /// Read what is left, then compare with the descriptor.
    fn check(mut self, desc: &Descriptor, what: &str) -> Result<()> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| read_error(e, what))?;
        let got = digest::from_hasher(self.hasher);
        if &got != desc.digest() || self.read != desc.size() {
            return Err(Error::corrupt(format!(
                "{what} does not match its digest: expected {} ({} bytes), got {got} ({} bytes)",
                desc.digest(),
                desc.size(),
                self.read
            )));
        }
        Ok(())
    }
}

/// An uncompressed tar stream for [`TarReader`]: counts its position (where each file's contents
/// start), hashes every byte (the diff ID), and skips forward by reading, so that the hash sees
/// everything.
struct Tracked<R> {
    inner: R,
    pos: u64,
    hasher: Sha256,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // zstd's decoder fails a read into an empty buffer once its output is pending.
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for Tracked<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Current(n @ 0..) => {
                let n = n as u64;
                if io::copy(&mut self.by_ref().take(n), &mut io::sink())? < n {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(self.pos)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a layer stream only skips forward",
            )),
        }
    }
}

/// An I/O error while reading a blob: a registry's error comes out whole (so that a dropped
/// connection is retried), anything else names what was read.
fn read_error(e: io::Error, what: &str) -> Error {
    Error::from_io(e).unwrap_or_else(|e| Error::corrupt(format!("cannot read {what}: {e}")))
}

/// The uncompressed stream of a layer of this packing.
fn decoder<'r>(packing: Packing, r: impl Read + 'r, what: &str) -> Result<Box<dyn Read + 'r>> {
    Ok(match packing {
        Packing::Raw | Packing::Tar => Box::new(r),
        Packing::TarGzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            r,
        ))),
        Packing::TarZstd => {
            let bad = |e: io::Error| Error::corrupt(format!("{what}: {e}"));
            let mut d =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, r))
                    .map_err(bad)?;
            // The decoder holds the window a frame declares.
            d.window_log_max(MAX_ZSTD_WINDOW_LOG).map_err(bad)?;
            Box::new(d)
        }
    })
}

impl Blobs<'_> {
    fn describe(&self) -> String {
        match self {
            Blobs::Registry { image, .. } => image.name(),
            Blobs::Layout { dir } => format!("oci:{}", dir.display()),
        }
    }

    /// A blob's bytes from `offset` to its end.
    fn open_at(&self, desc: &Descriptor, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        digest::require_sha256(desc.digest())?;
        match self {
            Blobs::Layout { dir } => {
                let path = dir
                    .join("blobs")
                    .join("sha256")
                    .join(digest::hex_of(desc.digest()));
                let mut f = std::fs::File::open(&path).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Error::corrupt(format!(
                            "blob {} is missing from the OCI layout {}",
                            desc.digest(),
                            dir.display()
                        ))
                    } else {
                        crate::error::io_err("read blob", &path)(e)
                    }
                })?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(crate::error::io_err("read blob", &path))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
            }
            Blobs::Registry { client, image } => {
                let repo = image.repository.clone();
                let d = desc.digest().to_string();
                let doing = format!("fetching blob {d} of {}", image.name());
                let resp = client.send_attempt(
                    &image.registry,
                    &repo,
                    &Scope::pull(&repo),
                    &doing,
                    Transfer::Small,
                    &|http, base| {
                        let get = http.get(format!("{base}/v2/{repo}/blobs/{d}"));
                        Ok(if offset > 0 {
                            get.header(RANGE, format!("bytes={offset}-"))
                        } else {
                            get
                        })
                    },
                )?;
                let status = resp.status();
                if status == StatusCode::RANGE_NOT_SATISFIABLE {
                    return Ok(Box::new(io::empty()));
                }
                if !status.is_success() {
                    return Err(crate::registry::unexpected(&doing, resp));
                }
                let mut reader: Box<dyn Read + Send> = Box::new(NetReader {
                    inner: resp,
                    registry: image.registry.clone(),
                    doing: format!("reading blob {d} of {}", image.name()),
                    timeouts: client.timeouts(),
                });
                if status != StatusCode::PARTIAL_CONTENT && offset > 0 {
                    // The registry sent the whole blob: skip to the offset.
                    let skipped = io::copy(&mut (&mut reader).take(offset), &mut io::sink())
                        .map_err(|e| read_error(e, &doing))?;
                    if skipped < offset {
                        return Ok(Box::new(io::empty()));
                    }
                }
                Ok(reader)
            }
        }
    }

    /// Up to `n` bytes of a blob's uncompressed stream (for a tar packing) from `offset`.
    fn read_range(
        &self,
        desc: &Descriptor,
        packing: Packing,
        offset: u64,
        n: u64,
    ) -> Result<Vec<u8>> {
        let what = format!("blob {} of {}", desc.digest(), self.describe());
        let once = || -> Result<Vec<u8>> {
            let mut out = Vec::new();
            match packing {
                Packing::Raw | Packing::Tar => {
                    self.open_at(desc, offset)?
                        .take(n)
                        .read_to_end(&mut out)
                        .map_err(|e| read_error(e, &what))?;
                }
                Packing::TarGzip | Packing::TarZstd => {
                    let mut d = decoder(packing, self.open_at(desc, 0)?.take(desc.size()), &what)?;
                    let skipped = io::copy(&mut (&mut d).take(offset), &mut io::sink())
                        .map_err(|e| read_error(e, &what))?;
                    if skipped == offset {
                        d.take(n)
                            .read_to_end(&mut out)
                            .map_err(|e| read_error(e, &what))?;
                    }
                }
            }
            Ok(out)
        };
        self.retrying(once)
    }

    fn retrying<T>(&self, op: impl FnMut() -> Result<T>) -> Result<T> {
        match self {
            Blobs::Registry { client, .. } => client.retrying(op),
            Blobs::Layout { .. } => {
                let mut op = op;
                op()
            }
        }
    }
}

/// A registry's response body whose read errors name the registry and what was read.
struct NetReader {
    inner: reqwest::blocking::Response,
    registry: String,
    doing: String,
    timeouts: crate::registry::Timeouts,
}

impl Read for NetReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| network_error(&self.registry, &self.doing, self.timeouts, e).into_io())
    }
}

/// One layer of the artifact and what it holds.
#[derive(Debug, Clone)]
struct Unit {
    desc: Descriptor,
    packing: Packing,
    /// Entries in archive order, with paths relative to the model's root (a raw layer: its file).
    entries: Vec<UnitEntry>,
    /// SHA-256 of the uncompressed tar stream (tar packings).
    diff_id: Option<Digest>,
    /// The layer is byte for byte what modelcar writes for its entries, so it can be used as it is.
    reusable: bool,
    /// The tar's paths carry modelcar's `models/` prefix, which was taken off.
    prefixed: bool,
    /// Bytes of file contents.
    content: u64,
}

#[derive(Debug, Clone)]
struct UnitEntry {
    rel: String,
    kind: EntryKind,
    /// Where the contents start in the layer's uncompressed stream.
    offset: u64,
    /// SHA-256 (hex) of a file's contents.
    sha256: Option<String>,
}

/// A ModelPack artifact, listed and checked: what the image's `/models` will hold.
pub struct Artifact<'a> {
    /// The source as the user named it.
    pub name: String,
    /// The artifact manifest's digest.
    pub digest: Digest,
    blobs: Blobs<'a>,
    units: Vec<Unit>,
    tree: ModelTree,
    /// For each file path: its unit and entry.
    index: HashMap<String, (usize, usize)>,
    /// Each symlink's path and the path it resolves to.
    links: HashMap<String, String>,
    /// The first bytes of the files of compressed tar layers.
    heads: HashMap<String, Vec<u8>>,
}

fn refused(name: &str, what: impl fmt::Display, hint: &str) -> Error {
    Error::invalid(format!("ModelPack artifact {}: {what}", escape(name))).with_hint(hint)
}

const REPACK_HINT: &str = "the artifact would place files outside /models; repack it with paths relative to the model's root, and only links that stay inside it";

/// A tar or annotation path checked and made relative: `None` for the root itself.
fn safe_path(name: &str, layer: &Digest, raw: &[u8]) -> Result<Option<String>> {
    let shown = String::from_utf8_lossy(raw);
    let bad = |why: &str| {
        refused(
            name,
            format!("layer {layer} holds the path {}, {why}", escape(&shown)),
            REPACK_HINT,
        )
    };
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err(bad("which is not valid UTF-8"));
    };
    if raw.len() > MAX_PATH {
        return Err(Error::limit(format!(
            "ModelPack artifact {}: layer {layer} holds a path longer than {MAX_PATH} bytes",
            escape(name)
        )));
    }
    if text.starts_with('/') {
        return Err(bad("an absolute path"));
    }
    let mut parts = Vec::new();
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad("which climbs out of its directory with `..`")),
            c if c.starts_with(".wh.") => {
                return Err(bad(
                    "a whiteout name (.wh.*), which would delete files of the base image",
                ))
            }
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The path a symlink resolves to inside the model (`""` for the root), following links, or
/// why it does not.
fn resolve_link(
    kinds: &BTreeMap<String, EntryKind>,
    link: &str,
) -> std::result::Result<String, String> {
    let Some(EntryKind::Symlink { target }) = kinds.get(link) else {
        return Ok(link.to_string());
    };
    let mut stack: Vec<&str> = link.split('/').collect();
    stack.pop();
    let mut stack: Vec<String> = stack.into_iter().map(str::to_string).collect();
    let mut pending: VecDeque<String> = VecDeque::new();
    let push_target =
        |pending: &mut VecDeque<String>, t: &str| -> std::result::Result<(), String> {
            if t.starts_with('/') {
                return Err(format!("to the absolute path {}", escape(t)));
            }
            for c in t.split('/').rev() {
                pending.push_front(c.to_string());
            }
            Ok(())
        };
    push_target(&mut pending, target)?;
    let mut hops = 1;
    while let Some(c) = pending.pop_front() {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(format!("to {}, outside the model", escape(target)));
                }
            }
            name => {
                stack.push(name.to_string());
                let here = stack.join("/");
                match kinds.get(&here) {
                    Some(EntryKind::Symlink { target: t }) => {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err("into a loop of symlinks".into());
                        }
                        stack.pop();
                        push_target(&mut pending, t)?;
                    }
                    Some(EntryKind::File { .. }) => {
                        if pending.iter().any(|c| !c.is_empty() && c != ".") {
                            return Err(format!("to {}, through a file", escape(target)));
                        }
                    }
                    Some(EntryKind::Dir) => {}
                    None => {
                        return Err(format!(
                            "to {}, which does not exist in the model",
                            escape(target)
                        ))
                    }
                }
            }
        }
    }
    Ok(stack.join("/"))
}

/// The tar header modelcar writes for an entry at `path` (inside the layer) of this kind.
fn canonical_header(path: &str, kind: &EntryKind, s: &EntrySettings) -> Result<Vec<u8>> {
    match kind {
        EntryKind::Dir => layer::header(
            &format!("{path}/"),
            tar::EntryType::Directory,
            0,
            s.dir_mode,
            None,
            s,
        ),
        EntryKind::File { size } => {
            layer::header(path, tar::EntryType::Regular, *size, s.file_mode, None, s)
        }
        EntryKind::Symlink { target } => {
            layer::header(path, tar::EntryType::Symlink, 0, 0o777, Some(target), s)
        }
    }
}

fn ancestors(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

impl<'a> Artifact<'a> {
    /// Read and check the artifact: its manifest, and the listing of every tar layer.
    /// `settings` are the owner, modes and mtime of the build, which decide whether a tar layer
    /// is already what modelcar would write; `expansion` bounds how far a compressed layer may
    /// expand (the store's, so `--max-layer-expansion` applies).
    pub fn open(
        source: &SourceRef,
        client: Option<&'a Client>,
        settings: &EntrySettings,
        expansion: &std::sync::Arc<crate::store::Expansion>,
    ) -> Result<Artifact<'a>> {
        let name = source.to_string();
        let (blobs, bytes, top) = match source {
            SourceRef::Registry(r) => {
                let client = client.ok_or_else(|| {
                    Error::invalid(format!(
                        "{name} is in a registry, and no registry client was given"
                    ))
                })?;
                let reference = r
                    .digest
                    .as_ref()
                    .map(|d| d.to_string())
                    .or_else(|| r.tag.clone())
                    .unwrap_or_else(|| "latest".into());
                let (bytes, desc) =
                    crate::registry::pull::fetch_manifest(client, r, &reference, None)?;
                let blobs = Blobs::Registry {
                    client,
                    image: r.clone(),
                };
                (blobs, bytes, desc)
            }
            SourceRef::Layout { path, reference } => {
                let index = crate::transport::read_layout_index(path)?;
                let desc = crate::transport::select_entry(&index, reference.as_deref(), &name)?;
                image::check_document_size(desc.size(), &name)?;
                let blobs = Blobs::Layout { dir: path.clone() };
                let mut bytes = Vec::new();
                let mut v = Verified::new(blobs.open_at(&desc, 0)?, desc.size());
                v.by_ref()
                    .read_to_end(&mut bytes)
                    .map_err(|e| read_error(e, &name))?;
                v.check(&desc, &format!("the manifest of {name}"))?;
                (blobs, bytes, desc)
            }
        };
        if image::Document::classify(top.media_type()) != DocumentKind::Manifest
            && image::Document::sniff(&bytes)?.0 != DocumentKind::Manifest
        {
            return Err(refused(
                &name,
                "is an image index, not an artifact manifest",
                "name the ModelPack artifact itself (a manifest with artifactType application/vnd.cncf.model.manifest.v1+json), by its tag or digest",
            ));
        }
        let manifest = image::parse_manifest(&bytes, &format!("the manifest of {name}"))?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("the manifest of {name}: {e}")))?;
        let not_modelpack = "modelpack: takes an artifact written by a ModelPack packager (modctl, KitOps, modelcar build --modelpack); build a model directory with --models DIR";
        let config_type = manifest.config().media_type().to_string();
        if config_type != CONFIG_MEDIA_TYPE {
            return Err(refused(
                &name,
                format!(
                    "is not a ModelPack artifact: its config is {}, not {CONFIG_MEDIA_TYPE}",
                    escape(&config_type)
                ),
                not_modelpack,
            ));
        }
        if let Some(t) = doc.get("artifactType").and_then(|t| t.as_str()) {
            if t != ARTIFACT_TYPE {
                return Err(refused(
                    &name,
                    format!("has artifactType {}, not {ARTIFACT_TYPE}", escape(t)),
                    not_modelpack,
                ));
            }
        }
        let layers = manifest.layers();
        if layers.is_empty() {
            return Err(refused(
                &name,
                "has no layers: the model has no files",
                "KServe's modelcar-init container fails when /models is empty: package the model files",
            ));
        }
        if layers.len() > MAX_MODELPACK_LAYERS {
            return Err(Error::limit(format!(
                "ModelPack artifact {} lists {} layers, more than the {MAX_MODELPACK_LAYERS} accepted",
                escape(&name),
                layers.len()
            )));
        }
        let mut artifact = Artifact {
            name: name.clone(),
            digest: top.digest().clone(),
            blobs,
            units: Vec::new(),
            tree: ModelTree {
                root: PathBuf::from(&name),
                entries: Vec::new(),
            },
            index: HashMap::new(),
            links: HashMap::new(),
            heads: HashMap::new(),
        };
        let mut heads_left = MODELPACK_HEADS;
        // What the listings of all layers may hold together, as for the layers of an image.
        let (mut entries, mut path_bytes) = (0usize, 0usize);
        for (i, desc) in layers.iter().enumerate() {
            digest::require_sha256(desc.digest())?;
            let media_type = desc.media_type().to_string();
            let Some((_, packing)) = parse_layer_media_type(&media_type) else {
                return Err(refused(
                    &name,
                    format!(
                        "layer {i} ({}) has the media type {}, which is not one of ModelPack's",
                        desc.digest(),
                        escape(&media_type)
                    ),
                    "a ModelPack layer is application/vnd.cncf.model.{weight,weight.config,doc,code,dataset}.v1.{raw,tar,tar+gzip,tar+zstd}",
                ));
            };
            let filepath = desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_FILEPATH));
            let unit = match packing {
                Packing::Raw => {
                    let Some(path) = filepath else {
                        return Err(refused(
                            &name,
                            format!(
                                "raw layer {} has no {ANNOTATION_FILEPATH} annotation, so its file has no name",
                                desc.digest()
                            ),
                            "ModelPack packagers name each raw layer's file with this annotation; repack the artifact",
                        ));
                    };
                    let Some(rel) = safe_path(&name, desc.digest(), path.as_bytes())? else {
                        return Err(refused(
                            &name,
                            format!("raw layer {} is named as the model's root", desc.digest()),
                            REPACK_HINT,
                        ));
                    };
                    Unit {
                        desc: desc.clone(),
                        packing,
                        entries: vec![UnitEntry {
                            rel,
                            kind: EntryKind::File { size: desc.size() },
                            offset: 0,
                            sha256: Some(digest::hex_of(desc.digest()).to_string()),
                        }],
                        diff_id: None,
                        reusable: false,
                        prefixed: false,
                        content: desc.size(),
                    }
                }
                _ => {
                    let names_models = filepath.is_some_and(|p| {
                        p.trim_start_matches("./") == MODEL_ROOT
                            || p.trim_start_matches("./").starts_with("models/")
                    });
                    let (unit, heads) = artifact.blobs.retrying(|| {
                        list_tar(
                            &artifact.blobs,
                            &name,
                            (desc, packing),
                            settings,
                            names_models,
                            heads_left,
                            expansion,
                        )
                    })?;
                    for (rel, head) in heads {
                        heads_left = heads_left.saturating_sub(head.len());
                        artifact.heads.insert(rel, head);
                    }
                    unit
                }
            };
            entries += unit.entries.len();
            path_bytes += unit
                .entries
                .iter()
                .map(|e| {
                    e.rel.len()
                        + match &e.kind {
                            EntryKind::Symlink { target } => target.len(),
                            _ => 0,
                        }
                })
                .sum::<usize>();
            if entries > MAX_ENTRIES || path_bytes > MAX_PATH_BYTES {
                return Err(Error::limit(format!(
                    "ModelPack artifact {} holds more than {MAX_ENTRIES} entries or {MAX_PATH_BYTES} bytes of paths in its layers, the most modelcar lists for a model",
                    escape(&name)
                )));
            }
            artifact.units.push(unit);
        }
        artifact.index_files()?;
        Ok(artifact)
    }

    /// Put the units' entries together into the tree: one source for each path, directories
    /// for every ancestor, links that resolve inside the model.
    fn index_files(&mut self) -> Result<()> {
        let mut kinds: BTreeMap<String, EntryKind> = BTreeMap::new();
        let mut origin: HashMap<String, usize> = HashMap::new();
        for (u, unit) in self.units.iter().enumerate() {
            for (e, entry) in unit.entries.iter().enumerate() {
                if let Some(prev) = kinds.get(&entry.rel) {
                    if *prev == EntryKind::Dir && entry.kind == EntryKind::Dir {
                        continue;
                    }
                    let other = origin
                        .get(&entry.rel)
                        .map(|&o| self.units[o].desc.digest().to_string());
                    return Err(refused(
                        &self.name,
                        format!(
                            "{} is given twice (by layer {} and by layer {})",
                            escape(&entry.rel),
                            other.unwrap_or_default(),
                            unit.desc.digest()
                        ),
                        "each path of the model may come from one layer only; repack the artifact",
                    ));
                }
                kinds.insert(entry.rel.clone(), entry.kind.clone());
                origin.insert(entry.rel.clone(), u);
                if !matches!(entry.kind, EntryKind::Dir) {
                    self.index.insert(entry.rel.clone(), (u, e));
                }
            }
        }
        let rels: Vec<String> = kinds.keys().cloned().collect();
        for rel in &rels {
            for a in ancestors(rel) {
                match kinds.get(a) {
                    None => {
                        kinds.insert(a.to_string(), EntryKind::Dir);
                    }
                    Some(EntryKind::Dir) => {}
                    Some(EntryKind::File { .. }) => {
                        return Err(refused(
                            &self.name,
                            format!(
                                "{} is a file, and also the directory of {}",
                                escape(a),
                                escape(rel)
                            ),
                            "repack the artifact so that no path is both a file and a directory",
                        ))
                    }
                    Some(EntryKind::Symlink { .. }) => {
                        return Err(refused(
                            &self.name,
                            format!(
                            "{} is placed under the symlink {}, and would be written through it",
                            escape(rel),
                            escape(a)
                        ),
                            REPACK_HINT,
                        ))
                    }
                }
            }
        }
        for (rel, kind) in &kinds {
            if let EntryKind::Symlink { .. } = kind {
                let to = resolve_link(&kinds, rel).map_err(|why| {
                    refused(
                        &self.name,
                        format!("the symlink {} points {why}", escape(rel)),
                        REPACK_HINT,
                    )
                })?;
                self.links.insert(rel.clone(), to);
            }
        }
        if !kinds.values().any(|k| matches!(k, EntryKind::File { .. })) {
            return Err(refused(
                &self.name,
                "holds no files",
                "KServe's modelcar-init container fails when /models is empty: package the model files",
            ));
        }
        self.tree.entries = kinds
            .into_iter()
            .map(|(rel, kind)| ModelEntry {
                rel,
                kind,
                source: PathBuf::new(),
                stat: StatKey {
                    dev: 0,
                    ino: 0,
                    size: 0,
                    mtime_ns: 0,
                    ctime_ns: 0,
                },
            })
            .collect();
        Ok(())
    }

    /// What `/models` will hold: every path of the artifact with its kind (the entries read no
    /// file from disk: their contents are in the artifact's blobs).
    pub fn tree(&self) -> &ModelTree {
        &self.tree
    }

    /// Each model file's SHA-256 (hex), from the listing pass and the raw layers' digests.
    pub fn file_digests(&self) -> Vec<crate::provenance::bom::FileDigest> {
        self.tree
            .files()
            .filter_map(|(e, size)| {
                let (u, i) = self.index.get(&e.rel)?;
                Some(crate::provenance::bom::FileDigest {
                    path: e.rel.clone(),
                    sha256: self.units[*u].entries[*i].sha256.clone()?,
                    size,
                })
            })
            .collect()
    }

    /// How many of the artifact's layers are already what modelcar writes.
    pub fn reusable_layers(&self) -> usize {
        self.units.iter().filter(|u| u.reusable).count()
    }

    /// Split the units into the image's layers, as a model directory's files are split: units
    /// of at least `threshold` bytes keep a layer each (reusable ones as they are), the others
    /// share one that also carries every directory, within `max_layers`.
    fn plan(&self, mode: LayerMode, threshold: u64, max_layers: usize) -> Vec<Group> {
        let first = |u: usize| {
            self.units[u]
                .entries
                .first()
                .map(|e| e.rel.clone())
                .unwrap_or_default()
        };
        let mut all: Vec<usize> = (0..self.units.len()).collect();
        all.sort_by_key(|&u| first(u));
        if mode == LayerMode::Single {
            return vec![Group::of(all, false, true, &first)];
        }
        let max_layers = max_layers.max(1);
        let reusable = all.iter().filter(|&&u| self.units[u].reusable).count();
        let keep_reuse = reusable < max_layers;
        let reused = |u: usize| keep_reuse && self.units[u].reusable;
        let (small, singles): (Vec<usize>, Vec<usize>) = all
            .into_iter()
            .partition(|&u| !reused(u) && self.units[u].content < threshold);
        let covered: BTreeSet<&str> = singles
            .iter()
            .filter(|&&u| reused(u))
            .flat_map(|&u| self.units[u].entries.iter())
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.rel.as_str())
            .collect();
        let uncovered_dirs = self
            .tree
            .entries
            .iter()
            .any(|e| e.kind == EntryKind::Dir && !covered.contains(e.rel.as_str()));
        let rewritten = singles.iter().any(|&u| !reused(u));
        let mut groups = Vec::new();
        if !small.is_empty() || (rewritten && uncovered_dirs) {
            groups.push(Group::of(small, false, true, &first));
        }
        let slots = max_layers.saturating_sub(groups.len()).max(1);
        let big = singles.iter().filter(|&&u| !reused(u)).count();
        let reserved = singles.len() - big;
        let per_layer = big.div_ceil(slots.saturating_sub(reserved).max(1)).max(1);
        let mut pending: Vec<usize> = Vec::new();
        for u in singles {
            if reused(u) {
                groups.push(Group::of(vec![u], true, false, &first));
                continue;
            }
            pending.push(u);
            if pending.len() == per_layer {
                groups.push(Group::of(
                    std::mem::take(&mut pending),
                    false,
                    false,
                    &first,
                ));
            }
        }
        if !pending.is_empty() {
            groups.push(Group::of(pending, false, false, &first));
        }
        groups
    }

    /// Write the image's model layers into `dest`, up to `threads` at once; a layer that failed
    /// temporarily (a registry's dropped connection) is written again, as `retry` retries.
    #[allow(clippy::too_many_arguments)]
    pub fn write_layers<D: LayerDestination>(
        &self,
        store: &Store,
        dest: &D,
        spec: &crate::build::BuildSpec,
        settings: &EntrySettings,
        max_layers: usize,
        mount_target: Option<&ImageRef>,
        retry: Option<&Client>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<BuiltLayer>> {
        let groups = self.plan(spec.layers, spec.layer_threshold, max_layers);
        let results: Mutex<Vec<Option<BuiltLayer>>> = Mutex::new(vec![None; groups.len()]);
        let indices: Vec<usize> = (0..groups.len()).collect();
        crate::registry::pull::parallel(spec.threads.max(1), &indices, |&i| {
            let g = &groups[i];
            let write = || {
                if g.reuse {
                    self.adopt(store, dest, g.units[0], settings, mount_target, progress)
                } else {
                    self.write_group(
                        store,
                        dest,
                        g,
                        settings,
                        spec.compression,
                        spec.threads,
                        progress,
                    )
                }
            };
            let built = match retry {
                Some(c) => c.retrying(write),
                None => self.blobs.retrying(write),
            }?;
            results.lock().expect("no worker panics")[i] = Some(built);
            Ok(())
        })?;
        Ok(results
            .into_inner()
            .expect("no worker panics")
            .into_iter()
            .flatten()
            .collect())
    }

    /// A source layer used as it is: present in, mounted into or copied into `dest`.
    fn adopt<D: LayerDestination>(
        &self,
        store: &Store,
        dest: &D,
        u: usize,
        settings: &EntrySettings,
        mount_target: Option<&ImageRef>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<BuiltLayer> {
        let unit = &self.units[u];
        let from = match (&self.blobs, mount_target) {
            (Blobs::Registry { image, .. }, Some(t))
                if image.registry == t.registry && image.repository != t.repository =>
            {
                Some(image)
            }
            _ => None,
        };
        let what = format!("layer {} of {}", unit.desc.digest(), escape(&self.name));
        let open = || -> Result<Box<dyn Read + '_>> { Ok(self.blobs.open_at(&unit.desc, 0)?) };
        let how = dest.adopt(&unit.desc, from, &open, &what)?;
        progress(unit.content);
        let compression = match unit.packing {
            Packing::TarGzip => Compression::Gzip,
            Packing::TarZstd => Compression::Zstd,
            _ => Compression::None,
        };
        let mut listing = Vec::new();
        let prefix = |rel: &str| format!("{MODEL_ROOT}/{rel}");
        listing.push(layer::listed(&canonical_header(
            MODEL_ROOT,
            &EntryKind::Dir,
            settings,
        )?)?);
        for e in &unit.entries {
            listing.push(layer::listed(&canonical_header(
                &prefix(&e.rel),
                &e.kind,
                settings,
            )?)?);
        }
        crate::rootfs::remember_listing(store, unit.desc.digest(), &listing);
        let files: Vec<&UnitEntry> = unit
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .collect();
        Ok(BuiltLayer {
            media_type: compression.oci_media_type().to_string(),
            digest: unit.desc.digest().to_string(),
            size: unit.desc.size(),
            diff_id: unit
                .diff_id
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| unit.desc.digest().to_string()),
            compression,
            files: files.iter().map(|e| e.rel.clone()).collect(),
            content_bytes: unit.content,
            file_digests: Some(
                files
                    .iter()
                    .filter_map(|e| Some((e.rel.clone(), e.sha256.clone()?)))
                    .collect(),
            ),
            cached: false,
            reused: Some(how),
        })
    }

    /// The compression of a layer made of these units.
    fn compression(&self, group: &Group, choice: CompressionChoice) -> Result<Compression> {
        Ok(match choice {
            CompressionChoice::None => Compression::None,
            CompressionChoice::Gzip => Compression::Gzip,
            CompressionChoice::Zstd => Compression::Zstd,
            CompressionChoice::Auto => {
                let (window, budget) = layer::SAMPLE_SIZES;
                let mut sample = Vec::new();
                'units: for &u in &group.units {
                    for e in &self.units[u].entries {
                        if sample.len() >= budget {
                            break 'units;
                        }
                        if let EntryKind::File { .. } = e.kind {
                            let want = window.min((budget - sample.len()) as u64);
                            sample.extend(self.read_at(&e.rel, 0, want)?);
                        }
                    }
                }
                if layer::sample_compresses(&sample)? {
                    Compression::Gzip
                } else {
                    Compression::None
                }
            }
        })
    }

    /// Write one image layer from the units of `group`, streaming their blobs.
    #[allow(clippy::too_many_arguments)]
    fn write_group<D: LayerDestination>(
        &self,
        store: &Store,
        dest: &D,
        group: &Group,
        settings: &EntrySettings,
        choice: CompressionChoice,
        threads: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<BuiltLayer> {
        let cache_file = store
            .cache_dir()
            .join("modelpack-layers")
            .join(format!("{}.json", self.cache_key(group, settings, choice)));
        if let Some(hit) = read_cache::<BuiltLayer>(&cache_file).filter(|l| {
            l.digest
                .parse::<Digest>()
                .is_ok_and(|d| dest.has(&d, l.size))
        }) {
            progress(hit.content_bytes);
            return Ok(BuiltLayer {
                cached: true,
                ..hit
            });
        }
        let compression = self.compression(group, choice)?;
        let sink_err = |e: io::Error| {
            Error::from_io(e).unwrap_or_else(|e| Error::Io {
                op: "write a layer into the store at",
                path: store.root().to_path_buf(),
                source: e,
            })
        };
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        if group.shared {
            dirs.extend(
                self.tree
                    .entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Dir)
                    .map(|e| e.rel.clone()),
            );
        }
        for &u in &group.units {
            for e in &self.units[u].entries {
                if e.kind == EntryKind::Dir {
                    dirs.insert(e.rel.clone());
                }
                dirs.extend(ancestors(&e.rel).map(str::to_string));
            }
        }
        let mut w = GroupWriter {
            sink: layer::Sink::new(dest.begin()?, compression, threads)?,
            settings,
            dirs: dirs.into_iter().collect::<Vec<_>>().into_iter().peekable(),
            listing: Vec::new(),
            files: Vec::new(),
            digests: BTreeMap::new(),
            content: 0,
        };
        w.put(&canonical_header(MODEL_ROOT, &EntryKind::Dir, settings)?)
            .map_err(sink_err)?;
        let mut buf = crate::readbuf::ReadBuf::new(layer::IO_BUFFER);
        for &u in &group.units {
            self.stream_unit(&mut w, u, &mut buf, progress, &sink_err)?;
        }
        w.dirs_before(None).map_err(sink_err)?;
        w.sink.write_all(&[0u8; 1024]).map_err(sink_err)?;
        let (blob, diff) = w.sink.finish().map_err(sink_err)?;
        let (sealed, digest, size) = dest.seal(blob)?;
        let diff_id = diff.map(|(d, _)| d).unwrap_or_else(|| digest.clone());
        crate::rootfs::remember_listing(store, &digest, &w.listing);
        let built = BuiltLayer {
            media_type: compression.oci_media_type().to_string(),
            digest: digest.to_string(),
            size,
            diff_id: diff_id.to_string(),
            compression,
            files: w.files,
            content_bytes: w.content,
            file_digests: Some(w.digests),
            cached: false,
            reused: None,
        };
        // Noted before the blob is put in place, as a directory build's layers are: a hit
        // counts only once the destination holds it.
        write_cache(&cache_file, &built);
        dest.commit(sealed)?;
        Ok(built)
    }

    fn cache_key(
        &self,
        group: &Group,
        settings: &EntrySettings,
        choice: CompressionChoice,
    ) -> String {
        #[derive(Serialize)]
        struct Key<'k> {
            version: u32,
            settings: &'k EntrySettings,
            choice: CompressionChoice,
            /// Directories written beside the files (every one, for the shared layer).
            dirs: Vec<&'k str>,
            layers: Vec<String>,
        }
        let key = Key {
            version: layer::LAYER_FORMAT_VERSION,
            settings,
            choice,
            dirs: if group.shared {
                self.tree
                    .entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Dir)
                    .map(|e| e.rel.as_str())
                    .collect()
            } else {
                Vec::new()
            },
            layers: group
                .units
                .iter()
                .map(|&u| self.units[u].desc.digest().to_string())
                .collect(),
        };
        hex::encode(Sha256::digest(
            serde_json::to_vec(&key).expect("key serialises"),
        ))
    }

    /// Stream one unit's files into the layer being written, checking them against the listing
    /// and the blob against its digest.
    fn stream_unit<W: Write>(
        &self,
        w: &mut GroupWriter<'_, W>,
        u: usize,
        buf: &mut [u8],
        progress: &(dyn Fn(u64) + Sync),
        sink_err: &dyn Fn(io::Error) -> Error,
    ) -> Result<()> {
        let unit = &self.units[u];
        let what = format!("layer {} of {}", unit.desc.digest(), escape(&self.name));
        let mut blob = Verified::new(self.blobs.open_at(&unit.desc, 0)?, unit.desc.size());
        if unit.packing == Packing::Raw {
            let e = &unit.entries[0];
            let EntryKind::File { size } = e.kind else {
                unreachable!("a raw layer is one file")
            };
            let copied = copy_file(
                &mut blob,
                w,
                (&e.rel, &e.kind),
                size,
                buf,
                progress,
                &what,
                sink_err,
            )?;
            if copied.is_none() {
                return Err(Error::corrupt(format!(
                    "{what} ends before its {size} bytes"
                )));
            }
            return blob.check(&unit.desc, &what);
        }
        {
            let d = decoder(unit.packing, &mut blob, &what)?;
            let mut tar = TarReader::new(Tracked {
                inner: d,
                pos: 0,
                hasher: Sha256::new(),
            });
            let changed = || Error::corrupt(format!("{what} changed between two reads"));
            let mut listed = unit.entries.iter();
            while let Some((_, node)) = tar.next_entry().map_err(|e| e.about(&what))? {
                let raw = tar.raw_path().to_vec();
                let Some(rel) = safe_path(&self.name, unit.desc.digest(), &raw)? else {
                    continue;
                };
                let rel = match (unit.prefixed, rel.strip_prefix("models/")) {
                    (true, Some(r)) => r.to_string(),
                    (true, None) => continue,
                    (false, _) => rel,
                };
                let e = listed.next().ok_or_else(changed)?;
                if e.rel != rel {
                    return Err(changed());
                }
                match (&e.kind, node) {
                    (EntryKind::Dir, Node::Dir { .. }) => {}
                    (EntryKind::Symlink { target }, Node::Symlink { target: t })
                        if *target == t =>
                    {
                        w.file_header(&e.rel, &e.kind).map_err(sink_err)?;
                    }
                    (EntryKind::File { size }, Node::File { size: s, .. }) if *size == s => {
                        let hex = copy_file(
                            &mut tar.contents(),
                            w,
                            (&e.rel, &e.kind),
                            s,
                            buf,
                            progress,
                            &what,
                            sink_err,
                        )?
                        .ok_or_else(|| {
                            Error::corrupt(format!("{what} ends inside {}", escape(&e.rel)))
                        })?;
                        if e.sha256.as_deref() != Some(hex.as_str()) {
                            return Err(changed());
                        }
                    }
                    _ => return Err(changed()),
                }
            }
            if listed.next().is_some() {
                return Err(changed());
            }
        }
        blob.check(&unit.desc, &what)
    }
}

impl ModelFiles for Artifact<'_> {
    fn files(&self) -> Vec<(String, u64)> {
        self.tree
            .entries
            .iter()
            .filter_map(|e| {
                let rel = match &e.kind {
                    EntryKind::File { .. } => &e.rel,
                    EntryKind::Symlink { .. } => self.links.get(&e.rel)?,
                    EntryKind::Dir => return None,
                };
                let (u, i) = self.index.get(rel)?;
                match self.units[*u].entries[*i].kind {
                    EntryKind::File { size } => Some((e.rel.clone(), size)),
                    _ => None,
                }
            })
            .collect()
    }

    fn read_at(&self, rel: &str, offset: u64, n: u64) -> Result<Vec<u8>> {
        let file = self.links.get(rel).map(String::as_str).unwrap_or(rel);
        let Some(&(u, i)) = self.index.get(file) else {
            return Err(Error::invalid(format!(
                "{} holds no file {}",
                escape(&self.name),
                escape(rel)
            )));
        };
        let unit = &self.units[u];
        let entry = &unit.entries[i];
        let EntryKind::File { size } = entry.kind else {
            return Ok(Vec::new());
        };
        if offset >= size {
            return Ok(Vec::new());
        }
        let n = n.min(size - offset);
        if let Some(head) = self.heads.get(file) {
            if offset + n <= head.len() as u64 {
                return Ok(head[offset as usize..(offset + n) as usize].to_vec());
            }
        }
        self.blobs
            .read_range(&unit.desc, unit.packing, entry.offset + offset, n)
    }
}

/// Source layers that become one image layer, in the order they are written (by their first
/// path). `reuse`: the one source layer is used as it is; `shared`: the layer also carries every
/// directory of the model (as the shared layer of a model directory does).
#[derive(Debug)]
struct Group {
    units: Vec<usize>,
    reuse: bool,
    shared: bool,
}

impl Group {
    fn of(
        mut units: Vec<usize>,
        reuse: bool,
        shared: bool,
        first: &dyn Fn(usize) -> String,
    ) -> Group {
        units.sort_by_key(|&u| first(u));
        Group {
            units,
            reuse,
            shared,
        }
    }
}

/// The tar stream of an image layer being written: directories are written in path order just
/// before the first entry that sorts after them, so a layer made from entries in path order is
/// in path order throughout, as modelcar writes a model directory.
struct GroupWriter<'s, W: Write> {
    sink: layer::Sink<W>,
    settings: &'s EntrySettings,
    dirs: std::iter::Peekable<std::vec::IntoIter<String>>,
    listing: crate::rootfs::Listing,
    files: Vec<String>,
    digests: BTreeMap<String, String>,
    content: u64,
}

impl<W: Write> GroupWriter<'_, W> {
    fn put(&mut self, h: &[u8]) -> io::Result<()> {
        self.sink.write_all(h)?;
        self.listing.push(layer::listed(h).map_err(Error::into_io)?);
        Ok(())
    }

    /// Write the directories that sort before `rel` (all that are left with `None`).
    fn dirs_before(&mut self, rel: Option<&str>) -> io::Result<()> {
        while let Some(d) = self.dirs.next_if(|d| rel.is_none_or(|r| d.as_str() < r)) {
            let h = canonical_header(&format!("{MODEL_ROOT}/{d}"), &EntryKind::Dir, self.settings)
                .map_err(Error::into_io)?;
            self.put(&h)?;
        }
        Ok(())
    }

    fn file_header(&mut self, rel: &str, kind: &EntryKind) -> io::Result<()> {
        self.dirs_before(Some(rel))?;
        let h = canonical_header(&format!("{MODEL_ROOT}/{rel}"), kind, self.settings)
            .map_err(Error::into_io)?;
        self.put(&h)
    }

    /// After a file's contents: padding, and what the layer records of it. Returns its SHA-256.
    fn file_end(&mut self, rel: &str, size: u64, hasher: Sha256) -> io::Result<String> {
        layer::pad(&mut self.sink, size)?;
        let hex = hex::encode(hasher.finalize());
        self.files.push(rel.to_string());
        self.digests.insert(rel.to_string(), hex.clone());
        self.content += size;
        Ok(hex)
    }
}

/// One file (`rel`, `kind`) into the layer: its header, `size` bytes of contents from `from`
/// (hashed on the way) and its end. Its hex SHA-256, or `None` if `from` ended first.
#[allow(clippy::too_many_arguments)]
fn copy_file<W: Write>(
    from: &mut impl Read,
    w: &mut GroupWriter<'_, W>,
    (rel, kind): (&str, &EntryKind),
    size: u64,
    buf: &mut [u8],
    progress: &(dyn Fn(u64) + Sync),
    what: &str,
    sink_err: &dyn Fn(io::Error) -> Error,
) -> Result<Option<String>> {
    w.file_header(rel, kind).map_err(sink_err)?;
    let mut hasher = Sha256::new();
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = from
            .read(&mut buf[..want])
            .map_err(|e| read_error(e, what))?;
        if n == 0 {
            return Ok(None);
        }
        w.sink.write_all(&buf[..n]).map_err(sink_err)?;
        hasher.update(&buf[..n]);
        progress(n as u64);
        left -= n as u64;
    }
    w.file_end(rel, size, hasher).map(Some).map_err(sink_err)
}

/// The first bytes of files, by path.
type Heads = Vec<(String, Vec<u8>)>;

/// The listing pass over one tar layer: its entries (paths checked), each file's SHA-256 and
/// where its contents start, the first bytes of each file of a compressed layer (within
/// `heads_left`), and whether the layer is byte for byte what modelcar writes for them.
fn list_tar(
    blobs: &Blobs<'_>,
    name: &str,
    (desc, packing): (&Descriptor, Packing),
    settings: &EntrySettings,
    names_models: bool,
    mut heads_left: usize,
    expansion: &std::sync::Arc<crate::store::Expansion>,
) -> Result<(Unit, Heads)> {
    let what = format!("layer {} of {}", desc.digest(), escape(name));
    let mut blob = Verified::new(blobs.open_at(desc, 0)?, desc.size());
    let keep_heads = matches!(packing, Packing::TarGzip | Packing::TarZstd);
    let mut entries: Vec<UnitEntry> = Vec::new();
    let mut heads = Vec::new();
    let mut content = 0u64;
    // The stream modelcar would write for the same entries, hashed alongside.
    let mut canonical = Sha256::new();
    let mut in_order = true;
    let mut last: Option<String> = None;
    let mut buf = vec![0u8; 1 << 20];
    let diff_id = {
        let mut d = decoder(packing, &mut blob, &what)?;
        if keep_heads {
            // The listing pass decompresses the whole layer: a bomb is cut off here, before
            // the writing pass reads it again.
            d = crate::rootfs::bound_expansion(d, desc, expansion);
        }
        let mut tar = TarReader::new(Tracked {
            inner: d,
            pos: 0,
            hasher: Sha256::new(),
        });
        while let Some((_, node)) = tar.next_entry().map_err(|e| e.about(&what))? {
            let raw = tar.raw_path().to_vec();
            let Some(rel) = safe_path(name, desc.digest(), &raw)? else {
                in_order = false;
                continue;
            };
            if last.as_ref().is_some_and(|l| *l >= rel) {
                in_order = false;
            }
            last = Some(rel.clone());
            let kind = match node {
                Node::Dir { .. } => EntryKind::Dir,
                Node::File { size, .. } => EntryKind::File { size },
                Node::Symlink { target } => EntryKind::Symlink { target },
                Node::Hardlink { target } => {
                    return Err(refused(
                        name,
                        format!(
                            "layer {} holds {} as a hard link to {}",
                            desc.digest(),
                            escape(&rel),
                            escape(&target)
                        ),
                        "modelcar packs regular files, directories and symlinks: repack the artifact with the file itself or a symlink",
                    ))
                }
                Node::Other => {
                    return Err(refused(
                        name,
                        format!(
                            "layer {} holds {}, which is not a regular file, directory or symlink",
                            desc.digest(),
                            escape(&rel)
                        ),
                        "remove devices, pipes and sockets from the model",
                    ))
                }
            };
            canonical.update(canonical_header(&rel, &kind, settings)?);
            let offset = tar.get_ref().pos;
            let mut sha256 = None;
            if let EntryKind::File { size } = kind {
                let mut hasher = Sha256::new();
                let mut head = Vec::new();
                let mut contents = tar.contents();
                let mut seen = 0u64;
                loop {
                    let n = contents.read(&mut buf).map_err(|e| read_error(e, &what))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    canonical.update(&buf[..n]);
                    let room = (FORMAT_HEAD as usize)
                        .saturating_sub(head.len())
                        .min(heads_left)
                        .min(n);
                    if keep_heads && room > 0 {
                        head.extend_from_slice(&buf[..room]);
                        heads_left -= room;
                    }
                    seen += n as u64;
                }
                if seen != size {
                    return Err(Error::corrupt(format!(
                        "{what} ends inside {}",
                        escape(&rel)
                    )));
                }
                let rem = (size % 512) as usize;
                if rem != 0 {
                    canonical.update(&[0u8; 512][..512 - rem]);
                }
                content += size;
                sha256 = Some(hex::encode(hasher.finalize()));
                if !head.is_empty() {
                    heads.push((rel.clone(), head));
                }
            }
            entries.push(UnitEntry {
                rel,
                kind,
                offset,
                sha256,
            });
        }
        canonical.update([0u8; 1024]);
        let mut tracked = tar.into_inner();
        io::copy(&mut tracked, &mut io::sink()).map_err(|e| read_error(e, &what))?;
        digest::from_hasher(tracked.hasher)
    };
    blob.check(desc, &what)?;
    // modelcar's own layers (as `build --modelpack` publishes them) hold `models/` and the
    // model below it: that directory is the model's root.
    let prefixed = !names_models
        && entries
            .first()
            .is_some_and(|e| e.rel == MODEL_ROOT && e.kind == EntryKind::Dir)
        && entries
            .iter()
            .all(|e| e.rel == MODEL_ROOT || e.rel.starts_with("models/"));
    if prefixed {
        entries.remove(0);
        for e in &mut entries {
            e.rel = e.rel["models/".len()..].to_string();
        }
        for h in &mut heads {
            h.0 = h.0["models/".len()..].to_string();
        }
    }
    let parents_first = {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        entries.iter().all(|e| {
            let ok = ancestors(&e.rel).all(|a| seen.contains(a));
            if e.kind == EntryKind::Dir {
                seen.insert(&e.rel);
            }
            ok
        })
    };
    let reusable =
        prefixed && in_order && parents_first && digest::from_hasher(canonical) == diff_id;
    Ok((
        Unit {
            desc: desc.clone(),
            packing,
            entries,
            diff_id: Some(diff_id),
            reusable,
            prefixed,
            content,
        },
        heads,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(list: &[(&str, EntryKind)]) -> BTreeMap<String, EntryKind> {
        list.iter()
            .map(|(p, k)| (p.to_string(), k.clone()))
            .collect()
    }

    fn link(t: &str) -> EntryKind {
        EntryKind::Symlink { target: t.into() }
    }

    #[test]
    fn paths_are_refused_when_they_leave_the_model() {
        let d: Digest = digest::sha256_of(b"x");
        let ok = |p: &str| safe_path("a", &d, p.as_bytes()).unwrap();
        assert_eq!(
            ok("./weights/model.bin").as_deref(),
            Some("weights/model.bin")
        );
        assert_eq!(ok("a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(ok("./"), None);
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "sub/.wh.model.bin",
        ] {
            let e = safe_path("a", &d, bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(bad) || e.contains("whiteout"), "{bad}: {e}");
        }
        assert!(safe_path("a", &d, b"\xff\xfe").is_err());
    }

    #[test]
    fn links_resolve_inside_the_model_or_are_refused() {
        let file = EntryKind::File { size: 1 };
        let k = kinds(&[
            ("d", EntryKind::Dir),
            ("d/w.bin", file.clone()),
            ("top", link("d/w.bin")),
            ("d/up", link("../top")),
            ("d/self", link(".")),
            ("d/chain", link("self/w.bin")),
            ("esc", link("../outside")),
            ("abs", link("/etc/passwd")),
            ("via", link("d/self/../../x")),
            ("loop1", link("loop2")),
            ("loop2", link("loop1")),
            ("gone", link("nothing")),
            ("thru", link("d/w.bin/x")),
        ]);
        assert_eq!(resolve_link(&k, "top").unwrap(), "d/w.bin");
        assert_eq!(resolve_link(&k, "d/up").unwrap(), "d/w.bin");
        assert_eq!(resolve_link(&k, "d/chain").unwrap(), "d/w.bin");
        assert!(resolve_link(&k, "esc").unwrap_err().contains("outside"));
        assert!(resolve_link(&k, "abs").unwrap_err().contains("absolute"));
        // d/self is d itself, so d/self/../.. climbs above the root.
        assert!(resolve_link(&k, "via").unwrap_err().contains("outside"));
        assert!(resolve_link(&k, "loop1").unwrap_err().contains("loop"));
        assert!(resolve_link(&k, "gone")
            .unwrap_err()
            .contains("does not exist"));
        assert!(resolve_link(&k, "thru")
            .unwrap_err()
            .contains("through a file"));
    }

    #[test]
    fn sources_parse_as_registry_or_layout() {
        let r: SourceRef = "modelpack:quay.io/org/m:v1".parse().unwrap();
        assert!(matches!(r, SourceRef::Registry(ref i) if i.repository == "org/m"));
        assert_eq!(r.to_string(), "modelpack:quay.io/org/m:v1");
        let l: SourceRef = "modelpack:oci:/tmp/lay:v2".parse().unwrap();
        assert_eq!(
            l,
            SourceRef::Layout {
                path: "/tmp/lay".into(),
                reference: Some("v2".into())
            }
        );
        assert!("modelpack:".parse::<SourceRef>().is_err());
        assert!("modelpack:oci-archive:/x.tar".parse::<SourceRef>().is_err());
        assert!(SourceRef::of_models_arg("models/sklearn").is_none());
    }
}
