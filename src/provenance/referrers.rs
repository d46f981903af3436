//! Artifacts that refer to an image: kept in the store beside it, pushed with it, listed and
//! checked in registries.
//!
//! In the store a referrer (the build's BOM) is an untagged entry of the OCI layout's
//! `index.json` whose manifest has `subject` = the image, as the OCI image layout describes
//! referrers; `modelcar clean` and garbage collection leave it alone while it is listed.
//!
//! In a registry a referrer is pushed as an OCI 1.1 manifest with `subject`. A registry that
//! indexes it (it answers with `OCI-Subject`) lists it at `/v2/<repo>/referrers/<digest>`;
//! for one that does not (distribution 2.8, among others) the referrers tag schema of the
//! distribution spec is kept: an image index under the tag `sha256-<hex>` listing every
//! referrer, read and extended, never replaced. cosign signatures stay where cosign, sigstore's
//! policy-controller and Kyverno look for them: under `sha256-<hex>.sig`.

use oci_spec::image::{Descriptor, MediaType};
use serde::Serialize;
use serde_json::{json, Value};

use super::cosign::{self, PrivateKey, PublicKey};
use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::registry::{artifacts, Client};
use crate::store::{self, Store};

/// Media type of the empty config of an artifact manifest, and its content.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// The tag of the referrers tag schema for `digest`: `sha256-<hex>`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replace(':', "-")
}

/// An OCI 1.1 artifact manifest with one layer, referring to `subject`.
pub fn artifact_manifest(
    subject: &Descriptor,
    artifact_type: &str,
    layer_digest: &str,
    layer_len: u64,
    created: &str,
) -> Vec<u8> {
    crate::json::canonical(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": crate::digest::sha256_of(EMPTY).to_string(),
            "size": EMPTY.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": artifact_type,
            "digest": layer_digest,
            "size": layer_len,
        }],
        "subject": {
            "mediaType": subject.media_type().to_string(),
            "digest": subject.digest().to_string(),
            "size": subject.size(),
        },
        "annotations": {"org.opencontainers.image.created": created},
    }))
}

/// Keep `bom` in the store as a referrer of `subject`; its manifest's descriptor.
pub fn store_bom(
    store: &Store,
    subject: &Descriptor,
    bom: &[u8],
    created: &str,
) -> Result<Descriptor> {
    let layer = store.put_bytes(bom)?;
    store.put_bytes(EMPTY)?;
    let manifest = artifact_manifest(
        subject,
        super::bom::MEDIA_TYPE,
        layer.as_ref(),
        bom.len() as u64,
        created,
    );
    let mut desc = store.put_document(MediaType::ImageManifest, &manifest)?;
    desc.set_artifact_type(Some(MediaType::from(super::bom::MEDIA_TYPE)));
    // One BOM per image: a rebuild's BOM (another tool version, another base name) replaces
    // the one an earlier build of the same image left.
    let older: Vec<String> = stored_referrers(store, subject.digest().as_ref())?
        .into_iter()
        .filter(|(_, m)| {
            m.pointer("/artifactType").and_then(Value::as_str) == Some(super::bom::MEDIA_TYPE)
        })
        .map(|(d, _)| d.digest().to_string())
        .collect();
    store.replace_untagged(&older, &desc)?;
    Ok(desc)
}

/// A referrer's manifest, parsed loosely (only the fields referrers need).
fn parse(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

/// The store's referrers of `subject` (a digest): (manifest descriptor, manifest).
pub fn stored_referrers(store: &Store, subject: &str) -> Result<Vec<(Descriptor, Value)>> {
    let mut out = Vec::new();
    for entry in store.entries()? {
        if store::ref_name(&entry).is_some() || entry.media_type() != &MediaType::ImageManifest {
            continue;
        }
        let Some(manifest) = parse(&store.read_document(&entry)?) else {
            continue;
        };
        if manifest.pointer("/subject/digest").and_then(Value::as_str) == Some(subject) {
            out.push((entry, manifest));
        }
    }
    Ok(out)
}

/// The BOM the store keeps for `subject` (a digest), if any.
pub fn stored_bom(store: &Store, subject: &str) -> Result<Option<Vec<u8>>> {
    for (_, manifest) in stored_referrers(store, subject)? {
        if manifest.get("artifactType").and_then(Value::as_str) != Some(super::bom::MEDIA_TYPE) {
            continue;
        }
        let Some(layer) = manifest.pointer("/layers/0") else {
            continue;
        };
        let digest =
            crate::digest::parse(layer.get("digest").and_then(Value::as_str).unwrap_or(""))?;
        let size = layer.get("size").and_then(Value::as_u64).unwrap_or(0);
        let desc = Descriptor::new(MediaType::from(super::bom::MEDIA_TYPE), size, digest);
        return Ok(Some(store.read_document(&desc)?));
    }
    Ok(None)
}

/// What publishing an image's provenance did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Published {
    /// Digests of the referrers pushed (the BOM).
    pub referrers: Vec<String>,
    /// The signature added, when signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signed>,
}

