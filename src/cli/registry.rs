//! `modelcar pull`, `push`, `login` and `logout`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use modelcar::error::Error;
use modelcar::image::PlatformFilter;
use modelcar::progress::Progress;
use modelcar::reference::{ImageRef, Location};
use modelcar::registry::auth::{self, Credential};
use modelcar::registry::{pull as registry_pull, push as registry_push};
use modelcar::text::Escaped;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Registry reference (host/path:tag or @sha256:...).
    pub reference: String,
    /// Only this platform of a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Project image names, or one image (store reference or location) and an optional destination.
    pub names: Vec<String>,
    /// Push every image of the project file.
    #[arg(long)]
    pub all: bool,
    /// Write the digest of the pushed image (the last one, for several) to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sign: super::provenance::SignOptions,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host[:port].
    pub registry: String,
    /// User name.
    #[arg(long, short)]
    pub username: String,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Auth file to write (default REGISTRY_AUTH_FILE, else podman's auth.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub registry: String,
    /// Auth file to change (default REGISTRY_AUTH_FILE, else podman's auth.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

pub fn pull(ctx: &Context, args: PullArgs) -> anyhow::Result<()> {
    let r: ImageRef = args.reference.parse()?;
    let platform: Option<PlatformFilter> = args.platform.as_deref().map(str::parse).transpose()?;
    let store = ctx.store()?;
    let progress = Progress::new(!ctx.quiet);
    let top = registry_pull::pull(ctx.client()?, &store, &r, platform.as_ref(), &progress)?;
    outln!("{}@{}", Escaped(&r.tagged()), top.digest());
    Ok(())
}

pub fn push(ctx: &Context, args: PushArgs) -> anyhow::Result<()> {
    let key = args.sign.load()?;
    let store = ctx.store()?;
    let project = ctx.project()?;
    // (image in the store, destination)
    let mut jobs: Vec<(String, ImageRef)> = Vec::new();
    let project_names = project.as_ref().map(|p| p.names()).unwrap_or_default();
    let is_project_name = |n: &String| project_names.contains(n);
    if args.all || args.names.is_empty() || args.names.iter().all(is_project_name) {
        let Some(project) = &project else {
            bail!(Error::invalid("no image named and no modelcar.toml here")
                .with_hint("run modelcar push IMAGE [DEST], or push --all in a project"));
        };
        let names = if args.all || args.names.is_empty() {
            project.names()
        } else {
            args.names.clone()
        };
        for n in names {
            let reference = project.image(&n, &ctx.overrides)?.reference();
            jobs.push((reference.clone(), reference.parse()?));
        }
    } else {
        if args.names.len() > 2 {
            bail!(Error::invalid(
                "push takes project image names, or one IMAGE and an optional DEST"
            ));
        }
        let source = ctx.resolve_name(&args.names[0])?;
        let dest = match args.names.get(1) {
            Some(d) => match d.parse::<Location>()? {
                Location::Registry(r) | Location::Remote(r) => r,
                other => bail!(Error::invalid(format!("{other} is not a registry reference")).with_hint("use modelcar export for oci:, oci-archive: and docker-archive: destinations")),
            },
            None => source.parse::<ImageRef>().map_err(|e| {
                anyhow::Error::new(e).context(format!("{source} names no registry to push to; give a DEST"))
            })?,
        };
        jobs.push((source, dest));
    }
    let progress = Progress::new(!ctx.quiet && !args.json);
    let mut outcomes = Vec::new();
    for (source, dest) in jobs {
        // What is pushed is what was built (or pulled): never fetched from the registry here.
        let resolved = super::locate(ctx, &store, &source, registry_pull::PullPolicy::Never)
            .map_err(|e| not_in_store(ctx, &store, project.as_ref(), &source, e))?;
        let mount_from = base_repository(&store, &resolved.descriptor);
        let outcome = registry_push::push(
            ctx.client()?,
            &store,
            &resolved.descriptor,
            &dest,
            mount_from.as_ref(),
            &progress,
        )
        .with_context(|| format!("pushing {source} to {dest}"))?;
        let published = modelcar::provenance::referrers::publish(
            ctx.client()?,
            &store,
            &resolved.descriptor,
            &dest,
            key.as_ref(),
        )
        .with_context(|| format!("pushing the BOM and signature of {source} to {dest}"))?;
        ctx.note(&format!(
            "{}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
            outcome.reference,
            outcome.blobs_uploaded,
            outcome.bytes_uploaded,
            outcome.blobs_mounted,
            outcome.blobs_present
        ));
        if let Some(signed) = &published.signature {
            super::provenance::report_signed(ctx, signed);
        }
        if !args.json {
            outln!(
                "{}@{}",
                Escaped(&outcome.reference),
                Escaped(&outcome.digest)
            );
        }
        if let Some(f) = &args.digestfile {
            std::fs::write(f, &outcome.digest)
                .with_context(|| format!("writing {}", f.display()))?;
        }
        outcomes.push(Pushed {
            outcome,
            provenance: published,
        });
    }
    if args.json {
        super::print_json(&outcomes)?;
    }
    Ok(())
}

/// A push in `--json` output: what went to the registry, with the BOM and signature.
#[derive(serde::Serialize)]
struct Pushed {
    #[serde(flatten)]
    outcome: registry_push::PushOutcome,
    #[serde(flatten)]
    provenance: modelcar::provenance::referrers::Published,
}

/// A push of an image the store lacks, said once, with the command that works: when the
/// project's image was built under another registry or version (a build without the
/// `--registry` given to push), push that one to the wanted place.
fn not_in_store(
    ctx: &Context,
    store: &modelcar::store::Store,
    project: Option<&modelcar::project::Project>,
    source: &str,
    err: anyhow::Error,
) -> anyhow::Error {
    if !matches!(err.downcast_ref::<Error>(), Some(Error::NotFound { .. })) {
        return err;
    }
    let place = format!("the local store ({})", store.root().display());
    // The same project image as named without --registry/--image-version.
    let built = project.and_then(|p| {
        let name = p.names().into_iter().find(|n| {
            p.image(n, &ctx.overrides)
                .is_ok_and(|i| i.reference() == source)
        })?;
        let plain = p.image(&name, &Default::default()).ok()?.reference();
        let stored = modelcar::transport::find_in_store(store, &plain).ok()??;
        (plain != source).then_some((name, plain, stored))
    });
    let hint = match built {
        Some((name, plain, _)) => format!(
            "the store has {plain}, built without these --registry/--image-version values: push it \
             there with `modelcar push {plain} {source}`, or build it for that place first with \
             `modelcar build {name}` and the same options"
        ),
        None => {
            "build it first with `modelcar build`, or copy it from a registry with `modelcar pull`"
                .to_string()
        }
    };
    anyhow::Error::new(Error::NotFound {
        reference: source.to_string(),
        place,
        hint: Some(hint),
    })
}

/// The repository of the image's base, from its `base.name` annotation.
fn base_repository(
    store: &modelcar::store::Store,
    top: &oci_spec::image::Descriptor,
) -> Option<ImageRef> {
    let annotations = match modelcar::image::Document::classify(top.media_type()) {
        modelcar::image::DocumentKind::Index => modelcar::image::read_index(store, top)
            .ok()?
            .annotations()
            .clone(),
        _ => modelcar::image::read_manifest(store, top)
            .ok()?
            .annotations()
            .clone(),
    }?;
    annotations
        .get("org.opencontainers.image.base.name")?
        .parse()
        .ok()
}

pub fn login(ctx: &Context, args: LoginArgs) -> anyhow::Result<()> {
    if !args.password_stdin {
        bail!(
            Error::invalid("the password is read from standard input only").with_hint(
                "pipe it in: echo \"$TOKEN\" | modelcar login REGISTRY -u USER --password-stdin"
            )
        );
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!(Error::invalid("no password on standard input"));
    }
    let registry = normalize_registry(&args.registry)?;
    let client = ctx.client()?;
    client.set_credential(
        &registry,
        Credential::Basic {
            username: args.username.clone(),
            password: password.clone(),
        },
    );
    // A refusal here is of the credentials just given: the library's usual hint (run
    // `modelcar login`) would send the user in a circle.
    client.check_login(&registry).map_err(|e| {
        let refused = e
            .registry()
            .is_some_and(|r| r.kind == modelcar::error::RegistryErrorKind::Denied);
        if refused {
            e.with_hint(format!(
                "check the user name `{}` and the password (or token); nothing was saved",
                args.username
            ))
        } else {
            e
        }
    })?;
    let file = args.authfile.clone().unwrap_or_else(auth::login_file);
    auth::store(&file, &registry, &args.username, &password)?;
    ctx.note(&format!(
        "Login Succeeded ({registry}, saved to {})",
        file.display()
    ));
    Ok(())
}

pub fn logout(ctx: &Context, args: LogoutArgs) -> anyhow::Result<()> {
    let registry = normalize_registry(&args.registry)?;
    let file = args.authfile.clone().unwrap_or_else(auth::login_file);
    if auth::remove(&file, &registry)? {
        ctx.note(&format!(
            "Removed login credentials for {registry} from {}",
            file.display()
        ));
        Ok(())
    } else {
        bail!(Error::invalid(format!(
            "not logged in to {registry} (no entry in {})",
            file.display()
        )))
    }
}

fn normalize_registry(text: &str) -> anyhow::Result<String> {
    let host = text
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r: ImageRef = format!("{host}/x")
        .parse()
        .map_err(|_| Error::invalid(format!("`{text}` is not a registry host[:port]")))?;
    Ok(if host == "index.docker.io" || host == "docker.io" {
        "docker.io".into()
    } else if r.registry == "docker.io" {
        // A dotless name such as `myregistry`: a host all the same.
        host.to_string()
    } else {
        r.registry
    })
}
