//! Argument definitions, the dispatch to one module per subcommand, and the one place output
//! leaves the program.
//!
//! Human output escapes every string that came from outside (file names, annotations, labels,
//! references, registry messages) with [`modelcar::text`], so nothing an image or a registry
//! holds can move the cursor, colour the terminal or forge a line; errors, notes and log lines
//! are escaped whole here, results field by field where they are printed. `--json` is exact.
//! Standard output is written with [`outln!`], which turns a closed pipe into an error that
//! `main` ends quietly with exit code 0, as `head` and `grep -q` expect.

/// `println!` that returns a failed write (a closed pipe above all) to the caller as a
/// [`output::StdoutError`] instead of panicking. Use in functions returning `anyhow::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(crate::cli::output::StdoutError)?
    }};
}

mod build;
mod clean;
mod docs;
mod export;
mod images;
mod inspect;
mod kserve;
mod output;
mod provenance;
mod registry;
mod verify;

use std::path::PathBuf;

use std::time::Duration;

use clap::{Parser, Subcommand};
use modelcar::limits;
use modelcar::project::{self, Project};
use modelcar::store::Store;
pub(crate) use output::Hinted;
pub use output::{exit_code, init_logging, is_broken_pipe, report};

/// Pack machine-learning models into OCI images that KServe serves from a registry.
#[derive(Debug, Parser)]
#[command(
    name = "modelcar",
    version,
    about,
    propagate_version = true,
    next_help_heading = "Global options",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The local image store (an OCI layout); default $MODELCAR_STORE or ~/.local/share/modelcar/store.
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The project file; default ./modelcar.toml when present.
    #[arg(long = "file", short = 'f', global = true, value_name = "FILE")]
    pub project_file: Option<PathBuf>,
    /// Print only results and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More detail on standard error (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Verify registries' TLS certificates (false also allows plain HTTP).
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Extra trusted CA certificates for registries (*.crt files).
    #[arg(long, global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Registry and namespace of project images (overrides REGISTRY and modelcar.toml).
    #[arg(long, global = true, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// Tag of project images (overrides VERSION and modelcar.toml).
    #[arg(long = "image-version", global = true, value_name = "VERSION")]
    pub image_version: Option<String>,
    /// Blobs transferred at once with registries.
    #[arg(long, global = true, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Seconds to wait for a registry to accept a connection.
    #[arg(long, global = true, value_name = "SECONDS", env = "MODELCAR_CONNECT_TIMEOUT",
          default_value_t = limits::CONNECT_TIMEOUT_SECS as f64, value_parser = parse_seconds)]
    pub connect_timeout: f64,
    /// Seconds a registry may send no bytes before the request fails (not a limit on a whole transfer).
    #[arg(long, global = true, value_name = "SECONDS", env = "MODELCAR_READ_TIMEOUT",
          default_value_t = limits::READ_TIMEOUT_SECS as f64, value_parser = parse_seconds)]
    pub read_timeout: f64,
    /// Longest Retry-After honoured, in seconds; a registry asking for more fails the command.
    #[arg(long, global = true, value_name = "SECONDS", env = "MODELCAR_MAX_RETRY_WAIT",
          default_value_t = limits::MAX_RETRY_WAIT_SECS as f64, value_parser = parse_seconds)]
    pub max_retry_wait: f64,
    /// Attempts after the first for a registry request that failed temporarily (timeouts,
    /// dropped connections, 429, 5xx); content that does not match its digest is never retried.
    #[arg(long, global = true, value_name = "N", env = "MODELCAR_RETRIES",
          default_value_t = limits::RETRIES)]
    pub retries: u32,
    /// Most bytes a compressed layer may expand to per compressed byte when it is read
    /// (beyond 1 GiB for all layers together); 0 for no limit. Decompression bombs stop here.
    #[arg(long, global = true, value_name = "RATIO", env = "MODELCAR_MAX_LAYER_EXPANSION",
          default_value_t = limits::MAX_LAYER_EXPANSION)]
    pub max_layer_expansion: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build images: those of the project file, or one from --models and --tag.
    #[command(
        after_help = "Examples:\n  modelcar build --models ./my-model --tag quay.io/me/my-model:v1\n  modelcar build --models ./my-model --tag quay.io/me/my-model:v1 --base oci:build/base:busybox\n  modelcar build --all                     # every image of ./modelcar.toml\n  modelcar build --models ./big --tag quay.io/me/big:v1 --push --digestfile digest"
    )]
    Build(Box<build::Args>),
    /// List the images in the local store.
    #[command(after_help = "Examples:\n  modelcar images\n  modelcar images --json")]
    Images(images::Args),
    /// Show an image's index, manifests and config (--files: the model files).
    #[command(
        after_help = "Examples:\n  modelcar inspect quay.io/me/my-model:v1\n  modelcar inspect quay.io/me/my-model:v1 --files"
    )]
    Inspect(inspect::Args),
    /// Write an image to oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE.
    #[command(
        after_help = "Examples:\n  modelcar export quay.io/me/my-model:v1 oci:./layout:v1\n  modelcar export quay.io/me/my-model:v1 oci-archive:my-model.tar"
    )]
    Export(export::Args),
    /// Remove images from the local store and the blobs nothing references any more.
    #[command(
        after_help = "Examples:\n  modelcar clean quay.io/me/my-model:v1\n  modelcar clean --all"
    )]
    Clean(clean::Args),
    /// Print a KServe InferenceService for an image.
    #[command(
        after_help = "Examples:\n  modelcar kserve quay.io/me/my-model:v1 > isvc.yaml && kubectl apply -f isvc.yaml"
    )]
    Kserve(kserve::Args),
    /// Check that an image will work as a KServe modelcar (exit code 1 on a failed check, 2 on an error).
    #[command(
        after_help = "Examples:\n  modelcar verify quay.io/me/my-model:v1\n  modelcar verify oci-archive:my-model.tar --json"
    )]
    Verify(verify::Args),
    /// Copy an image from a registry into the local store.
    #[command(
        after_help = "Examples:\n  modelcar pull registry.access.redhat.com/ubi10/ubi-micro:latest"
    )]
    Pull(registry::PullArgs),
    /// Push images to their registry (project images, or IMAGE [DEST]).
    #[command(
        after_help = "Examples:\n  modelcar push quay.io/me/my-model:v1\n  modelcar push quay.io/me/my-model:v1 registry.example.com/team/my-model:v1\n  modelcar push --all --digestfile digest  # every image of ./modelcar.toml"
    )]
    Push(registry::PushArgs),
    /// Store a registry credential in auth.json (podman's format).
    #[command(
        after_help = "Examples:\n  echo \"$TOKEN\" | modelcar login quay.io -u me --password-stdin"
    )]
    Login(registry::LoginArgs),
    /// Remove a registry credential from auth.json.
    #[command(after_help = "Examples:\n  modelcar logout quay.io")]
    Logout(registry::LogoutArgs),
    /// Make a cosign key pair: PREFIX.key (encrypted) and PREFIX.pub.
    #[command(
        after_help = "Examples:\n  modelcar generate-key --output-prefix release --passphrase-file pass.txt"
    )]
    GenerateKey(provenance::GenerateKeyArgs),
    /// Sign an image already pushed, as cosign does (the signature goes to its .sig tag).
    #[command(
        after_help = "Examples:\n  modelcar sign quay.io/me/my-model:v1 --sign-by-sigstore-private-key release.key"
    )]
    Sign(provenance::SignArgs),
    /// Print an image's CycloneDX bill of materials (ML-BOM).
    #[command(
        after_help = "Examples:\n  modelcar sbom quay.io/me/my-model:v1 > my-model.cdx.json"
    )]
    Sbom(provenance::SbomArgs),
    /// Print a shell completion script (bash, zsh, fish).
    #[command(
        after_help = "Examples:\n  modelcar completions bash > /usr/share/bash-completion/completions/modelcar\n  modelcar completions zsh > \"${fpath[1]}/_modelcar\"\n  modelcar completions fish > ~/.config/fish/completions/modelcar.fish"
    )]
    Completions(docs::CompletionsArgs),
    /// Write man pages (modelcar.1, modelcar-SUBCOMMAND.1) into a directory.
    #[command(hide = true)]
    Man(docs::ManArgs),
}

