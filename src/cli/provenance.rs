//! `modelcar generate-key`, `sign` and `sbom`, and the signing options of `push` and `build`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use modelcar::error::Error;
use modelcar::provenance::{cosign, referrers};
use modelcar::reference::ImageRef;
use modelcar::registry::artifacts;
use modelcar::registry::pull::PullPolicy;
use modelcar::text::Escaped;

use super::Context;

/// Signing with a cosign key (the spelling of podman and skopeo).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignOptions {
    /// Sign the pushed image with this cosign private key (cosign's signature format).
    #[arg(long, value_name = "KEY")]
    pub sign_by_sigstore_private_key: Option<PathBuf>,
    /// File holding the key's passphrase (default: $COSIGN_PASSWORD, else none).
    #[arg(long, value_name = "FILE", requires = "sign_by_sigstore_private_key")]
    pub sign_passphrase_file: Option<PathBuf>,
}

impl SignOptions {
    /// The key, read and decrypted now: a wrong passphrase stops the command before it pushes.
    pub fn load(&self) -> anyhow::Result<Option<cosign::PrivateKey>> {
        match &self.sign_by_sigstore_private_key {
            None => Ok(None),
            Some(path) => Ok(Some(cosign::load_private_key(
                path,
                self.sign_passphrase_file.as_deref(),
            )?)),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct GenerateKeyArgs {
    /// Write PREFIX.key (encrypted private key) and PREFIX.pub (public key).
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_prefix: PathBuf,
    /// File holding the passphrase (default: $COSIGN_PASSWORD, else none).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Registry reference of a pushed image (host/path:tag or @sha256:...).
    pub image: String,
    #[command(flatten)]
    pub sign: SignOptions,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SbomArgs {
    /// Project image name, store reference or registry reference.
    pub image: String,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn generate_key(ctx: &Context, args: GenerateKeyArgs) -> anyhow::Result<()> {
    let key_path = with_suffix(&args.output_prefix, ".key");
    let pub_path = with_suffix(&args.output_prefix, ".pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!(Error::invalid(format!("{} already exists", p.display()))
                .with_hint("remove it, or choose another --output-prefix"));
        }
    }
    let pass = cosign::passphrase(args.passphrase_file.as_deref())?;
    if pass.is_empty() {
        ctx.note("warning: the private key is not protected by a passphrase (give --passphrase-file or set COSIGN_PASSWORD)");
    }
    let key = cosign::PrivateKey::generate();
    let pem = key.to_encrypted_pem(&pass)?;
    write_new(&key_path, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, key.public_pem().as_bytes(), 0o644) {
        // No half pair left behind.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    ctx.note(&format!(
        "Private key written to {}\nPublic key written to {}",
        key_path.display(),
        pub_path.display()
    ));
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A registry reference and the digest it names there now.
pub fn resolve_remote(ctx: &Context, image: &str) -> anyhow::Result<(ImageRef, String)> {
    let text = ctx.resolve_name(image)?;
    let r: ImageRef = text.parse().map_err(|e| {
        anyhow::Error::new(e).context(format!("{image} is not a registry reference"))
    })?;
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let (_, desc) =
        artifacts::get_manifest(ctx.client()?, &r, &reference)?.ok_or_else(|| Error::NotFound {
            reference: r.to_string(),
            place: format!("registry {}", r.registry),
            hint: Some("push the image first (modelcar push)".into()),
        })?;
    Ok((r, desc.digest().to_string()))
}

pub fn sign(ctx: &Context, args: SignArgs) -> anyhow::Result<()> {
    let Some(key) = args.sign.load()? else {
        bail!(
            Error::invalid("sign needs --sign-by-sigstore-private-key KEY")
                .with_hint("make a key pair with modelcar generate-key")
        );
    };
    let (r, digest) = resolve_remote(ctx, &args.image)?;
    let signed = referrers::sign(ctx.client()?, &r, &digest, &key)
        .with_context(|| format!("signing {}@{digest}", r.name()))?;
    report_signed(ctx, &signed);
    if args.json {
        super::print_json(&signed)?;
    }
    Ok(())
}

pub fn report_signed(ctx: &Context, signed: &referrers::Signed) {
    ctx.note(&format!(
        "{} {} at {}",
        if signed.added {
            "signed"
        } else {
            "already signed with this key:"
        },
        signed.signed,
        signed.location
    ));
}

pub fn sbom(ctx: &Context, args: SbomArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let digest = resolved.descriptor.digest().to_string();
    if let Some(bom) = referrers::stored_bom(&store, &digest)? {
        std::io::stdout().write_all(&bom)?;
        println!();
        return Ok(());
    }
    // Not built here: the registry may hold it as a referrer.
    if let Ok(r) = ctx.resolve_name(&args.image)?.parse::<ImageRef>() {
        let found = referrers::fetch_bom(ctx.client()?, &r, &digest).with_context(|| {
            format!(
                "{} has no bill of materials in the store, and asking its registry failed",
                Escaped(&resolved.name)
            )
        })?;
        if let Some(bom) = found {
            std::io::stdout().write_all(&bom)?;
            println!();
            return Ok(());
        }
    }
    bail!(Error::invalid(format!(
        "{} ({digest}) has no bill of materials",
        Escaped(&resolved.name)
    ))
    .with_hint("images built by modelcar carry one; rebuild the image with modelcar build"))
}

pub fn print_referrers(ctx: &Context, image: &str, json: bool) -> anyhow::Result<()> {
    let (r, digest) = resolve_remote(ctx, image)?;
    let list = referrers::list(ctx.client()?, &r, &digest)?;
    if json {
        return super::print_json(&serde_json::json!({
            "image": r.name(),
            "digest": digest,
            "referrers": list,
        }));
    }
    println!("{}@{digest}", r.name());
    if list.is_empty() {
        println!("  (no referrers)");
    }
    for item in &list {
        println!(
            "  {:9} {}  {}{}",
            modelcar::text::escape(&item.kind),
            Escaped(&item.digest),
            item.found_by,
            item.signatures
                .map(|n| format!(" ({n} signatures)"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
