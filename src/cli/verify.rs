//! `modelcar verify`: will the image work as a KServe modelcar?

use modelcar::formats::{Finding, Severity};
use modelcar::registry::pull::PullPolicy;
use modelcar::text::Escaped;
use modelcar::verify;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project image name, store or registry reference, oci:DIR[:REF], oci-archive:FILE or docker-archive:FILE.
    pub image: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let resolved = super::locate(ctx, &store, &args.image, PullPolicy::Missing)?;
    let report = verify::verify(&store, &resolved.descriptor, &resolved.name)?;
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
        .chain(report.platforms.iter().flat_map(|p| &p.findings))
        .map(|f| Escaped(&f.check).to_string().chars().count())
        .max()
        .unwrap_or(0);
    outln!("{} ({})", Escaped(&report.image), Escaped(&report.digest));
    print_findings(&report.findings, width)?;
    for p in &report.platforms {
        outln!("{} {}", Escaped(&p.platform), Escaped(&p.manifest));
        print_findings(&p.findings, width)?;
    }
    Ok(())
}

fn print_findings(findings: &[Finding], width: usize) -> anyhow::Result<()> {
    for f in findings {
        outln!(
            "  {:4}  {:width$}  {}",
            mark(f.severity),
            Escaped(&f.check),
            Escaped(&f.message)
        );
        if let (Some(h), true) = (&f.hint, f.severity != Severity::Pass) {
            outln!("  {:4}  {:width$}  hint: {}", "", "", Escaped(h));
        }
    }
    Ok(())
}
