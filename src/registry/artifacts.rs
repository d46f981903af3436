//! Small documents and blobs that go with an image (signatures, bills of materials, referrers
//! indexes): fetched and written whole, each bounded by [`MAX_DOCUMENT`].
//!
//! These are the distribution API's plain operations (`GET`/`PUT` of a manifest, a monolithic
//! blob upload, the OCI 1.1 referrers endpoint), without the streaming and resuming that image
//! layers need.

use std::io::Read;

use oci_spec::image::{Descriptor, Digest};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;

use super::client::{unexpected, Transfer};
use super::pull::fetch_manifest;
use super::push::{start_upload, with_query};
use super::{Client, Scope};
use crate::digest;
use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::store::MAX_DOCUMENT;

/// A manifest or index by tag or digest, or `None` when the registry has none.
pub fn get_manifest(
    client: &Client,
    r: &ImageRef,
    reference: &str,
) -> Result<Option<(Vec<u8>, Descriptor)>> {
    match fetch_manifest(client, r, reference, None) {
        Ok(found) => Ok(Some(found)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A small blob, checked against its digest.
pub fn get_blob(client: &Client, r: &ImageRef, digest: &str) -> Result<Vec<u8>> {
    let parsed: Digest = digest.parse().map_err(|_| {
        Error::corrupt(format!("blob {digest} of {}: not a valid digest", r.name()))
    })?;
    digest::require_sha256(&parsed)?;
    let repo = r.repository.clone();
    let resp = client.send(
        &r.registry,
        &repo,
        &Scope::pull(&repo),
        &format!("fetching blob {digest} of {}", r.name()),
        Transfer::Small,
        &|http, base| Ok(http.get(format!("{base}/v2/{repo}/blobs/{digest}"))),
    )?;
    let what = format!("blob {digest} of {}", r.name());
    if !resp.status().is_success() {
        return Err(unexpected(&format!("fetching {what}"), resp));
    }
    let mut bytes = Vec::new();
    resp.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::corrupt(format!("reading {what}: {e}")))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(Error::corrupt(format!(
            "{what} is larger than {MAX_DOCUMENT} bytes"
        )));
    }
    let got = digest::sha256_of(&bytes);
    if got.to_string() != digest {
        return Err(Error::corrupt(format!(
            "{what} does not match its digest (got {got})"
        )));
    }
    Ok(bytes)
}

/// Upload `bytes` as a blob in one request, unless the registry has it; returns its digest.
pub fn put_blob(client: &Client, r: &ImageRef, bytes: &[u8]) -> Result<Digest> {
    let repo = r.repository.clone();
    let scope = Scope::push(&repo);
    let digest = digest::sha256_of(bytes);
    let d = digest.to_string();
    let head = client.send(
        &r.registry,
        &repo,
        &scope,
        &format!("checking for blob {d} in {}", r.name()),
        Transfer::Small,
        &|http, base| Ok(http.head(format!("{base}/v2/{repo}/blobs/{d}"))),
    )?;
    if head.status().is_success() {
        return Ok(digest);
    }
    let what = format!("uploading blob {d} to {}", r.name());
    let url = client.retrying(|| start_upload(client, r, &what))?;
    let resp = client.send(
        &r.registry,
        &repo,
        &scope,
        &what,
        Transfer::Small,
        &|http, _| {
            Ok(http
                .put(with_query(&url, "digest", &d))
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(bytes.to_vec()))
        },
    )?;
    if !resp.status().is_success() {
        return Err(unexpected(&what, resp));
    }
    Ok(digest)
}

/// Store a manifest or index under `reference` (a tag or its digest). Returns whether the
/// registry indexed its `subject` itself (the `OCI-Subject` header of OCI 1.1 registries).
pub fn put_manifest(
    client: &Client,
    r: &ImageRef,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<bool> {
    let repo = r.repository.clone();
    let resp = client.send(
        &r.registry,
        &repo,
        &Scope::push(&repo),
        &format!("putting manifest {reference} of {}", r.name()),
        Transfer::Small,
        &|http, base| {
            Ok(http
                .put(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header(CONTENT_TYPE, media_type)
                .body(bytes.to_vec()))
        },
    )?;
    if !resp.status().is_success() {
        return Err(unexpected(
            &format!(
                "pushing {} to {}:{reference}",
                digest::sha256_of(bytes),
                r.name()
            ),
            resp,
        ));
    }
    Ok(resp.headers().contains_key("oci-subject"))
}

/// The referrers of `digest` through the OCI 1.1 referrers API (an image index), or `None`
/// when the registry does not offer the API.
pub fn referrers(client: &Client, r: &ImageRef, digest: &str) -> Result<Option<Vec<u8>>> {
    let repo = r.repository.clone();
    let resp = client.send(
        &r.registry,
        &repo,
        &Scope::pull(&repo),
        &format!("listing the referrers of {digest} in {}", r.name()),
        Transfer::Small,
        &|http, base| {
            Ok(http
                .get(format!("{base}/v2/{repo}/referrers/{digest}"))
                .header(ACCEPT, "application/vnd.oci.image.index.v1+json"))
        },
    )?;
    match resp.status() {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {
            return Ok(None)
        }
        _ => {
            return Err(unexpected(
                &format!("listing the referrers of {}@{digest}", r.name()),
                resp,
            ))
        }
    }
    let mut bytes = Vec::new();
    resp.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::corrupt(format!("reading the referrers of {digest}: {e}")))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(Error::corrupt(format!(
            "the referrers list of {digest} is larger than {MAX_DOCUMENT} bytes"
        )));
    }
    // A registry that answers the route with something else (an HTML page) lacks the API.
    if serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("manifests").cloned())
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(bytes))
}
