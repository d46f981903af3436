//! Sources and sinks of images: OCI layout directories, OCI archives, Docker archives and the
//! local store.
//!
//! Every source is read into the local store (which is the cache of base images): blobs are
//! streamed through a digest check, so content that does not match its descriptor never lands.
//! Every sink is written from the store. Registries are one more source and sink of the same kind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType, Platform};

use crate::digest::{self, HashingReader};
use crate::error::{io_err, Error, Result};
use crate::image::{self, Compression, Document, DocumentKind, PlatformFilter};
use crate::json;
use crate::limits::{MAX_DESCRIPTORS, MAX_DOCUMENT};
use crate::progress::Progress;
use crate::reference::Location;
use crate::registry::{self, pull::PullPolicy, Client};
use crate::rootfs::{ListingError, Node, TarReader};
use crate::scratch;
use crate::store::{self, Store};

/// An image found in (or imported into) the store.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The top document: an index or a manifest.
    pub descriptor: Descriptor,
    /// A name for the image, as the user spelled its location.
    pub name: String,
    /// The image's own name inside its source (its `ref.name` in an OCI layout, its first tag in
    /// a Docker archive), when it has one.
    pub tag: Option<String>,
}

/// Somewhere blobs can be read from by descriptor.
trait BlobSource {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>>;
    fn describe(&self) -> String;
}

impl BlobSource for Store {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.open_blob(digest)?))
    }
    fn describe(&self) -> String {
        format!("the store at {}", self.root().display())
    }
}

struct LayoutDir(PathBuf);

impl BlobSource for LayoutDir {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        let path = self
            .0
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest());
        let f = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::corrupt(format!(
                    "blob {digest} is missing from the OCI layout {}",
                    self.0.display()
                ))
            } else {
                io_err("open", &path)(e)
            }
        })?;
        Ok(Box::new(f))
    }
    fn describe(&self) -> String {
        format!("the OCI layout {}", self.0.display())
    }
}

/// How registry references are reached while resolving an image.
pub struct Remote<'a> {
    pub client: &'a Client,
    pub policy: PullPolicy,
    pub progress: &'a Progress,
}

/// Find an image in the store, importing it from its location first where needed.
///
/// `platform` narrows what is copied out of a multi-platform source. Without `remote`, registry
/// references are looked up in the store only.
pub fn resolve(
    store: &Store,
    location: &Location,
    platform: Option<&PlatformFilter>,
    remote: Option<&Remote>,
) -> Result<Resolved> {
    let name = location.to_string();
    match location {
        Location::Registry(r) | Location::Remote(r) => {
            let explicit = matches!(location, Location::Remote(_));
            let always = explicit || remote.is_some_and(|x| x.policy == PullPolicy::Always);
            if !always {
                if let Some(d) = find_in_store(store, &r.to_string())? {
                    return Ok(Resolved {
                        descriptor: d,
                        name: r.to_string(),
                        tag: Some(r.to_string()),
                    });
                }
            }
            match remote {
                Some(remote) if explicit || remote.policy != PullPolicy::Never => {
                    let d =
                        registry::pull::pull(remote.client, store, r, platform, remote.progress)?;
                    Ok(Resolved {
                        descriptor: d,
                        name: r.to_string(),
                        tag: Some(r.to_string()),
                    })
                }
                _ => Err(Error::NotFound {
                    reference: r.to_string(),
                    place: format!("the local store ({})", store.root().display()),
                    hint: Some("pull it (modelcar pull, or --pull=missing), or build it".into()),
                }),
            }
        }
        Location::OciDir { path, reference } => {
            let index = read_layout_index(path)?;
            let top = select_entry(&index, reference.as_deref(), &name)?;
            copy_into_store(&LayoutDir(path.clone()), store, &top, platform)?;
            Ok(Resolved {
                tag: store::ref_name(&top).map(str::to_string),
                descriptor: strip_ref(top),
                name,
            })
        }
        Location::OciArchive { path, reference } => {
            import_oci_archive(store, path, reference.as_deref(), &name)
        }
        Location::DockerArchive { path, reference } => {
            import_docker_archive(store, path, reference.as_deref(), &name)
        }
    }
}