/// A signature stored for cosign.
#[derive(Debug, Clone, Serialize)]
pub struct Signed {
    /// `host/repo:sha256-<hex>.sig`.
    pub location: String,
    /// Digest of the signature manifest.
    pub manifest: String,
    /// Digest of the signed image.
    pub signed: String,
    /// False when the same signature was already there.
    pub added: bool,
}

/// Push the store's referrers of `subject` to `target`'s repository, then sign `subject` when
/// a key is given. Call after the image itself is pushed.
pub fn publish(
    client: &Client,
    store: &Store,
    subject: &Descriptor,
    target: &ImageRef,
    key: Option<&PrivateKey>,
) -> Result<Published> {
    let mut published = Published::default();
    for (desc, manifest) in stored_referrers(store, subject.digest().as_ref())? {
        push_referrer(client, store, target, &desc, &manifest)?;
        published.referrers.push(desc.digest().to_string());
    }
    if let Some(key) = key {
        published.signature = Some(sign(client, target, subject.digest().as_ref(), key)?);
    }
    Ok(published)
}

/// Push one referrer (its blobs, its manifest) and index it under the tag schema when the
/// registry does not index it itself.
fn push_referrer(
    client: &Client,
    store: &Store,
    target: &ImageRef,
    desc: &Descriptor,
    manifest: &Value,
) -> Result<()> {
    let blobs = std::iter::once(manifest.get("config"))
        .chain(
            manifest
                .get("layers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Some),
        )
        .flatten();
    for b in blobs {
        let digest = crate::digest::parse(b.get("digest").and_then(Value::as_str).unwrap_or(""))?;
        let size = b.get("size").and_then(Value::as_u64).unwrap_or(0);
        let bytes = store.read_document(&Descriptor::new(
            MediaType::Other("blob".into()),
            size,
            digest,
        ))?;
        artifacts::put_blob(client, target, &bytes)?;
    }
    let bytes = store.read_document(desc)?;
    let digest = desc.digest().to_string();
    let indexed = artifacts::put_manifest(client, target, &digest, MANIFEST_MEDIA_TYPE, &bytes)?;
    if !indexed {
        let subject = manifest
            .pointer("/subject/digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::corrupt(format!("referrer {digest} has no subject")))?;
        add_to_tag_index(
            client,
            target,
            subject,
            &json!({
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": digest,
                "size": bytes.len(),
                "artifactType": manifest.get("artifactType").cloned().unwrap_or(Value::Null),
                "annotations": manifest.get("annotations").cloned().unwrap_or(json!({})),
            }),
        )?;
    }
    Ok(())
}

/// Add `entry` to the referrers tag schema index of `subject`, keeping what is listed there.
fn add_to_tag_index(
    client: &Client,
    target: &ImageRef,
    subject: &str,
    entry: &Value,
) -> Result<()> {
    let tag = referrers_tag(subject);
    let mut index = match artifacts::get_manifest(client, target, &tag)? {
        None => json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}),
        Some((bytes, _)) => match parse(&bytes) {
            Some(v) if v.get("manifests").is_some_and(Value::is_array) => v,
            _ => {
                return Err(Error::invalid(format!(
                    "{}:{tag} holds something other than a referrers index; not replacing it",
                    target.name()
                ))
                .with_hint(
                    "that tag is reserved for the OCI referrers tag schema; move what is there",
                ))
            }
        },
    };
    let manifests = index["manifests"].as_array_mut().expect("checked above");
    if manifests
        .iter()
        .any(|m| m.get("digest") == entry.get("digest"))
    {
        return Ok(());
    }
    manifests.push(entry.clone());
    let bytes = serde_json::to_vec(&index).map_err(|e| Error::corrupt(e.to_string()))?;
    artifacts::put_manifest(client, target, &tag, INDEX_MEDIA_TYPE, &bytes)?;
    Ok(())
}

