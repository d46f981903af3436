//! The CycloneDX 1.6 ML-BOM a build records: the model (a `machine-learning-model` component with
//! a model card of what modelcar detected), each model file with its SHA-256 and size, the base
//! image (a `container` component with its digest) and modelcar as the tool.
//!
//! The BOM is a pure function of the build's inputs: its timestamp is `SOURCE_DATE_EPOCH`, files
//! are listed by their path relative to the model directory, and the base by its reference, so
//! the same inputs give the same bytes and no path or credential of the build machine appears.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{io_err, Result};
use crate::formats::FormatReport;
use crate::layer::BuiltLayer;
use crate::model::ModelTree;
use crate::store::{read_cache, write_cache, Store};

/// Media type of a CycloneDX JSON document (and the artifact type of a BOM referrer).
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// Namespace of modelcar's own CycloneDX properties.
const PROPERTY_PREFIX: &str = "io.modelcar:";

/// One model file: its path under `/models`, SHA-256 (hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What the BOM describes.
#[derive(Debug, Clone)]
pub struct BomInput<'a> {
    /// Model name (the image's repository name).
    pub name: &'a str,
    /// Model version (the image's tag).
    pub version: &'a str,
    /// The image reference, without a digest.
    pub image: &'a str,
    pub format: &'a FormatReport,
    pub files: &'a [FileDigest],
    /// The base image's reference (never a local path), if it has one.
    pub base_name: Option<&'a str>,
    pub base_digest: &'a str,
    /// Seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
}

/// SHA-256 and size of every regular file of a model tree, in the tree's order: as the layer
/// writer took them while writing `layers` (so the build reads no model byte for the BOM), else
/// read.
///
/// A file's digest read here is cached in the store under its path and `stat` fields (as the
/// layer cache does), so an unchanged rebuild reads no model file.
pub fn file_digests(
    store: &Store,
    tree: &ModelTree,
    layers: &[BuiltLayer],
) -> Result<Vec<FileDigest>> {
    let kept: BTreeMap<&str, &str> = layers
        .iter()
        .flat_map(|l| l.file_digests.iter().flatten())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let cache = store.cache_dir().join("file-digests");
    let mut out = Vec::new();
    for (entry, size) in tree.files() {
        if let Some(d) = kept.get(entry.rel.as_str()) {
            out.push(FileDigest {
                path: entry.rel.clone(),
                sha256: d.to_string(),
                size,
            });
            continue;
        }
        let mut key = Sha256::new();
        key.update(entry.source.as_os_str().as_encoded_bytes());
        key.update(serde_json::to_vec(&entry.stat).unwrap_or_default());
        let cache_file = cache.join(format!("{}.json", hex::encode(key.finalize())));
        let sha256 = match read_cache::<String>(&cache_file) {
            Some(hit) => hit,
            None => {
                let digest = hash_file(&entry.source)?;
                write_cache(&cache_file, &digest);
                digest
            }
        };
        out.push(FileDigest {
            path: entry.rel.clone(),
            sha256,
            size,
        });
    }
    Ok(out)
}