/// Look a reference up in the store by name, or by digest for `name@sha256:...`.
pub fn find_in_store(store: &Store, reference: &str) -> Result<Option<Descriptor>> {
    let entries = store.entries()?;
    if let Some(d) = entries
        .iter()
        .find(|d| store::ref_name(d) == Some(reference))
    {
        return Ok(Some(strip_ref(d.clone())));
    }
    if let Some((name, digest)) = reference.split_once('@') {
        let tagged_prefix = format!("{name}:");
        if let Some(d) = entries.iter().find(|d| {
            d.digest().to_string() == digest
                && store::ref_name(d).is_some_and(|n| n.starts_with(&tagged_prefix) || n == name)
        }) {
            return Ok(Some(strip_ref(d.clone())));
        }
    }
    Ok(None)
}

fn strip_ref(mut d: Descriptor) -> Descriptor {
    if let Some(a) = d.annotations().clone() {
        let rest: HashMap<String, String> = a
            .into_iter()
            .filter(|(k, _)| k != store::REF_NAME)
            .collect();
        d.set_annotations(if rest.is_empty() { None } else { Some(rest) });
    }
    d
}

pub(crate) fn read_layout_index(dir: &Path) -> Result<ImageIndex> {
    let path = dir.join("index.json");
    if !dir.join("oci-layout").is_file() {
        return Err(Error::invalid(format!("{} is not an OCI image layout (no oci-layout file)", dir.display()))
            .with_hint("oci: takes a directory written by skopeo copy ... oci:DIR, umoci, buildah push ... oci:DIR or modelcar export"));
    }
    let bytes = store::read_document_file(&path)?;
    image::parse_index(&bytes, &path.display().to_string())
}