/// Sign `digest` (a manifest or index in `target`'s repository) and store the signature where
/// cosign looks for it, beside the signatures already there.
pub fn sign(client: &Client, target: &ImageRef, digest: &str, key: &PrivateKey) -> Result<Signed> {
    let identity = format!("{}/{}", target.registry, target.repository);
    let payload = cosign::payload(&identity, digest);
    let signature = key.sign(&payload);
    let tag = cosign::signature_tag(digest);
    let existing = match artifacts::get_manifest(client, target, &tag)? {
        None => None,
        Some((bytes, _)) => Some(parse(&bytes).ok_or_else(|| {
            Error::corrupt(format!(
                "{}:{tag} is not a signature manifest",
                target.name()
            ))
        })?),
    };
    let payload_digest = crate::digest::sha256_of(&payload).to_string();
    let layer = cosign::signature_layer(&payload_digest, payload.len() as u64, &signature);
    let location = format!("{}:{tag}", target.name());
    let Some(layers) = cosign::merge_signature(existing.as_ref(), layer)? else {
        let (_, desc) = artifacts::get_manifest(client, target, &tag)?
            .ok_or_else(|| Error::corrupt(format!("{location} disappeared while signing")))?;
        return Ok(Signed {
            location,
            manifest: desc.digest().to_string(),
            signed: digest.to_string(),
            added: false,
        });
    };
    // Blobs first, the tag last: a failure leaves the old signatures as they were.
    artifacts::put_blob(client, target, &payload)?;
    let config = cosign::signature_config(&layers);
    let config_digest = artifacts::put_blob(client, target, &config)?;
    let manifest = cosign::signature_manifest(config_digest.as_ref(), config.len() as u64, layers);
    artifacts::put_manifest(client, target, &tag, MANIFEST_MEDIA_TYPE, &manifest)?;
    Ok(Signed {
        location,
        manifest: crate::digest::sha256_of(&manifest).to_string(),
        signed: digest.to_string(),
        added: true,
    })
}

/// One artifact that refers to an image.
#[derive(Debug, Clone, Serialize)]
pub struct Referrer {
    /// `signature` (cosign), `sbom` (CycloneDX) or the artifact type.
    pub kind: String,
    pub digest: String,
    pub artifact_type: Option<String>,
    /// How it was found: `referrers-api`, `tag-schema` or `cosign-tag`.
    pub found_by: &'static str,
    /// Signatures held (for a cosign signature manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<usize>,
}

fn kind_of(artifact_type: Option<&str>) -> String {
    match artifact_type {
        Some(super::bom::MEDIA_TYPE) => "sbom".into(),
        Some(t) if t.contains("cosign") || t.contains("sigstore") => "signature".into(),
        Some(t) => t.to_string(),
        None => "unknown".into(),
    }
}

/// The artifacts that refer to `digest` in `target`'s repository: through the referrers API or
/// the tag schema, and cosign's signature tag.
pub fn list(client: &Client, target: &ImageRef, digest: &str) -> Result<Vec<Referrer>> {
    let mut out = Vec::new();
    let (index, found_by) = match artifacts::referrers(client, target, digest)? {
        Some(bytes) => (parse(&bytes), "referrers-api"),
        None => (
            artifacts::get_manifest(client, target, &referrers_tag(digest))?
                .and_then(|(b, _)| parse(&b)),
            "tag-schema",
        ),
    };
    for m in index
        .as_ref()
        .and_then(|i| i.get("manifests"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let artifact_type = m.get("artifactType").and_then(Value::as_str);
        out.push(Referrer {
            kind: kind_of(artifact_type),
            digest: m
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            artifact_type: artifact_type.map(str::to_string),
            found_by,
            signatures: None,
        });
    }
    if let Some((bytes, desc)) =
        artifacts::get_manifest(client, target, &cosign::signature_tag(digest))?
    {
        let count = parse(&bytes)
            .and_then(|m| m.get("layers").and_then(Value::as_array).map(Vec::len))
            .unwrap_or(0);
        out.push(Referrer {
            kind: "signature".into(),
            digest: desc.digest().to_string(),
            artifact_type: Some(cosign::PAYLOAD_MEDIA_TYPE.into()),
            found_by: "cosign-tag",
            signatures: Some(count),
        });
    }
    Ok(out)
}

/// A signature that checked out.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub image: String,
    pub digest: String,
    /// The `critical.identity.docker-reference` of the payload.
    pub identity: String,
}

