//! cosign-compatible keys and image signatures.
//!
//! Keys are ECDSA P-256, as `cosign generate-key-pair` makes them: the private key is PKCS#8,
//! encrypted with a key derived from a passphrase by scrypt and sealed with NaCl secretbox, the
//! whole stored as JSON in a PEM block (`ENCRYPTED SIGSTORE PRIVATE KEY`; cosign's older
//! `ENCRYPTED COSIGN PRIVATE KEY` is read too); the public key is a PKIX `PUBLIC KEY` PEM.
//!
//! A signature covers cosign's simple-signing payload, which names the signed manifest's digest;
//! it is stored as cosign stores it: an OCI manifest under the tag `sha256-<hex>.sig` whose
//! layers are payloads (`application/vnd.dev.cosign.simplesigning.v1+json`) carrying their
//! base64 DER signature in the `dev.cosignproject.cosign/signature` annotation. Signing adds a
//! layer to the manifest already there, so other signatures stay.
//!
//! ```
//! use modelcar::provenance::cosign::{self, PrivateKey};
//! # fn main() -> modelcar::error::Result<()> {
//! let key = PrivateKey::generate();
//! let pem = key.to_encrypted_pem(b"secret")?;
//! let key = PrivateKey::from_encrypted_pem(&pem, b"secret", "cosign.key")?;
//! let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
//! let payload = cosign::payload("registry.example/models/iris", digest);
//! let signature = key.sign(&payload);
//! let public = cosign::PublicKey::from_pem(&key.public_pem(), "cosign.pub")?;
//! assert!(public.verify(&payload, &signature));
//! # Ok(()) }
//! ```

use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::limits;

/// PEM label of the private keys cosign writes today.
pub const PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label of the private keys older cosign releases wrote (same content).
pub const LEGACY_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// Media type of a simple-signing payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding a payload's base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of an image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Environment variable cosign reads a key's passphrase from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

// scrypt parameters cosign writes today (go-securesystemslib's `encrypted` package, as in the
// key of tests/fixtures/cosign): N = 2^16, r = 8, p = 1, 32-byte salt, 24-byte nonce.
const SCRYPT_LOG_N: u8 = 16;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// The JSON inside an encrypted private key's PEM block.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Go's `encoding/json` writes byte slices as standard base64.
mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

fn bad_key(file: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{file} is not a cosign private key: {why}")).with_hint(
        "give a key made by `modelcar generate-key` or `cosign generate-key-pair` (PEM, ENCRYPTED SIGSTORE PRIVATE KEY)",
    )
}

/// The 32-byte secretbox key for `passphrase`.
fn derive(passphrase: &[u8], salt: &[u8], params: &scrypt::Params) -> Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    scrypt::scrypt(passphrase, salt, params, &mut key)
        .map_err(|e| Error::invalid(format!("scrypt: {e}")))?;
    Ok(key)
}

