//! The image vocabulary: documents (index, manifest, config), media types and platforms.
//!
//! Everything that reads or writes images speaks in these terms; sources and sinks (OCI
//! layouts, archives, registries) only move blobs and documents. Docker's schema 2 media types
//! are read everywhere and mapped to their OCI equivalents when an image is written.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType, Platform};

use crate::error::{Error, Result};
use crate::limits::{MAX_ANNOTATION, MAX_DESCRIPTORS, MAX_DOCUMENT, MAX_INDEX_DEPTH};
use crate::store::Store;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What kind of document a descriptor points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Index,
    Manifest,
    Other,
}

/// Helpers on document media types.
pub struct Document;

impl Document {
    pub fn classify(media_type: &MediaType) -> DocumentKind {
        match media_type {
            MediaType::ImageIndex => DocumentKind::Index,
            MediaType::ImageManifest => DocumentKind::Manifest,
            MediaType::Other(s) if s == DOCKER_LIST => DocumentKind::Index,
            MediaType::Other(s) if s == DOCKER_MANIFEST => DocumentKind::Manifest,
            _ => DocumentKind::Other,
        }
    }

    /// Classify raw bytes whose media type is not known (for example the target of an
    /// `index.json` entry without one): by the `mediaType` field, else by shape.
    pub fn sniff(bytes: &[u8]) -> Result<(DocumentKind, MediaType)> {
        check_document_size(bytes.len() as u64, "image document")?;
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("image document is not JSON: {e}")))?;
        if let Some(mt) = value.get("mediaType").and_then(|v| v.as_str()) {
            let mt = MediaType::from(mt);
            reject_schema1(&mt)?;
            return Ok((Document::classify(&mt), mt));
        }
        if value.get("manifests").is_some() {
            Ok((DocumentKind::Index, MediaType::ImageIndex))
        } else if value.get("layers").is_some() {
            Ok((DocumentKind::Manifest, MediaType::ImageManifest))
        } else {
            Ok((DocumentKind::Other, MediaType::Other(String::new())))
        }
    }
}

/// Refuse Docker schema 1 manifests with a clear message.
pub fn reject_schema1(media_type: &MediaType) -> Result<()> {
    if let MediaType::Other(s) = media_type {
        if s == DOCKER_SCHEMA1 || s == DOCKER_SCHEMA1_SIGNED {
            return Err(Error::Unsupported {
                what: "the image uses the Docker schema 1 manifest format, which is deprecated and not supported".into(),
                hint: Some("rebuild or re-push the image with a current tool (schema 2 or OCI)".into()),
            });
        }
    }
    Ok(())
}

/// Read and parse an index from the store.
pub fn read_index(store: &Store, desc: &Descriptor) -> Result<ImageIndex> {
    let bytes = store.read_document(desc)?;
    parse_index(&bytes, &format!("index {}", desc.digest()))
}

/// Read and parse a manifest from the store.
pub fn read_manifest(store: &Store, desc: &Descriptor) -> Result<ImageManifest> {
    let bytes = store.read_document(desc)?;
    parse_manifest(&bytes, &format!("manifest {}", desc.digest()))
}

/// The entries of the index `desc` in the store that the store holds: a partial or
/// platform-narrowed pull fetches only some, and the others are not an error to a walk over
/// what the store has.
pub(crate) fn present_children(store: &Store, desc: &Descriptor) -> Result<Vec<Descriptor>> {
    Ok(read_index(store, desc)?
        .manifests()
        .iter()
        .filter(|child| store.has_blob(child.digest(), child.size()))
        .cloned()
        .collect())
}

/// Parse an index named `what` in messages, within the document limits.
pub fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    check_document_size(bytes.len() as u64, what)?;
    let index: ImageIndex = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what} cannot be parsed as an image index: {e}")))?;
    check_descriptors(index.manifests(), what)?;
    check_annotations(index.annotations(), what)?;
    Ok(index)
}

/// Parse a manifest named `what` in messages, within the document limits.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    check_document_size(bytes.len() as u64, what)?;
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(format!("{what} cannot be parsed as an image manifest: {e}"))
    })?;
    check_descriptors(manifest.layers(), what)?;
    check_descriptors(std::slice::from_ref(manifest.config()), what)?;
    check_annotations(manifest.annotations(), what)?;
    Ok(manifest)
}

/// Parse an image config named `what` as free-form JSON (unknown fields are kept as they are),
/// within the document limits.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<serde_json::Value> {
    check_document_size(bytes.len() as u64, what)?;
    let config: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what} cannot be parsed: {e}")))?;
    if let Some(labels) = config.pointer("/config/Labels").and_then(|l| l.as_object()) {
        for (key, value) in labels {
            let len = value
                .as_str()
                .map_or_else(|| value.to_string().len(), str::len);
            if key.len().max(len) > MAX_ANNOTATION {
                return Err(Error::limit(format!(
                    "{what} has a label longer than {MAX_ANNOTATION} bytes"
                )));
            }
        }
    }
    Ok(config)
}

