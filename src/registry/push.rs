//! Push: blobs first, then manifests, then the index, then the tag.
//!
//! Blobs the registry already has are skipped (HEAD), a blob of the base image is mounted from
//! the base's repository when both live on the same registry, and the rest is uploaded straight
//! from the store's files. reqwest streams a request body from any reader, but the upload
//! protocol around it (chunk sizes the registry asks for, resuming from the offset it reports
//! after a dropped connection, falling back from chunks to one PUT when a registry rejects them)
//! is specific to the distribution API, so it is written here. Memory stays bounded: bodies are
//! streamed from disk in fixed-size reads.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oci_spec::image::{Descriptor, Digest};
use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::StatusCode;
use serde::Serialize;

use super::client::unexpected;
use super::pull::parallel;
use super::{network_error, Client, Piece, Scope, Timeouts, Transfer, UploadBody};
use crate::digest::HashingWriter;
use crate::error::{io_err, Error, RegistryError, RegistryErrorKind, Result};
use crate::image::{Document, DocumentKind};
use crate::layer::LayerDestination;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::store::Store;
use crate::transport;

/// Blobs up to this size go in one PUT; larger ones in a PATCH (resumable in chunks).
pub const MONOLITHIC_MAX: u64 = CHUNK;
/// Chunk size, unless the registry asks for more (`OCI-Chunk-Min-Length`). A chunk is read into
/// memory and sent as one buffer (see [`file_body`]), so this bounds memory per upload.
pub const CHUNK: u64 = 16 << 20;
/// Layer sizes registries are known to refuse above.
const LAYER_LIMITS: [(&str, u64); 1] = [("ghcr.io", 10_000_000_000)];

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    pub reference: String,
    pub digest: String,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub bytes_uploaded: u64,
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicU64,
    mounted: AtomicU64,
    present: AtomicU64,
    bytes: AtomicU64,
}

/// Push an image from the store to `target`. `mount_from` is a repository on the same registry
/// that may already hold some blobs (the base image's).
pub fn push(
    client: &Client,
    store: &Store,
    top: &Descriptor,
    target: &ImageRef,
    mount_from: Option<&ImageRef>,
    progress: &Progress,
) -> Result<PushOutcome> {
    push_except(
        client,
        store,
        top,
        target,
        mount_from,
        &HashSet::new(),
        progress,
    )
}

