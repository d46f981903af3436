//! `modelcar build`: images of the project file, or one image from a model directory.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use modelcar::build::{self, BuildSpec};
use modelcar::error::Error;
use modelcar::layer::{CompressionChoice, LayerMode};
use modelcar::progress::Progress;
use modelcar::project::{self, Overrides};
use modelcar::reference::{ImageRef, Location};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images of the project file to build (default: all of them).
    pub names: Vec<String>,
    /// Build every image of the project file.
    #[arg(long)]
    pub all: bool,
    /// Model directory, for a build without a project file.
    #[arg(long, value_name = "DIR", requires = "tag")]
    pub models: Option<PathBuf>,
    /// Reference of the image built from --models (for example quay.io/me/model:v1).
    #[arg(long, value_name = "REF", requires = "models")]
    pub tag: Option<String>,
    /// Base image: REF (local store), oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF].
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// Model format as KServe names it (sklearn, xgboost, lightgbm, huggingface, onnx,
    /// tensorflow, pytorch, triton, openvino, mlflow, pmml, paddle); detected when absent.
    #[arg(long, value_name = "FMT")]
    pub format: Option<String>,
    /// Accept a --format no KServe runtime serves, for a custom ServingRuntime (not checked).
    #[arg(long, requires = "format")]
    pub custom_format: bool,
    /// Build only this platform of a multi-platform base (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Layer compression: auto (compress where it pays), none, gzip or zstd.
    #[arg(long, value_name = "C")]
    pub compression: Option<String>,
    /// split (a layer per large file) or single (one model layer).
    #[arg(long, value_name = "MODE")]
    pub layers: Option<String>,
    /// Size from which a file gets its own layer (default 32MiB).
    #[arg(long, value_name = "SIZE")]
    pub layer_threshold: Option<String>,
    /// Owner of the model files, UID:GID (standalone builds; default 1001:0).
    #[arg(long, value_name = "UID:GID")]
    pub owner: Option<String>,
    /// Skip the check that the base provides sh, ln, sleep, ls and mkdir (for image volumes).
    #[arg(long)]
    pub no_base_check: bool,
    /// Threads writing layers (default: all cores); the output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// When to pull the base from its registry: always, missing (default) or never.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Push to the registry while building: model layers stream straight to it and never
    /// touch the store (for models larger than the free disk).
    #[arg(long)]
    pub push: bool,
    /// With --push: write the pushed digest to this file.
    #[arg(long, value_name = "FILE", requires = "push")]
    pub digestfile: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let specs = specs(ctx, &args)?;
    let store = ctx.store()?;
    let progress = Progress::new(!ctx.quiet && !args.json);
    let remote = modelcar::transport::Remote {
        client: ctx.client()?,
        policy: args.pull.parse()?,
        progress: &progress,
    };
    let mut outcomes = Vec::new();
    for spec in &specs {
        let push = if args.push { Some(ctx.client()?) } else { None };
        let outcome = build::build(&store, spec, Some(&remote), push, &progress)
            .with_context(|| format!("building {}", spec.reference.tagged()))?;
        for note in &outcome.notes {
            ctx.note(note);
        }
        if outcome.pushed.is_none() {
            // The same checks `modelcar verify` makes, on what was built. Model-level warnings
            // were printed by the build already.
            let top = modelcar::transport::find_in_store(&store, &outcome.reference)?
                .ok_or_else(|| anyhow::anyhow!("{} vanished from the store", outcome.reference))?;
            let report = modelcar::verify::verify(&store, &top, &outcome.reference)?;
            let platform_fails = report.platforms.iter().flat_map(|p| {
                p.findings
                    .iter()
                    .map(move |f| (Some(p.platform.clone()), f))
                    .chain(p.modes.iter().flat_map(move |m| {
                        m.findings.iter().map(move |f| {
                            (Some(format!("{} ({} mode)", p.platform, m.mode.name())), f)
                        })
                    }))
            });
            for (platform, f) in report
                .findings
                .iter()
                .map(|f| (None, f))
                .chain(platform_fails)
            {
                let show = f.severity == modelcar::formats::Severity::Fail
                    || (platform.is_none() && f.severity == modelcar::formats::Severity::Warn);
                if show {
                    ctx.note(&format!(
                        "warning: {}{}{}",
                        platform.map(|p| format!("{p}: ")).unwrap_or_default(),
                        f.message,
                        f.hint
                            .as_ref()
                            .map(|h| format!(" (hint: {h})"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        if outcome.pushed.is_some() {
            if let Some(f) = &args.digestfile {
                std::fs::write(f, &outcome.digest)
                    .with_context(|| format!("writing {}", f.display()))?;
            }
        }
        if !args.json {
            println!("{}@{}", outcome.reference, outcome.digest);
        }
        outcomes.push(outcome);
    }
    if args.json {
        super::print_json(&outcomes)?;
    }
    Ok(())
}

fn specs(ctx: &Context, args: &Args) -> anyhow::Result<Vec<BuildSpec>> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let epoch = build::source_date_epoch()?;
    let platform = args.platform.as_deref().map(str::parse).transpose()?;
    if let (Some(models), Some(tag)) = (&args.models, &args.tag) {
        if !args.names.is_empty() || args.all {
            bail!(Error::invalid(
                "--models/--tag build one image; leave out image names and --all"
            ));
        }
        let reference: ImageRef = tag.parse()?;
        let (uid, gid) = project::parse_owner(args.owner.as_deref().unwrap_or("1001:0"))?;
        let base = args
            .base
            .clone()
            .or_else(|| std::env::var("BASE_IMAGE").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| project::DEFAULT_BASE.to_string());
        return Ok(vec![BuildSpec {
            reference,
            models: models.clone(),
            base: base.parse::<Location>()?,
            format: args.format.clone(),
            custom_format: args.custom_format,
            uid,
            gid,
            dir_mode: 0o555,
            file_mode: 0o444,
            user: uid.to_string(),
            layers: args
                .layers
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or(LayerMode::Split),
            layer_threshold: args
                .layer_threshold
                .as_deref()
                .map(project::parse_size)
                .transpose()?
                .unwrap_or(build::DEFAULT_LAYER_THRESHOLD),
            max_model_layers: build::DEFAULT_MAX_MODEL_LAYERS,
            compression: args
                .compression
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or(CompressionChoice::Auto),
            platform,
            epoch,
            base_check: !args.no_base_check,
            threads,
        }]);
    }
    let Some(project) = ctx.project()? else {
        bail!(Error::invalid(format!("no {} here and no --models/--tag given", project::FILE_NAME))
            .with_hint("run in a directory with modelcar.toml, pass --file, or build one image with --models DIR --tag REF"));
    };
    if args.format.is_some() || args.owner.is_some() {
        bail!(Error::invalid(
            "--format, --custom-format and --owner apply to --models builds; set them in the project file"
        ));
    }
    let names = if args.names.is_empty() || args.all {
        project.names()
    } else {
        args.names.clone()
    };
    let overrides = Overrides {
        registry: ctx.overrides.registry.clone(),
        version: ctx.overrides.version.clone(),
        base: args.base.clone(),
        platform: args.platform.clone(),
        compression: args.compression.clone(),
        layers: args.layers.clone(),
        layer_threshold: args.layer_threshold.clone(),
    };
    let mut specs = Vec::new();
    for name in names {
        let s = project.image(&name, &overrides)?;
        let reference: ImageRef = s
            .reference()
            .parse()
            .with_context(|| format!("image `{name}` of {}", project.path.display()))?;
        let platform = s.platform.as_deref().map(str::parse).transpose()?;
        specs.push(BuildSpec {
            reference,
            models: s.models.clone(),
            base: s.base.parse::<Location>()?,
            format: s.format.clone(),
            custom_format: s.custom_format,
            uid: s.uid,
            gid: s.gid,
            dir_mode: s.dir_mode,
            file_mode: s.file_mode,
            user: s.user.clone(),
            layers: s.layers,
            layer_threshold: s.layer_threshold.unwrap_or(build::DEFAULT_LAYER_THRESHOLD),
            max_model_layers: build::DEFAULT_MAX_MODEL_LAYERS,
            compression: s.compression,
            platform,
            epoch,
            base_check: !args.no_base_check,
            threads,
        });
    }
    Ok(specs)
}
