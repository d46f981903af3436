//! Pull: manifests and blobs from a registry into the store, each verified against its digest.
//!
//! Manifest negotiation covers OCI indexes and manifests and Docker schema 2 lists and
//! manifests; schema 1 is refused with a reason. Only the platforms asked for are fetched.
//! A registry's `Docker-Content-Digest` header is never trusted alone: every document and blob
//! is hashed as it arrives, and content that does not match is refused.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use oci_spec::image::{Descriptor, MediaType};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;

use super::client::unexpected;
use super::{network_error, Client, Scope, Transfer};
use crate::digest;
use crate::error::{Error, Result};
use crate::image::{self, Document, DocumentKind, PlatformFilter};
use crate::limits::MAX_DOCUMENT;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::store::Store;

/// Media types asked for when fetching a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, application/vnd.docker.distribution.manifest.v1+json;q=0.1";

/// When to contact the registry for a base image (`--pull`, as podman spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    Missing,
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            _ => Err(Error::invalid(format!("--pull `{s}` is not known"))
                .with_hint("use always, missing or never")),
        }
    }
}

/// Fetch a manifest or index by tag or digest and check it; returns bytes and descriptor.
///
/// A digest (as `reference`, in `expected` or in `r`) whose algorithm modelcar cannot check is
/// refused as unsupported before anything is fetched, not reported as content that fails to
/// match; a manifest fetched by digest is checked against it.
pub fn fetch_manifest(
    client: &Client,
    r: &ImageRef,
    reference: &str,
    expected: Option<&Descriptor>,
) -> Result<(Vec<u8>, Descriptor)> {
    let what = format!("{}/{}:{reference}", r.registry, r.repository);
    // Tags never hold a colon: a reference with one is a digest.
    let by_digest = match reference.contains(':') {
        true => Some(reference.parse::<oci_spec::image::Digest>().map_err(|_| {
            Error::invalid(format!(
                "manifest {what}: `{reference}` is not a valid digest"
            ))
        })?),
        false => None,
    };
    for d in [
        by_digest.as_ref(),
        expected.map(|e| e.digest()),
        r.digest.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        digest::require_sha256(d)?;
    }
    let (bytes, content_type) =
        client.retrying(|| download_manifest(client, r, reference, &what))?;
    let digest = digest::sha256_of(&bytes);
    if let Some(want) = &by_digest {
        if &digest != want {
            return Err(Error::corrupt(format!(
                "manifest {what} does not match its digest: got {digest}"
            )));
        }
    }
    if let Some(want) = expected {
        if &digest != want.digest() || bytes.len() as u64 != want.size() {
            return Err(Error::corrupt(format!(
                "manifest {what} does not match its digest: expected {} ({} bytes), got {digest} ({} bytes)",
                want.digest(),
                want.size(),
                bytes.len()
            )));
        }
    } else if let Some(want) = &r.digest {
        if &digest != want {
            return Err(Error::corrupt(format!(
                "manifest {what} does not match its digest: got {digest}"
            )));
        }
    }
    let (sniffed_kind, sniffed) = Document::sniff(&bytes)?;
    let media_type = match content_type.map(|c| MediaType::from(c.as_str())) {
        Some(mt) if Document::classify(&mt) != DocumentKind::Other => mt,
        Some(mt) => {
            image::reject_schema1(&mt)?;
            sniffed
        }
        None => sniffed,
    };
    if sniffed_kind == DocumentKind::Other {
        image::reject_schema1(&media_type)?;
    }
    let mut desc = Descriptor::new(media_type, bytes.len() as u64, digest);
    if let Some(e) = expected {
        desc.set_platform(e.platform().clone());
    }
    Ok((bytes, desc))
}

/// One attempt at a manifest's bytes (bounded) and its content type.
fn download_manifest(
    client: &Client,
    r: &ImageRef,
    reference: &str,
    what: &str,
) -> Result<(Vec<u8>, Option<String>)> {
    let repo = r.repository.clone();
    let doing = format!("fetching manifest {what}");
    let resp = client.send_attempt(
        &r.registry,
        &repo,
        &Scope::pull(&repo),
        &doing,
        Transfer::Small,
        &|http, base| {
            Ok(http
                .get(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header(ACCEPT, MANIFEST_ACCEPT))
        },
    )?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Err(Error::NotFound {
            reference: what.to_string(),
            place: format!("registry {}", r.registry),
            hint: Some("check the repository and tag (or digest)".into()),
        });
    }
    if !resp.status().is_success() {
        return Err(unexpected(&doing, resp));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
    let manifest_what = format!("manifest {what}");
    if let Some(len) = resp.content_length() {
        image::check_document_size(len, &manifest_what)?;
    }
    let mut bytes = Vec::new();
    resp.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            network_error(
                &r.registry,
                &format!("reading manifest {what}"),
                client.timeouts(),
                e,
            )
        })?;
    image::check_document_size(bytes.len() as u64, &manifest_what)?;
    Ok((bytes, content_type))
}

/// Download a blob into the store, verified; does nothing when the store has it. A dropped or
/// stalled download starts again (up to the retries); bytes that do not match the digest, or
/// more bytes than the descriptor says, fail at once.
pub fn fetch_blob(
    client: &Client,
    store: &Store,
    r: &ImageRef,
    desc: &Descriptor,
    progress: &Progress,
) -> Result<()> {
    digest::require_sha256(desc.digest())?;
    if store.has_blob(desc.digest(), desc.size()) {
        progress.inc(desc.size());
        return Ok(());
    }
    client.retrying(|| download_blob(client, store, r, desc, progress))
}

