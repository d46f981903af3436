//! OpenSSF model signatures (model-signing v1.0), as `model-signing` 1.1.1's "key" method
//! writes and checks them.
//!
//! The signature, `model.sig` at the top of the model directory, is a sigstore bundle (JSON, media
//! type `application/vnd.dev.sigstore.bundle.v0.3+json`) holding a DSSE envelope over an in-toto
//! statement. The statement's predicate (`https://model_signing/signature/v1.0`) lists every model
//! file by its path relative to the model directory, sorted by path components, with its SHA-256;
//! its subject is the model's name and the SHA-256 of all those digests in that order. The
//! envelope's pre-authentication encoding is signed with ECDSA, P-256 with SHA-256, P-384 with
//! SHA-384 or P-521 with SHA-512, deterministically (RFC 6979): the same files and key always give
//! the same bytes, and
//! the format holds no timestamp. The bundle names the key by a hint (the SHA-256 of its public
//! key in PEM) and carries no certificate or transparency-log entry.
//!
//! Which files count follows the reference tool's file serialization: regular files, and symlinks
//! to files under the link's own name (verify those with `--allow_symlinks`); directories and
//! symlinks to directories add nothing; `model.sig`, `.git`, `.gitattributes`, `.github` and
//! `.gitignore` at the top are left out, and listed in the statement as ignored.
//!
//! A build takes each file's SHA-256 from the read that writes the file into its layer
//! ([`crate::layer::BuiltLayer::file_digests`]), so signing reads no model byte twice; the digests are
//! also kept per layer digest in the store's cache, where checking an image finds them instead of
//! reading the layer again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::Path;

use base64::Engine as _;
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{io_err, Error, Result};
use crate::image::Compression;
use crate::layer::{self, BuiltLayer, EntrySettings, LayerDestination, MODEL_ROOT};
use crate::model::{EntryKind, ModelTree};
use crate::rootfs::{self, clean_path, Node, RootFs};
use crate::store::{read_cache, write_cache, Store};
use crate::text::escape;

/// The signature's file name, at the top of the model directory.
pub const SIGNATURE_FILE: &str = "model.sig";
/// Paths at the top of the model directory that signatures leave out (the reference tool's
/// defaults: the signature itself and git's files).
pub const IGNORED: [&str; 5] = [
    SIGNATURE_FILE,
    ".git",
    ".gitattributes",
    ".github",
    ".gitignore",
];
/// The model's name in the statement: the directory the files are in, in the image.
pub const MODEL_NAME: &str = MODEL_ROOT;
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Key files are a few hundred bytes; anything much larger is not one.
const KEY_FILE_MAX: u64 = 64 << 10;
const MAKE_KEY_HINT: &str = "make a P-256 key with `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out key.pem` and its public key with `openssl pkey -in key.pem -pubout -out key.pub`";

/// An elliptic-curve private key to sign with.
pub enum SigningKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

/// An elliptic-curve public key to check signatures with.
pub enum VerifyingKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

/// Read a PEM key file and its label (`PRIVATE KEY`, `PUBLIC KEY`...).
fn read_pem(path: &Path) -> Result<(String, String)> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_FILE_MAX).read_to_string(&mut text))
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => Error::invalid(format!(
                "key file {} is not a PEM file (it is not text)",
                path.display()
            ))
            .with_hint(MAKE_KEY_HINT),
            _ => io_err("read the key file", path)(e),
        })?;
    let label = text
        .find("-----BEGIN ")
        .map(|i| &text[i + "-----BEGIN ".len()..])
        .and_then(|rest| rest.find("-----").map(|end| rest[..end].to_string()))
        .ok_or_else(|| {
            Error::invalid(format!("key file {} is not a PEM file", path.display()))
                .with_hint(MAKE_KEY_HINT)
        })?;
    Ok((text, label))
}

