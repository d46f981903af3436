//! `modelcar build`: images of the project file, or one image from a model directory.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use modelcar::build::{self, BuildSpec};
use modelcar::error::Error;
use modelcar::layer::{CompressionChoice, LayerMode};
use modelcar::progress::Progress;
use modelcar::project::{self, Overrides};
use modelcar::reference::{ImageRef, Location};
use modelcar::text::Escaped;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images of the project file to build (default: all of them).
    pub names: Vec<String>,
    /// Build every image of the project file.
    #[arg(long)]
    pub all: bool,
    /// Model directory, for a build without a project file; or modelpack:REF, a CNCF ModelPack
    /// artifact in a registry (modelpack:oci:DIR[:TAG] in an OCI layout).
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
    /// Sign the model files with this elliptic-curve private key (PEM): the image gets
    /// /models/model.sig, an OpenSSF model signature.
    #[arg(long, value_name = "KEY.pem")]
    pub sign_model: Option<PathBuf>,
    /// With --push: write the pushed digest to this file.
    #[arg(long, value_name = "FILE", requires = "push")]
    pub digestfile: Option<PathBuf>,
    /// Tag (or push) the image even when it fails a check `modelcar verify` makes; the failures
    /// are printed as warnings.
    #[arg(long)]
    pub allow_failing_checks: bool,
    /// Also write a CNCF ModelPack manifest, in the image's index, sharing the model layers.
    #[arg(long)]
    pub modelpack: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// With --push: sign the pushed image.
    #[command(flatten)]
    pub sign: super::provenance::SignOptions,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let specs = specs(ctx, &args)?;
    if args.sign.sign_by_sigstore_private_key.is_some() && !args.push {
        bail!(Error::invalid("--sign-by-sigstore-private-key signs what is pushed: it needs --push")
            .with_hint("add --push, or sign when pushing: modelcar push IMAGE --sign-by-sigstore-private-key KEY"));
    }
    let key = args.sign.load()?;
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
            .map_err(|e| base_out_of_reach(&spec.base, e))
            .with_context(|| format!("building {}", spec.reference.tagged()))?;
        for note in &outcome.notes {
            ctx.note(note);
        }
        if let Some(mp) = &outcome.modelpack {
            ctx.note(&format!(
                "ModelPack manifest {}@{} ({} of its layers shared with the image, {} written for it)",
                spec.reference.name(),
                mp.digest,
                mp.layers_shared,
                mp.layers_written
            ));
        }
        if let (Some(key), Some(_)) = (&key, &outcome.pushed) {
            let signed = modelcar::provenance::referrers::sign(
                ctx.client()?,
                &spec.reference,
                &outcome.digest,
                key,
            )
            .with_context(|| format!("signing {}", spec.reference.tagged()))?;
            super::provenance::report_signed(ctx, &signed);
        }
        if outcome.pushed.is_some() {
            if let Some(f) = &args.digestfile {
                std::fs::write(f, &outcome.digest)
                    .with_context(|| format!("writing {}", f.display()))?;
            }
        }
        if !args.json {
            outln!(
                "{}@{}",
                Escaped(&outcome.reference),
                Escaped(&outcome.digest)
            );
        }
        outcomes.push(outcome);
    }
    if args.json {
        super::print_json(&outcomes)?;
    }
    Ok(())
}

/// Ways to build without the base's registry, for a machine that cannot reach it.
const OFFLINE_BASE_HINT: &str = "build on a base this machine has: `make offline-base && make \
    BASE_IMAGE=oci:build/base:busybox build-all` in modelcar's repository, or --base oci:DIR \
    with any OCI layout of a base (BASE_IMAGE, or `base` in modelcar.toml); or name a mirror of \
    the base that this machine can reach";

/// A base whose registry cannot be connected to (no route, refused, name not resolved) gets
/// the ways out of a network that does not reach it; other failures keep their own hint.
fn base_out_of_reach(base: &Location, err: Error) -> anyhow::Error {
    let host = match base {
        Location::Registry(r) | Location::Remote(r) => r.registry.as_str(),
        _ => return err.into(),
    };
    let hosts: &[&str] = if host == modelcar::reference::DOCKER_HUB {
        &["docker.io", "registry-1.docker.io"]
    } else {
        &[host]
    };
    use modelcar::error::RegistryErrorKind as Kind;
    let unreachable = err.registry().is_some_and(|r| {
        hosts.contains(&r.registry.as_str())
            && matches!(r.kind, Kind::Unreachable | Kind::Dropped | Kind::TimedOut)
            && r.status.is_none()
    });
    if !unreachable {
        return err.into();
    }
    super::Hinted::wrap(
        err.into(),
        format!("the base image {base} cannot be fetched: its registry is out of reach"),
        OFFLINE_BASE_HINT.to_string(),
    )
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
        if reference.digest.is_some() {
            bail!(Error::invalid(format!(
                "--tag {tag} names a digest: the build computes the image's digest, it cannot be chosen"
            ))
            .with_hint("give --tag a reference with a tag only, like quay.io/me/model:v1"));
        }
        let (uid, gid) = project::parse_owner(args.owner.as_deref().unwrap_or("1001:0"))?;
        let model_source = models
            .to_str()
            .and_then(modelcar::modelpack::source::SourceRef::of_models_arg)
            .transpose()?;
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
            allow_failing_checks: args.allow_failing_checks,
            threads,
            sign_model: args.sign_model.clone(),
            model_source,
            modelpack: args.modelpack,
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
            allow_failing_checks: args.allow_failing_checks || s.allow_failing_checks,
            threads,
            sign_model: args.sign_model.clone().or(s.sign_model.clone()),
            model_source: s.model_source.clone(),
            modelpack: args.modelpack || s.modelpack,
        });
    }
    Ok(specs)
}