pub(crate) fn select_entry(
    index: &ImageIndex,
    reference: Option<&str>,
    name: &str,
) -> Result<Descriptor> {
    let entries = index.manifests();
    match reference {
        Some(r) => {
            if let Some(d) = entries.iter().find(|d| store::ref_name(d) == Some(r)) {
                return Ok(d.clone());
            }
            if let Some(d) = entries
                .iter()
                .find(|d| d.digest().to_string() == r.trim_start_matches('@'))
            {
                return Ok(d.clone());
            }
            let known: Vec<&str> = entries.iter().filter_map(store::ref_name).collect();
            Err(Error::NotFound {
                reference: r.to_string(),
                place: name.to_string(),
                hint: Some(if known.is_empty() {
                    "the layout has no named images; leave out the :REF part".into()
                } else {
                    format!("names in it: {}", known.join(", "))
                }),
            })
        }
        None => match entries.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::invalid(format!("{name} holds no image"))),
            _ => Err(Error::invalid(format!(
                "{name} holds {} images; say which one",
                entries.len()
            ))
            .with_hint(format!(
                "append :REF, one of: {}",
                entries
                    .iter()
                    .filter_map(store::ref_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// Read a whole document from a source, checking digest and size.
fn read_document(src: &dyn BlobSource, desc: &Descriptor) -> Result<Vec<u8>> {
    digest::require_sha256(desc.digest())?;
    image::check_document_size(
        desc.size(),
        &format!("document {} in {}", desc.digest(), src.describe()),
    )?;
    let mut bytes = Vec::new();
    src.open(desc.digest())?
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Error::corrupt(format!(
                "cannot read {} from {}: {e}",
                desc.digest(),
                src.describe()
            ))
        })?;
    let actual = digest::sha256_of(&bytes);
    if &actual != desc.digest() || bytes.len() as u64 != desc.size() {
        return Err(Error::corrupt(format!(
            "{} in {} does not match its digest: expected {} ({} bytes), found {actual} ({} bytes)",
            desc.digest(),
            src.describe(),
            desc.digest(),
            desc.size(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn copy_blob(src: &dyn BlobSource, store: &Store, desc: &Descriptor) -> Result<()> {
    digest::require_sha256(desc.digest())?;
    if store.has_blob(desc.digest(), desc.size()) {
        return Ok(());
    }
    let mut reader = src.open(desc.digest())?;
    let mut w = store.blob_writer()?;
    io::copy(&mut reader, &mut w).map_err(|e| {
        Error::corrupt(format!(
            "cannot copy {} from {}: {e}",
            desc.digest(),
            src.describe()
        ))
    })?;
    w.commit(store, Some((desc.digest(), desc.size())))
        .map_err(|e| Error::corrupt(format!("{} from {}: {e}", desc.digest(), src.describe())))?;
    Ok(())
}

/// Copy an image (index or manifest and everything below) into the store, verified.
fn copy_into_store(
    src: &dyn BlobSource,
    store: &Store,
    top: &Descriptor,
    platform: Option<&PlatformFilter>,
) -> Result<()> {
    let name = format!("image {} in {}", top.digest(), src.describe());
    image::walk(
        top,
        &name,
        &mut Import {
            src,
            store,
            platform,
        },
    )
}

/// The walk of [`copy_into_store`]: each document read and checked on the way down, its blobs
/// copied, and the document itself stored once everything under it is.
struct Import<'a> {
    src: &'a dyn BlobSource,
    store: &'a Store,
    /// Narrows the top index only.
    platform: Option<&'a PlatformFilter>,
}

impl image::Walker for Import<'_> {
    fn enter(&mut self, desc: &Descriptor, depth: usize) -> Result<Vec<Descriptor>> {
        let bytes = read_document(self.src, desc)?;
        let kind = match Document::classify(desc.media_type()) {
            DocumentKind::Other => Document::sniff(&bytes)?.0,
            k => k,
        };
        let what = format!("{} in {}", desc.digest(), self.src.describe());
        match kind {
            DocumentKind::Index => {
                let index = image::parse_index(&bytes, &what)?;
                let platform = if depth == 0 { self.platform } else { None };
                Ok(image::wanted_children(&index, platform).cloned().collect())
            }
            DocumentKind::Manifest => {
                let manifest = image::parse_manifest(&bytes, &what)?;
                copy_blob(self.src, self.store, manifest.config())?;
                for layer in manifest.layers() {
                    copy_blob(self.src, self.store, layer)?;
                }
                Ok(Vec::new())
            }
            DocumentKind::Other => {
                image::reject_schema1(desc.media_type())?;
                Err(Error::Unsupported {
                    what: format!("{what} is not an image manifest or index"),
                    hint: None,
                })
            }
        }
    }

    fn leave(&mut self, desc: &Descriptor) -> Result<()> {
        // Read again rather than held: a walk keeps no document in memory while it descends.
        copy_blob(self.src, self.store, desc)
    }
}

fn open_archive(path: &Path) -> Result<TarReader<BufReader<File>>> {
    let f = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::invalid(format!("archive {} does not exist", path.display()))
        } else {
            io_err("open archive", path)(e)
        }
    })?;
    Ok(TarReader::new(BufReader::with_capacity(1 << 20, f)))
}

/// The next entry of an archive, with errors about the archive.
fn next_entry(
    archive: &mut TarReader<BufReader<File>>,
    path: &Path,
) -> Result<Option<(String, Node)>> {
    archive.next_entry().map_err(|e| match e {
        ListingError::Io(e) => bad_archive(path, e),
        e => e.about(&path.display().to_string()),
    })
}

/// Read a small document out of an archive entry.
fn read_entry(
    archive: &mut TarReader<BufReader<File>>,
    size: u64,
    path: &Path,
    name: &str,
) -> Result<Vec<u8>> {
    let what = format!("{}: {name}", path.display());
    image::check_document_size(size, &what)?;
    let mut b = Vec::new();
    archive
        .contents()
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut b)
        .map_err(|e| bad_archive(path, e))?;
    image::check_document_size(b.len() as u64, &what)?;
    Ok(b)
}

fn bad_archive(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "{} is not a readable tar archive: {e}",
        path.display()
    ))
}

fn import_oci_archive(
    store: &Store,
    path: &Path,
    reference: Option<&str>,
    name: &str,
) -> Result<Resolved> {
    let mut archive = open_archive(path)?;
    let mut index_bytes = None;
    let mut has_layout = false;
    while let Some((p, node)) = next_entry(&mut archive, path)? {
        let Node::File { size, .. } = node else {
            continue;
        };
        if p == "index.json" {
            index_bytes = Some(read_entry(&mut archive, size, path, "index.json")?);
        } else if p == "oci-layout" {
            has_layout = true;
        } else if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            let digest = digest::parse(&format!("sha256:{hex}")).map_err(|_| {
                Error::corrupt(format!(
                    "{}: blob name {p} is not a sha256 digest",
                    path.display()
                ))
            })?;
            if !store.has_blob(&digest, size) {
                let mut w = store.blob_writer()?;
                io::copy(&mut archive.contents(), &mut w).map_err(|e| bad_archive(path, e))?;
                w.commit(store, Some((&digest, size)))
                    .map_err(|e| Error::corrupt(format!("{}: {p}: {e}", path.display())))?;
            }
        }
    }
    let Some(index_bytes) = index_bytes.filter(|_| has_layout) else {
        return Err(Error::invalid(format!(
            "{} is not an OCI archive (no oci-layout and index.json)",
            path.display()
        ))
        .with_hint("for `docker save` output use docker-archive:FILE"));
    };
    let index = image::parse_index(&index_bytes, &format!("{}: index.json", path.display()))?;
    let top = select_entry(&index, reference, name)?;
    // Everything reachable must now be in the store, verified.
    copy_into_store(store, store, &top, None)?;
    Ok(Resolved {
        tag: store::ref_name(&top).map(str::to_string),
        descriptor: strip_ref(top),
        name: name.to_string(),
    })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_archive(
    store: &Store,
    path: &Path,
    reference: Option<&str>,
    name: &str,
) -> Result<Resolved> {
    let mut archive = open_archive(path)?;
    let mut files: HashMap<String, (Digest, u64, Compression)> = HashMap::new();
    let mut manifest_json = None;
    while let Some((p, node)) = next_entry(&mut archive, path)? {
        let Node::File { size, .. } = node else {
            continue;
        };
        if p == "manifest.json" {
            manifest_json = Some(read_entry(&mut archive, size, path, "manifest.json")?);
            continue;
        }
        // Every other file may be a config or a layer: store it under its digest.
        let mut head = [0u8; 4];
        let mut w = store.blob_writer()?;
        let mut contents = archive.contents();
        let mut r = HashingReader::new(&mut contents);
        let mut first = true;
        let mut buf = crate::readbuf::ReadBuf::new(1 << 20);
        loop {
            let n = r.read(&mut buf).map_err(|e| bad_archive(path, e))?;
            if n == 0 {
                break;
            }
            if first {
                let k = n.min(4);
                head[..k].copy_from_slice(&buf[..k]);
                first = false;
            }
            w.write_all(&buf[..n])
                .map_err(io_err("write into the store at", store.root()))?;
        }
        let (d, size) = r.finish();
        w.commit(store, Some((&d, size)))?;
        files.insert(p, (d, size, Compression::sniff(&head)));
    }
    let manifest_json = manifest_json.ok_or_else(|| {
        Error::invalid(format!(
            "{} is not a Docker archive (no manifest.json)",
            path.display()
        ))
        .with_hint("for OCI layouts in a tar use oci-archive:FILE")
    })?;
    let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(&manifest_json)
        .map_err(|e| Error::corrupt(format!("{}: manifest.json: {e}", path.display())))?;
    let listed = entries.len() + entries.iter().map(|e| e.layers.len()).sum::<usize>();
    if listed > MAX_DESCRIPTORS {
        return Err(Error::limit(format!(
            "{}: manifest.json lists {listed} images and layers, more than the {MAX_DESCRIPTORS} accepted",
            path.display()
        )));
    }
    let chosen = match reference {
        Some(r) => {
            let want = r
                .parse::<crate::reference::ImageRef>()
                .map(|x| x.tagged())
                .unwrap_or_default();
            entries.iter().find(|e| {
                e.repo_tags.iter().flatten().any(|t| {
                    t == r
                        || t.parse::<crate::reference::ImageRef>()
                            .map(|x| x.tagged())
                            .ok()
                            .as_deref()
                            == Some(want.as_str())
                })
            })
        }
        None if entries.len() == 1 => entries.first(),
        None => None,
    }
    .ok_or_else(|| {
        let tags: Vec<&String> = entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten())
            .collect();
        Error::NotFound {
            reference: reference.unwrap_or("(none given)").to_string(),
            place: name.to_string(),
            hint: Some(format!(
                "append :NAME:TAG, one of: {}",
                tags.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    })?;
    let lookup = |p: &str| {
        files
            .get(&crate::rootfs::clean_path(p))
            .cloned()
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{}: manifest.json names {p}, which is not in the archive",
                    path.display()
                ))
            })
    };
    let (cdigest, csize, _) = lookup(&chosen.config)?;
    let config_desc = Descriptor::new(MediaType::ImageConfig, csize, cdigest);
    let config = image::read_config(store, &config_desc)?;
    let mut layers = Vec::new();
    for l in &chosen.layers {
        let (d, s, c) = lookup(l)?;
        layers.push(Descriptor::new(c.oci_media_type(), s, d));
    }
    let manifest = image::new_manifest(config_desc, layers);
    let bytes = json::canonical(&manifest);
    let mut top = store.put_document(MediaType::ImageManifest, &bytes)?;
    top.set_platform(platform_of_config(&config));
    Ok(Resolved {
        descriptor: top,
        name: name.to_string(),
        tag: chosen.repo_tags.iter().flatten().next().cloned(),
    })
}