/// A cosign signing key (ECDSA P-256).
pub struct PrivateKey {
    key: SigningKey,
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey {
            key: SigningKey::random(&mut OsRng),
        }
    }

    /// The key as cosign writes it, encrypted under `passphrase` (which may be empty).
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<String> {
        use crypto_secretbox::aead::{Aead, KeyInit};
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| Error::invalid(format!("encoding the private key: {e}")))?;
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, KEY_LEN)
            .map_err(|e| Error::invalid(format!("scrypt: {e}")))?;
        let secret = derive(passphrase, &salt, &params)?;
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(&secret.into());
        let ciphertext = cipher
            .encrypt(&nonce.into(), der.as_bytes())
            .map_err(|_| Error::invalid("sealing the private key failed"))?;
        let sealed = Sealed {
            kdf: Kdf {
                name: "scrypt".into(),
                params: KdfParams {
                    n: 1 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt: salt.to_vec(),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: nonce.to_vec(),
            },
            ciphertext,
        };
        let body = serde_json::to_vec(&sealed).map_err(|e| Error::invalid(e.to_string()))?;
        pem::encode_string(PRIVATE_KEY_LABEL, LineEnding::LF, &body)
            .map_err(|e| Error::invalid(format!("encoding the private key: {e}")))
    }

    /// Read an encrypted key as cosign writes it; `file` names it in errors.
    pub fn from_encrypted_pem(text: &str, passphrase: &[u8], file: &str) -> Result<PrivateKey> {
        use crypto_secretbox::aead::{Aead, KeyInit};
        let (label, body) = pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| bad_key(file, format!("not a PEM file ({e})")))?;
        if label != PRIVATE_KEY_LABEL && label != LEGACY_PRIVATE_KEY_LABEL {
            return Err(bad_key(
                file,
                format!("its PEM block is `{}`", crate::text::escape(label)),
            ));
        }
        let sealed: Sealed = serde_json::from_slice(&body)
            .map_err(|e| bad_key(file, format!("its content is not cosign's JSON ({e})")))?;
        if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
            return Err(bad_key(
                file,
                format!(
                    "it uses {} and {}; only scrypt and nacl/secretbox are known",
                    crate::text::escape(&sealed.kdf.name),
                    crate::text::escape(&sealed.cipher.name)
                ),
            ));
        }
        let KdfParams { n, r, p } = sealed.kdf.params;
        if !n.is_power_of_two() || n < 2 {
            return Err(bad_key(
                file,
                format!("scrypt N = {n} is not a power of two"),
            ));
        }
        let log_n = n.trailing_zeros() as u8;
        // The file chooses how much memory and time scrypt takes: bounded.
        let memory = 128u128 * u128::from(r) * u128::from(n) * u128::from(p.max(1));
        if memory > u128::from(limits::MAX_SCRYPT_MEMORY) {
            return Err(bad_key(
                file,
                format!(
                    "its scrypt parameters (N={n}, r={r}, p={p}) need more than {} bytes",
                    limits::MAX_SCRYPT_MEMORY
                ),
            ));
        }
        let params = scrypt::Params::new(log_n, r, p, KEY_LEN)
            .map_err(|e| bad_key(file, format!("scrypt parameters: {e}")))?;
        if sealed.cipher.nonce.len() != NONCE_LEN {
            return Err(bad_key(file, "its nonce is not 24 bytes"));
        }
        let secret = derive(passphrase, &sealed.kdf.salt, &params)?;
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(&secret.into());
        let nonce = crypto_secretbox::Nonce::from_slice(&sealed.cipher.nonce);
        let der = cipher
            .decrypt(nonce, sealed.ciphertext.as_slice())
            .map_err(|_| {
                Error::invalid(format!(
                    "cannot decrypt {file}: wrong passphrase (or a damaged key file)"
                ))
                .with_hint(format!(
                    "give the key's passphrase with --sign-passphrase-file FILE or in ${PASSWORD_ENV}"
                ))
            })?;
        let key = SigningKey::from_pkcs8_der(&der).map_err(|e| {
            bad_key(
                file,
                format!("the decrypted key is not an ECDSA P-256 key ({e}); modelcar signs for cosign with P-256 keys only, the keys `cosign generate-key-pair` and `modelcar generate-key` make (a P-384 or P-521 key that `cosign import-key-pair` sealed is not used: which hash cosign pairs with those curves differs between its releases)"),
            )
        })?;
        Ok(PrivateKey { key })
    }

    /// The public key as a PKIX PEM (`PUBLIC KEY`).
    pub fn public_pem(&self) -> String {
        PublicKey {
            key: *self.key.verifying_key(),
        }
        .to_pem()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// Sign `payload` (ECDSA over SHA-256, deterministic per RFC 6979); the DER signature.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.key.sign(payload);
        sig.as_bytes().to_vec()
    }
}

/// A cosign verification key (ECDSA P-256).
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Read a PKIX `PUBLIC KEY` PEM; `file` names it in errors.
    pub fn from_pem(text: &str, file: &str) -> Result<PublicKey> {
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
            Error::invalid(format!(
                "{file} is not an ECDSA P-256 public key in PEM (PUBLIC KEY): {e}; cosign signatures are checked with P-256 keys only"
            ))
            .with_hint("give the .pub file written by `modelcar generate-key` or `cosign generate-key-pair`")
        })?;
        Ok(PublicKey { key })
    }

    /// The key as a PKIX PEM.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key encodes")
    }

    /// Whether `signature` (DER, as cosign stores it) signs `payload`.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> bool {
        Signature::from_der(signature).is_ok_and(|sig| self.key.verify(payload, &sig).is_ok())
    }
}

/// cosign's simple-signing payload for the manifest `digest` in `repository` (host/path).
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    });
    serde_json::to_vec(&v).expect("JSON values serialize")
}

/// The digest a payload claims to sign, if it is an image signature payload.
pub fn payload_digest(payload: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    if v.pointer("/critical/type")?.as_str()? != PAYLOAD_TYPE {
        return None;
    }
    Some(
        v.pointer("/critical/image/docker-manifest-digest")?
            .as_str()?
            .to_string(),
    )
}

/// The tag cosign keeps the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// A payload layer and its signature, as one layer of a signature manifest.
pub fn signature_layer(payload_digest: &str, payload_len: u64, signature: &[u8]) -> Value {
    json!({
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "size": payload_len,
        "digest": payload_digest,
        "annotations": {
            SIGNATURE_ANNOTATION: base64::engine::general_purpose::STANDARD.encode(signature),
        },
    })
}

/// The config of a signature manifest with `layers` (what cosign writes: an empty image config
/// whose diff IDs are the payloads' digests).
pub fn signature_config(layers: &[Value]) -> Vec<u8> {
    let diff_ids: Vec<&Value> = layers.iter().filter_map(|l| l.get("digest")).collect();
    serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
    .expect("JSON values serialize")
}