fn hash_file(path: &std::path::Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io_err("open model file", path))?;
    let mut hasher = Sha256::new();
    let mut buf = crate::readbuf::ReadBuf::new(1 << 20);
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io_err("read model file", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The BOM of a build, from its model files' digests ([`file_digests`] for a model directory).
pub fn for_build(
    spec: &crate::build::BuildSpec,
    files: &[FileDigest],
    format: &FormatReport,
    base_name: Option<&str>,
    base_digest: &str,
) -> Result<Vec<u8>> {
    let r = &spec.reference;
    let name = r.repository.rsplit('/').next().unwrap_or_default();
    Ok(render(&BomInput {
        name,
        version: r.tag.as_deref().unwrap_or("latest"),
        image: &r.tagged(),
        format,
        files,
        base_name,
        base_digest,
        epoch: spec.epoch,
    }))
}

fn property(name: &str, value: impl Into<String>) -> Value {
    json!({"name": format!("{PROPERTY_PREFIX}{name}"), "value": value.into()})
}

/// A `pkg:oci` package URL for a base image reference and digest.
fn oci_purl(reference: &str, digest: &str) -> Option<String> {
    let r: crate::reference::ImageRef = reference.parse().ok()?;
    let name = r.repository.rsplit('/').next()?.to_string();
    let mut purl = format!("pkg:oci/{name}@{}", digest.replace(':', "%3A"));
    purl.push_str(&format!("?repository_url={}/{}", r.registry, r.repository));
    if let Some(tag) = &r.tag {
        purl.push_str(&format!("&tag={tag}"));
    }
    Some(purl)
}

/// The BOM as canonical JSON bytes.
pub fn render(input: &BomInput) -> Vec<u8> {
    let created = crate::build::rfc3339(input.epoch);
    let mut model_props = Vec::new();
    if let Some(f) = &input.format.format {
        model_props.push(property("model.format", f.clone()));
        model_props.push(property(
            "model.format.source",
            if input.format.detected {
                "detected"
            } else {
                "declared"
            },
        ));
    }
    if let Some(m) = &input.format.model_file {
        model_props.push(property("model.file", m.clone()));
    }
    let total: u64 = input.files.iter().map(|f| f.size).sum();
    model_props.push(property("model.files", input.files.len().to_string()));
    model_props.push(property("model.bytes", total.to_string()));
    let checks: Vec<Value> = input
        .format
        .findings
        .iter()
        // Severities only: messages may quote the build machine's paths.
        .map(|f| {
            property(
                &format!("check.{}", f.check),
                format!("{:?}", f.severity).to_lowercase(),
            )
        })
        .collect();
    let mut model = json!({
        "type": "machine-learning-model",
        "bom-ref": "model",
        "name": input.name,
        "version": input.version,
        "modelCard": {
            "modelParameters": {},
            "properties": model_props.iter().chain(checks.iter()).cloned().collect::<Vec<_>>(),
        },
        "properties": model_props,
    });
    // The model's files are written straight into the bytes (below), in the place of this.
    model["components"] = json!([FILES_HERE]);
    if let Some(f) = &input.format.format {
        // The format is the closest CycloneDX has to a model's architecture family.
        model["modelCard"]["modelParameters"]["architectureFamily"] = json!(f);
    }
    let mut base = json!({
        "type": "container",
        "bom-ref": "base-image",
        "name": input.base_name.unwrap_or("base"),
        "version": input.base_digest,
        "hashes": [{"alg": "SHA-256", "content": input.base_digest.trim_start_matches("sha256:")}],
        "description": "the base image the model layers were added to",
    });
    if let Some(purl) = input.base_name.and_then(|n| oci_purl(n, input.base_digest)) {
        base["purl"] = json!(purl);
    }
    let mut bom = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{
                "type": "application",
                "name": "modelcar",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": input.image,
                "version": input.version,
            },
        },
        "dependencies": [
            {"ref": "image", "dependsOn": ["model", "base-image"]},
        ],
    });
    bom["components"] = Value::Array(vec![model, base]);
    let mut out = crate::json::canonical_value(&bom);
    let here = serde_json::to_vec(FILES_HERE).expect("a string serialises");
    let at = out
        .windows(here.len())
        .position(|w| w == here)
        .expect("the BOM holds the place of its files");
    let mut files = Vec::with_capacity(input.files.len() * 256);
    for (i, f) in input.files.iter().enumerate() {
        if i > 0 {
            files.push(b',');
        }
        write_file_component(&mut files, f);
    }
    out.splice(at..at + here.len(), files);
    out
}

/// Where the file components go in the rendered BOM: a string no path, name or digest can hold
/// (paths hold no NUL).
const FILES_HERE: &str = "\u{0}model files\u{0}";

/// One model file as a CycloneDX component, in canonical JSON: the same bytes
/// [`crate::json::canonical`] makes of it, written without building a [`Value`] (which costs
/// about 2 KB a file: 20 MB for a model of 10,000 files). Fields are declared in sorted order.
fn write_file_component(out: &mut Vec<u8>, f: &FileDigest) {
    #[derive(Serialize)]
    struct Hash<'a> {
        alg: &'a str,
        content: &'a str,
    }
    #[derive(Serialize)]
    struct Property {
        name: String,
        value: String,
    }
    #[derive(Serialize)]
    struct Component<'a> {
        #[serde(rename = "bom-ref")]
        bom_ref: String,
        hashes: [Hash<'a>; 1],
        name: &'a str,
        properties: [Property; 1],
        #[serde(rename = "type")]
        kind: &'a str,
    }
    let component = Component {
        bom_ref: format!("file:{}", f.path),
        hashes: [Hash {
            alg: "SHA-256",
            content: &f.sha256,
        }],
        name: &f.path,
        properties: [Property {
            name: format!("{PROPERTY_PREFIX}file.size"),
            value: f.size.to_string(),
        }],
        kind: "file",
    };
    serde_json::to_writer(out, &component).expect("a file component serialises");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FormatReport {
        FormatReport {
            format: Some("sklearn".into()),
            detected: true,
            reason: Some("model.joblib is a joblib pickle".into()),
            model_file: Some("model.joblib".into()),
            findings: Vec::new(),
            runtimes: Vec::new(),
        }
    }

    #[test]
    fn the_bom_lists_model_files_base_and_tool_and_is_reproducible() {
        let files = vec![FileDigest {
            path: "model.joblib".into(),
            sha256: "ab".repeat(32),
            size: 7,
        }];
        let format = report();
        let input = BomInput {
            name: "iris",
            version: "v1",
            image: "r.example/models/iris:v1",
            format: &format,
            files: &files,
            base_name: Some("quay.io/x/busybox:1"),
            base_digest: "sha256:0123",
            epoch: 86400,
        };
        let bytes = render(&input);
        assert_eq!(bytes, render(&input));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["specVersion"], "1.6");
        assert_eq!(v["metadata"]["timestamp"], "1970-01-02T00:00:00Z");
        assert_eq!(v["components"][0]["type"], "machine-learning-model");
        assert_eq!(
            v["components"][0]["components"][0]["hashes"][0]["content"],
            "ab".repeat(32)
        );
        assert_eq!(v["components"][1]["version"], "sha256:0123");
        assert_eq!(v["metadata"]["tools"]["components"][0]["name"], "modelcar");
    }
}