impl SigningKey {
    /// Read a P-256, P-384 or P-521 private key in PEM: PKCS#8 (`PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`).
    pub fn from_pem_file(path: &Path) -> Result<SigningKey> {
        use p256::pkcs8::DecodePrivateKey;
        use p521::pkcs8::DecodePrivateKey as _;
        let (text, label) = read_pem(path)?;
        let bad = |what: String| {
            Error::invalid(format!("signing key {}: {what}", path.display()))
                .with_hint(MAKE_KEY_HINT)
        };
        let key = match label.as_str() {
            "PRIVATE KEY" => p256::ecdsa::SigningKey::from_pkcs8_pem(&text)
                .map(SigningKey::P256)
                .or_else(|_| p384::ecdsa::SigningKey::from_pkcs8_pem(&text).map(SigningKey::P384))
                .ok()
                .or_else(|| {
                    p521::ecdsa::SigningKey::from_pkcs8_pem(&text)
                        .map(SigningKey::P521)
                        .ok()
                }),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(&text)
                .map(|k| SigningKey::P256(k.into()))
                .or_else(|_| {
                    p384::SecretKey::from_sec1_pem(&text).map(|k| SigningKey::P384(k.into()))
                })
                .ok()
                .or_else(|| {
                    p521::SecretKey::from_sec1_pem(&text)
                        .map(|k| SigningKey::P521(k.into()))
                        .ok()
                }),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(bad("the key is encrypted".into()).with_hint(format!(
                    "write it unencrypted for the build: openssl pkey -in {} -out plain.pem",
                    path.display()
                )))
            }
            "PUBLIC KEY" => {
                return Err(bad(
                    "this is a public key; signing needs the private key".into()
                ))
            }
            other => {
                return Err(bad(format!(
                    "a PEM `{other}` is not an elliptic-curve private key"
                )))
            }
        };
        key.ok_or_else(|| {
            bad("not a P-256, P-384 or P-521 elliptic-curve private key (the curves model signatures made with keys use; RSA and Ed25519 keys are not)".into())
        })
    }

    /// DER ECDSA signature of `message`, hashed with the curve's hash; deterministic (RFC 6979).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match self {
            SigningKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            SigningKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            SigningKey::P521(k) => {
                use p521::ecdsa::signature::Signer as _;
                let s: p521::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
        }
    }

    /// The public key, as a verifier receives it.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::P256(k) => VerifyingKey::P256(*k.verifying_key()),
            SigningKey::P384(k) => VerifyingKey::P384(*k.verifying_key()),
            SigningKey::P521(k) => VerifyingKey::P521(*k.verifying_key()),
        }
    }
}

impl VerifyingKey {
    /// Read a P-256, P-384 or P-521 public key in PEM (`PUBLIC KEY`, SubjectPublicKeyInfo).
    pub fn from_pem_file(path: &Path) -> Result<VerifyingKey> {
        use p256::pkcs8::DecodePublicKey;
        let (text, label) = read_pem(path)?;
        let bad = |what: String| {
            Error::invalid(format!("public key {}: {what}", path.display()))
                .with_hint(MAKE_KEY_HINT)
        };
        match label.as_str() {
            "PUBLIC KEY" => {}
            l if l.contains("PRIVATE KEY") => {
                return Err(bad("this is a private key; checking needs the public key".into())
                    .with_hint(format!(
                        "write the public key with `openssl pkey -in {} -pubout -out key.pub` and pass that",
                        path.display()
                    )))
            }
            other => return Err(bad(format!("a PEM `{other}` is not a public key"))),
        }
        p256::ecdsa::VerifyingKey::from_public_key_pem(&text)
            .map(VerifyingKey::P256)
            .or_else(|_| p384::ecdsa::VerifyingKey::from_public_key_pem(&text).map(VerifyingKey::P384))
            .ok()
            .or_else(|| {
                use p521::pkcs8::DecodePublicKey as _;
                p521::ecdsa::VerifyingKey::from_public_key_pem(&text)
                    .map(VerifyingKey::P521)
                    .ok()
            })
            .ok_or_else(|| {
                bad("not a P-256, P-384 or P-521 elliptic-curve public key (model signatures made with keys use these curves)".into())
            })
    }