/// The platform an image config declares.
pub fn platform_of_config(config: &serde_json::Value) -> Option<Platform> {
    let os = config.get("os")?.as_str()?;
    let arch = config.get("architecture")?.as_str()?;
    let mut v = serde_json::json!({"os": os, "architecture": arch});
    if let Some(variant) = config.get("variant").and_then(|v| v.as_str()) {
        v["variant"] = variant.into();
    }
    serde_json::from_value(v).ok()
}

/// Every blob an image needs, documents included, in a stable order (children before parents).
pub fn closure(store: &Store, top: &Descriptor) -> Result<Vec<Descriptor>> {
    let mut walk = Closure {
        store,
        out: Vec::new(),
        seen: HashSet::new(),
    };
    image::walk(
        top,
        &format!("image {} in the store", top.digest()),
        &mut walk,
    )?;
    Ok(walk.out)
}

/// The walk of [`closure`].
struct Closure<'a> {
    store: &'a Store,
    out: Vec<Descriptor>,
    seen: HashSet<String>,
}

impl image::Walker for Closure<'_> {
    fn enter(&mut self, desc: &Descriptor, _depth: usize) -> Result<Vec<Descriptor>> {
        match Document::classify(desc.media_type()) {
            DocumentKind::Index => image::present_children(self.store, desc),
            DocumentKind::Manifest => {
                let m = image::read_manifest(self.store, desc)?;
                for d in std::iter::once(m.config()).chain(m.layers()) {
                    if self.seen.insert(d.digest().to_string()) {
                        self.out.push(d.clone());
                    }
                }
                Ok(Vec::new())
            }
            DocumentKind::Other => Ok(Vec::new()),
        }
    }

    fn leave(&mut self, desc: &Descriptor) -> Result<()> {
        if self.seen.insert(desc.digest().to_string()) {
            self.out.push(desc.clone());
        }
        Ok(())
    }
}