/// Read an image config as free-form JSON (unknown fields are kept as they are).
pub fn read_config(store: &Store, desc: &Descriptor) -> Result<serde_json::Value> {
    let bytes = store.read_document(desc)?;
    parse_config(&bytes, &format!("image config {}", desc.digest()))
}

/// Refuse a document of `size` bytes beyond [`MAX_DOCUMENT`], before it is read whole.
pub fn check_document_size(size: u64, what: &str) -> Result<()> {
    if size > MAX_DOCUMENT {
        return Err(Error::limit(format!(
            "{what} is {size} bytes, more than the {MAX_DOCUMENT} accepted for an image document"
        )));
    }
    Ok(())
}

/// Refuse a list of descriptors beyond [`MAX_DESCRIPTORS`], or one whose annotations are too long.
fn check_descriptors(descriptors: &[Descriptor], what: &str) -> Result<()> {
    if descriptors.len() > MAX_DESCRIPTORS {
        return Err(Error::limit(format!(
            "{what} lists {} descriptors, more than the {MAX_DESCRIPTORS} accepted",
            descriptors.len()
        )));
    }
    for d in descriptors {
        check_annotations(d.annotations(), what)?;
    }
    Ok(())
}

/// Refuse an annotation key or value longer than [`MAX_ANNOTATION`].
fn check_annotations(
    annotations: &Option<std::collections::HashMap<String, String>>,
    what: &str,
) -> Result<()> {
    for (key, value) in annotations.iter().flatten() {
        if key.len().max(value.len()) > MAX_ANNOTATION {
            return Err(Error::limit(format!(
                "{what} has an annotation longer than {MAX_ANNOTATION} bytes"
            )));
        }
    }
    Ok(())
}

/// One pass over the documents of an image, driven by [`walk`]: every descent through indexes
/// goes through [`walk`], so none can recurse beyond [`MAX_INDEX_DEPTH`].
pub trait Walker {
    /// Visit `desc`, `depth` indexes below the top one; returns what lies under it to visit next
    /// (the entries of an index), or nothing.
    fn enter(&mut self, desc: &Descriptor, depth: usize) -> Result<Vec<Descriptor>>;
    /// Called once everything under `desc` has been visited.
    fn leave(&mut self, _desc: &Descriptor) -> Result<()> {
        Ok(())
    }
}

/// Walk the documents under `top` depth first, each digest once, at most [`MAX_INDEX_DEPTH`]
/// levels of indexes deep; `name` names the image in the error past that depth.
///
/// The entries handed down keep their media type, size, digest and platform only, so a walk
/// holds no more than one document's worth of annotations at a time.
pub fn walk(top: &Descriptor, name: &str, walker: &mut impl Walker) -> Result<()> {
    let mut seen = HashSet::new();
    walk_from(top, 0, name, walker, &mut seen)
}

fn walk_from(
    desc: &Descriptor,
    depth: usize,
    name: &str,
    walker: &mut impl Walker,
    seen: &mut HashSet<String>,
) -> Result<()> {
    if !seen.insert(desc.digest().to_string()) {
        return Ok(());
    }
    let children: Vec<Descriptor> = walker
        .enter(desc, depth)?
        .into_iter()
        .map(|c| skeleton(&c))
        .collect();
    if !children.is_empty() && depth >= MAX_INDEX_DEPTH {
        return Err(Error::limit(format!(
            "{name} nests indexes more than {MAX_INDEX_DEPTH} levels deep (index {} is deeper)",
            desc.digest()
        ))
        .with_hint("OCI images nest at most two or three levels of indexes; this image is malformed or was made to exhaust the stack"));
    }
    for child in &children {
        walk_from(child, depth + 1, name, walker, seen)?;
    }
    walker.leave(desc)
}

/// A descriptor with what a walk needs of it only.
fn skeleton(d: &Descriptor) -> Descriptor {
    let mut out = Descriptor::new(d.media_type().clone(), d.size(), d.digest().clone());
    out.set_platform(d.platform().clone());
    out
}

/// The layer compression a media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn oci_media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }

    /// Guess from the first bytes of a blob (used for archives that do not say).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The compression of a layer media type, or an error for something that is not a layer.
pub fn layer_compression(media_type: &MediaType) -> Result<Compression> {
    Ok(match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Compression::None,
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Compression::Gzip,
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Compression::Zstd,
        MediaType::Other(s) if s == DOCKER_LAYER_GZIP || s == DOCKER_FOREIGN_GZIP => {
            Compression::Gzip
        }
        MediaType::Other(s) if s == DOCKER_LAYER_ZSTD => Compression::Zstd,
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => {
            Compression::None
        }
        other => {
            return Err(Error::Unsupported {
                what: format!("layer media type {other} is not supported"),
                hint: None,
            })
        }
    })
}