/// [`push`], leaving out blobs already uploaded (`sent`: digests), which need not be in the store.
pub fn push_except(
    client: &Client,
    store: &Store,
    top: &Descriptor,
    target: &ImageRef,
    mount_from: Option<&ImageRef>,
    sent: &HashSet<String>,
    progress: &Progress,
) -> Result<PushOutcome> {
    let all = transport::closure(store, top)?;
    let (docs, blobs): (Vec<Descriptor>, Vec<Descriptor>) = all
        .into_iter()
        .filter(|d| !sent.contains(&d.digest().to_string()))
        .partition(|d| Document::classify(d.media_type()) != DocumentKind::Other);
    // An index pulled for some of its platforms (`pull --platform`) names manifests the store
    // never fetched; a registry refuses it (MANIFEST_BLOB_UNKNOWN) only after every blob went
    // up, so it is refused here, before anything is sent.
    for d in docs
        .iter()
        .filter(|d| Document::classify(d.media_type()) == DocumentKind::Index)
    {
        let index = crate::image::read_index(store, d)?;
        let missing: Vec<String> = index
            .manifests()
            .iter()
            .filter(|m| {
                !store.has_blob(m.digest(), m.size()) && !sent.contains(&m.digest().to_string())
            })
            .map(|m| match m.platform() {
                Some(p) => crate::image::platform_string(p),
                None => m.digest().to_string(),
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "cannot push {} to {}: its index {} names platforms the store does not hold ({}), as after `pull --platform`",
                top.digest(),
                target.name(),
                d.digest(),
                missing.join(", ")
            ))
            .with_hint("pull the image again without --platform to hold all its platforms, then push it"));
        }
    }
    let mut warnings = Vec::new();
    for (host, limit) in LAYER_LIMITS {
        if target.registry == host {
            for b in blobs.iter().filter(|b| b.size() > limit) {
                let w = format!(
                    "layer {} is {} bytes; {host} refuses layers over {limit} bytes: split the file into smaller shards",
                    b.digest(),
                    b.size()
                );
                // Said before the upload starts, not after hours of it.
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
    }
    let mount =
        mount_from.filter(|m| m.registry == target.registry && m.repository != target.repository);
    let counters = Counters::default();
    progress.start_bytes(
        blobs.iter().map(|b| b.size()).sum(),
        &format!("pushing {}", target.name()),
    );
    parallel(client.options().jobs, &blobs, |b| {
        push_blob(client, store, target, b, mount, &counters, progress)
    })?;
    progress.finish();
    for d in &docs {
        let bytes = store.read_document(d)?;
        put_manifest(client, target, d.digest().as_ref(), d, &bytes)?;
    }
    if let Some(tag) = &target.tag {
        let bytes = store.read_document(top)?;
        put_manifest(client, target, tag, top, &bytes)?;
    }
    Ok(PushOutcome {
        reference: target.tagged(),
        digest: top.digest().to_string(),
        blobs_uploaded: counters.uploaded.load(Ordering::Relaxed),
        blobs_mounted: counters.mounted.load(Ordering::Relaxed),
        blobs_present: counters.present.load(Ordering::Relaxed),
        bytes_uploaded: counters.bytes.load(Ordering::Relaxed),
        warnings,
    })
}

fn put_manifest(
    client: &Client,
    target: &ImageRef,
    reference: &str,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<()> {
    let repo = target.repository.clone();
    let media_type = desc.media_type().to_string();
    let doing = format!(
        "pushing manifest {} to {}:{reference}",
        desc.digest(),
        target.name()
    );
    let resp = client.send(
        &target.registry,
        &repo,
        &Scope::push(&repo),
        &doing,
        Transfer::Small,
        &|http, base| {
            Ok(http
                .put(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header(CONTENT_TYPE, media_type.clone())
                .body(bytes.to_vec()))
        },
    )?;
    if !resp.status().is_success() {
        return Err(unexpected(&doing, resp));
    }
    if let Some(got) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if got != desc.digest().to_string() {
            return Err(RegistryError::new(
                &target.registry,
                RegistryErrorKind::Protocol,
                format!(
                    "registry {} stored manifest {} under digest {}; it rewrote the manifest",
                    target.registry,
                    desc.digest(),
                    got.chars().take(100).collect::<String>()
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// The URL of an upload `location` (a registry's `Location` header: absolute, or a path on
/// `base`).
pub(super) fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!(
            "{base}{}{location}",
            if location.starts_with('/') { "" } else { "/" }
        )
    }
}

/// `url` with `key=value` added to its query.
pub(super) fn with_query(url: &str, key: &str, value: &str) -> String {
    format!(
        "{url}{}{key}={value}",
        if url.contains('?') { "&" } else { "?" }
    )
}

/// One attempt at opening an upload in `target`'s repository (`what` names it in messages):
/// the absolute URL the registry named for the bytes.
pub(super) fn start_upload(client: &Client, target: &ImageRef, what: &str) -> Result<String> {
    let repo = target.repository.clone();
    let start = client.send_attempt(
        &target.registry,
        &repo,
        &Scope::push(&repo),
        what,
        Transfer::Small,
        &|http, base| {
            Ok(http
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .header(CONTENT_LENGTH, 0))
        },
    )?;
    if start.status() != StatusCode::ACCEPTED {
        return Err(unexpected(what, start));
    }
    let location = location_of(&start, what)?;
    Ok(absolute(&client.base_url(&target.registry)?, &location))
}

fn location_of(resp: &reqwest::blocking::Response, what: &str) -> Result<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            RegistryError::new(
                resp.url().host_str().unwrap_or_default(),
                RegistryErrorKind::Protocol,
                format!("{what}: the registry gave no upload location"),
            )
            .into()
        })
}

fn push_blob(
    client: &Client,
    store: &Store,
    target: &ImageRef,
    desc: &Descriptor,
    mount: Option<&ImageRef>,
    counters: &Counters,
    progress: &Progress,
) -> Result<()> {
    let repo = target.repository.clone();
    let digest = desc.digest().to_string();
    let scope = match mount {
        Some(m) => Scope::push_mount(&repo, &m.repository),
        None => Scope::push(&repo),
    };
    let head = client.send(
        &target.registry,
        &repo,
        &scope,
        &format!("checking for blob {digest} in {}", target.name()),
        Transfer::Small,
        &|http, base| Ok(http.head(format!("{base}/v2/{repo}/blobs/{digest}"))),
    )?;
    if head.status().is_success() {
        counters.present.fetch_add(1, Ordering::Relaxed);
        progress.inc(desc.size());
        return Ok(());
    }
    let what = format!("uploading blob {digest} to {}", target.name());
    let start = client.send(
        &target.registry,
        &repo,
        &scope,
        &what,
        Transfer::Small,
        &|http, base| {
            let url = match mount {
                Some(m) => format!(
                    "{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
                    m.repository
                ),
                None => format!("{base}/v2/{repo}/blobs/uploads/"),
            };
            Ok(http.post(url).header(CONTENT_LENGTH, 0))
        },
    )?;
    match start.status() {
        StatusCode::CREATED if mount.is_some() => {
            counters.mounted.fetch_add(1, Ordering::Relaxed);
            progress.inc(desc.size());
            return Ok(());
        }
        StatusCode::ACCEPTED => {}
        _ => return Err(unexpected(&what, start)),
    }
    let min_chunk = start
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let location = location_of(&start, &what)?;
    let path = store.blob_path(desc.digest());
    if desc.size() <= MONOLITHIC_MAX.max(min_chunk) {
        put_rest(client, target, &scope, &location, &path, desc, 0, progress)?;
    } else {
        upload_chunks(
            client,
            target,
            &scope,
            location,
            &path,
            desc,
            CHUNK.max(min_chunk),
            progress,
        )?;
    }
    counters.uploaded.fetch_add(1, Ordering::Relaxed);
    counters.bytes.fetch_add(desc.size(), Ordering::Relaxed);
    Ok(())
}

/// A body of `len` bytes of `path` from `offset`.
///
/// Up to [`CHUNK`] bytes are read into one buffer, which goes out in large writes: reqwest's
/// blocking client moves a reader body through its runtime 8 KiB at a time, a wakeup and a socket
/// write each. Longer bodies (a whole blob) are streamed from disk that way all the same, so that
/// memory stays bounded; it costs CPU but not time, as the registry is slower than that path.
fn file_body(path: &std::path::Path, offset: u64, len: u64) -> Result<Body> {
    let mut f = File::open(path).map_err(io_err("open blob", path))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io_err("read blob", path))?;
    if len <= CHUNK {
        let mut buf = Vec::with_capacity(len as usize);
        (&mut f)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(io_err("read blob", path))?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(format!(
                "blob {} is shorter than its descriptor says",
                path.display()
            )));
        }
        return Ok(Body::from(buf));
    }
    let reader = std::io::BufReader::with_capacity(1 << 20, f.take(len));
    Ok(Body::sized(reader, len))
}