/// Write an image from the store to a location (`oci:`, `oci-archive:`, `docker-archive:`).
pub fn export(
    store: &Store,
    top: &Descriptor,
    default_name: &str,
    dest: &Location,
    platform: Option<&PlatformFilter>,
) -> Result<()> {
    match dest {
        Location::OciDir { path, reference } => {
            export_oci_dir(store, top, path, reference.as_deref())
        }
        Location::OciArchive { path, reference } => {
            let name = reference
                .clone()
                .unwrap_or_else(|| default_name.to_string());
            write_archive(path, |tar| write_oci_layout_tar(store, top, &name, tar))
        }
        Location::DockerArchive { path, reference } => {
            let name = reference
                .clone()
                .unwrap_or_else(|| default_name.to_string());
            let chosen = pick_platform(store, top, platform)?;
            write_archive(path, |tar| write_docker_tar(store, &chosen, &name, tar))
        }
        Location::Registry(_) | Location::Remote(_) => Err(Error::Unsupported {
            what: format!(
                "cannot export to {dest}: pushing to registries is not available in this version"
            ),
            hint: Some("export to oci:DIR, oci-archive:FILE or docker-archive:FILE".into()),
        }),
    }
}

fn export_oci_dir(
    store: &Store,
    top: &Descriptor,
    dir: &Path,
    reference: Option<&str>,
) -> Result<()> {
    if dir.exists()
        && !dir.join("oci-layout").exists()
        && fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(Error::invalid(format!(
            "{} exists, is not empty and is not an OCI layout",
            dir.display()
        ))
        .with_hint("export into a new directory or an existing OCI layout"));
    }
    let created = !dir.exists();
    let result = fill_oci_dir(store, top, dir, reference);
    if result.is_err() && created {
        // Nothing half-written stays behind where there was nothing before.
        let _ = fs::remove_dir_all(dir);
    }
    result
}