    /// The key in PEM (SubjectPublicKeyInfo, 64-column base64, LF), as the reference tool
    /// writes it to compute the key hint.
    fn pem(&self) -> String {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let pem = match self {
            VerifyingKey::P256(k) => k.to_public_key_pem(LineEnding::LF).ok(),
            VerifyingKey::P384(k) => k.to_public_key_pem(LineEnding::LF).ok(),
            VerifyingKey::P521(k) => {
                use p521::pkcs8::EncodePublicKey as _;
                k.to_public_key_pem(p521::pkcs8::LineEnding::LF).ok()
            }
        };
        pem.expect("a valid public key encodes")
    }

    /// The key hint of the bundle: SHA-256 (hex) of the PEM public key.
    pub fn hint(&self) -> String {
        hex::encode(Sha256::digest(self.pem().as_bytes()))
    }

    fn verify(&self, message: &[u8], der: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match self {
            VerifyingKey::P256(k) => {
                p256::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            VerifyingKey::P384(k) => {
                p384::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            VerifyingKey::P521(k) => {
                use p521::ecdsa::signature::Verifier as _;
                p521::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Option<Envelope>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    public_key: Option<PublicKeyId>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct PublicKeyId {
    hint: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    /// Base64 of the statement.
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    /// Base64 of the DER signature.
    sig: String,
    #[serde(default)]
    keyid: String,
}

#[derive(Serialize, Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Subject {
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Predicate {
    resources: Vec<Resource>,
    serialization: Serialization,
}

#[derive(Serialize, Deserialize)]
struct Resource {
    algorithm: String,
    digest: String,
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    allow_symlinks: bool,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

/// DSSE pre-authentication encoding of an in-toto payload.
fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} ",
        PAYLOAD_TYPE.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Order of the reference tool's manifest: by path components, as Python compares paths.
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Sign `files` (relative path, SHA-256 hex): the bytes of `model.sig`.
pub fn sign(key: &SigningKey, files: &[(String, String)], allow_symlinks: bool) -> Vec<u8> {
    let mut files = files.to_vec();
    files.sort_by(|a, b| path_order(&a.0, &b.0));
    let mut root = Sha256::new();
    for (_, digest) in &files {
        root.update(hex::decode(digest).expect("digests are hex written by this crate"));
    }
    let predicate = Predicate {
        resources: files
            .into_iter()
            .map(|(name, digest)| Resource {
                algorithm: "sha256".into(),
                digest,
                name,
            })
            .collect(),
        serialization: Serialization {
            method: "files".into(),
            hash_type: "sha256".into(),
            allow_symlinks,
            ignore_paths: IGNORED.iter().map(|s| s.to_string()).collect(),
        },
    };
    let statement = Statement {
        kind: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: MODEL_NAME.into(),
            digest: BTreeMap::from([("sha256".to_string(), hex::encode(root.finalize()))]),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: serde_json::to_value(predicate).expect("the predicate serialises"),
    };
    let payload = serde_json::to_vec_pretty(&statement).expect("the statement serialises");
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyId {
                hint: Some(key.verifying_key().hint()),
            }),
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Some(Envelope {
            payload: b64.encode(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                sig: b64.encode(key.sign(&pae(&payload))),
                keyid: String::new(),
            }],
        }),
    };
    serde_json::to_vec(&bundle).expect("the bundle serialises")
}

/// What a signature that verifies says about the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// SHA-256 (hex) of each signed file, by relative path.
    pub files: BTreeMap<String, String>,
    /// Paths the signer left out, the reference tool's defaults included.
    pub ignored: Vec<String>,
}

/// Check a `model.sig` (named `what` in errors) with `key`, and read what it signs.
pub fn verify_signature(bytes: &[u8], key: &VerifyingKey, what: &str) -> Result<Signed> {
    let bad = |m: String| Error::invalid(format!("{what}: {m}"));
    let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!("not a sigstore bundle ({e})")).with_hint(
            "sign the model again with modelcar build --sign-model or model_signing sign key",
        )
    })?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(bad(format!(
            "bundle media type {:?}, expected {BUNDLE_MEDIA_TYPE}",
            bundle.media_type
        ))
        .with_hint("it was not made by a key signer (model_signing sign key or modelcar build --sign-model)"));
    }
    let Some(id) = bundle.verification_material.public_key else {
        return Err(bad("signed with a certificate or a Sigstore identity, not a key".into())
            .with_hint("check it with `model_signing verify certificate` or `model_signing verify sigstore`"));
    };
    let hint = key.hint();
    if let Some(signed_with) = id.hint.filter(|h| !h.is_empty()) {
        if signed_with != hint {
            return Err(bad(format!(
                "signed with another key (key hint {}; the key given has {hint})",
                escape(&signed_with)
            ))
            .with_hint(
                "pass the public key that pairs with the private key the model was signed with",
            ));
        }
    }
    let envelope = bundle
        .dsse_envelope
        .ok_or_else(|| bad("the bundle holds no DSSE envelope".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(&envelope.payload)
        .map_err(|e| bad(format!("the payload is not base64 ({e})")))?;
    let signature = envelope
        .signatures
        .first()
        .ok_or_else(|| bad("the envelope holds no signature".into()))?;
    let sig = b64
        .decode(&signature.sig)
        .map_err(|e| bad(format!("the signature is not base64 ({e})")))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(bad(format!(
            "payload type {:?}, expected {PAYLOAD_TYPE}",
            envelope.payload_type
        )));
    }
    if !key.verify(&pae(&payload), &sig) {
        return Err(bad("the signature does not verify with the key given: the signed statement was changed, or it was signed with another key".into())
            .with_hint("sign the model again, or pass the public key it was signed with"));
    }
    let statement: Statement = serde_json::from_slice(&payload).map_err(|e| {
        bad(format!(
            "the signed statement is not an in-toto statement ({e})"
        ))
    })?;
    if statement.kind != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(bad(format!(
            "statement {} with predicate {}; expected {STATEMENT_TYPE} with {PREDICATE_TYPE}",
            escape(&statement.kind),
            escape(&statement.predicate_type)
        ))
        .with_hint(
            "sign the model again with a current signer (model-signing 1.0 or later, or modelcar)",
        ));
    }
    let predicate: Predicate = serde_json::from_value(statement.predicate)
        .map_err(|e| bad(format!("the predicate is not a model signature ({e})")))?;
    if predicate.serialization.method != "files" || predicate.serialization.hash_type != "sha256" {
        return Err(bad(format!(
            "the model was serialised by {} with {}; modelcar checks signatures of whole files with sha256",
            escape(&predicate.serialization.method),
            escape(&predicate.serialization.hash_type)
        ))
        .with_hint("check it with model_signing verify key on the unpacked model"));
    }
    let mut root = Sha256::new();
    let mut files = BTreeMap::new();
    for r in predicate.resources {
        let digest = (r.algorithm == "sha256")
            .then(|| hex::decode(&r.digest).ok())
            .flatten()
            .filter(|d| d.len() == 32)
            .ok_or_else(|| bad(format!("file {:?} has no SHA-256 digest", r.name)))?;
        root.update(&digest);
        files.insert(r.name, r.digest);
    }
    let root = hex::encode(root.finalize());
    let subject_digest = match statement.subject.as_slice() {
        [s] => s.digest.get("sha256").cloned().unwrap_or_default(),
        _ => String::new(),
    };
    if subject_digest != root {
        return Err(bad(format!(
            "the subject's digest {subject_digest:?} is not the digest of the files listed ({root})"
        )));
    }
    let mut ignored: Vec<String> = IGNORED.iter().map(|s| s.to_string()).collect();
    ignored.extend(
        predicate
            .serialization
            .ignore_paths
            .iter()
            .map(|p| clean_path(p)),
    );
    Ok(Signed { files, ignored })
}

