//! `modelcar verify`: will the image work as a KServe modelcar?

use anyhow::bail;
use modelcar::formats::{Mode, Severity};
use modelcar::registry::pull::PullPolicy;
use modelcar::verify;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name, store or registry reference, oci:DIR[:REF], oci-archive:FILE or docker-archive:FILE.
    pub image: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How KServe will run the image: sidecar (oci://), native (oci+native://, an image
    /// volume), fetch (oci+fetch://, the storage initializer) or all.
    #[arg(long, value_name = "MODE", default_value = "all")]
    pub mode: String,
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
    let store = ctx.store()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let report = verify::verify_modes(&store, &resolved.descriptor, &resolved.name, &modes)?;
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
        for m in &p.modes {
            let worst = m
                .findings
                .iter()
                .map(|f| f.severity)
                .max()
                .unwrap_or(Severity::Pass);
            println!(
                "  mode {} ({}://): {}",
                m.mode.name(),
                m.scheme,
                mark(worst)
            );
            for f in &m.findings {
                println!("    {:4}  {:12} {}", mark(f.severity), f.check, f.message);
                if let (Some(h), true) = (&f.hint, f.severity != Severity::Pass) {
                    println!("    {:4}  {:12} fix: {h}", "", "");
                }
            }
        }
    }
}