/// The OCI media type for a base layer, keeping its compression (bytes are never changed).
pub fn oci_layer_media_type(media_type: &MediaType) -> Result<MediaType> {
    Ok(match media_type {
        MediaType::ImageLayerNonDistributable
        | MediaType::ImageLayerNonDistributableGzip
        | MediaType::ImageLayerNonDistributableZstd => media_type.clone(),
        MediaType::Other(s) if s == DOCKER_FOREIGN_GZIP => {
            MediaType::ImageLayerNonDistributableGzip
        }
        other => layer_compression(other)?.oci_media_type(),
    })
}

/// `os/arch[/variant]` of a platform.
pub fn platform_string(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant() {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// Whether an index entry is an attestation or other non-runnable manifest (BuildKit writes
/// provenance as `unknown/unknown` entries).
pub fn is_attestation(desc: &Descriptor) -> bool {
    let annotated = desc
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"));
    let unknown = desc.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown"
    });
    annotated || unknown
}

/// The runnable entries of an index that `platform` selects (all of them for `None`).
pub fn wanted_children<'a>(
    index: &'a ImageIndex,
    platform: Option<&'a PlatformFilter>,
) -> impl Iterator<Item = &'a Descriptor> + 'a {
    index.manifests().iter().filter(move |child| {
        !is_attestation(child)
            && match (platform, child.platform()) {
                (Some(f), Some(p)) => f.matches(p),
                _ => true,
            }
    })
}

/// A platform filter given as `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFilter {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl std::str::FromStr for PlatformFilter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::invalid(format!(
                "--platform `{s}` is not of the form os/arch[/variant]"
            ))
            .with_hint("for example linux/amd64 or linux/arm64/v8")
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(PlatformFilter {
            os: parts[0].to_string(),
            arch: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl PlatformFilter {
    pub fn matches(&self, p: &Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.arch
            && match (&self.variant, p.variant()) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
            }
    }
}

impl std::fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One runnable image: a manifest and, when it came from an index, its platform.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub platform: Option<Platform>,
}

/// The manifests behind a stored descriptor: itself, or the runnable entries of its index.
pub fn platform_images(store: &Store, top: &Descriptor) -> Result<Vec<PlatformImage>> {
    match Document::classify(top.media_type()) {
        DocumentKind::Manifest => Ok(vec![PlatformImage {
            descriptor: top.clone(),
            manifest: read_manifest(store, top)?,
            platform: top.platform().clone(),
        }]),
        DocumentKind::Index => {
            let index = read_index(store, top)?;
            let mut out = Vec::new();
            for child in index.manifests() {
                if is_attestation(child) {
                    continue;
                }
                match Document::classify(child.media_type()) {
                    DocumentKind::Manifest => {
                        if !store.has_blob(child.digest(), child.size()) {
                            // Platforms not fetched (a pull narrowed to some platforms).
                            continue;
                        }
                        out.push(PlatformImage {
                            descriptor: child.clone(),
                            manifest: read_manifest(store, child)?,
                            platform: child.platform().clone(),
                        })
                    }
                    _ => {
                        return Err(Error::Unsupported {
                            what: format!(
                                "nested index {} (media type {}) is not supported",
                                child.digest(),
                                child.media_type()
                            ),
                            hint: None,
                        })
                    }
                }
            }
            Ok(out)
        }
        DocumentKind::Other => {
            reject_schema1(top.media_type())?;
            Err(Error::Unsupported {
                what: format!(
                    "{} is not an image (media type {})",
                    top.digest(),
                    top.media_type()
                ),
                hint: None,
            })
        }
    }
}

/// A new OCI manifest of `config` and `layers`.
pub fn new_manifest(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
    oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .expect("all required fields are set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_filters_parse_and_match() {
        let f: PlatformFilter = "linux/arm64".parse().unwrap();
        let p: Platform =
            serde_json::from_str(r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#)
                .unwrap();
        assert!(f.matches(&p));
        let f: PlatformFilter = "linux/arm64/v7".parse().unwrap();
        assert!(!f.matches(&p));
        assert!("linux".parse::<PlatformFilter>().is_err());
        assert!("linux//".parse::<PlatformFilter>().is_err());
    }

    #[test]
    fn docker_layers_map_to_oci_types_keeping_compression() {
        let docker = MediaType::Other(DOCKER_LAYER_GZIP.into());
        assert_eq!(
            oci_layer_media_type(&docker).unwrap(),
            MediaType::ImageLayerGzip
        );
        assert_eq!(
            oci_layer_media_type(&MediaType::ImageLayer).unwrap(),
            MediaType::ImageLayer
        );
        assert!(oci_layer_media_type(&MediaType::ImageConfig).is_err());
    }

    #[test]
    fn schema1_is_refused_with_a_reason() {
        let err = Document::sniff(br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("schema 1"));
    }
}
