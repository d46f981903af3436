//! A ModelPack manifest written beside the runnable image, from the same blobs (`build
//! --modelpack`).
//!
//! The runnable image's model layers are tars of the `/models` tree (paths `models/...`). The
//! ModelPack manifest lists the very same blobs wherever every file of a layer has one role
//! (weights, weight configs, docs, code), typed `application/vnd.cncf.model.<role>.v1.tar`
//! (`+gzip`, `+zstd` for compressed builds: the blob is the same either way, and its diff ID is
//! the image's). A registry then stores the weights once. With the default split layers each
//! large file has a layer of its own, so every weight shard is shared; only a layer that mixes
//! roles (the small files, or the whole model with `layers = "single"`) is written again as one
//! layer per role, from the same files with the same entry settings.
//!
//! Every ModelPack layer thus unpacks under `models/`: a ModelPack client pulling into `DIR`
//! gets `DIR/models/...`, the tree KServe sees at `/mnt/models`. Each layer carries
//! `org.cncf.model.filepath` (the file's path, `models/<path>`, for a layer of one file; `models`
//! for a layer of several) and `org.opencontainers.image.title`.
//!
//! The manifest is an entry of the image's index with the platform `unknown/unknown`, as
//! BuildKit places attestations: platform matchers (containerd, KServe's `oci+fetch` handler,
//! modelcar's own) pass over it, while everything that copies an index whole (`skopeo copy
//! --all`, `modelcar push` and `export`, garbage collection) carries it with the image. An entry
//! without a platform would not do: containerd 1.6 then fetches the ModelPack with the image,
//! and readers that take such an entry for the image (modelcar's `verify` among them) fail on
//! its layer types.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oci_spec::image::{Arch, Descriptor, MediaType, Os, Platform, PlatformBuilder};
use serde::Serialize;
use serde_json::json;

use super::config::{self, ModelConfig, ModelDescriptor, ModelFs};
use super::{
    layer_media_type, Packing, Role, ANNOTATION_FILEPATH, ANNOTATION_MEDIATYPE_UNTESTED,
    ARTIFACT_TYPE, CONFIG_MEDIA_TYPE,
};
use crate::error::{Error, Result};
use crate::formats::FormatReport;
use crate::image::Compression;
use crate::layer::{self, BuiltLayer, Codec, EntrySettings, LayerDestination, LayerPlan};
use crate::model::{EntryKind, ModelTree};
use crate::store::Store;

const TITLE: &str = "org.opencontainers.image.title";

/// What the ModelPack of a build is.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPackOutcome {
    /// The ModelPack manifest's digest (pull it by `REPOSITORY@DIGEST`).
    pub digest: String,
    /// Its layers: the runnable image's blobs listed again, and those written for it.
    pub layers_shared: usize,
    pub layers_written: usize,
    /// Digests of the layers written for the ModelPack alone.
    #[serde(skip)]
    pub written: Vec<String>,
    /// The manifest's entry for the image's index.
    #[serde(skip)]
    pub descriptor: Descriptor,
}

/// Name, version and time of the model, for the config's `descriptor`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub version: String,
    /// RFC 3339, from `SOURCE_DATE_EPOCH`.
    pub created: String,
}

/// Refuse a model the ModelPack cannot carry, before anything is written: ModelPack clients
/// (modctl, modelpack-client) refuse links in tar layers, and modelcar keeps a symlink that
/// stays inside the model directory as a link.
pub fn check(tree: &ModelTree) -> Result<()> {
    let links: Vec<&str> = tree
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Symlink { .. }))
        .map(|e| e.rel.as_str())
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = links
        .iter()
        .take(5)
        .map(|l| crate::text::escape(l).into_owned())
        .collect();
    Err(Error::invalid(format!(
        "model directory {}: --modelpack cannot carry symlinks ({}{}): ModelPack clients such as modctl refuse links in tar layers",
        tree.root.display(),
        shown.join(", "),
        if links.len() > 5 { ", ..." } else { "" }
    ))
    .with_hint("replace the links by copies of their files, or build without --modelpack"))
}