/// One attempt at a request carrying `len` bytes of the blob at `path` from `offset` (with
/// `Content-Range` if given): through the uploader, which hands the file to the kernel, or
/// through reqwest when a proxy is configured.
#[allow(clippy::too_many_arguments)]
fn send_blob_attempt(
    client: &Client,
    target: &ImageRef,
    scope: &Scope,
    doing: &str,
    method: &'static str,
    url: &dyn Fn(&str) -> String,
    content_range: Option<String>,
    (path, offset, len): (&std::path::Path, u64, u64),
) -> Result<reqwest::blocking::Response> {
    let repo = &target.repository;
    let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
    if let Some(r) = &content_range {
        headers.push(("Content-Range", r.clone()));
    }
    if client.direct_uploads() {
        return client.upload_attempt(
            &target.registry,
            repo,
            scope,
            doing,
            method,
            url,
            &headers,
            &|| {
                let f = File::open(path).map_err(io_err("open blob", path))?;
                let size = f.metadata().map_err(io_err("read blob", path))?.len();
                if size < offset + len {
                    return Err(Error::corrupt(format!(
                        "blob {} is shorter than its descriptor says",
                        path.display()
                    )));
                }
                Ok(UploadBody::file(f, offset, len))
            },
        );
    }
    client.send_attempt(
        &target.registry,
        repo,
        scope,
        doing,
        Transfer::Upload,
        &|http, base| {
            let mut rb = if method == "PUT" {
                http.put(url(base))
            } else {
                http.patch(url(base))
            };
            for (k, v) in &headers {
                rb = rb.header(*k, v.clone());
            }
            Ok(rb
                .header(CONTENT_LENGTH, len)
                .body(file_body(path, offset, len)?))
        },
    )
}