/// A wait in seconds (decimals allowed): positive and at most a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0 and 86400 (for example 30 or 0.5)"
        )),
    }
}

/// The examples at the end of `modelcar --help`.
const EXAMPLES: &str = "Examples:
  modelcar build --models ./my-model --tag quay.io/me/my-model:v1
  modelcar push quay.io/me/my-model:v1
  modelcar verify quay.io/me/my-model:v1
  modelcar kserve quay.io/me/my-model:v1 | kubectl apply -f -";

impl Command {
    /// Whether the command was asked for JSON output: then an error is a JSON object too.
    pub fn json(&self) -> bool {
        match self {
            Command::Build(a) => a.json,
            Command::Images(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Push(a) => a.json,
            _ => false,
        }
    }
}

/// Shared context of a command run.
pub struct Context {
    pub quiet: bool,
    store_path: PathBuf,
    max_layer_expansion: u64,
    project_file: Option<PathBuf>,
    registry_options: modelcar::registry::Options,
    client: std::sync::OnceLock<modelcar::registry::Client>,
    /// --registry and --image-version, applied wherever a project image is named.
    pub overrides: project::Overrides,
}

impl Context {
    /// The registry client, set up on first use (with the project file's registry settings).
    pub fn client(&self) -> anyhow::Result<&modelcar::registry::Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let mut options = self.registry_options.clone();
        if let Some(project) = self.project()? {
            options
                .insecure_registries
                .extend(project.insecure_registries());
        }
        let client = modelcar::registry::Client::new(options)?;
        Ok(self.client.get_or_init(|| client))
    }

