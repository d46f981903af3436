//! `modelcar kserve`: the InferenceService (or LLMInferenceService) that serves an image.

use anyhow::bail;
use modelcar::build::FORMAT_ANNOTATION;
use modelcar::error::Error;
use modelcar::image::{self, DocumentKind};
use modelcar::kserve::{self, Kind, Storage};
use modelcar::limits::MAX_INDEX_IMAGES_READ;
use modelcar::reference::ImageRef;
use modelcar::registry::pull::fetch_manifest;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name or image reference (in the local store or in its registry).
    pub image: String,
    /// Name of the resource (default: the repository's last part).
    #[arg(long)]
    pub name: Option<String>,
    /// oci (the modelcar sidecar, default), native (an image volume: oci+native://) or fetch
    /// (the storage initializer: oci+fetch://).
    #[arg(long, default_value = "oci")]
    pub storage: String,
    /// isvc (an InferenceService, default) or llm (an LLMInferenceService, for huggingface).
    #[arg(long, default_value = "isvc")]
    pub kind: String,
    /// Model format, when the image does not record one.
    #[arg(long, value_name = "FMT")]
    pub format: Option<String>,
    /// Serving runtime instead of KServe's choice: one KServe ships that serves the format, or
    /// a ServingRuntime of your own.
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,
    /// Protocol instead of the runtime's preferred one (v2 when it speaks it).
    #[arg(long, value_name = "VERSION")]
    pub protocol: Option<String>,
}

/// The digest of the image, the format it records, and the media types of the layers of every
/// platform's manifest (from a registry: only for `--storage fetch`, or when the index itself
/// records no format).
struct Found {
    digest: Option<String>,
    format: Option<String>,
    layers: Vec<String>,
}

fn layer_types(manifest: &oci_spec::image::ImageManifest) -> impl Iterator<Item = String> + '_ {
    manifest.layers().iter().map(|l| l.media_type().to_string())
}

fn recorded_format(
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Option<String> {
    annotations.and_then(|a| a.get(FORMAT_ANNOTATION).cloned())
}

/// Look the image up in the store, else in its registry (its manifest only: the model's layers
/// are not downloaded).
fn find(ctx: &Context, image_ref: &ImageRef, storage: Storage) -> anyhow::Result<Found> {
    let store = ctx.store()?;
    if let Some(d) = modelcar::transport::find_in_store(&store, &image_ref.to_string())? {
        let annotations = match image::Document::classify(d.media_type()) {
            DocumentKind::Index => image::read_index(&store, &d)?.annotations().clone(),
            _ => image::read_manifest(&store, &d)?.annotations().clone(),
        };
        let mut layers = Vec::new();
        for img in image::platform_images(&store, &d)? {
            layers.extend(layer_types(&img.manifest));
        }
        return Ok(Found {
            digest: Some(d.digest().to_string()),
            format: recorded_format(annotations.as_ref()),
            layers,
        });
    }
    let client = ctx.client()?;
    let reference = match &image_ref.digest {
        Some(d) => d.to_string(),
        None => image_ref.tag.clone().unwrap_or_else(|| "latest".into()),
    };
    let (bytes, desc) = fetch_manifest(client, image_ref, &reference, None).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "{image_ref} is not in the local store, and its registry does not give its manifest"
        ))
    })?;
    let mut layers = Vec::new();
    let format = match image::Document::classify(desc.media_type()) {
        DocumentKind::Index => {
            let index = image::parse_index(&bytes, &format!("the index of {image_ref}"))?;
            let mut format = recorded_format(index.annotations().as_ref());
            // The images' manifests, when needed: KServe's fetch handler picks the one of its
            // node's architecture, so each one's layers count; an index without the
            // annotation may carry it on its images.
            let images: Vec<_> = index
                .manifests()
                .iter()
                .filter(|c| !image::is_attestation(c))
                .collect();
            let needed = storage == Storage::Fetch || format.is_none();
            if needed && images.len() > MAX_INDEX_IMAGES_READ {
                bail!(Error::invalid(format!(
                    "the index of {image_ref} lists {} images, more than the {MAX_INDEX_IMAGES_READ} modelcar reads",
                    images.len()
                ))
                .with_hint("refer to one image of the index by its digest (REPO@sha256:...)"));
            }
            for child in images.into_iter().filter(|_| needed) {
                let (child_bytes, _) =
                    fetch_manifest(client, image_ref, child.digest().as_ref(), Some(child))?;
                let manifest = image::parse_manifest(
                    &child_bytes,
                    &format!("manifest {} of {image_ref}", child.digest()),
                )?;
                layers.extend(layer_types(&manifest));
                if format.is_none() {
                    format = recorded_format(manifest.annotations().as_ref());
                }
            }
            format
        }
        _ => {
            let manifest = image::parse_manifest(&bytes, &format!("the manifest of {image_ref}"))?;
            layers.extend(layer_types(&manifest));
            recorded_format(manifest.annotations().as_ref())
        }
    };
    Ok(Found {
        digest: Some(desc.digest().to_string()),
        format,
        layers,
    })
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let storage: Storage = args.storage.parse()?;
    let kind: Kind = args.kind.parse()?;
    let reference = ctx.resolve_name(&args.image)?;
    let image_ref: ImageRef = reference.parse().map_err(|e: Error| {
        anyhow::Error::new(e)
            .context("kserve needs a registry reference (the storageUri KServe pulls from)")
    })?;
    let found = find(ctx, &image_ref, storage)?;
    storage
        .check_layers(found.layers.iter().map(String::as_str))
        .map_err(|e| anyhow::Error::new(e).context(format!("{image_ref}")))?;
    let Some(format) = args.format.clone().or(found.format) else {
        bail!(Error::invalid(format!("the model format of {image_ref} is not known"))
            .with_hint("pass --format (sklearn, xgboost, lightgbm, huggingface, onnx, ...); images built by modelcar record it"));
    };
    let name = args.name.clone().unwrap_or_else(|| {
        image_ref
            .repository
            .rsplit('/')
            .next()
            .unwrap_or("model")
            .to_string()
    });
    let m = kserve::manifest(&kserve::Request {
        name: &name,
        format: &format,
        image: &image_ref,
        digest: found.digest.as_deref(),
        storage,
        kind,
        runtime: args.runtime.as_deref(),
        protocol: args.protocol.as_deref(),
    })?;
    for w in m.warnings {
        ctx.note(&format!("warning: {}", w.message));
        if let Some(h) = &w.hint {
            ctx.note(&format!("hint: {h}"));
        }
    }
    // YAML from serde_yaml: every string is quoted and escaped by the encoder.
    outln!("{}", m.yaml.trim_end_matches('\n'));
    Ok(())
}