/// A file a signature covers: its name under the model directory, and the path (in the image,
/// under `models/`) whose contents it has: itself, or what its symlink resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub name: String,
    pub contents: String,
    pub symlink: bool,
}

fn is_ignored(rel: &str, ignored: &[String]) -> bool {
    ignored.iter().any(|p| {
        rel == p
            || rel
                .strip_prefix(p.as_str())
                .is_some_and(|r| r.starts_with('/'))
    })
}

/// The files a signature covers in the merged filesystem `fs` (the model under `models/`).
pub fn covered_files(fs: &RootFs, ignored: &[String]) -> Result<Vec<Covered>> {
    let prefix = format!("{MODEL_ROOT}/");
    let mut out = Vec::new();
    for (path, node) in fs
        .entries
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
    {
        let rel = &path[prefix.len()..];
        if rel.is_empty() || is_ignored(rel, ignored) {
            continue;
        }
        let symlink = matches!(node, Node::Symlink { .. });
        match node {
            Node::Dir { .. } => {}
            Node::File { .. } => out.push(Covered {
                name: rel.to_string(),
                contents: path.clone(),
                symlink,
            }),
            Node::Symlink { .. } | Node::Hardlink { .. } => match fs.resolve(path) {
                Some((target, Node::File { .. })) if target.starts_with(&prefix) => {
                    out.push(Covered {
                        name: rel.to_string(),
                        contents: target,
                        symlink,
                    })
                }
                Some((_, Node::Dir { .. })) => {}
                _ => {
                    return Err(Error::invalid(format!(
                    "/{} is a link to no file of the model, which a model signature cannot cover",
                    escape(path)
                ))
                    .with_hint(
                        "point the link at a file inside the model directory, or remove it",
                    ))
                }
            },
            Node::Other => {
                return Err(Error::invalid(format!(
                    "/{} is a special file, which a model signature cannot cover",
                    escape(path)
                )))
            }
        }
    }
    Ok(out)
}