/// Finish an upload with one PUT carrying the bytes from `offset` to the end.
#[allow(clippy::too_many_arguments)]
fn put_rest(
    client: &Client,
    target: &ImageRef,
    scope: &Scope,
    location: &str,
    path: &std::path::Path,
    desc: &Descriptor,
    offset: u64,
    progress: &Progress,
) -> Result<()> {
    let digest = desc.digest().to_string();
    let len = desc.size() - offset;
    let doing = format!("uploading blob {digest} to {}", target.name());
    let resp = client.retrying(|| {
        send_blob_attempt(
            client,
            target,
            scope,
            &doing,
            "PUT",
            &|base| with_query(&absolute(base, location), "digest", &digest),
            None,
            (path, offset, len),
        )
    })?;
    if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
        return Err(unexpected(&doing, resp));
    }
    progress.inc(len);
    Ok(())
}

/// The next byte the registry expects for an upload in progress (from its `Range` header);
/// one attempt.
fn upload_offset(
    client: &Client,
    target: &ImageRef,
    scope: &Scope,
    location: &str,
) -> Result<(u64, String)> {
    let repo = target.repository.clone();
    let resp = client.send_attempt(
        &target.registry,
        &repo,
        scope,
        "asking the registry how much of an upload it has",
        Transfer::Small,
        &|http, base| Ok(http.get(absolute(base, location))),
    )?;
    if resp.status() != StatusCode::NO_CONTENT && !resp.status().is_success() {
        return Err(unexpected(
            "asking the registry how much of an upload it has",
            resp,
        ));
    }
    let next = resp
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range_end)
        .unwrap_or(0);
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| location.to_string());
    Ok((next, location))
}

/// The next offset from an upload's `Range: 0-END` (END inclusive). Distribution answers `0-0`
/// for an empty upload, so `0-0` is read as nothing received.
fn parse_range_end(range: &str) -> Option<u64> {
    let (start, end) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    let (start, end) = (
        start.trim().parse::<u64>().ok()?,
        end.trim().parse::<u64>().ok()?,
    );
    Some(if start == 0 && end == 0 { 0 } else { end + 1 })
}

/// Upload a blob with PATCH requests: the whole blob in one, and after a dropped connection the
/// rest in `chunk`-sized ones from the offset the registry reports; then close it with a PUT.
#[allow(clippy::too_many_arguments)]
fn upload_chunks(
    client: &Client,
    target: &ImageRef,
    scope: &Scope,
    mut location: String,
    path: &std::path::Path,
    desc: &Descriptor,
    chunk: u64,
    progress: &Progress,
) -> Result<()> {
    enum Step {
        Sent,
        Refused(StatusCode),
    }
    let repo = target.repository.clone();
    let size = desc.size();
    let doing = format!("uploading blob {} to {}", desc.digest(), target.name());
    let mut offset = 0u64;
    // After a dropped connection: ask the registry where to resume, and send the rest in chunks.
    let mut ask_offset = false;
    let mut in_chunks = false;
    while offset < size {
        // Each attempt (asking where to resume, then one PATCH) is retried by the one retry
        // loop; a chunk that got through starts a fresh count.
        let step = client.retrying(|| {
            if ask_offset {
                let (next, loc) = upload_offset(client, target, scope, &location)?;
                tracing::info!(
                    "{}: resuming upload of {} at byte {next}",
                    target.registry,
                    desc.digest()
                );
                (offset, location, ask_offset) = (next, loc, false);
                if offset >= size {
                    return Ok(Step::Sent);
                }
            }
            // The first request carries the whole blob, streamed from disk: registries spend
            // time on every request (the distribution registry took half as long again for a
            // 2 GiB blob in 16 MiB chunks as in one request).
            let len = if in_chunks {
                chunk.min(size - offset)
            } else {
                size - offset
            };
            let (loc, from) = (location.clone(), offset);
            let result = send_blob_attempt(
                client,
                target,
                scope,
                &doing,
                "PATCH",
                &|base| absolute(base, &loc),
                Some(format!("{from}-{}", from + len - 1)),
                (path, from, len),
            );
            match result {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    if let Some(l) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                        location = l.to_string();
                    }
                    offset += len;
                    progress.inc(len);
                    Ok(Step::Sent)
                }
                Ok(resp)
                    if resp.status().is_client_error()
                        && resp.status() != StatusCode::NOT_FOUND =>
                {
                    Ok(Step::Refused(resp.status()))
                }
                Ok(resp) => Err(unexpected(&doing, resp)),
                Err(e) => {
                    // Part of the body may have reached the registry: resume from what it has
                    // instead of sending the same bytes again.
                    if e.is_temporary() {
                        (ask_offset, in_chunks) = (true, true);
                    }
                    Err(e)
                }
            }
        })?;
        if let Step::Refused(status) = step {
            // The registry does not take chunks (or not this size): send the rest in one PUT.
            tracing::info!(
                "{}: chunk refused with {status}; finishing with one PUT",
                target.registry
            );
            let (next, loc) = client
                .retrying(|| upload_offset(client, target, scope, &location))
                .unwrap_or((offset, location.clone()));
            return put_rest(client, target, scope, &loc, path, desc, next, progress);
        }
    }
    let digest = desc.digest().to_string();
    let loc = location.clone();
    let doing = format!("finishing the upload of {digest} to {}", target.name());
    let resp = client.send(
        &target.registry,
        &repo,
        scope,
        &doing,
        Transfer::Small,
        &|http, base| {
            Ok(http
                .put(with_query(&absolute(base, &loc), "digest", &digest))
                .header(CONTENT_LENGTH, 0))
        },
    )?;
    if !resp.status().is_success() {
        return Err(unexpected(&doing, resp));
    }
    Ok(())
}