/// The role of a model file, by name, and whether that was checked (`false`: guessed).
///
/// `checked` holds the files whose contents modelcar's format checks read (the file the runtime
/// loads; for Hugging Face models `config.json` and the safetensors files).
pub fn role_of(rel: &str, checked: &BTreeSet<String>) -> (Role, bool) {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let stem = lower.split('.').next().unwrap_or("");
    let sure = checked.contains(rel);
    const WEIGHT: &[&str] = &[
        "safetensors",
        "bin",
        "pt",
        "pth",
        "ckpt",
        "gguf",
        "ggml",
        "onnx",
        "h5",
        "keras",
        "pb",
        "tflite",
        "joblib",
        "pkl",
        "pickle",
        "bst",
        "ubj",
        "npz",
        "npy",
        "msgpack",
        "pdparams",
        "pdiparams",
        "pdmodel",
        "params",
        "mar",
        "plan",
        "engine",
        "pmml",
        "mlmodel",
        "ot",
        "data-00000-of-00001",
    ];
    const CODE: &[&str] = &[
        "py", "sh", "ipynb", "js", "ts", "go", "rs", "c", "cc", "cpp", "cu", "h", "java", "r",
        "jl", "lua",
    ];
    const DOC: &[&str] = &["md", "rst", "pdf", "html", "adoc"];
    if WEIGHT.contains(&ext) || lower.starts_with("variables.data-") {
        return (Role::Weight, sure);
    }
    // `config.json`, tokenizers, shard indexes: what the weights need, read or not.
    if ext == "json" {
        return (Role::WeightConfig, sure);
    }
    // The file the runtime loads (a LightGBM `model.txt`, say).
    if sure {
        return (Role::Weight, true);
    }
    if [
        "readme",
        "license",
        "licence",
        "notice",
        "copying",
        "authors",
        "citation",
        "model_card",
    ]
    .contains(&stem)
        || DOC.contains(&ext)
        || name == "model.sig"
    {
        return (Role::Doc, false);
    }
    if CODE.contains(&ext) || name == "Dockerfile" || name == "requirements.txt" {
        return (Role::Code, false);
    }
    // Tokenizers, generation and serving configs, indexes of shards, vocabularies.
    if matches!(
        ext,
        "yaml"
            | "yml"
            | "toml"
            | "txt"
            | "model"
            | "pbtxt"
            | "jinja"
            | "xml"
            | "cfg"
            | "ini"
            | "vocab"
            | "tiktoken"
            | "spm"
    ) {
        return (Role::WeightConfig, false);
    }
    (Role::Weight, false)
}

fn packing(c: Compression) -> Packing {
    match c {
        Compression::None => Packing::Tar,
        Compression::Gzip => Packing::TarGzip,
        Compression::Zstd => Packing::TarZstd,
    }
}

/// One layer of the ModelPack: the blob, its role and whether the role was guessed.
struct PackLayer {
    layer: BuiltLayer,
    role: Role,
    untested: bool,
    shared: bool,
}