/// The model directory as a filesystem under `models/`, to find what a signature covers.
fn tree_fs(tree: &ModelTree) -> RootFs {
    let mut fs = RootFs::default();
    let dir = Node::Dir {
        mode: 0o555,
        uid: 0,
        gid: 0,
    };
    fs.entries.insert(MODEL_ROOT.to_string(), dir.clone());
    for e in &tree.entries {
        let node = match &e.kind {
            EntryKind::Dir => dir.clone(),
            EntryKind::File { size } => Node::File {
                mode: 0o444,
                uid: 0,
                gid: 0,
                size: *size,
            },
            EntryKind::Symlink { target } => Node::Symlink {
                target: target.clone(),
            },
        };
        fs.entries.insert(format!("{MODEL_ROOT}/{}", e.rel), node);
    }
    fs
}

/// Refuse to sign a model directory that holds a signature already: the build writes its own.
pub fn check_unsigned(tree: &ModelTree) -> Result<()> {
    if tree.get(SIGNATURE_FILE).is_some() {
        return Err(Error::invalid(format!(
            "model directory {} already holds {SIGNATURE_FILE}, and signing writes /models/{SIGNATURE_FILE}",
            tree.root.display()
        ))
        .with_hint(format!(
            "remove {SIGNATURE_FILE} from the model directory to sign with this key, or build without --sign-model to keep the signature that is there"
        )));
    }
    Ok(())
}

/// Sign the model files of `tree` with the digests the build took while writing `layers`: the
/// bytes of `model.sig`.
pub fn sign_built(key: &SigningKey, tree: &ModelTree, layers: &[BuiltLayer]) -> Result<Vec<u8>> {
    let digests: BTreeMap<&str, &str> = layers
        .iter()
        .flat_map(|l| l.file_digests.iter().flatten())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ignored: Vec<String> = IGNORED.iter().map(|s| s.to_string()).collect();
    let mut files = Vec::new();
    let mut symlinks = false;
    for c in covered_files(&tree_fs(tree), &ignored)? {
        let rel = &c.contents[MODEL_ROOT.len() + 1..];
        let digest = digests.get(rel).ok_or_else(|| {
            Error::corrupt(format!(
                "no SHA-256 was taken of model file {rel} while its layer was written"
            ))
        })?;
        symlinks |= c.symlink;
        files.push((c.name, digest.to_string()));
    }
    Ok(sign(key, &files, symlinks))
}

