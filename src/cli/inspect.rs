//! `modelcar inspect`: an image's index, manifests, config and model files.

use indicatif::BinaryBytes;
use modelcar::image;
use modelcar::registry::pull::PullPolicy;
use modelcar::rootfs::{Node, RootFs};
use modelcar::text::Escaped;
use modelcar::transport;
use serde::Serialize;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name, store reference, oci:DIR[:REF], oci-archive:FILE or docker-archive:FILE.
    pub image: String,
    /// List the files under /models with owner, mode and size.
    #[arg(long)]
    pub files: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the signatures and bills of materials that refer to the image in its registry.
    #[arg(long, conflicts_with = "files")]
    pub referrers: bool,
}

#[derive(Serialize)]
struct Summary {
    name: String,
    digest: String,
    media_type: String,
    annotations: std::collections::BTreeMap<String, String>,
    manifests: Vec<ManifestSummary>,
    /// The ModelPack manifest beside the image (`build --modelpack`), by digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    modelpack: Option<String>,
}

#[derive(Serialize)]
struct ManifestSummary {
    platform: String,
    digest: String,
    config_digest: String,
    user: Option<String>,
    entrypoint: serde_json::Value,
    cmd: serde_json::Value,
    created: Option<String>,
    labels: serde_json::Value,
    layers: Vec<LayerSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileSummary>>,
}

#[derive(Serialize)]
struct LayerSummary {
    digest: String,
    size: u64,
    media_type: String,
    title: Option<String>,
}

#[derive(Serialize)]
struct FileSummary {
    path: String,
    kind: &'static str,
    uid: u64,
    gid: u64,
    mode: String,
    size: u64,
    target: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    if args.referrers {
        return super::provenance::print_referrers(ctx, &args.image, args.json);
    }
    let store = ctx.store()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let top = &resolved.descriptor;
    let mut manifests = Vec::new();
    for img in image::platform_images(&store, top)? {
        let config = image::read_config(&store, img.manifest.config())?;
        let platform = img
            .platform
            .clone()
            .or_else(|| transport::platform_of_config(&config))
            .map(|p| image::platform_string(&p))
            .unwrap_or_else(|| "?".into());
        let files = if args.files {
            let fs = RootFs::from_layers(&store, img.manifest.layers())?;
            Some(model_files(&fs))
        } else {
            None
        };
        manifests.push(ManifestSummary {
            platform,
            digest: img.descriptor.digest().to_string(),
            config_digest: img.manifest.config().digest().to_string(),
            user: config
                .pointer("/config/User")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            entrypoint: config
                .pointer("/config/Entrypoint")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            cmd: config
                .pointer("/config/Cmd")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            created: config
                .get("created")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            labels: config
                .pointer("/config/Labels")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            layers: img
                .manifest
                .layers()
                .iter()
                .map(|l| LayerSummary {
                    digest: l.digest().to_string(),
                    size: l.size(),
                    media_type: l.media_type().to_string(),
                    title: l
                        .annotations()
                        .as_ref()
                        .and_then(|a| a.get("org.opencontainers.image.title").cloned()),
                })
                .collect(),
            files,
        });
    }
    let mut modelpack = None;
    let annotations = match image::Document::classify(top.media_type()) {
        image::DocumentKind::Index => {
            let index = image::read_index(&store, top)?;
            for child in index
                .manifests()
                .iter()
                .filter(|c| modelcar::modelpack::publish::may_be_modelpack(c))
                .filter(|c| store.has_blob(c.digest(), c.size()))
            {
                if modelcar::modelpack::publish::is_modelpack_manifest(&store.read_document(child)?)
                {
                    modelpack = Some(child.digest().to_string());
                }
            }
            index.annotations().clone()
        }
        _ => image::read_manifest(&store, top)?.annotations().clone(),
    }
    .unwrap_or_default()
    .into_iter()
    .collect();
    let summary = Summary {
        name: resolved.name.clone(),
        digest: top.digest().to_string(),
        media_type: top.media_type().to_string(),
        annotations,
        manifests,
        modelpack,
    };
    if args.json {
        return super::print_json(&summary);
    }
    print_human(&summary)
}

fn model_files(fs: &RootFs) -> Vec<FileSummary> {
    fs.entries
        .iter()
        .filter(|(p, _)| p.as_str() == "models" || p.starts_with("models/"))
        .map(|(p, node)| {
            let (kind, uid, gid, mode, size, target) = match node {
                Node::Dir { mode, uid, gid } => ("dir", *uid, *gid, *mode, 0, None),
                Node::File {
                    mode,
                    uid,
                    gid,
                    size,
                } => ("file", *uid, *gid, *mode, *size, None),
                Node::Symlink { target } => ("symlink", 0, 0, 0o777, 0, Some(target.clone())),
                Node::Hardlink { target } => ("hardlink", 0, 0, 0, 0, Some(format!("/{target}"))),
                Node::Other => ("other", 0, 0, 0, 0, None),
            };
            FileSummary {
                path: format!("/{p}"),
                kind,
                uid,
                gid,
                mode: format!("{mode:04o}"),
                size,
                target,
            }
        })
        .collect()
}

/// The summary for a person. Names, annotations, media types, users, titles and file names
/// all come from the image, so every one is escaped.
fn print_human(s: &Summary) -> anyhow::Result<()> {
    let json_or = |v: &serde_json::Value, none: &str| {
        if v.is_null() {
            none.to_string()
        } else {
            v.to_string()
        }
    };
    outln!("Name:       {}", Escaped(&s.name));
    outln!("Digest:     {}", Escaped(&s.digest));
    outln!("Media type: {}", Escaped(&s.media_type));
    for (k, v) in &s.annotations {
        outln!("  {}: {}", Escaped(k), Escaped(v));
    }
    if let Some(d) = &s.modelpack {
        outln!("ModelPack:  {}", Escaped(d));
    }
    for m in &s.manifests {
        outln!();
        outln!(
            "Platform {}  manifest {}",
            Escaped(&m.platform),
            Escaped(&m.digest)
        );
        outln!(
            "  User:       {}",
            Escaped(m.user.as_deref().unwrap_or("(unset: root)"))
        );
        outln!(
            "  Entrypoint: {}",
            Escaped(&json_or(&m.entrypoint, "(none)"))
        );
        outln!("  Cmd:        {}", Escaped(&json_or(&m.cmd, "(none)")));
        outln!(
            "  Created:    {}",
            Escaped(m.created.as_deref().unwrap_or("?"))
        );
        outln!("  Layers:");
        for l in &m.layers {
            let short: String = l.digest.chars().take(19).collect();
            outln!(
                "    {}  {:>10}  {}{}",
                Escaped(&short),
                BinaryBytes(l.size).to_string(),
                Escaped(
                    l.media_type
                        .trim_start_matches("application/vnd.oci.image.layer.v1.")
                ),
                l.title
                    .as_ref()
                    .map(|t| format!("  {}", Escaped(t)))
                    .unwrap_or_default()
            );
        }
        if let Some(files) = &m.files {
            outln!("  Files:");
            for f in files {
                outln!(
                    "    {} {:>5}:{:<3} {:>10}  {}{}",
                    f.mode,
                    f.uid,
                    f.gid,
                    if f.kind == "file" {
                        BinaryBytes(f.size).to_string()
                    } else {
                        f.kind.to_string()
                    },
                    Escaped(&f.path),
                    f.target
                        .as_ref()
                        .map(|t| format!(" -> {}", Escaped(t)))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
