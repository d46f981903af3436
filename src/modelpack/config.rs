//! The ModelPack config (`application/vnd.cncf.model.config.v1+json`): its serde types, and what
//! modelcar fills in from a model directory (the name, version and creation time, the format,
//! and for Hugging Face models the architecture, family, parameter count and precision).
//!
//! Field names and nesting follow the specification's `config-schema.json`; unknown fields are
//! refused when reading (the schema forbids them), and absent optional fields are left out when
//! writing, so the document validates against the schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::formats::{safetensors, FormatReport, ModelFiles};
use crate::model::ModelTree;

/// The whole config document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub descriptor: ModelDescriptor,
    pub config: TechnicalConfig,
    pub modelfs: ModelFs,
}

/// General information about the model (`descriptor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelDescriptor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authors: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "docURL", skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
    #[serde(rename = "sourceURL", skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(rename = "datasetsURL", skip_serializing_if = "Option::is_none")]
    pub datasets_url: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licenses: Option<Vec<String>>,
}

/// Technical metadata (`config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TechnicalConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Kept as JSON: modelcar detects no capabilities, and reads them only to pass them on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<serde_json::Value>,
}

/// The layers' uncompressed digests (`modelfs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl ModelFs {
    pub fn layers(diff_ids: Vec<String>) -> Self {
        ModelFs {
            kind: "layers".into(),
            diff_ids,
        }
    }
}

/// What modelcar learnt of a model from its files: the technical config, and the family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detected {
    pub config: TechnicalConfig,
    pub family: Option<String>,
}

/// The technical config of a model directory: the format (a file format as the specification
/// names them where modelcar knows it, else modelcar's format name), and for Hugging Face models
/// what `config.json` and the safetensors headers say. Only headers are read, each bounded as
/// the format checks bound them; a file that cannot be read leaves the field out.
pub fn detect(tree: &ModelTree, format: &FormatReport) -> Detected {
    let mut out = Detected::default();
    let files = ModelFiles::files(tree);
    let has = |ext: &str| files.iter().any(|(p, _)| p.ends_with(ext));
    out.config.format = match format.format.as_deref() {
        Some("huggingface") if has(".safetensors") => Some("safetensors".into()),
        Some("huggingface") if has(".bin") => Some("pt".into()),
        Some("huggingface") if has(".gguf") => Some("gguf".into()),
        Some(f) => Some(f.to_string()),
        None => None,
    };
    if format.format.as_deref() != Some("huggingface") {
        return out;
    }
    if let Some(json) = files
        .iter()
        .find(|(p, _)| p == "config.json")
        .filter(|(_, size)| *size <= crate::limits::FORMAT_SMALL_FILE)
        .and_then(|_| {
            tree.read_at("config.json", 0, crate::limits::FORMAT_SMALL_FILE)
                .ok()
        })
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
    {
        out.config.architecture = json
            .pointer("/architectures/0")
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        out.family = json
            .get("model_type")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        out.config.quantization = json
            .pointer("/quantization_config/quant_method")
            .and_then(|q| q.as_str())
            .filter(|q| !q.is_empty())
            .map(str::to_string);
    }
    let mut params: u128 = 0;
    let mut precisions: BTreeMap<&'static str, u128> = BTreeMap::new();
    let mut complete = false;
    for (rel, size) in files.iter().filter(|(p, _)| p.ends_with(".safetensors")) {
        let Ok(Ok(header)) = safetensors::read(tree, rel, *size) else {
            return out;
        };
        complete = true;
        for t in header.tensors.values() {
            let n = t
                .shape
                .iter()
                .try_fold(1u128, |acc, &d| acc.checked_mul(u128::from(d)))
                .unwrap_or(u128::MAX);
            params = params.saturating_add(n);
            if let Some(p) = precision(&t.dtype) {
                *precisions.entry(p).or_default() += 1;
            }
        }
    }
    if complete {
        out.config.param_size = param_size(params);
        if !precisions.is_empty() {
            out.config.precision = Some(precisions.into_keys().collect::<Vec<_>>().join(","));
        }
    }
    out
}

/// The specification's precision name of a safetensors dtype.
fn precision(dtype: &str) -> Option<&'static str> {
    Some(match dtype {
        "F64" => "float64",
        "F32" => "float32",
        "F16" => "float16",
        "BF16" => "bfloat16",
        "F8_E4M3" => "float8_e4m3",
        "F8_E5M2" => "float8_e5m2",
        "C64" => "complex64",
        "I8" => "int8",
        "I16" => "int16",
        "I32" => "int32",
        "I64" => "int64",
        "U8" => "uint8",
        "U16" => "uint16",
        "U32" => "uint32",
        "U64" => "uint64",
        "BOOL" => "bool",
        _ => return None,
    })
}

/// A parameter count as `<count><scale-prefix>` with one decimal (`6.7B`, `124.4M`, `0.6K`);
/// `None` for no parameters.
pub fn param_size(n: u128) -> Option<String> {
    if n == 0 {
        return None;
    }
    const SCALES: [(u128, char); 5] = [
        (1_000_000_000_000_000, 'Q'),
        (1_000_000_000_000, 'T'),
        (1_000_000_000, 'B'),
        (1_000_000, 'M'),
        (1_000, 'K'),
    ];
    let (unit, letter) = SCALES
        .iter()
        .copied()
        .find(|(unit, _)| n >= *unit)
        .unwrap_or((1_000, 'K'));
    // Tenths, rounded half up, in integers: exact for any count.
    let tenths = n.saturating_mul(10).saturating_add(unit / 2) / unit;
    let tenths = tenths.max(1);
    Some(format!("{}.{}{letter}", tenths / 10, tenths % 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_use_the_specifications_form() {
        assert_eq!(param_size(0), None);
        assert_eq!(param_size(12).as_deref(), Some("0.1K"));
        assert_eq!(param_size(600).as_deref(), Some("0.6K"));
        assert_eq!(param_size(1_000).as_deref(), Some("1.0K"));
        assert_eq!(param_size(124_439_808).as_deref(), Some("124.4M"));
        assert_eq!(param_size(6_738_415_616).as_deref(), Some("6.7B"));
        assert_eq!(param_size(999_960_000).as_deref(), Some("1000.0M"));
        assert_eq!(param_size(1_000_000_000_000).as_deref(), Some("1.0T"));
        assert_eq!(param_size(u128::MAX).map(|s| s.ends_with('Q')), Some(true));
    }

    #[test]
    fn the_config_round_trips_with_the_specifications_names() {
        let c = ModelConfig {
            descriptor: ModelDescriptor {
                created_at: Some("2025-01-01T00:00:00Z".into()),
                name: Some("m".into()),
                doc_url: Some("https://example.com".into()),
                ..Default::default()
            },
            config: TechnicalConfig {
                param_size: Some("1.0K".into()),
                ..Default::default()
            },
            modelfs: ModelFs::layers(vec!["sha256:00".into()]),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "descriptor": {"createdAt": "2025-01-01T00:00:00Z", "name": "m", "docURL": "https://example.com"},
                "config": {"paramSize": "1.0K"},
                "modelfs": {"type": "layers", "diffIds": ["sha256:00"]},
            })
        );
        assert_eq!(serde_json::from_value::<ModelConfig>(v).unwrap(), c);
        let extra = serde_json::json!({"descriptor": {}, "config": {"size": 1}, "modelfs": {"type": "layers", "diffIds": []}});
        assert!(serde_json::from_value::<ModelConfig>(extra).is_err());
    }
}