/// One attempt at a blob: stream it into a store blob writer and commit it if it matches.
fn download_blob(
    client: &Client,
    store: &Store,
    r: &ImageRef,
    desc: &Descriptor,
    progress: &Progress,
) -> Result<()> {
    let repo = r.repository.clone();
    let digest = desc.digest().to_string();
    let doing = format!("fetching blob {digest} of {}", r.name());
    let resp = client.send_attempt(
        &r.registry,
        &repo,
        &Scope::pull(&repo),
        &doing,
        Transfer::Small,
        &|http, base| Ok(http.get(format!("{base}/v2/{repo}/blobs/{digest}"))),
    )?;
    if !resp.status().is_success() {
        return Err(unexpected(&doing, resp));
    }
    let mut w = store.blob_writer()?;
    let mut reader = resp;
    let mut buf = crate::readbuf::ReadBuf::new(1 << 20);
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            network_error(
                &r.registry,
                &format!("reading blob {digest} of {}", r.name()),
                client.timeouts(),
                e,
            )
        })?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut w, &buf[..n]).map_err(|e| {
            Error::from_io(e).unwrap_or_else(|e| Error::Io {
                op: "write a blob into the store at",
                path: store.root().to_path_buf(),
                source: e,
            })
        })?;
        progress.inc(n as u64);
        if w.written() > desc.size() {
            return Err(Error::corrupt(format!(
                "registry {} sent more bytes for blob {digest} of {} than its descriptor says ({} bytes)",
                r.registry,
                r.name(),
                desc.size()
            )));
        }
    }
    match w.commit(store, Some((desc.digest(), desc.size()))) {
        Ok(_) => Ok(()),
        Err(Error::Corrupt { what }) => Err(Error::corrupt(format!(
            "blob {digest} from registry {} ({}): {what}",
            r.registry,
            r.name()
        ))),
        Err(e) => Err(e),
    }
}

/// Pull an image (only the platforms `platform` selects, all when `None`) into the store and
/// tag it with its reference. Returns the top descriptor.
pub fn pull(
    client: &Client,
    store: &Store,
    r: &ImageRef,
    platform: Option<&PlatformFilter>,
    progress: &Progress,
) -> Result<Descriptor> {
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let (top_bytes, top) = fetch_manifest(client, r, &reference, None)?;
    let mut manifests: Vec<(Vec<u8>, Descriptor)> = Vec::new();
    match Document::classify(top.media_type()) {
        DocumentKind::Index => {
            let index = image::parse_index(&top_bytes, &format!("index of {r}"))?;
            for child in image::wanted_children(&index, platform) {
                manifests.push(fetch_manifest(
                    client,
                    r,
                    child.digest().as_ref(),
                    Some(child),
                )?);
            }
            if manifests.is_empty() {
                return Err(Error::invalid(format!(
                    "{r} has no platform {}",
                    platform.map(|p| p.to_string()).unwrap_or_default()
                ))
                .with_hint(format!(
                    "platforms in it: {}",
                    index
                        .manifests()
                        .iter()
                        .filter_map(|d| d.platform().as_ref().map(image::platform_string))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // A ModelPack manifest beside the image travels with it, whatever the platform.
            for child in index
                .manifests()
                .iter()
                .filter(|c| crate::modelpack::publish::may_be_modelpack(c))
            {
                let (bytes, desc) =
                    fetch_manifest(client, r, child.digest().as_ref(), Some(child))?;
                if crate::modelpack::publish::is_modelpack_manifest(&bytes) {
                    manifests.push((bytes, desc));
                }
            }
        }
        DocumentKind::Manifest => manifests.push((top_bytes.clone(), top.clone())),
        DocumentKind::Other => {
            return Err(Error::Unsupported {
                what: format!("{r} is not an image (media type {})", top.media_type()),
                hint: None,
            })
        }
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    for (bytes, desc) in &manifests {
        let m = image::parse_manifest(bytes, &format!("manifest {} of {r}", desc.digest()))?;
        for d in std::iter::once(m.config()).chain(m.layers()) {
            if !blobs.iter().any(|b| b.digest() == d.digest()) {
                blobs.push(d.clone());
            }
        }
    }
    progress.start_bytes(
        blobs.iter().map(|b| b.size()).sum(),
        &format!("pulling {r}"),
    );
    parallel(client.options().jobs, &blobs, |d| {
        fetch_blob(client, store, r, d, progress)
    })?;
    progress.finish();
    for (bytes, _) in &manifests {
        store.put_bytes(bytes)?;
    }
    store.put_bytes(&top_bytes)?;
    if r.tag.is_some() {
        store.tag(&r.tagged(), &top)?;
    }
    if r.digest.is_some() {
        store.tag(&r.pinned(top.digest()), &top)?;
    }
    Ok(top)
}

/// Run `work` on every item with at most `jobs` threads; the first error wins.
pub fn parallel<T: Sync>(
    jobs: usize,
    items: &[T],
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                if let Err(e) = work(&items[i]) {
                    first_error.lock().expect("lock").get_or_insert(e);
                    next.store(items.len(), Ordering::Relaxed);
                }
            });
        }
    });
    match first_error.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
