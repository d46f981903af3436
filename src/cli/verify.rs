//! `modelcar verify`: will the image work as a KServe modelcar?

use modelcar::error::Error;
use modelcar::formats::{Finding, Mode, Severity};
use modelcar::provenance::model_signing::VerifyingKey;
use modelcar::registry::pull::PullPolicy;
use modelcar::text::Escaped;
use modelcar::verify;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name, store or registry reference, oci:DIR[:REF], oci-archive:FILE or docker-archive:FILE.
    pub image: String,
    /// Check the model signature (/models/model.sig) with this elliptic-curve public key (PEM).
    #[arg(long, value_name = "KEY.pub")]
    pub model_key: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How KServe will run the image: sidecar (oci://), native (oci+native://, an image
    /// volume), fetch (oci+fetch://, the storage initializer) or all.
    #[arg(long, value_name = "MODE", default_value = "all")]
    pub mode: String,
    /// Also check that the image in its registry carries a cosign signature by this public key.
    #[arg(long, value_name = "KEY")]
    pub sigstore_public_key: Option<std::path::PathBuf>,
}

/// The modes `--mode` names.
fn modes(text: &str) -> anyhow::Result<Vec<Mode>> {
    if text == "all" {
        return Ok(Mode::ALL.to_vec());
    }
    Ok(vec![text.parse()?])
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let modes = modes(&args.mode)?;
    let cosign = args
        .sigstore_public_key
        .as_deref()
        .map(|path| check_cosign(ctx, &args.image, path))
        .transpose()?;
    let model_key = args
        .model_key
        .as_deref()
        .map(VerifyingKey::from_pem_file)
        .transpose()?;
    let store = ctx.store()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let mut report = verify::verify_with(
        &store,
        &resolved.descriptor,
        &resolved.name,
        &modes,
        model_key.as_ref(),
    )?;
    if let Some(mut check) = cosign {
        if check.reason.is_none() && check.digest != report.digest {
            // The signature covers what the registry serves; the checks above judged a copy in
            // the store that is another image.
            check.result = Severity::Fail;
            check.reason = Some(format!(
                "the registry serves {} under {}, but the image checked here (the local store's copy) is {}",
                check.digest, args.image, report.digest
            ));
            check.hint = Some(format!(
                "pull the image again (modelcar pull {}) or verify it by digest",
                args.image
            ));
        }
        report.findings.insert(0, check.finding());
        report.cosign_signature = Some(check);
    }
    if args.json {
        super::print_json(&report)?;
    } else {
        print_report(&report)?;
    }
    if report.worst() == Severity::Fail {
        return Err(ImageFails {
            image: report.image,
        }
        .into());
    }
    Ok(())
}

/// Check the image's cosign signature in its registry with the public key in `path`. A missing
/// signature, one by another key or over another digest is a failed check (exit code 1); a key
/// that cannot be read or a registry that cannot be asked is an error (exit code 2).
fn check_cosign(
    ctx: &Context,
    image: &str,
    path: &std::path::Path,
) -> anyhow::Result<verify::CosignCheck> {
    let key = modelcar::provenance::cosign::load_public_key(path)?;
    let (r, digest) = super::provenance::resolve_remote(ctx, image)?;
    let mut check = verify::CosignCheck {
        result: Severity::Pass,
        repository: r.name(),
        digest: digest.clone(),
        key: path.display().to_string(),
        identity: None,
        reason: None,
        hint: None,
    };
    match modelcar::provenance::referrers::verify(ctx.client()?, &r, &digest, &key) {
        Ok(v) => check.identity = Some(v.identity),
        Err(Error::Invalid { what, hint }) => {
            check.result = Severity::Fail;
            check.reason = Some(what);
            check.hint = hint;
        }
        // A signature manifest or payload that does not parse, or that does not match its
        // digest, is no valid signature.
        Err(Error::Corrupt { what }) => {
            check.result = Severity::Fail;
            check.reason = Some(what);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(check)
}

/// The verdict that an image fails a check: exit code 1, told apart from an error (2).
#[derive(Debug, thiserror::Error)]
#[error("{image} will not work as a KServe modelcar (see the failed checks above)")]
pub struct ImageFails {
    pub image: String,
}

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Pass => "pass",
        Severity::Warn => "WARN",
        Severity::Fail => "FAIL",
    }
}

/// The report for a person. Messages quote file names, labels and entrypoints from the image,
/// so every field is escaped.
pub fn print_report(report: &verify::Report) -> anyhow::Result<()> {
    // One column for every check name of the report, as wide as the widest (escaped) one.
    let width = report
        .findings
        .iter()
        .chain(report.platforms.iter().flat_map(|p| {
            p.findings
                .iter()
                .chain(p.modes.iter().flat_map(|m| &m.findings))
        }))
        .map(|f| Escaped(&f.check).to_string().chars().count())
        .max()
        .unwrap_or(0);
    outln!("{} ({})", Escaped(&report.image), Escaped(&report.digest));
    print_findings("  ", &report.findings, width)?;
    for p in &report.platforms {
        outln!("{} {}", Escaped(&p.platform), Escaped(&p.manifest));
        print_findings("  ", &p.findings, width)?;
        for m in &p.modes {
            let worst = m
                .findings
                .iter()
                .map(|f| f.severity)
                .max()
                .unwrap_or(Severity::Pass);
            outln!(
                "  mode {} ({}://): {}",
                m.mode.name(),
                m.scheme,
                mark(worst)
            );
            print_findings("    ", &m.findings, width)?;
        }
    }
    Ok(())
}

fn print_findings(indent: &str, findings: &[Finding], width: usize) -> anyhow::Result<()> {
    for f in findings {
        outln!(
            "{indent}{:4}  {:width$}  {}",
            mark(f.severity),
            Escaped(&f.check),
            Escaped(&f.message)
        );
        if let (Some(h), true) = (&f.hint, f.severity != Severity::Pass) {
            outln!("{indent}{:4}  {:width$}  hint: {}", "", "", Escaped(h));
        }
    }
    Ok(())
}