/// Sign the model files of `tree` with the digests the build took while writing `layers`, keep
/// those digests per layer for `verify --model-key`, and write the signature's layer into `dest`.
pub fn add_signature<D: LayerDestination>(
    store: &Store,
    dest: &D,
    key: &SigningKey,
    tree: &ModelTree,
    layers: &[BuiltLayer],
    settings: &EntrySettings,
) -> Result<BuiltLayer> {
    let signature = sign_built(key, tree, layers)?;
    for l in layers {
        remember_file_digests(store, l);
    }
    write_signature_layer(store, dest, &signature, settings)
}

/// Write the layer that adds `/models/model.sig` (uncompressed: a few kilobytes) into `dest`.
/// The model layers are the same whether or not the model is signed.
pub fn write_signature_layer<D: LayerDestination>(
    store: &Store,
    dest: &D,
    signature: &[u8],
    settings: &EntrySettings,
) -> Result<BuiltLayer> {
    let len = signature.len() as u64;
    let mut tar = layer::header(
        &format!("{MODEL_ROOT}/"),
        tar::EntryType::Directory,
        0,
        settings.dir_mode,
        None,
        settings,
    )?;
    tar.extend(layer::header(
        &format!("{MODEL_ROOT}/{SIGNATURE_FILE}"),
        tar::EntryType::Regular,
        len,
        settings.file_mode,
        None,
        settings,
    )?);
    tar.extend_from_slice(signature);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    let listing = rootfs::read_listing(io::Cursor::new(&tar))
        .map_err(|e| Error::corrupt(format!("the signature layer just written: {e}")))?;
    let mut w = dest.begin()?;
    w.write_all(&tar).map_err(|e| Error::Io {
        op: "write the signature layer into the store at",
        path: store.root().to_path_buf(),
        source: e,
    })?;
    let (digest, size) = dest.finish(w)?;
    rootfs::remember_listing(store, &digest, &listing);
    Ok(BuiltLayer {
        media_type: Compression::None.oci_media_type().to_string(),
        digest: digest.to_string(),
        size,
        diff_id: digest.to_string(),
        compression: Compression::None,
        files: vec![SIGNATURE_FILE.to_string()],
        content_bytes: len,
        file_digests: None,
        cached: false,
        reused: None,
    })
}

fn digests_cache(store: &Store, layer: &oci_spec::image::Digest) -> std::path::PathBuf {
    store
        .cache_dir()
        .join("file-digests")
        .join(format!("{}.json", layer.digest()))
}

/// Keep the SHA-256 of each file of a layer (paths as in the layer, under `models/`), per layer
/// digest: as trustworthy as the blob, since only bytes of that blob were hashed for it.
pub fn remember_file_digests(store: &Store, layer: &BuiltLayer) {
    let (Some(files), Ok(digest)) = (&layer.file_digests, layer.digest.parse()) else {
        return;
    };
    let paths: BTreeMap<String, &String> = files
        .iter()
        .map(|(rel, d)| (format!("{MODEL_ROOT}/{rel}"), d))
        .collect();
    write_cache(&digests_cache(store, &digest), &paths);
}

/// SHA-256 of the regular files under `models/` of a layer: from the cache, else by reading the
/// layer once (never extracting it).
fn layer_file_digests(
    store: &Store,
    desc: &Descriptor,
    wanted: &BTreeSet<&str>,
) -> Result<BTreeMap<String, String>> {
    let cache = digests_cache(store, desc.digest());
    if let Some(known) = read_cache::<BTreeMap<String, String>>(&cache) {
        if wanted.iter().all(|p| known.contains_key(*p)) {
            return Ok(known);
        }
    }
    let what = format!("layer {}", desc.digest());
    let bad = |e: io::Error| rootfs::ListingError::from(e).about(&what);
    let mut tar = rootfs::TarReader::new(rootfs::open_layer(store, desc)?);
    let mut found = BTreeMap::new();
    let prefix = format!("{MODEL_ROOT}/");
    while let Some((path, node)) = tar.next_entry().map_err(|e| e.about(&what))? {
        if !path.starts_with(&prefix) || !matches!(node, Node::File { .. }) {
            continue;
        }
        let mut h = Sha256::new();
        io::copy(&mut tar.contents(), &mut h).map_err(bad)?;
        found.insert(path, hex::encode(h.finalize()));
    }
    write_cache(&cache, &found);
    Ok(found)
}

