//! KServe manifests for modelcar images: the InferenceService (or LLMInferenceService) that
//! serves an image.
//!
//! The runtime comes from KServe's own table and selection rules ([`runtimes`]): the runtime
//! KServe would pick for the format, or the one the user names, checked to serve the format. The
//! protocol is one the runtime speaks. `storageUri` (or `spec.model.uri`) is pinned by digest
//! when the digest is known, since a tag can move and `latest` makes the kubelet pull again at
//! every pod start; its scheme picks how KServe gets the model out of the image ([`Storage`]).

pub mod runtimes;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::{self, Finding, Severity};
use crate::reference::ImageRef;
use crate::text::Escaped;

pub use runtimes::{runtimes_for, Runtime};

/// How KServe gets the model out of the image: the three OCI schemes of KServe 0.20 and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// `oci://`: the modelcar sidecar, sharing the pod's process namespace.
    #[default]
    Sidecar,
    /// `oci+native://`: a Kubernetes image volume, mounted read-only, never run.
    Native,
    /// `oci+fetch://`: the storage initializer pulls the image and extracts `models/`.
    Fetch,
}

impl Storage {
    pub const ALL: [Storage; 3] = [Storage::Sidecar, Storage::Native, Storage::Fetch];

    /// The URI scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Storage::Sidecar => "oci",
            Storage::Native => "oci+native",
            Storage::Fetch => "oci+fetch",
        }
    }
}

impl Storage {
    /// Whether KServe fails on a layer of this media type in this mode. KServe's `oci+fetch`
    /// handler (`kserve-storage`, Python 3.11's `tarfile`) refuses `+zstd` layers, in any
    /// manifest it reads; it skips layers that are not tar at all. The sidecar and image volumes
    /// go through the container runtime, which reads them all.
    pub fn refuses_layer(self, media_type: &str) -> bool {
        self == Storage::Fetch && media_type.ends_with("+zstd")
    }

    /// An error when KServe would fail on one of the image's layers in this mode.
    pub fn check_layers<'a>(self, media_types: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let refused: Vec<&str> = media_types
            .into_iter()
            .filter(|m| self.refuses_layer(m))
            .collect();
        if let Some(first) = refused.first() {
            return Err(Error::invalid(format!(
                "KServe's {}:// handler cannot read this image: it has {} layer(s) of type {} \
                 (its storage initializer's Python tarfile has no zstd)",
                self.scheme(),
                refused.len(),
                Escaped(first)
            ))
            .with_hint(
                "use --storage oci or native, or rebuild the image with --compression gzip (or none)",
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for Storage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "oci" | "sidecar" => Ok(Storage::Sidecar),
            "native" | "oci+native" => Ok(Storage::Native),
            "fetch" | "oci+fetch" => Ok(Storage::Fetch),
            _ => Err(Error::invalid(format!("--storage `{}` is not known", Escaped(s)))
                .with_hint("use oci (the modelcar sidecar), native (an image volume) or fetch (the storage initializer)")),
        }
    }
}

/// Which custom resource to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// `InferenceService` (`serving.kserve.io/v1beta1`).
    #[default]
    InferenceService,
    /// `LLMInferenceService` (`serving.kserve.io/v1alpha2`), for LLM formats.
    Llm,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::InferenceService, Kind::Llm];
}

impl std::str::FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "isvc" | "inferenceservice" => Ok(Kind::InferenceService),
            "llm" | "llmisvc" | "llminferenceservice" => Ok(Kind::Llm),
            _ => Err(
                Error::invalid(format!("--kind `{}` is not known", Escaped(s)))
                    .with_hint("use isvc (an InferenceService) or llm (an LLMInferenceService)"),
            ),
        }
    }
}

/// The formats an LLMInferenceService serves: directories its vLLM-based runtime loads.
pub const LLM_FORMATS: &[&str] = &["huggingface"];

/// The storage schemes an LLMInferenceService's `spec.model.uri` takes for OCI images.
const LLM_STORAGE: &[Storage] = &[Storage::Sidecar, Storage::Native];

/// What to print.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `metadata.name` (and the served model's name of an LLMInferenceService).
    pub name: &'a str,
    /// The model format, as KServe's `modelFormat.name` spells it.
    pub format: &'a str,
    pub image: &'a ImageRef,
    /// The manifest digest to pin, when known.
    pub digest: Option<&'a str>,
    pub storage: Storage,
    pub kind: Kind,
    /// A runtime to name instead of KServe's choice: one KServe ships, or a custom one.
    pub runtime: Option<&'a str>,
    /// A protocol instead of the runtime's preferred one.
    pub protocol: Option<&'a str>,
}

