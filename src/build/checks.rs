//! The checks of `modelcar verify` applied to a build, so that a build never tags or pushes
//! an image `verify` would fail (unless the user opts out with `--allow-failing-checks`).
//!
//! What can be known before anything is written is checked first: the owner and modes of the
//! model files, and, for `build --push` (whose model layers never reach the store for `verify`
//! to read), the base's own `/models`. The built image is then verified whole before it is
//! tagged.

use crate::error::{Error, Result};
use crate::formats::{self, Severity};
use crate::image::PlatformImage;
use crate::model::ModelTree;
use crate::rootfs::RootFs;
use crate::store::Store;

use super::BuildSpec;

/// Why OpenShift's random UID in group 0 could not read the model files or enter the
/// directories with the spec's modes and owner, if it could not.
pub(super) fn unreadable_modes(spec: &BuildSpec) -> Option<String> {
    let file = crate::verify::random_uid_can(spec.file_mode, spec.gid, false);
    let dir = crate::verify::random_uid_can(spec.dir_mode, spec.gid, true);
    (!file || !dir).then(|| {
        format!(
            "with owner {}:{}, file-mode {:04o} and dir-mode {:04o}, a random UID in group 0 (OpenShift) cannot read the model files{}",
            spec.uid,
            spec.gid,
            spec.file_mode,
            spec.dir_mode,
            if dir { "" } else { " or enter their directories" }
        )
    })
}

/// Entries of the base's own /models that the model does not replace and that a random UID
/// in group 0 cannot read: they are merged into the image, where `verify` would fail them.
pub(super) fn unreadable_base_models(
    store: &Store,
    img: &PlatformImage,
    tree: &ModelTree,
) -> Result<Option<String>> {
    use crate::rootfs::Node;
    let fs = RootFs::from_layers(store, img.manifest.layers())?;
    let ours: std::collections::HashSet<String> = tree
        .entries
        .iter()
        .map(|e| format!("models/{}", e.rel))
        .collect();
    let unreadable: Vec<String> = fs
        .entries
        .iter()
        .filter(|(p, _)| p.starts_with("models/") && !ours.contains(p.as_str()))
        .filter(|(_, node)| match node {
            Node::Dir { mode, gid, .. } => !crate::verify::random_uid_can(*mode, *gid, true),
            Node::File { mode, gid, .. } => !crate::verify::random_uid_can(*mode, *gid, false),
            _ => false,
        })
        .map(|(p, _)| format!("/{p}"))
        .collect();
    Ok((!unreadable.is_empty()).then(|| {
        let shown: Vec<&str> = unreadable.iter().take(5).map(String::as_str).collect();
        format!(
            "check `permissions`: the base's own /models holds {} entries a random UID in group 0 cannot read, which would be merged into the image: {}{}",
            unreadable.len(),
            shown.join(", "),
            if unreadable.len() > 5 { ", ..." } else { "" }
        )
    }))
}

/// The failed checks of a report (with their platform), and the warnings worth telling at
/// build time: failures are shown elsewhere, model-level warnings were noted by the build.
/// A build must work in KServe's default mode, the sidecar (`oci://`); what fails only in
/// another mode (a zstd layer under `oci+fetch://`) is a warning naming the mode. Without the
/// base check (`--no-base-check`, for image volumes) missing binaries are no failure.
pub(super) fn verify_findings(
    report: &crate::verify::Report,
    base_check: bool,
) -> (Vec<String>, Vec<String>) {
    let with_hint = |f: &formats::Finding| match &f.hint {
        Some(h) => format!("{} (hint: {h})", f.message),
        None => f.message.clone(),
    };
    let with_check = |f: &formats::Finding| format!("check `{}`: {}", f.check, with_hint(f));
    let mut warnings: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warn)
        .map(|f| format!("warning: {}", with_hint(f)))
        .collect();
    let mut fails: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .map(with_check)
        .collect();
    for p in &report.platforms {
        let failed = p.findings.iter().filter(|f| f.severity == Severity::Fail);
        fails.extend(failed.map(|f| format!("{}, {}", p.platform, with_check(f))));
        for m in &p.modes {
            let failed = m.findings.iter().filter(|f| f.severity == Severity::Fail);
            if m.mode == formats::Mode::Sidecar {
                fails.extend(
                    failed
                        .filter(|f| base_check || f.check != "binaries")
                        .map(|f| format!("{}, {}", p.platform, with_check(f))),
                );
            } else {
                warnings.extend(failed.map(|f| {
                    format!(
                        "warning: {}: will not work with {}:// ({} mode): {}",
                        p.platform,
                        m.scheme,
                        m.mode.name(),
                        with_hint(f)
                    )
                }));
            }
        }
    }
    (fails, warnings)
}

/// Refuse the build when a check failed, unless the user allowed it: then each failure becomes
/// a warning.
pub(super) fn checks_failed(
    spec: &BuildSpec,
    fails: Vec<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    if fails.is_empty() {
        return Ok(());
    }
    if spec.allow_failing_checks {
        notes.extend(fails.into_iter().map(|f| format!("warning: {f}")));
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{} would not work as a KServe modelcar, so it was not tagged or pushed: {}",
        spec.reference.tagged(),
        fails.join("; ")
    ))
    .with_hint("fix what the check names; to keep such an image anyway, pass --allow-failing-checks (allow-failing-checks = true in modelcar.toml)"))
}
