//! `modelcar kserve`: the InferenceService that serves an image.

use anyhow::bail;
use modelcar::build::FORMAT_ANNOTATION;
use modelcar::error::Error;
use modelcar::image;
use modelcar::kserve::{self, Storage};
use modelcar::reference::ImageRef;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name or image reference.
    pub image: String,
    /// Name of the InferenceService (default: the repository's last part).
    #[arg(long)]
    pub name: Option<String>,
    /// oci (the modelcar sidecar, default) or native (an image volume: oci+native://).
    #[arg(long, default_value = "oci")]
    pub storage: String,
    /// Model format, when the image does not record one.
    #[arg(long, value_name = "FMT")]
    pub format: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let storage: Storage = args.storage.parse()?;
    let reference = ctx.resolve_name(&args.image)?;
    let image_ref: ImageRef = reference.parse().map_err(|e: Error| {
        anyhow::Error::new(e)
            .context("kserve needs a registry reference (the storageUri KServe pulls from)")
    })?;
    let store = ctx.store()?;
    let found = modelcar::transport::find_in_store(&store, &image_ref.to_string())?;
    let (digest, recorded_format) = match &found {
        Some(d) => {
            let annotations = match image::Document::classify(d.media_type()) {
                image::DocumentKind::Index => image::read_index(&store, d)?.annotations().clone(),
                _ => image::read_manifest(&store, d)?.annotations().clone(),
            };
            (
                Some(d.digest().to_string()),
                annotations.and_then(|a| a.get(FORMAT_ANNOTATION).cloned()),
            )
        }
        None => (image_ref.digest.as_ref().map(|d| d.to_string()), None),
    };
    if found.is_none() && image_ref.digest.is_none() {
        ctx.note(&format!("note: {image_ref} is not in the local store; the storageUri uses its tag, not a digest"));
    }
    let Some(format) = args.format.clone().or(recorded_format) else {
        bail!(Error::invalid(format!("the model format of {image_ref} is not known"))
            .with_hint("pass --format (sklearn, xgboost, lightgbm, ...); images built by modelcar record it"));
    };
    let name = args.name.clone().unwrap_or_else(|| {
        image_ref
            .repository
            .rsplit('/')
            .next()
            .unwrap_or("model")
            .to_string()
    });
    let (yaml, warnings) =
        kserve::inference_service(&name, &format, &image_ref, digest.as_deref(), storage)?;
    for w in warnings {
        ctx.note(&format!("warning: {}", w.message));
        if let Some(h) = &w.hint {
            ctx.note(&format!("hint: {h}"));
        }
    }
    // YAML from serde_yaml: every string is quoted and escaped by the encoder.
    outln!("{}", yaml.trim_end_matches('\n'));
    Ok(())
}