/// Ask the registry to mount blob `digest` of repository `from` into `target`'s repository (one
/// attempt): true when it did (`201 Created`). A registry that does not mount it answers by
/// opening an upload instead, which is cancelled; the caller then sends the bytes.
pub fn mount_blob(
    client: &Client,
    target: &ImageRef,
    digest: &Digest,
    from: &ImageRef,
) -> Result<bool> {
    let repo = target.repository.clone();
    let scope = Scope::push_mount(&repo, &from.repository);
    let what = format!(
        "mounting blob {digest} from {} into {}",
        from.name(),
        target.name()
    );
    let resp = client.send_attempt(
        &target.registry,
        &repo,
        &scope,
        &what,
        Transfer::Small,
        &|http, base| {
            Ok(http
                .post(format!(
                    "{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
                    from.repository
                ))
                .header(CONTENT_LENGTH, 0))
        },
    )?;
    match resp.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            if let Ok(location) = location_of(&resp, &what) {
                let base = client.base_url(&target.registry)?;
                // An upload left open expires on its own; cancelling it is only tidy.
                let _ = client.send_attempt(
                    &target.registry,
                    &repo,
                    &scope,
                    "cancelling an upload",
                    Transfer::Small,
                    &|http, _| Ok(http.delete(absolute(&base, &location))),
                );
            }
            Ok(false)
        }
        _ => Err(unexpected(&what, resp)),
    }
}

/// Layers written straight to a registry while they are built (`build --push`): the bytes go
/// out in one streamed PATCH as they are produced and the upload is closed with the digest
/// computed on the way, so a model larger than the free disk never touches the store.
pub struct RegistryUpload<'a> {
    pub client: &'a Client,
    pub target: &'a ImageRef,
}

/// The writer of a streamed upload: bytes are hashed and handed in 1 MiB pieces to the thread
/// that sends the request body.
pub struct UploadWriter {
    hasher: HashingWriter<std::io::Sink>,
    buf: Vec<u8>,
    tx: Option<SyncSender<Piece>>,
    request: Option<JoinHandle<Result<String>>>,
    /// Whether the request is sent by the uploader, which takes file ranges.
    direct: bool,
    /// Files whose ranges were queued, with what `stat` said before: checked again once the
    /// request is done, so that the bytes sent are known to be the bytes hashed.
    appended: Vec<(File, std::path::PathBuf, crate::digest::FileState)>,
    registry: String,
    what: String,
    timeouts: Timeouts,
}