/// Write an image's blobs into an OCI layout directory, then name it in `index.json`.
fn fill_oci_dir(
    store: &Store,
    top: &Descriptor,
    dir: &Path,
    reference: Option<&str>,
) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
    // First, so that a run killed midway leaves a layout the next run completes.
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_err("write", &layout))?;
    }
    reclaim_export_temporaries(&[dir, &blobs]);
    for d in closure(store, top)? {
        let target = blobs.join(d.digest().digest());
        if fs::metadata(&target).is_ok_and(|m| m.len() == d.size()) {
            continue;
        }
        let source = store.blob_path(d.digest());
        // A hard link costs nothing on the same filesystem and appears whole or not at all.
        if fs::hard_link(&source, &target).is_ok() {
            continue;
        }
        // Another filesystem, or a wrong blob to replace: copy into a temporary file that is
        // removed on any error (a full disk included) and reclaimed by a later export if this
        // one is killed.
        let mut tmp = scratch::create(&blobs, ".", scratch::SUFFIX)
            .map_err(io_err("create a temporary file in", &blobs))?;
        let mut from = store.open_blob(d.digest())?;
        io::copy(&mut from, tmp.as_file_mut()).map_err(io_err("copy a blob to", &target))?;
        tmp.persist(&target)
            .map_err(|e| io_err("write", &target)(e.error))?;
    }
    let mut entries = if dir.join("index.json").exists() {
        read_layout_index(dir)?.manifests().clone()
    } else {
        Vec::new()
    };
    let mut entry = top.clone();
    if let Some(r) = reference {
        entries.retain(|d| store::ref_name(d) != Some(r));
        let mut a = entry.annotations().clone().unwrap_or_default();
        a.insert(store::REF_NAME.to_string(), r.to_string());
        entry.set_annotations(Some(a));
    } else {
        entries.retain(|d| d.digest() != top.digest() || store::ref_name(d).is_some());
    }
    entries.push(entry);
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(entries);
    let path = dir.join("index.json");
    let mut tmp = scratch::create(dir, ".", scratch::SUFFIX).map_err(io_err("write into", dir))?;
    tmp.write_all(&json::canonical(&index))
        .map_err(io_err("write", &path))?;
    tmp.persist(&path)
        .map_err(|e| io_err("write", &path)(e.error))?;
    Ok(())
}