/// The signature manifest: the `existing` one's layers (when there is one) and `layer`, unless
/// an identical layer is already there. Returns `None` when nothing changes.
pub fn merge_signature(existing: Option<&Value>, layer: Value) -> Result<Option<Vec<Value>>> {
    let mut layers: Vec<Value> = match existing {
        None => Vec::new(),
        Some(m) => m
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| Error::corrupt("the existing signature manifest has no layers"))?,
    };
    if layers.iter().any(|l| {
        l.get("digest") == layer.get("digest")
            && l.pointer("/annotations/dev.cosignproject.cosign~1signature")
                == layer.pointer("/annotations/dev.cosignproject.cosign~1signature")
    }) {
        return Ok(None);
    }
    layers.push(layer);
    Ok(Some(layers))
}

/// The signature manifest document for `layers` and the config descriptor.
pub fn signature_manifest(config_digest: &str, config_len: u64, layers: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config_len,
            "digest": config_digest,
        },
        "layers": layers,
    }))
    .expect("JSON values serialize")
}

/// The passphrase of a key: the file's content without its final newline, else
/// `$COSIGN_PASSWORD`, else empty.
pub fn passphrase(file: Option<&std::path::Path>) -> Result<Vec<u8>> {
    if let Some(path) = file {
        let mut bytes =
            std::fs::read(path).map_err(crate::error::io_err("read the passphrase file", path))?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        return Ok(bytes);
    }
    Ok(std::env::var_os(PASSWORD_ENV)
        .map(|v| v.into_encoded_bytes())
        .unwrap_or_default())
}

/// Read and decrypt the private key in `path`.
pub fn load_private_key(
    path: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
) -> Result<PrivateKey> {
    let text = read_key_file(path)?;
    let pass = passphrase(passphrase_file)?;
    PrivateKey::from_encrypted_pem(&text, &pass, &path.display().to_string())
}

/// Read the public key in `path`.
pub fn load_public_key(path: &std::path::Path) -> Result<PublicKey> {
    let text = read_key_file(path)?;
    PublicKey::from_pem(&text, &path.display().to_string())
}

fn read_key_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(crate::error::io_err("open the key file", path))?;
    let mut bytes = Vec::new();
    file.take(limits::MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(crate::error::io_err("read the key file", path))?;
    if bytes.len() as u64 > limits::MAX_KEY_FILE {
        return Err(Error::invalid(format!(
            "{} is larger than {} bytes: not a key file",
            path.display(),
            limits::MAX_KEY_FILE
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::invalid(format!(
            "{} is not a PEM key file (not text)",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_encrypted_form_and_only_with_its_passphrase() {
        let key = PrivateKey::generate();
        let pem = key.to_encrypted_pem(b"right").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        let back = PrivateKey::from_encrypted_pem(&pem, b"right", "k").unwrap();
        assert_eq!(back.public_pem(), key.public_pem());
        let err = PrivateKey::from_encrypted_pem(&pem, b"wrong", "k")
            .err()
            .unwrap();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
    }

    #[test]
    fn a_key_made_by_cosign_opens_and_signs_for_its_public_key() {
        let key = PrivateKey::from_encrypted_pem(
            include_str!("../../tests/fixtures/cosign/cosign-made.key"),
            b"",
            "cosign-made.key",
        )
        .unwrap();
        let public = include_str!("../../tests/fixtures/cosign/cosign-made.pub");
        assert_eq!(key.public_pem().trim(), public.trim());
        let p = payload("r.example/m", "sha256:aa");
        assert!(PublicKey::from_pem(public, "pub")
            .unwrap()
            .verify(&p, &key.sign(&p)));
        assert!(PrivateKey::from_encrypted_pem(
            include_str!("../../tests/fixtures/cosign/cosign-made.key"),
            b"x",
            "cosign-made.key",
        )
        .is_err());
    }

    #[test]
    fn signatures_verify_only_for_their_payload_and_key() {
        let key = PrivateKey::generate();
        let other = PrivateKey::generate();
        let p = payload("r.example/m", "sha256:aa");
        let sig = key.sign(&p);
        assert!(key.public().verify(&p, &sig));
        assert!(!other.public().verify(&p, &sig));
        assert!(!key
            .public()
            .verify(&payload("r.example/m", "sha256:bb"), &sig));
        assert_eq!(payload_digest(&p).as_deref(), Some("sha256:aa"));
    }

    #[test]
    fn a_signature_layer_already_present_is_not_added_twice() {
        let l = signature_layer("sha256:aa", 3, b"sig");
        let first = merge_signature(None, l.clone()).unwrap().unwrap();
        let manifest = json!({ "layers": first });
        assert!(merge_signature(Some(&manifest), l).unwrap().is_none());
        let two = merge_signature(Some(&manifest), signature_layer("sha256:bb", 3, b"x"))
            .unwrap()
            .unwrap();
        assert_eq!(two.len(), 2);
    }
}