/// Read a file of the image whole (it must be at most `max` bytes).
fn read_image_file(
    store: &Store,
    layers: &[Descriptor],
    fs: &RootFs,
    path: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let layer = fs
        .origin
        .get(path)
        .and_then(|&i| layers.get(i))
        .ok_or_else(|| Error::corrupt(format!("/{path} has no layer")))?;
    let what = format!("layer {}", layer.digest());
    let bad = |e: io::Error| rootfs::ListingError::from(e).about(&what);
    let mut tar = rootfs::TarReader::new(rootfs::open_layer(store, layer)?);
    let mut bytes = None;
    while let Some((p, node)) = tar.next_entry().map_err(|e| e.about(&what))? {
        if p != path {
            continue;
        }
        // The last entry of a path is the one the filesystem shows.
        bytes = match node {
            Node::File { size, .. } if size > max => {
                return Err(Error::invalid(format!(
                    "/{path} is {size} bytes, more than a model signature may be ({max})"
                )))
            }
            Node::File { .. } => {
                let mut buf = Vec::new();
                tar.contents()
                    .take(max)
                    .read_to_end(&mut buf)
                    .map_err(bad)?;
                Some(buf)
            }
            _ => None,
        };
    }
    bytes.ok_or_else(|| Error::corrupt(format!("/{path} is not in layer {}", layer.digest())))
}

/// What checking an image's model signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCheck {
    /// Files signed (and found the same in the image).
    pub files: usize,
}