/// Choose one platform's manifest of an image (Docker archives hold one).
pub fn pick_platform(
    store: &Store,
    top: &Descriptor,
    platform: Option<&PlatformFilter>,
) -> Result<image::PlatformImage> {
    let images = image::platform_images(store, top)?;
    let host = host_platform();
    let found = match platform {
        Some(f) => images
            .iter()
            .find(|i| i.platform.as_ref().is_some_and(|p| f.matches(p))),
        None if images.len() == 1 => images.first(),
        None => images
            .iter()
            .find(|i| i.platform.as_ref().is_some_and(|p| host.matches(p)))
            .or(images.first()),
    };
    found.cloned().ok_or_else(|| {
        Error::invalid(format!(
            "the image has no platform {}",
            platform.map(|p| p.to_string()).unwrap_or_default()
        ))
        .with_hint(format!(
            "platforms in it: {}",
            images
                .iter()
                .filter_map(|i| i.platform.as_ref().map(image::platform_string))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The platform of this machine, in Go's spelling.
pub fn host_platform() -> PlatformFilter {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    };
    PlatformFilter {
        os: "linux".into(),
        arch: arch.into(),
        variant: None,
    }
}

fn write_archive(
    path: &Path,
    body: impl FnOnce(&mut tar::Builder<BufWriter<File>>) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    reclaim_export_temporaries(&[dir]);
    // Hidden beside the archive until complete; removed on any error, reclaimed by a later
    // export into the same directory if this one is killed.
    let tmp =
        scratch::create(dir, ".", scratch::SUFFIX).map_err(io_err("create a file in", dir))?;
    let file = tmp.reopen().map_err(io_err("write", tmp.path()))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    body(&mut tar).map_err(|e| match e {
        // The archive is what could not be written, whichever entry was being written.
        Error::Io { source, .. } if crate::error::is_disk_full(&source) => {
            io_err("write", path)(source)
        }
        e => e,
    })?;
    let w = tar.into_inner().map_err(io_err("write", path))?;
    w.into_inner()
        .map_err(|e| io_err("write", path)(e.into_error()))?;
    tmp.persist(path)
        .map_err(|e| io_err("write", path)(e.error))?;
    Ok(())
}

/// Remove the temporary files that killed exports left in `dirs`.
fn reclaim_export_temporaries(dirs: &[&Path]) {
    for dir in dirs {
        let done = scratch::reclaim(dir, scratch::is_hidden_temp);
        if done.files > 0 {
            tracing::info!(
                "removed {} temporary files ({} bytes) left in {} by exports that were killed",
                done.files,
                done.bytes,
                dir.display()
            );
        }
    }
}

fn tar_header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_size(size);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

fn tar_bytes(tar: &mut tar::Builder<BufWriter<File>>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar_header(bytes.len() as u64, false);
    tar.append_data(&mut h, name, bytes)
        .map_err(io_err("write archive entry", name))
}

fn tar_blobs(
    store: &Store,
    tar: &mut tar::Builder<BufWriter<File>>,
    blobs: &[Descriptor],
) -> Result<()> {
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar_header(0, true);
        tar.append_data(&mut h, dir, io::empty())
            .map_err(io_err("write archive entry", dir))?;
    }
    let mut done = HashSet::new();
    for d in blobs {
        if !done.insert(d.digest().to_string()) {
            continue;
        }
        let name = format!("blobs/sha256/{}", d.digest().digest());
        let mut h = tar_header(d.size(), false);
        let f = store.open_blob(d.digest())?;
        tar.append_data(&mut h, &name, f)
            .map_err(io_err("write archive entry", &name))?;
    }
    Ok(())
}

fn write_oci_layout_tar(
    store: &Store,
    top: &Descriptor,
    name: &str,
    tar: &mut tar::Builder<BufWriter<File>>,
) -> Result<()> {
    tar_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut entry = top.clone();
    let mut a = entry.annotations().clone().unwrap_or_default();
    a.insert(store::REF_NAME.to_string(), name.to_string());
    entry.set_annotations(Some(a));
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(vec![entry]);
    tar_bytes(tar, "index.json", &json::canonical(&index))?;
    tar_blobs(store, tar, &closure(store, top)?)
}

fn write_docker_tar(
    store: &Store,
    img: &image::PlatformImage,
    name: &str,
    tar: &mut tar::Builder<BufWriter<File>>,
) -> Result<()> {
    let m = &img.manifest;
    let layer_paths: Vec<String> = m
        .layers()
        .iter()
        .map(|l| format!("blobs/sha256/{}", l.digest().digest()))
        .collect();
    let mut entry = BTreeMap::new();
    entry.insert(
        "Config",
        serde_json::json!(format!("blobs/sha256/{}", m.config().digest().digest())),
    );
    entry.insert("RepoTags", serde_json::json!([name]));
    entry.insert("Layers", serde_json::json!(layer_paths));
    let manifest_json = serde_json::to_vec(&[entry]).expect("serialises");
    // An OCI layout alongside manifest.json, as `docker save` writes since Docker 25.
    tar_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut top = img.descriptor.clone();
    let mut a = HashMap::new();
    a.insert(store::REF_NAME.to_string(), name.to_string());
    a.insert("io.containerd.image.name".to_string(), name.to_string());
    top.set_annotations(Some(a));
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(vec![top]);
    tar_bytes(tar, "index.json", &json::canonical(&index))?;
    tar_bytes(tar, "manifest.json", &manifest_json)?;
    let mut blobs: Vec<Descriptor> = vec![m.config().clone()];
    blobs.extend(m.layers().iter().cloned());
    blobs.push(img.descriptor.clone());
    tar_blobs(store, tar, &blobs)
}