struct ChannelReader {
    rx: Receiver<Piece>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Piece::Bytes(next)) => {
                    self.current = next;
                    self.pos = 0;
                }
                // Only the uploader is sent file ranges (see `append_file`).
                Ok(Piece::File { .. }) => {
                    return Err(std::io::Error::other("a file range on a reqwest body"))
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const STREAM_PIECE: usize = 1 << 20;

impl UploadWriter {
    /// The error that stopped the request thread, kept whole: the registry's status, codes and
    /// hint reach the user through the layer writer.
    fn failed(&mut self) -> Error {
        self.tx = None;
        match self.request.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            _ => RegistryError::new(
                &self.registry,
                RegistryErrorKind::Dropped,
                format!("{}: the upload stopped", self.what),
            )
            .into(),
        }
    }

    /// Hand the buffer to the request thread, waiting at most the read timeout for room in the
    /// queue: a request that takes no bytes for that long ends the upload.
    fn send_buffer(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_PIECE));
        self.send_piece(Piece::Bytes(piece))
    }

    /// Hand a piece to the request thread, as [`UploadWriter::send_buffer`] does.
    fn send_piece(&mut self, mut piece: Piece) -> Result<()> {
        let started = Instant::now();
        loop {
            let Some(tx) = self.tx.as_ref() else {
                return Err(self.failed());
            };
            match tx.try_send(piece) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(self.failed()),
                Err(TrySendError::Full(p)) => {
                    if started.elapsed() > self.timeouts.read {
                        // Ends the request thread's body, and with it the request.
                        self.tx = None;
                        return Err(RegistryError::new(
                            &self.registry,
                            RegistryErrorKind::TimedOut,
                            format!(
                                "registry {} took no bytes for {} s while {}",
                                self.registry,
                                self.timeouts.read.as_secs_f64(),
                                self.what
                            ),
                        )
                        .with_hint("the registry or the network stalled; try again later, or raise --read-timeout")
                        .into());
                    }
                    piece = p;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

impl Write for UploadWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(STREAM_PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.write_all(&data[..n])?;
        if self.buf.len() == STREAM_PIECE {
            self.send_buffer().map_err(Error::into_io)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A model file's range goes to the request thread as a file range, which the uploader hands
/// to the kernel (`sendfile`) over plain HTTP and reads again from the page cache over HTTPS.
/// The bytes are read here once, for the layer's digest and the file's own.
impl crate::layer::AppendFile for UploadWriter {
    fn append_file(
        &mut self,
        part: crate::layer::FilePart<'_>,
        tick: &dyn Fn(u64),
    ) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        if !self.direct {
            return Ok(false);
        }
        self.send_buffer().map_err(Error::into_io)?;
        let before = crate::digest::FileState::of(part.file)?;
        let offset = part.file.stream_position()?;
        self.appended
            .push((part.file.try_clone()?, part.path.to_path_buf(), before));
        self.send_piece(Piece::File {
            file: part.file.try_clone()?,
            offset,
            len: part.len,
        })
        .map_err(Error::into_io)?;
        let mut own = None;
        let mut done = 0u64;
        while done < part.len {
            let mut buf = match part.also {
                Some((feed, _)) => feed.buffer(),
                None => own
                    .take()
                    .unwrap_or_else(|| crate::readbuf::ReadBuf::new(STREAM_PIECE)),
            };
            let want = (part.len - done).min(buf.len() as u64) as usize;
            let n = part.file.read_at(&mut buf[..want], offset + done)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "model file {} shrank while it was being read (truncated during the build); do not change model files during a build, and run it again",
                        part.path.display()
                    ),
                ));
            }
            self.hasher.write_all(&buf[..n])?;
            done += n as u64;
            tick(n as u64);
            match part.also {
                Some((feed, key)) => feed.data(key, buf, n)?,
                None => own = Some(buf),
            }
        }
        if let Some((feed, key)) = part.also {
            feed.end(key)?;
        }
        part.file.seek(SeekFrom::Start(offset + part.len))?;
        Ok(true)
    }
}