    pub fn store(&self) -> anyhow::Result<Store> {
        let mut store = Store::open(&self.store_path)?;
        store.set_max_layer_expansion(self.max_layer_expansion);
        Ok(store)
    }

    /// The project file: the one given, else ./modelcar.toml if present.
    pub fn project(&self) -> anyhow::Result<Option<Project>> {
        Ok(match &self.project_file {
            Some(p) => Some(Project::load(p)?),
            None => Project::find(std::path::Path::new("."))?,
        })
    }

    /// Print a note to standard error unless quiet, escaped: notes quote names from outside.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            output::note(text);
        }
    }

    /// Turn a project image name or an image reference into a store reference.
    pub fn resolve_name(&self, name_or_ref: &str) -> anyhow::Result<String> {
        if let Some(project) = self.project()? {
            if project.names().iter().any(|n| n == name_or_ref) {
                return Ok(project.image(name_or_ref, &self.overrides)?.reference());
            }
        }
        Ok(name_or_ref.to_string())
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context {
        quiet: cli.quiet,
        store_path: cli.store.clone().unwrap_or_else(Store::default_path),
        max_layer_expansion: cli.max_layer_expansion,
        project_file: cli.project_file.clone(),
        registry_options: modelcar::registry::Options {
            tls_verify: cli.tls_verify,
            cert_dir: cli.cert_dir.clone(),
            jobs: cli.jobs.max(1),
            connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
            read_timeout: Duration::from_secs_f64(cli.read_timeout),
            max_retry_wait: Duration::from_secs_f64(cli.max_retry_wait),
            retries: cli.retries,
            ..Default::default()
        },
        client: std::sync::OnceLock::new(),
        overrides: project::Overrides {
            registry: cli.registry.clone(),
            version: cli.image_version.clone(),
            ..Default::default()
        },
    };
    match cli.command {
        Command::Build(a) => build::run(&ctx, *a),
        Command::Images(a) => images::run(&ctx, a),
        Command::Inspect(a) => inspect::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Clean(a) => clean::run(&ctx, a),
        Command::Kserve(a) => kserve::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Pull(a) => registry::pull(&ctx, a),
        Command::Push(a) => registry::push(&ctx, a),
        Command::Login(a) => registry::login(&ctx, a),
        Command::Logout(a) => registry::logout(&ctx, a),
        Command::GenerateKey(a) => provenance::generate_key(&ctx, a),
        Command::Sign(a) => provenance::sign(&ctx, a),
        Command::Sbom(a) => provenance::sbom(&ctx, a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    }
}

/// Print a value as pretty JSON on standard output.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Find an image given as a project image name, a store reference or a location, importing it
/// into the store when it lives elsewhere.
pub fn locate(
    ctx: &Context,
    store: &Store,
    name_or_ref: &str,
    policy: modelcar::registry::pull::PullPolicy,
) -> anyhow::Result<modelcar::transport::Resolved> {
    let text = ctx.resolve_name(name_or_ref)?;
    let location: modelcar::reference::Location = text.parse()?;
    let progress = modelcar::progress::Progress::new(!ctx.quiet);
    let remote = modelcar::transport::Remote {
        client: ctx.client()?,
        policy,
        progress: &progress,
    };
    let hub = match &location {
        modelcar::reference::Location::Registry(r)
            if text == name_or_ref
                && is_bare_name(name_or_ref)
                && modelcar::transport::find_in_store(store, &r.to_string())?.is_none() =>
        {
            let r = r.to_string();
            let here = match &ctx.project_file {
                Some(p) => format!("no image of {}", p.display()),
                None => format!("no image of a {} here", project::FILE_NAME),
            };
            let said = format!("`{name_or_ref}` names {here} and none in the local store");
            let looked_up = policy != modelcar::registry::pull::PullPolicy::Never;
            if looked_up {
                ctx.note(&format!(
                    "note: {said}; looking it up on Docker Hub (registry-1.docker.io) as {r}"
                ));
            }
            Some((said, r, looked_up))
        }
        _ => None,
    };
    modelcar::transport::resolve(store, &location, None, Some(&remote)).map_err(|e| {
        let e = anyhow::Error::new(e);
        match hub {
            Some((said, r, looked_up)) => Hinted::wrap(
                e,
                if looked_up {
                    format!("{said}, and looking it up on Docker Hub as {r} failed")
                } else {
                    said
                },
                "name a project image from the project's directory or with --file PROJECT.toml, \
                     or give a full reference (host/path:tag) or a location (oci:DIR); \
                     `modelcar images` lists the local store"
                    .to_string(),
            ),
            None => e,
        }
    })
}

/// A name with no registry, path, tag or digest (`sklearn`): where no project defines it and
/// the store has none, it means Docker Hub's `library/NAME:latest`, which surprises.
fn is_bare_name(name: &str) -> bool {
    !name.contains(['/', ':', '@'])
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// The modelcar command of each example line: after `|` or `&&`, before a redirection, a
    /// pipe or a comment.
    fn example_commands(text: &str) -> Vec<Vec<String>> {
        text.lines()
            .filter_map(|l| {
                let l = l.trim();
                let start = l.find("modelcar ")?;
                let cmd = l[start..]
                    .split(['|', '>', '#', '&'])
                    .next()
                    .unwrap()
                    .trim();
                Some(cmd.split_whitespace().map(str::to_string).collect())
            })
            .collect()
    }

    #[test]
    fn every_example_in_the_help_parses() {
        let cmd = super::Cli::command();
        let mut texts = vec![cmd.get_after_help().unwrap().to_string()];
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            let help = sub.get_after_help().map(|h| h.to_string());
            let help = help.unwrap_or_else(|| panic!("{} has no examples", sub.get_name()));
            assert!(help.starts_with("Examples:\n"), "{help}");
            texts.push(help);
        }
        let commands: Vec<_> = texts.iter().flat_map(|t| example_commands(t)).collect();
        assert!(commands.len() > 15, "{commands:?}");
        for args in commands {
            if let Err(e) = super::Cli::try_parse_from(&args) {
                panic!("example `{}` does not parse: {e}", args.join(" "));
            }
        }
    }
}