/// A manifest and the warnings about the combination chosen.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub yaml: String,
    /// The runtime named, if any.
    pub runtime: Option<String>,
    pub warnings: Vec<Finding>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Doc<S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
}

#[derive(Serialize)]
struct IsvcSpec {
    predictor: Predictor,
}

#[derive(Serialize)]
struct Predictor {
    model: IsvcModel,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IsvcModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol_version: Option<String>,
    model_format: ModelFormat,
    storage_uri: String,
}

#[derive(Serialize)]
struct ModelFormat {
    name: String,
}

#[derive(Serialize)]
struct LlmSpec {
    model: LlmModel,
}

#[derive(Serialize)]
struct LlmModel {
    uri: String,
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
    let scheme = storage.scheme();
    match digest {
        Some(d) => format!("{scheme}://{}/{}@{d}", image.registry, image.repository),
        None => format!("{scheme}://{image}"),
    }
}

fn names(runtimes: &[&Runtime]) -> String {
    runtimes
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runtime and protocol an InferenceService names, checked against KServe's table.
fn choose(req: &Request) -> Result<(Option<String>, Option<String>, String)> {
    let known = runtimes::canonical_format(req.format);
    let custom = req.runtime.filter(|r| runtimes::find(r).is_none());
    let format = match (known, custom) {
        (Some(f), _) => f.to_string(),
        (None, Some(_)) => req.format.to_string(),
        (None, None) => {
            return Err(Error::invalid(format!(
                "no runtime KServe ships serves the model format `{}`",
                Escaped(req.format)
            ))
            .with_hint(format!(
                "use one of {}, or name your own ServingRuntime with --runtime NAME",
                runtimes::known_formats().join(", ")
            )))
        }
    };
    let runtime: Option<&Runtime> = match req.runtime {
        Some(name) => match runtimes::find(name) {
            Some(r) if r.serves(&format) => Some(r),
            Some(r) => {
                return Err(Error::invalid(format!(
                    "runtime {} does not serve the model format {format}",
                    r.name
                ))
                .with_hint(format!(
                    "runtimes that serve {format}: {} (--runtime)",
                    names(&runtimes::serving(&format))
                )))
            }
            None => None,
        },
        None => runtimes_for(&format).first().copied(),
    };
    let protocol = match (req.protocol, runtime) {
        (Some(p), Some(r)) if !r.speaks(p) => {
            return Err(Error::invalid(format!(
                "runtime {} does not speak protocol `{}`",
                r.name,
                Escaped(p)
            ))
            .with_hint(format!(
                "it speaks {} (--protocol)",
                if r.protocols.is_empty() {
                    "v1".to_string()
                } else {
                    r.protocols.join(", ")
                }
            )))
        }
        (Some(p), _) => Some(p.to_string()),
        (None, Some(r)) => r.preferred_protocol().map(str::to_string),
        (None, None) => None,
    };
    let name = match runtime {
        Some(r) => Some(r.name.to_string()),
        None => custom.map(str::to_string),
    };
    if name.is_none() {
        // Every known format has a runtime KServe picks on its own; a format served only on
        // request (none today) would need --runtime.
        return Err(
            Error::invalid(format!("KServe picks no runtime for {format} on its own")).with_hint(
                format!(
                    "name one with --runtime: {}",
                    names(&runtimes::serving(&format))
                ),
            ),
        );
    }
    Ok((name, protocol, format))
}

/// The manifest for a request.
pub fn manifest(req: &Request) -> Result<Manifest> {
    if !valid_name(req.name) {
        return Err(Error::invalid(format!("`{}` is not a valid name for a KServe resource", Escaped(req.name)))
            .with_hint("use lowercase letters, digits and '-', starting with a letter, at most 63 characters (--name)"));
    }
    let mut warnings = Vec::new();
    if req.storage == Storage::Sidecar && req.format == "xgboost" {
        warnings.push(formats::xgboost_sidecar_warning());
    }
    if req.digest.is_none() && req.image.tag.as_deref().is_none_or(|t| t == "latest") {
        warnings.push(
            Finding::new(Severity::Warn, "tag", "the image is referenced as `latest`: Kubernetes pulls it again at every pod start and the model can change under a running service")
                .hint("build and push with a version tag, or refer to it by digest"),
        );
    }
    let uri = storage_uri(req.image, req.digest, req.storage);
    let (yaml, runtime) = match req.kind {
        Kind::InferenceService => {
            let (runtime, protocol, format) = choose(req)?;
            let doc = Doc {
                api_version: "serving.kserve.io/v1beta1",
                kind: "InferenceService",
                metadata: Metadata {
                    name: req.name.to_string(),
                },
                spec: IsvcSpec {
                    predictor: Predictor {
                        model: IsvcModel {
                            runtime: runtime.clone(),
                            protocol_version: protocol,
                            model_format: ModelFormat { name: format },
                            storage_uri: uri,
                        },
                    },
                },
            };
            (to_yaml(&doc)?, runtime)
        }
        Kind::Llm => {
            if !LLM_FORMATS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(req.format))
            {
                return Err(Error::invalid(format!(
                    "an LLMInferenceService serves LLM directories ({}), not the model format `{}`",
                    LLM_FORMATS.join(", "),
                    Escaped(req.format)
                ))
                .with_hint("leave out --kind llm to print an InferenceService"));
            }
            if req.runtime.is_some() || req.protocol.is_some() {
                return Err(Error::invalid(
                    "an LLMInferenceService names no runtime or protocol (--runtime, --protocol)",
                )
                .with_hint("leave out --runtime and --protocol with --kind llm"));
            }
            if !LLM_STORAGE.contains(&req.storage) {
                return Err(Error::invalid(format!(
                    "an LLMInferenceService takes no {}:// model URI",
                    req.storage.scheme()
                ))
                .with_hint(
                    "use --storage oci (the sidecar) or --storage native (an image volume)",
                ));
            }
            let doc = Doc {
                api_version: "serving.kserve.io/v1alpha2",
                kind: "LLMInferenceService",
                metadata: Metadata {
                    name: req.name.to_string(),
                },
                spec: LlmSpec {
                    model: LlmModel {
                        uri,
                        name: req.name.to_string(),
                    },
                },
            };
            (to_yaml(&doc)?, None)
        }
    };
    Ok(Manifest {
        yaml,
        runtime,
        warnings,
    })
}

