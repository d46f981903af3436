//! `modelcar images`: what the local store holds.

use std::collections::HashSet;

use indicatif::BinaryBytes;
use modelcar::image;
use modelcar::store;
use modelcar::text::{escape, Escaped};
use modelcar::transport;
use serde::Serialize;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    reference: String,
    digest: String,
    platforms: Vec<String>,
    size: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut rows = Vec::new();
    for entry in store.entries()? {
        let Some(name) = store::ref_name(&entry) else {
            continue;
        };
        let platforms = image::platform_images(&store, &entry)?
            .iter()
            .map(|i| {
                i.platform
                    .as_ref()
                    .map(image::platform_string)
                    .or_else(|| {
                        image::read_config(&store, i.manifest.config())
                            .ok()
                            .and_then(|c| transport::platform_of_config(&c))
                            .map(|p| image::platform_string(&p))
                    })
                    .unwrap_or_else(|| "?".into())
            })
            .collect();
        let mut seen = HashSet::new();
        let size = transport::closure(&store, &entry)?
            .iter()
            .filter(|d| seen.insert(d.digest().to_string()))
            .map(|d| d.size())
            .sum();
        rows.push(Row {
            reference: name.to_string(),
            digest: entry.digest().to_string(),
            platforms,
            size,
        });
    }
    if args.json {
        return super::print_json(&rows);
    }
    if rows.is_empty() {
        ctx.note("no images in the store");
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|r| escape(&r.reference).chars().count())
        .max()
        .unwrap_or(9)
        .max(9);
    outln!(
        "{:<width$}  {:<19}  {:<24}  SIZE",
        "REFERENCE",
        "DIGEST",
        "PLATFORMS"
    );
    for r in rows {
        // Names and platforms come from the store's index and the images' configs.
        let short: String = r.digest.chars().take(19).collect();
        outln!(
            "{:<width$}  {:<19}  {:<24}  {}",
            Escaped(&r.reference),
            Escaped(&short),
            Escaped(&r.platforms.join(",")),
            BinaryBytes(r.size)
        );
    }
    Ok(())
}
