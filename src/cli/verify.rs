//! `modelcar verify`: will the image work as a KServe modelcar?

use anyhow::bail;
use modelcar::formats::Severity;
use modelcar::provenance::model_signing::VerifyingKey;
use modelcar::registry::pull::PullPolicy;
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
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let model_key = args
        .model_key
        .as_deref()
        .map(VerifyingKey::from_pem_file)
        .transpose()?;
    let store = ctx.store()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let report = verify::verify_with(
        &store,
        &resolved.descriptor,
        &resolved.name,
        model_key.as_ref(),
    )?;
    if args.json {
        super::print_json(&report)?;
    } else {
        print_report(&report);
    }
    if report.worst() == Severity::Fail {
        bail!(
            "{} will not work as a KServe modelcar (see the failed checks above)",
            report.image
        );
    }
    Ok(())
}

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Pass => "pass",
        Severity::Warn => "WARN",
        Severity::Fail => "FAIL",
    }
}

pub fn print_report(report: &verify::Report) {
    println!("{} ({})", report.image, report.digest);
    for f in &report.findings {
        println!("  {:4}  {:12} {}", mark(f.severity), f.check, f.message);
        if let (Some(h), true) = (&f.hint, f.severity != Severity::Pass) {
            println!("  {:4}  {:12} fix: {h}", "", "");
        }
    }
    for p in &report.platforms {
        println!("{} {}", p.platform, p.manifest);
        for f in &p.findings {
            println!("  {:4}  {:12} {}", mark(f.severity), f.check, f.message);
            if let (Some(h), true) = (&f.hint, f.severity != Severity::Pass) {
                println!("  {:4}  {:12} fix: {h}", "", "");
            }
        }
    }
}