/// Whether `kind` and `storage` go together for `format` (what [`manifest`] accepts, runtime
/// aside).
pub fn combination_supported(format: &str, kind: Kind, storage: Storage) -> bool {
    match kind {
        Kind::InferenceService => true,
        Kind::Llm => {
            LLM_FORMATS.iter().any(|f| f.eq_ignore_ascii_case(format))
                && LLM_STORAGE.contains(&storage)
        }
    }
}

fn to_yaml<T: Serialize>(doc: &T) -> Result<String> {
    serde_yaml::to_string(doc).map_err(|e| Error::invalid(format!("cannot write YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(name: &'a str, format: &'a str, image: &'a ImageRef) -> Request<'a> {
        Request {
            name,
            format,
            image,
            digest: None,
            storage: Storage::Sidecar,
            kind: Kind::InferenceService,
            runtime: None,
            protocol: None,
        }
    }

    fn model(yaml: &str) -> serde_yaml::Value {
        let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        doc["spec"]["predictor"]["model"].clone()
    }

    #[test]
    fn manifests_pin_the_digest() {
        let r: ImageRef = "quay.io/jooholee/mlserver-sklearn:v1.0.0".parse().unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        let m = manifest(&Request {
            digest: Some(&d),
            ..req("sklearn-iris", "sklearn", &r)
        })
        .unwrap();
        let model = model(&m.yaml);
        assert_eq!(
            model["storageUri"].as_str().unwrap(),
            format!("oci://quay.io/jooholee/mlserver-sklearn@{d}")
        );
        assert_eq!(model["runtime"].as_str(), Some("kserve-mlserver"));
        assert_eq!(model["protocolVersion"].as_str(), Some("v2"));
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn xgboost_and_latest_warn_and_every_scheme_is_spelled() {
        let r: ImageRef = "quay.io/x/m".parse().unwrap();
        let m = manifest(&req("m", "xgboost", &r)).unwrap();
        assert!(m.yaml.contains("oci://quay.io/x/m:latest"));
        assert_eq!(m.warnings.len(), 2);
        let v1 = r.with_tag("v1");
        for (storage, scheme) in [
            (Storage::Native, "oci+native://"),
            (Storage::Fetch, "oci+fetch://"),
        ] {
            let m = manifest(&Request {
                storage,
                ..req("m", "xgboost", &v1)
            })
            .unwrap();
            assert!(
                m.yaml.contains(&format!("{scheme}quay.io/x/m:v1")),
                "{}",
                m.yaml
            );
            assert!(m.warnings.is_empty());
        }
        assert!(manifest(&req("Bad_Name", "sklearn", &r)).is_err());
    }

    #[test]
    fn the_runtime_is_kserves_choice_and_speaks_the_protocol() {
        let r: ImageRef = "quay.io/x/m:v1".parse().unwrap();
        for format in runtimes::known_formats() {
            let m = manifest(&req("m", format, &r)).unwrap();
            let model = model(&m.yaml);
            let chosen = runtimes_for(format)[0];
            assert_eq!(model["runtime"].as_str(), Some(chosen.name), "{format}");
            assert_eq!(m.runtime.as_deref(), Some(chosen.name));
            match model["protocolVersion"].as_str() {
                Some(p) => assert!(chosen.speaks(p), "{format}: {p}"),
                None => assert!(chosen.protocols.is_empty(), "{format}"),
            }
        }
    }

    #[test]
    fn a_named_runtime_must_serve_the_format() {
        let r: ImageRef = "quay.io/x/m:v1".parse().unwrap();
        let m = manifest(&Request {
            runtime: Some("kserve-sklearnserver"),
            ..req("m", "sklearn", &r)
        })
        .unwrap();
        assert_eq!(
            model(&m.yaml)["runtime"].as_str(),
            Some("kserve-sklearnserver")
        );
        assert_eq!(model(&m.yaml)["protocolVersion"].as_str(), Some("v2"));
        // Named, a runtime serves formats it does not auto-select.
        let m = manifest(&Request {
            runtime: Some("kserve-tritonserver"),
            ..req("m", "pytorch", &r)
        })
        .unwrap();
        assert_eq!(
            model(&m.yaml)["runtime"].as_str(),
            Some("kserve-tritonserver")
        );
        let e = manifest(&Request {
            runtime: Some("kserve-sklearnserver"),
            ..req("m", "onnx", &r)
        })
        .unwrap_err();
        assert!(e.to_string().contains("kserve-sklearnserver"), "{e}");
        let hint = e.hint().unwrap();
        for rt in ["kserve-openvino", "kserve-tritonserver"] {
            assert!(hint.contains(rt), "{hint}");
        }
        let e = manifest(&Request {
            runtime: Some("kserve-tensorflow-serving"),
            protocol: Some("v2"),
            ..req("m", "tensorflow", &r)
        })
        .unwrap_err();
        assert!(e.hint().unwrap().contains("grpc-v1"), "{e}");
    }

    #[test]
    fn unknown_formats_need_a_custom_runtime() {
        let r: ImageRef = "quay.io/x/m:v1".parse().unwrap();
        let e = manifest(&req("m", "bogus", &r)).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(e.hint().unwrap().contains("huggingface"), "{e:?}");
        let m = manifest(&Request {
            runtime: Some("my-runtime"),
            ..req("m", "bogus", &r)
        })
        .unwrap();
        let model = model(&m.yaml);
        assert_eq!(model["runtime"].as_str(), Some("my-runtime"));
        assert_eq!(model["modelFormat"]["name"].as_str(), Some("bogus"));
        assert!(model["protocolVersion"].is_null());
    }

    #[test]
    fn the_fetch_handler_refuses_zstd_layers_and_the_runtimes_do_not() {
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
        let tar = "application/vnd.oci.image.layer.v1.tar";
        let docker = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        assert!(Storage::Fetch.check_layers([gzip, tar, docker]).is_ok());
        let e = Storage::Fetch.check_layers([gzip, zstd]).unwrap_err();
        assert!(e.to_string().contains(zstd), "{e}");
        assert!(e.hint().unwrap().contains("--compression gzip"));
        for s in [Storage::Sidecar, Storage::Native] {
            assert!(s.check_layers([zstd, gzip]).is_ok());
        }
    }

    #[test]
    fn llm_services_take_llm_formats_and_oci_uris() {
        let r: ImageRef = "quay.io/x/llama:v1".parse().unwrap();
        let d = format!("sha256:{}", "b".repeat(64));
        for storage in Storage::ALL {
            let result = manifest(&Request {
                kind: Kind::Llm,
                storage,
                digest: Some(&d),
                ..req("llama", "huggingface", &r)
            });
            assert_eq!(
                result.is_ok(),
                combination_supported("huggingface", Kind::Llm, storage)
            );
            if let Ok(m) = result {
                let doc: serde_yaml::Value = serde_yaml::from_str(&m.yaml).unwrap();
                assert_eq!(
                    doc["apiVersion"].as_str(),
                    Some("serving.kserve.io/v1alpha2")
                );
                assert_eq!(doc["kind"].as_str(), Some("LLMInferenceService"));
                assert_eq!(
                    doc["spec"]["model"]["uri"].as_str().unwrap(),
                    format!("{}://quay.io/x/llama@{d}", storage.scheme())
                );
                assert_eq!(doc["spec"]["model"]["name"].as_str(), Some("llama"));
            }
        }
        let e = manifest(&Request {
            kind: Kind::Llm,
            ..req("m", "sklearn", &r)
        })
        .unwrap_err();
        assert!(e.to_string().contains("sklearn"), "{e}");
    }
}