/// Check `/models/model.sig` of an image (its layers and their merged filesystem) with `key`,
/// and every file it lists against the image: none missing, none added, the same SHA-256.
/// A signature or model that does not match is an [`Error::Invalid`] saying what differs.
pub fn verify_image(
    store: &Store,
    layers: &[Descriptor],
    fs: &RootFs,
    key: &VerifyingKey,
) -> Result<ImageCheck> {
    let sig_path = format!("{MODEL_ROOT}/{SIGNATURE_FILE}");
    let resolved = match fs.resolve(&sig_path) {
        Some((p, Node::File { .. })) => p,
        _ => {
            return Err(Error::invalid(format!(
                "the image has no /{sig_path}: its model is not signed"
            ))
            .with_hint("build it with --sign-model KEY.pem (or sign-model in modelcar.toml)"))
        }
    };
    let bytes = read_image_file(
        store,
        layers,
        fs,
        &resolved,
        crate::limits::MODEL_SIGNATURE_MAX,
    )?;
    let signed = verify_signature(&bytes, key, &format!("/{sig_path}"))?;
    let covered = covered_files(fs, &signed.ignored)?;

    let mut by_layer: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for c in &covered {
        let layer = *fs
            .origin
            .get(&c.contents)
            .ok_or_else(|| Error::corrupt(format!("/{} has no layer", c.contents)))?;
        by_layer.entry(layer).or_default().insert(&c.contents);
    }
    let mut contents: BTreeMap<String, String> = BTreeMap::new();
    for (layer, wanted) in &by_layer {
        let mut found = layer_file_digests(store, &layers[*layer], wanted)?;
        for p in wanted {
            if let Some(d) = found.remove(*p) {
                contents.insert(p.to_string(), d);
            }
        }
    }
    let actual: BTreeMap<&str, Option<&String>> = covered
        .iter()
        .map(|c| (c.name.as_str(), contents.get(&c.contents)))
        .collect();
    let changed: Vec<&str> = signed
        .files
        .iter()
        .filter(|(name, d)| actual.get(name.as_str()).is_some_and(|a| a != &Some(*d)))
        .map(|(n, _)| n.as_str())
        .collect();
    let missing: Vec<&str> = signed
        .files
        .keys()
        .filter(|n| !actual.contains_key(n.as_str()))
        .map(String::as_str)
        .collect();
    let unsigned: Vec<&str> = actual
        .keys()
        .filter(|n| !signed.files.contains_key(**n))
        .copied()
        .collect();
    let mut problems = Vec::new();
    for (what, list) in [
        ("changed since signing", &changed),
        ("signed but missing", &missing),
        ("not signed", &unsigned),
    ] {
        if !list.is_empty() {
            let shown: Vec<String> = list.iter().take(5).map(|n| escape(n).to_string()).collect();
            let more = if list.len() > 5 { ", ..." } else { "" };
            problems.push(format!(
                "{} {what} ({}{more})",
                list.len(),
                shown.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid(format!(
            "/models does not match /{sig_path}: {}",
            problems.join("; ")
        ))
        .with_hint("the model was changed after it was signed: rebuild from the signed files, or sign again (modelcar build --sign-model)"));
    }
    Ok(ImageCheck {
        files: signed.files.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_ordered_by_path_components() {
        let mut names = vec!["a-c", "a/b", "a", "b/a", "a.b/c"];
        names.sort_by(|a, b| path_order(a, b));
        assert_eq!(names, ["a", "a/b", "a-c", "a.b/c", "b/a"]);
    }

    #[test]
    fn ignored_paths_cover_their_children_only() {
        let ignored: Vec<String> = IGNORED.iter().map(|s| s.to_string()).collect();
        assert!(is_ignored(".git/config", &ignored));
        assert!(is_ignored("model.sig", &ignored));
        assert!(!is_ignored(".gitx", &ignored));
        assert!(!is_ignored("sub/model.sig", &ignored));
    }

    #[test]
    fn p521_signatures_are_rfc6979s() {
        // RFC 6979, appendix A.2.7: P-521, SHA-512, message "sample".
        let x = hex::decode("00FAD06DAA62BA3B25D2FB40133DA757205DE67F5BB0018FEE8C86E1B68C7E75CAA896EB32F1F47C70855836A6D16FCC1466F6D8FBEC67DB89EC0C08B0E996B83538").unwrap();
        let key = SigningKey::P521(p521::ecdsa::SigningKey::from_slice(&x).unwrap());
        let rs = hex::decode(concat!(
            "00C328FAFCBD79DD77850370C46325D987CB525569FB63C5D3BC53950E6D4C5F174E25A1EE9017B5D450606ADD152B534931D7D4E8455CC91F9B15BF05EC36E377FA",
            "00617CCE7CF5064806C467F678D3B4080D6F1CC50AF26CA209417308281B68AF282623EAA63E5B5C0723D8B8C37FF0777B1A20F8CCB1DCCC43997F1EE0E44DA4A67A"
        ))
        .unwrap();
        let want = p521::ecdsa::Signature::from_slice(&rs).unwrap().to_der();
        assert_eq!(key.sign(b"sample"), want.as_bytes());
        assert!(key.verifying_key().verify(b"sample", want.as_bytes()));
        assert!(!key.verifying_key().verify(b"other", want.as_bytes()));
    }

    #[test]
    fn a_signature_verifies_and_a_changed_statement_does_not() {
        let key = SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap());
        let files = vec![
            ("b".to_string(), hex::encode([1u8; 32])),
            ("a/x".to_string(), hex::encode([2u8; 32])),
        ];
        let sig = sign(&key, &files, false);
        assert_eq!(sig, sign(&key, &files, false), "deterministic");
        let signed = verify_signature(&sig, &key.verifying_key(), "model.sig").unwrap();
        assert_eq!(signed.files.len(), 2);
        assert_eq!(signed.files["b"], hex::encode([1u8; 32]));

        let other = SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap());
        let err = verify_signature(&sig, &other.verifying_key(), "model.sig").unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");

        // Swap the payload for one listing another digest: the signature no longer verifies.
        let mut bundle: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = b64
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let tampered = String::from_utf8(payload)
            .unwrap()
            .replace(&hex::encode([1u8; 32]), &hex::encode([3u8; 32]));
        bundle["dsseEnvelope"]["payload"] = b64.encode(tampered).into();
        let err = verify_signature(
            &serde_json::to_vec(&bundle).unwrap(),
            &key.verifying_key(),
            "model.sig",
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }
}