/// Write the ModelPack of a build into `store` (documents) and `dest` (layers it needs beyond
/// the image's, which is the store or the registry a build streams to).
///
/// `plans` are the plans the image's model layers were written from, in order; `layers` the
/// layers written (a trailing layer without a plan, the model signature, is listed as it is).
#[allow(clippy::too_many_arguments)]
pub fn write<D: LayerDestination>(
    store: &Store,
    dest: &D,
    tree: &ModelTree,
    plans: &[LayerPlan],
    layers: &[BuiltLayer],
    settings: &EntrySettings,
    codec: Codec,
    format: &FormatReport,
    identity: &Identity,
) -> Result<ModelPackOutcome> {
    let mut checked: BTreeSet<String> = format.model_file.iter().cloned().collect();
    if format.format.as_deref() == Some("huggingface") {
        for e in &tree.entries {
            if e.rel == "config.json" || e.rel.ends_with(".safetensors") {
                checked.insert(e.rel.clone());
            }
        }
    }
    let index_of: HashMap<&str, usize> = tree
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.rel.as_str(), i))
        .collect();
    let mut pack: Vec<PackLayer> = Vec::new();
    for (n, built) in layers.iter().enumerate() {
        if built.files.is_empty() {
            // Directories only: nothing a ModelPack client would write.
            continue;
        }
        // Keyed by the role's place in the specification's list, so roles come out in its order.
        let mut by_role: BTreeMap<usize, (Role, Vec<usize>, bool)> = BTreeMap::new();
        let mut missing = false;
        for f in &built.files {
            let (role, sure) = role_of(f, &checked);
            let key = Role::ALL.iter().position(|r| *r == role).unwrap_or(0);
            let slot = by_role
                .entry(key)
                .or_insert_with(|| (role, Vec::new(), false));
            match index_of.get(f.as_str()) {
                Some(&i) => slot.1.push(i),
                None => missing = true,
            }
            slot.2 |= !sure;
        }
        if by_role.len() == 1 || missing || n >= plans.len() {
            // One role (or a layer that is not the tree's, the signature): the image's blob.
            let (_, (role, _, untested)) = by_role.into_iter().next().expect("a file");
            pack.push(PackLayer {
                layer: built.clone(),
                role,
                untested,
                shared: true,
            });
            continue;
        }
        // Several roles: a layer per role, the first carrying the plan's directories too.
        let mut first = true;
        for (role, items, untested) in by_role.into_values() {
            let mut dirs: BTreeSet<usize> = layer::ancestors(tree, &items).into_iter().collect();
            if first {
                dirs.extend(plans[n].dirs.iter().copied());
                first = false;
            }
            let plan = LayerPlan {
                dirs: dirs.into_iter().collect(),
                items,
            };
            let written = layer::write_layer(store, dest, tree, &plan, settings, codec, &|_| {})?;
            pack.push(PackLayer {
                layer: written,
                role,
                untested,
                shared: false,
            });
        }
    }
    if pack.is_empty() {
        return Err(Error::invalid(format!(
            "model directory {} has no files for a ModelPack",
            tree.root.display()
        ))
        .with_hint("build without --modelpack, or add the model's files"));
    }
    // Weights first, then what they need, then docs and code, as the specification lists roles;
    // the image's order within a role.
    pack.sort_by_key(|p| Role::ALL.iter().position(|r| *r == p.role));

    let detected = config::detect(tree, format);
    let document = ModelConfig {
        descriptor: ModelDescriptor {
            created_at: Some(identity.created.clone()),
            name: Some(identity.name.clone()).filter(|n| !n.is_empty()),
            version: Some(identity.version.clone()),
            family: detected.family,
            ..Default::default()
        },
        config: detected.config,
        modelfs: ModelFs::layers(pack.iter().map(|p| p.layer.diff_id.clone()).collect()),
    };
    let config_bytes = crate::json::canonical(&document);
    let config_digest = store.put_bytes(&config_bytes)?;
    let layer_json: Vec<serde_json::Value> = pack
        .iter()
        .map(|p| {
            let path = if p.layer.files.len() == 1 {
                format!("{}/{}", layer::MODEL_ROOT, p.layer.files[0])
            } else {
                layer::MODEL_ROOT.to_string()
            };
            let mut annotations = serde_json::Map::new();
            annotations.insert(ANNOTATION_FILEPATH.into(), json!(path));
            annotations.insert(
                ANNOTATION_MEDIATYPE_UNTESTED.into(),
                json!(if p.untested { "true" } else { "false" }),
            );
            annotations.insert(TITLE.into(), json!(path));
            json!({
                "mediaType": layer_media_type(p.role, packing(p.layer.compression)),
                "digest": p.layer.digest,
                "size": p.layer.size,
                "annotations": annotations,
            })
        })
        .collect();
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "org.opencontainers.image.created".into(),
        json!(identity.created),
    );
    if let Some(f) = &format.format {
        annotations.insert(crate::build::FORMAT_ANNOTATION.into(), json!(f));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layer_json,
        "annotations": annotations,
    });
    let mut desc =
        store.put_document(MediaType::ImageManifest, &crate::json::canonical(&manifest))?;
    // The entry carries no `artifactType` (the manifest does): skopeo 1.9 (containers/image
    // 5.23) does not know the field, drops it and so rewrites the index, recompressing the
    // image's raw layers on the way (`skopeo copy --all` then changes every digest).
    desc.set_platform(Some(unknown_platform()));
    Ok(ModelPackOutcome {
        digest: desc.digest().to_string(),
        layers_shared: pack.iter().filter(|p| p.shared).count(),
        layers_written: pack.iter().filter(|p| !p.shared).count(),
        written: pack
            .iter()
            .filter(|p| !p.shared)
            .map(|p| p.layer.digest.clone())
            .collect(),
        descriptor: desc,
    })
}

