//! `modelcar clean`: remove images and collect the blobs nothing references.

use anyhow::bail;
use indicatif::BinaryBytes;
use modelcar::error::Error;
use modelcar::store;
use modelcar::text;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image names or references to remove (default: every image of the project file).
    pub names: Vec<String>,
    /// Remove every image in the store.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Print what was removed and freed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `clean --json` prints.
#[derive(serde::Serialize)]
struct Report {
    /// References removed from the store.
    removed: Vec<String>,
    #[serde(flatten)]
    freed: store::GcReport,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let references: Vec<String> = if args.all {
        store
            .entries()?
            .iter()
            .filter_map(store::ref_name)
            .map(str::to_string)
            .collect()
    } else if args.names.is_empty() {
        let Some(project) = ctx.project()? else {
            bail!(Error::invalid("no image named and no modelcar.toml here")
                .with_hint("name the images to remove, or pass --all to empty the store"));
        };
        let overrides = &ctx.overrides;
        project
            .names()
            .iter()
            .map(|n| project.image(n, overrides).map(|s| s.reference()))
            .collect::<Result<_, _>>()?
    } else {
        let mut refs = Vec::new();
        for n in &args.names {
            let r = ctx.resolve_name(n)?;
            // Accept short forms (busybox) as the store spells them (docker.io/library/busybox:latest).
            refs.push(
                r.parse::<modelcar::reference::ImageRef>()
                    .map(|x| x.tagged())
                    .unwrap_or(r),
            );
        }
        refs
    };
    let removed = store.untag(&references)?;
    let gc = store.gc()?;
    if args.json {
        return super::print_json(&Report { removed, freed: gc });
    }
    for r in &removed {
        ctx.note(&format!("removed {}", text::escape(r)));
    }
    ctx.note(&format!(
        "freed {} in {} blobs",
        BinaryBytes(gc.bytes),
        gc.blobs
    ));
    if gc.temporary_files > 0 {
        ctx.note(&format!(
            "freed {} in {} temporary files left by commands that were killed",
            BinaryBytes(gc.temporary_bytes),
            gc.temporary_files
        ));
    }
    Ok(())
}