// Every request here is one attempt: the build retries a whole layer (which cannot be sent
// again without being written again) with `Client::retrying`, the one retry loop.
impl LayerDestination for RegistryUpload<'_> {
    type Writer = UploadWriter;

    fn has(&self, digest: &Digest, _size: u64) -> bool {
        let repo = self.target.repository.clone();
        let d = digest.to_string();
        self.client
            .send_attempt(
                &self.target.registry,
                &repo,
                &Scope::push(&repo),
                &format!("checking for blob {d} in {}", self.target.name()),
                Transfer::Small,
                &|http, base| Ok(http.head(format!("{base}/v2/{repo}/blobs/{d}"))),
            )
            .is_ok_and(|r| r.status().is_success())
    }

    fn begin(&self) -> Result<UploadWriter> {
        let repo = self.target.repository.clone();
        let scope = Scope::push(&repo);
        let registry = self.target.registry.clone();
        let what = format!("uploading a layer to {}", self.target.name());
        let url = start_upload(self.client, self.target, &what)?;
        let base = self.client.base_url(&registry)?;
        let (tx, rx) = sync_channel::<Piece>(4);
        let timeouts = self.client.timeouts();
        let (thread_registry, thread_what) = (registry.clone(), what.clone());
        let direct = self.client.prepare_upload(
            &registry,
            &repo,
            &scope,
            "PATCH",
            &url,
            &[("Content-Type", "application/octet-stream".to_string())],
        )?;
        let is_direct = direct.is_some();
        let send: Box<dyn FnOnce() -> Result<reqwest::blocking::Response> + Send> = match direct {
            // The pieces go to the socket as they are: 1 MiB writes, no copy on the way.
            Some(prepared) => {
                let w = thread_what.clone();
                Box::new(move || prepared.send(&w, UploadBody::pieces(rx)))
            }
            None => {
                let reader = ChannelReader {
                    rx,
                    current: Vec::new(),
                    pos: 0,
                };
                let (http, request) =
                    self.client.prepare(&registry, &repo, &scope, &|http, _| {
                        Ok(http
                            .patch(&url)
                            .header(CONTENT_TYPE, "application/octet-stream"))
                    })?;
                let mut request = request;
                *request.body_mut() = Some(Body::new(reader));
                let (r, w) = (thread_registry.clone(), thread_what.clone());
                Box::new(move || {
                    http.execute(request)
                        .map_err(|e| network_error(&r, &w, timeouts, e))
                })
            }
        };
        let request = std::thread::spawn(move || -> Result<String> {
            let resp = send()?;
            if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
                return Err(unexpected(&thread_what, resp));
            }
            Ok(resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| absolute(&base, l))
                .unwrap_or(url))
        });
        Ok(UploadWriter {
            hasher: HashingWriter::new(std::io::sink()),
            buf: Vec::with_capacity(STREAM_PIECE),
            tx: Some(tx),
            request: Some(request),
            direct: is_direct,
            appended: Vec::new(),
            registry,
            what,
            timeouts,
        })
    }

    fn adopt<'r>(
        &self,
        desc: &Descriptor,
        from: Option<&ImageRef>,
        open: &dyn Fn() -> Result<Box<dyn Read + 'r>>,
        what: &str,
    ) -> Result<crate::layer::Adopted> {
        use crate::layer::Adopted;
        if self.has(desc.digest(), desc.size()) {
            return Ok(Adopted::Present);
        }
        if let Some(from) = from.filter(|f| {
            f.registry == self.target.registry && f.repository != self.target.repository
        }) {
            if mount_blob(self.client, self.target, desc.digest(), from)? {
                return Ok(Adopted::Mounted);
            }
        }
        crate::layer::copy_blob(self, desc, open, what)?;
        Ok(Adopted::Copied)
    }

    type Sealed = (String, Digest);

    fn seal(&self, mut w: UploadWriter) -> Result<(Self::Sealed, Digest, u64)> {
        w.send_buffer()?;
        w.tx = None;
        let location = match w.request.take().map(|h| h.join()) {
            Some(Ok(r)) => r?,
            _ => return Err(w.failed()),
        };
        for (file, path, before) in &w.appended {
            if crate::digest::FileState::of(file).map_err(io_err("read", path))? != *before {
                return Err(Error::invalid(format!(
                    "model file {} changed while it was being sent",
                    path.display()
                ))
                .with_hint("do not change model files during a build; run the build again"));
            }
        }
        let (_, digest, size) = w.hasher.finish();
        Ok(((location, digest.clone()), digest, size))
    }

    /// The closing PUT, naming the digest: the registry checks it and completes the blob.
    fn commit(&self, (location, digest): Self::Sealed) -> Result<()> {
        let repo = self.target.repository.clone();
        let d = digest.to_string();
        let doing = format!("finishing the upload of {d} to {}", self.target.name());
        let resp = self.client.send_attempt(
            &self.target.registry,
            &repo,
            &Scope::push(&repo),
            &doing,
            Transfer::Small,
            &|http, _| {
                Ok(http
                    .put(with_query(&location, "digest", &d))
                    .header(CONTENT_LENGTH, 0))
            },
        )?;
        if !resp.status().is_success() {
            return Err(unexpected(&doing, resp));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges_are_inclusive_and_empty_is_zero() {
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("0-1023"), Some(1024));
        assert_eq!(parse_range_end("bytes=0-99"), Some(100));
        assert_eq!(parse_range_end("junk"), None);
    }
}