/// `unknown/unknown`: the platform of index entries that are not runnable images.
fn unknown_platform() -> Platform {
    PlatformBuilder::default()
        .os(Os::Other("unknown".into()))
        .architecture(Arch::Other("unknown".into()))
        .build()
        .expect("os and architecture are set")
}

/// Whether an index entry may be a ModelPack manifest written beside an image: an image
/// manifest of the platform `unknown/unknown` that is not a BuildKit attestation.
pub fn may_be_modelpack(desc: &Descriptor) -> bool {
    desc.media_type() == &MediaType::ImageManifest
        && desc.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "unknown" && p.architecture().to_string() == "unknown"
        })
        && !desc
            .annotations()
            .as_ref()
            .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
}

/// Whether a manifest's bytes are a ModelPack manifest (its `artifactType`).
pub fn is_modelpack_manifest(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|m| {
            m.get("artifactType")
                .and_then(|t| t.as_str())
                .map(|t| t == ARTIFACT_TYPE)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(rel: &str) -> Role {
        role_of(rel, &BTreeSet::new()).0
    }

    #[test]
    fn files_get_the_role_their_names_say() {
        for w in [
            "model.safetensors",
            "model-00001-of-00002.safetensors",
            "pytorch_model.bin",
            "model.onnx",
            "model.joblib",
            "model.bst",
            "weights.gguf",
            "1/model.plan",
            "variables/variables.data-00000-of-00001",
            "unknown.blob",
        ] {
            assert_eq!(role(w), Role::Weight, "{w}");
        }
        for c in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "generation_config.json",
            "model.safetensors.index.json",
            "merges.txt",
            "vocab.txt",
            "tokenizer.model",
            "model-settings.json",
            "config.pbtxt",
            "chat_template.jinja",
        ] {
            assert_eq!(role(c), Role::WeightConfig, "{c}");
        }
        for d in [
            "README.md",
            "LICENSE",
            "LICENSE.txt",
            "docs/usage.rst",
            "model.sig",
        ] {
            assert_eq!(role(d), Role::Doc, "{d}");
        }
        for c in ["modeling_custom.py", "requirements.txt", "run.sh"] {
            assert_eq!(role(c), Role::Code, "{c}");
        }
        // What the format check read is a weight, checked; a lightgbm model.txt included.
        let checked: BTreeSet<String> = ["model.txt".to_string()].into();
        assert_eq!(role_of("model.txt", &checked), (Role::Weight, true));
        assert!(!role_of("model.txt", &BTreeSet::new()).1);
    }

    #[test]
    fn the_entry_is_not_a_platform() {
        let p = unknown_platform();
        let mut d = Descriptor::new(MediaType::ImageManifest, 1, crate::digest::sha256_of(b"x"));
        d.set_platform(Some(p));
        assert!(crate::image::is_attestation(&d));
    }
}
