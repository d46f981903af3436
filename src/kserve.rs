//! KServe InferenceService manifests for modelcar images.
//!
//! The manifest targets the `kserve-mlserver` runtime (protocol v2) for the formats MLServer
//! serves, and pins `storageUri` by digest when the digest is known, since a tag can move and
//! `latest` makes the kubelet pull again at every pod start.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::{self, Finding};
use crate::reference::ImageRef;

/// How KServe gets the model out of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// `oci://`: the modelcar sidecar, sharing the pod's process namespace.
    #[default]
    Sidecar,
    /// `oci+native://`: a Kubernetes image volume, mounted read-only, never run.
    Native,
}

impl std::str::FromStr for Storage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "oci" | "sidecar" => Ok(Storage::Sidecar),
            "native" | "oci+native" => Ok(Storage::Native),
            _ => Err(Error::invalid(format!("storage `{s}` is not known"))
                .with_hint("use oci (the modelcar sidecar) or native (an image volume)")),
        }
    }
}

/// The runtime KServe should use for a format, when there is a well-known one (the format
/// table's preferred runtime).
pub fn runtime_for(format: &str) -> Option<&'static str> {
    formats::preferred_runtime(format)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Isvc {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
}

#[derive(Serialize)]
struct Spec {
    predictor: Predictor,
}

#[derive(Serialize)]
struct Predictor {
    model: Model,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Model {
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'static str>,
    protocol_version: &'static str,
    model_format: ModelFormat,
    storage_uri: String,
}

#[derive(Serialize)]
struct ModelFormat {
    name: String,
}

/// Whether `name` is a valid InferenceService name (a DNS-1035 label).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The storage URI of an image.
pub fn storage_uri(image: &ImageRef, digest: Option<&str>, storage: Storage) -> String {
    let scheme = match storage {
        Storage::Sidecar => "oci",
        Storage::Native => "oci+native",
    };
    match digest {
        Some(d) => format!("{scheme}://{}/{}@{d}", image.registry, image.repository),
        None => format!("{scheme}://{image}"),
    }
}

/// The InferenceService YAML, and warnings about the combination chosen.
pub fn inference_service(
    name: &str,
    format: &str,
    image: &ImageRef,
    digest: Option<&str>,
    storage: Storage,
) -> Result<(String, Vec<Finding>)> {
    if !valid_name(name) {
        return Err(Error::invalid(format!("`{name}` is not a valid InferenceService name"))
            .with_hint("use lowercase letters, digits and '-', starting with a letter, at most 63 characters (--name)"));
    }
    let mut warnings = Vec::new();
    if storage == Storage::Sidecar && format == "xgboost" {
        warnings.push(formats::xgboost_sidecar_warning());
    }
    if digest.is_none() && image.tag.as_deref().is_none_or(|t| t == "latest") {
        warnings.push(
            Finding::new(formats::Severity::Warn, "tag", "the image is referenced as `latest`: Kubernetes pulls it again at every pod start and the model can change under a running service")
                .hint("build and push with a version tag, or refer to it by digest"),
        );
    }
    let doc = Isvc {
        api_version: "serving.kserve.io/v1beta1",
        kind: "InferenceService",
        metadata: Metadata {
            name: name.to_string(),
        },
        spec: Spec {
            predictor: Predictor {
                model: Model {
                    runtime: runtime_for(format),
                    protocol_version: "v2",
                    model_format: ModelFormat {
                        name: format.to_string(),
                    },
                    storage_uri: storage_uri(image, digest, storage),
                },
            },
        },
    };
    let yaml = serde_yaml::to_string(&doc)
        .map_err(|e| Error::invalid(format!("cannot write YAML: {e}")))?;
    Ok((yaml, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_pin_the_digest() {
        let r: ImageRef = "quay.io/jooholee/mlserver-sklearn:v1.0.0".parse().unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        let (yaml, warnings) =
            inference_service("sklearn-iris", "sklearn", &r, Some(&d), Storage::Sidecar).unwrap();
        assert!(
            yaml.contains(&format!(
                "storageUri: oci://quay.io/jooholee/mlserver-sklearn@{d}"
            )),
            "{yaml}"
        );
        assert!(yaml.contains("runtime: kserve-mlserver"));
        assert!(yaml.contains("protocolVersion: v2"));
        assert!(warnings.is_empty());
    }

    #[test]
    fn xgboost_and_latest_warn_and_native_is_spelled() {
        let r: ImageRef = "quay.io/x/m".parse().unwrap();
        let (yaml, w) = inference_service("m", "xgboost", &r, None, Storage::Sidecar).unwrap();
        assert!(yaml.contains("oci://quay.io/x/m:latest"));
        assert_eq!(w.len(), 2);
        let (yaml, w) =
            inference_service("m", "xgboost", &r.with_tag("v1"), None, Storage::Native).unwrap();
        assert!(yaml.contains("oci+native://quay.io/x/m:v1"));
        assert!(w.is_empty());
        assert!(inference_service("Bad_Name", "sklearn", &r, None, Storage::Sidecar).is_err());
    }
}