/// Check that `digest` in `target`'s repository carries a cosign signature by `key`.
pub fn verify(
    client: &Client,
    target: &ImageRef,
    digest: &str,
    key: &PublicKey,
) -> Result<Verified> {
    let tag = cosign::signature_tag(digest);
    let location = format!("{}:{tag}", target.name());
    let Some((bytes, _)) = artifacts::get_manifest(client, target, &tag)? else {
        return Err(Error::invalid(format!(
            "{}@{digest} has no cosign signature (nothing at {location})",
            target.name()
        ))
        .with_hint("sign it with modelcar sign IMAGE --sign-by-sigstore-private-key KEY"));
    };
    let manifest =
        parse(&bytes).ok_or_else(|| Error::corrupt(format!("{location} is not JSON")))?;
    let mut reasons = Vec::new();
    for layer in manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(crate::limits::MAX_SIGNATURES)
    {
        let layer_digest = layer.get("digest").and_then(Value::as_str).unwrap_or("");
        if crate::digest::parse(layer_digest).is_err() {
            reasons.push(format!(
                "a layer's digest `{}` is not a sha256 digest",
                crate::text::escape(layer_digest)
            ));
            continue;
        }
        let Some(sig_b64) = layer
            .pointer("/annotations/dev.cosignproject.cosign~1signature")
            .and_then(Value::as_str)
        else {
            reasons.push(format!("layer {layer_digest} carries no signature"));
            continue;
        };
        let Ok(signature) =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sig_b64)
        else {
            reasons.push(format!("layer {layer_digest}: the signature is not base64"));
            continue;
        };
        // get_blob checks the payload against the layer's digest: a tampered payload fails here.
        let payload = artifacts::get_blob(client, target, layer_digest)?;
        if !key.verify(&payload, &signature) {
            reasons.push(format!(
                "layer {layer_digest}: the signature does not match the public key"
            ));
            continue;
        }
        match cosign::payload_digest(&payload) {
            Some(d) if d == digest => {
                let identity = parse(&payload)
                    .and_then(|p| {
                        p.pointer("/critical/identity/docker-reference")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                return Ok(Verified {
                    image: target.name(),
                    digest: digest.to_string(),
                    identity,
                });
            }
            Some(d) => reasons.push(format!(
                "layer {layer_digest}: the payload signs {}, not {digest}",
                crate::text::escape(&d)
            )),
            None => reasons.push(format!(
                "layer {layer_digest}: the payload is not a cosign image signature"
            )),
        }
    }
    Err(Error::invalid(format!(
        "no valid signature for {}@{digest} at {location}: {}",
        target.name(),
        if reasons.is_empty() {
            "it holds no signatures".to_string()
        } else {
            reasons.join("; ")
        }
    ))
    .with_hint("check that the public key is the pair of the key that signed this image"))
}

/// The BOM that refers to `digest` in `target`'s repository, if any.
pub fn fetch_bom(client: &Client, target: &ImageRef, digest: &str) -> Result<Option<Vec<u8>>> {
    for item in list(client, target, digest)? {
        if item.kind != "sbom" {
            continue;
        }
        let Some((bytes, _)) = artifacts::get_manifest(client, target, &item.digest)? else {
            continue;
        };
        let layer = parse(&bytes)
            .and_then(|m| {
                m.pointer("/layers/0/digest")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .ok_or_else(|| Error::corrupt(format!("referrer {} has no layer", item.digest)))?;
        crate::digest::parse(&layer)?;
        return Ok(Some(artifacts::get_blob(client, target, &layer)?));
    }
    Ok(None)
}
