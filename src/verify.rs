//! `verify`: will an image work as a KServe modelcar? Judged from the image alone.
//!
//! For every platform, the layers are merged as a runtime merges them (whiteouts, symlinks, hard
//! links, usr-merge) and the result is checked against what KServe does with the image: its init
//! container lists `/models`, its sidecar runs `sh`, `ln`, `sleep` (and `mkdir` in newer releases)
//! with no entrypoint in front, OpenShift runs both as a random UID in group 0, and MLServer loads
//! a well-known file name. Each check passes, warns or fails with the reason and the fix, and
//! is reported for every mode it concerns: the sidecar (`oci://`), an image volume
//! (`oci+native://`) or the storage initializer's fetch (`oci+fetch://`); see [`modes`].
//! Given a public key, the model's signature (`/models/model.sig`) is checked too; the result of
//! checking the image's cosign signature in its registry ([`CosignCheck`]) joins the report.

use std::io::Read;

use oci_spec::image::Descriptor;
use serde::Serialize;

use crate::build::{FORMAT_ANNOTATION, REQUIRED_BINARIES};
use crate::error::{Error, Result};
use crate::formats::{self, Finding, Mode, ModelFiles, Severity};
use crate::image::{self, PlatformImage};
use crate::provenance::model_signing::{self, VerifyingKey};
use crate::rootfs::{self, Node, RootFs};
use crate::store::Store;

mod modes;
pub use modes::ModeReport;

/// Checks that concern a running container only: the sidecar mode's.
const SIDECAR_CHECKS: [&str; 3] = ["binaries", "entrypoint", "user"];

/// Layer sizes registries are known to refuse above.
pub const LAYER_LIMITS: [(&str, u64); 1] = [("GHCR (ghcr.io)", 10_000_000_000)];

/// Findings for one platform of an image.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    pub manifest: String,
    /// Findings that hold in every mode.
    pub findings: Vec<Finding>,
    /// Findings of each mode asked for, in [`Mode::ALL`] order.
    pub modes: Vec<ModeReport>,
}

/// Findings for an image.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: String,
    pub digest: String,
    pub platforms: Vec<PlatformReport>,
    /// Findings about the image as a whole (its name, its cosign signature).
    pub findings: Vec<Finding>,
    /// The cosign signature check, when a public key was given for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosign_signature: Option<CosignCheck>,
}

/// What checking an image's cosign signature in its registry found.
#[derive(Debug, Clone, Serialize)]
pub struct CosignCheck {
    /// `pass` when a signature by the key covers `digest`, else `fail`.
    pub result: Severity,
    /// The repository the signature was looked for in (host/path).
    pub repository: String,
    /// The digest the registry serves under the reference: the one a signature must cover.
    pub digest: String,
    /// The public key file.
    pub key: String,
    /// The signed payload's `critical.identity.docker-reference`, when one verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Why the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl CosignCheck {
    /// The finding that carries the check into the report (and its exit code).
    pub fn finding(&self) -> Finding {
        let f = match &self.reason {
            None => Finding::new(
                Severity::Pass,
                "cosign-signature",
                format!(
                    "{}@{} is signed by {} (identity {})",
                    self.repository,
                    self.digest,
                    self.key,
                    self.identity.as_deref().unwrap_or("")
                ),
            ),
            Some(why) => Finding::new(
                Severity::Fail,
                "cosign-signature",
                format!("no signature by {}: {why}", self.key),
            ),
        };
        match &self.hint {
            Some(h) => f.hint(h),
            None => f,
        }
    }
}

impl Report {
    /// The worst severity found.
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .chain(self.platforms.iter().flat_map(|p| &p.findings))
            .chain(
                self.platforms
                    .iter()
                    .flat_map(|p| p.modes.iter().flat_map(|m| &m.findings)),
            )
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Pass)
    }
}

/// A model directory as found at `/models` in an image's merged filesystem.
struct ImageModels<'a> {
    store: &'a Store,
    layers: &'a [Descriptor],
    fs: &'a RootFs,
}

impl ModelFiles for ImageModels<'_> {
    fn files(&self) -> Vec<(String, u64)> {
        self.fs
            .entries
            .keys()
            .filter_map(|p| p.strip_prefix("models/"))
            .filter_map(|rel| match self.fs.resolve(&format!("models/{rel}")) {
                Some((_, Node::File { size, .. })) => Some((rel.to_string(), *size)),
                _ => None,
            })
            .collect()
    }

    fn read_at(&self, rel: &str, offset: u64, n: u64) -> Result<Vec<u8>> {
        let (path, _) = self
            .fs
            .resolve(&format!("models/{rel}"))
            .ok_or_else(|| Error::corrupt(format!("/models/{rel} does not resolve")))?;
        let layer = *self
            .fs
            .origin
            .get(&path)
            .ok_or_else(|| Error::corrupt(format!("/{path} has no layer")))?;
        let desc = &self.layers[layer];
        let what = format!("layer {}", desc.digest());
        let bad = |e: std::io::Error| rootfs::ListingError::from(e).about(&what);
        let mut tar = rootfs::TarReader::new(rootfs::open_layer(self.store, desc)?);
        while let Some((p, _)) = tar.next_entry().map_err(|e| e.about(&what))? {
            if p == path {
                let mut contents = tar.contents();
                std::io::copy(&mut (&mut contents).take(offset), &mut std::io::sink())
                    .map_err(bad)?;
                let mut buf = Vec::new();
                contents.take(n).read_to_end(&mut buf).map_err(bad)?;
                return Ok(buf);
            }
        }
        Err(Error::corrupt(format!(
            "/{path} is not in layer {}",
            desc.digest()
        )))
    }
}

/// Whether a UID that is neither the owner nor root, in group 0, may read (and for directories,
/// search) an entry with these bits.
pub(crate) fn random_uid_can(mode: u32, gid: u64, dir: bool) -> bool {
    let need = if dir { 0o5 } else { 0o4 };
    (gid == 0 && (mode >> 3) & need == need) || mode & need == need
}

/// The model signature, checked with `key` against the files of the image.
fn check_model_signature(
    store: &Store,
    img: &PlatformImage,
    fs: &RootFs,
    key: &VerifyingKey,
) -> Result<Finding> {
    match model_signing::verify_image(store, img.manifest.layers(), fs, key) {
        Ok(found) => Ok(Finding::new(
            Severity::Pass,
            "model-signature",
            format!(
                "/models/model.sig verifies with the key and matches the {} files it signs",
                found.files
            ),
        )),
        Err(Error::Invalid { what, hint }) => {
            let f = Finding::new(Severity::Fail, "model-signature", what);
            Ok(match hint {
                Some(h) => f.hint(h),
                None => f,
            })
        }
        Err(e) => Err(e),
    }
}

/// The findings of one platform: those of every mode, and each mode's.
fn check_platform(
    store: &Store,
    img: &PlatformImage,
    platform: Option<&oci_spec::image::Platform>,
    declared: Option<&str>,
    wanted: &[Mode],
    model_key: Option<&VerifyingKey>,
) -> Result<(Vec<Finding>, Vec<ModeReport>)> {
    let mut out = Vec::new();
    let config = image::read_config(store, img.manifest.config())?;
    let fs = RootFs::from_layers(store, img.manifest.layers())?;
    let mut format = None;

    // /models exists and is not empty (modelcar-init: [ -d /models ] && [ "$(ls -A /models)" ]).
    let models = fs.resolve("models");
    let children: Vec<&String> = fs
        .entries
        .keys()
        .filter(|p| p.starts_with("models/") && !p["models/".len()..].contains('/'))
        .collect();
    match models {
        Some((_, Node::Dir { .. })) if !children.is_empty() => {
            out.push(Finding::new(Severity::Pass, "models", format!("/models holds {} {}", children.len(), if children.len() == 1 { "entry" } else { "entries" })))
        }
        Some((_, Node::Dir { .. })) => out.push(
            Finding::new(Severity::Fail, "models", "/models is empty: KServe's modelcar-init container exits 1 (\"NOK ... /models does not exist or is empty\")")
                .hint("put the model files in the image under /models"),
        ),
        _ => out.push(
            Finding::new(Severity::Fail, "models", "/models does not exist (or is not a directory): KServe's modelcar-init container exits 1")
                .hint("put the model files in the image under /models"),
        ),
    }

    // The binaries KServe runs.
    let path = rootfs::search_path(&config);
    let missing: Vec<&str> = REQUIRED_BINARIES
        .iter()
        .copied()
        .filter(|b| fs.find_executable(b, &path).is_none())
        .collect();
    if missing.is_empty() {
        out.push(Finding::new(
            Severity::Pass,
            "binaries",
            format!(
                "{} found on PATH {}",
                REQUIRED_BINARIES.join(", "),
                path.join(":")
            ),
        ));
    } else {
        out.push(
            Finding::new(
                Severity::Fail,
                "binaries",
                format!(
                    "{} not found on PATH {}: KServe's init container runs `sh -c` with `ls -A`, its sidecar `sh -c 'ln -sf /proc/$$/root/models /mnt/models && sleep infinity'` (newer releases: `mkdir -p` first)",
                    missing.join(", "),
                    path.join(":")
                ),
            )
            .hint("build on a base with a shell and coreutils or busybox (UBI micro, busybox); or serve it as an image volume (oci+native://), which runs nothing"),
        );
    }

    // Entrypoint and user.
    let entrypoint = config
        .pointer("/config/Entrypoint")
        .filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    match entrypoint {
        None => out.push(Finding::new(Severity::Pass, "entrypoint", "no ENTRYPOINT")),
        Some(e) => {
            let words: Vec<String> = match e.as_array() {
                Some(a) => a
                    .iter()
                    .map(|w| {
                        w.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| w.to_string())
                    })
                    .collect(),
                None => vec![e
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())],
            };
            let e = words.join(" ");
            out.push(
            Finding::new(Severity::Fail, "entrypoint", format!("ENTRYPOINT `{e}` is set: KServe passes only args, so the containers would run `{e} sh -c ...` and fail"))
                .hint("remove the ENTRYPOINT (modelcar build removes it)"),
            );
        }
    }
    let user = config
        .pointer("/config/User")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let uid = user.split(':').next().unwrap_or("");
    if uid.is_empty() || uid == "0" || uid == "root" {
        out.push(
            Finding::new(
                Severity::Warn,
                "user",
                format!("the image runs as root (User {:?})", user),
            )
            .hint("set a non-root user such as 1001 (restricted pod security refuses root)"),
        );
    } else {
        out.push(Finding::new(
            Severity::Pass,
            "user",
            format!("runs as user {user}"),
        ));
    }

    // Readable by a random UID in group 0.
    let mut unreadable = Vec::new();
    for (p, node) in fs
        .entries
        .iter()
        .filter(|(p, _)| p.as_str() == "models" || p.starts_with("models/"))
    {
        let ok = match node {
            Node::Dir { mode, gid, .. } => random_uid_can(*mode, *gid, true),
            Node::File { mode, gid, .. } => random_uid_can(*mode, *gid, false),
            Node::Symlink { .. } | Node::Hardlink { .. } => match fs.resolve(p) {
                Some((_, Node::File { mode, gid, .. })) => random_uid_can(*mode, *gid, false),
                Some((_, Node::Dir { mode, gid, .. })) => random_uid_can(*mode, *gid, true),
                _ => false,
            },
            Node::Other => true,
        };
        if !ok {
            unreadable.push(format!("/{p}"));
        }
    }
    if models.is_none() {
        // Nothing to judge; the models check has failed already.
    } else if unreadable.is_empty() {
        out.push(Finding::new(
            Severity::Pass,
            "permissions",
            "everything under /models is readable by any UID in group 0 (OpenShift's random UIDs)",
        ));
    } else {
        let shown: Vec<&str> = unreadable.iter().take(5).map(String::as_str).collect();
        out.push(
            Finding::new(
                Severity::Fail,
                "permissions",
                format!(
                    "{} under /models cannot be read (or, for directories, listed and entered) by a random UID in group 0: {}{}",
                    unreadable.len(),
                    shown.join(", "),
                    if unreadable.len() > 5 { ", ..." } else { "" }
                ),
            )
            .hint("give group 0 read access (chgrp 0, chmod g=rX, or a=rX): modelcar builds use 1001:0 with 0555/0444"),
        );
    }

    // The model format.
    if matches!(models, Some((_, Node::Dir { .. }))) && !children.is_empty() {
        let files = ImageModels {
            store,
            layers: img.manifest.layers(),
            fs: &fs,
        };
        let report = formats::check(&files, declared, true)?;
        out.extend(report.findings.iter().cloned());
        format = Some(report);
    }

    // Layer sizes.
    for layer in img.manifest.layers() {
        for (registry, limit) in LAYER_LIMITS {
            if layer.size() > limit {
                out.push(
                    Finding::new(
                        Severity::Warn,
                        "layer-size",
                        format!(
                            "layer {} is {} bytes, over what {registry} accepts ({limit})",
                            layer.digest(),
                            layer.size()
                        ),
                    )
                    .hint("split the file into shards below the limit"),
                );
            }
        }
    }
    if let Some(key) = model_key {
        out.push(check_model_signature(store, img, &fs, key)?);
    }

    let (sidecar, common): (Vec<Finding>, Vec<Finding>) = out
        .into_iter()
        .partition(|f| SIDECAR_CHECKS.contains(&f.check.as_str()));
    let layers: Vec<(String, oci_spec::image::MediaType)> = img
        .manifest
        .layers()
        .iter()
        .map(|l| (l.digest().to_string(), l.media_type().clone()))
        .collect();
    let mut reports = Vec::new();
    for mode in Mode::ALL.into_iter().filter(|m| wanted.contains(m)) {
        let mut findings = match mode {
            Mode::Sidecar => sidecar.clone(),
            Mode::Native => modes::native(&layers, &fs),
            Mode::Fetch => {
                let whiteouts = modes::model_whiteouts(store, img.manifest.layers())?;
                modes::fetch(platform, &layers, &fs, &whiteouts)
            }
        };
        if let Some(r) = &format {
            findings.extend(formats::mode_notes(r, mode));
        }
        reports.push(ModeReport {
            mode,
            scheme: mode.scheme(),
            findings,
        });
    }
    Ok((common, reports))
}

/// Verify an image in the store for every mode. `name` is how the user called it (its tag is
/// checked).
pub fn verify(store: &Store, top: &Descriptor, name: &str) -> Result<Report> {
    verify_with(store, top, name, &Mode::ALL, None)
}

/// Verify an image in the store for the delivery modes asked for (`wanted`), and with
/// `model_key` its model signature too.
pub fn verify_with(
    store: &Store,
    top: &Descriptor,
    name: &str,
    wanted: &[Mode],
    model_key: Option<&VerifyingKey>,
) -> Result<Report> {
    let annotations = match image::Document::classify(top.media_type()) {
        image::DocumentKind::Index => image::read_index(store, top)?.annotations().clone(),
        _ => image::read_manifest(store, top)?.annotations().clone(),
    }
    .unwrap_or_default();
    let mut platforms = Vec::new();
    for img in image::platform_images(store, top)? {
        let config = image::read_config(store, img.manifest.config())?;
        let declared = annotations.get(FORMAT_ANNOTATION).cloned().or_else(|| {
            config
                .pointer(&format!(
                    "/config/Labels/{}",
                    FORMAT_ANNOTATION.replace('/', "~1")
                ))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
        let platform = img
            .platform
            .clone()
            .or_else(|| crate::transport::platform_of_config(&config));
        let (findings, modes) = check_platform(
            store,
            &img,
            platform.as_ref(),
            declared.as_deref(),
            wanted,
            model_key,
        )?;
        platforms.push(PlatformReport {
            platform: platform
                .as_ref()
                .map(image::platform_string)
                .unwrap_or_else(|| "?".into()),
            manifest: img.descriptor.digest().to_string(),
            findings,
            modes,
        });
    }
    let mut findings = Vec::new();
    if let Ok(r) = name.parse::<crate::reference::ImageRef>() {
        if r.digest.is_none() && r.tag.as_deref() == Some("latest") {
            findings.push(
                Finding::new(Severity::Warn, "tag", "the image is tagged `latest`: Kubernetes pulls it again at every pod start, and the model can change under a running service")
                    .hint("tag a version (VERSION=v1.0.0) or refer to the image by digest"),
            );
        }
    }
    Ok(Report {
        image: name.to_string(),
        digest: top.digest().to_string(),
        platforms,
        findings,
        cosign_signature: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_zero_or_others_must_read() {
        assert!(random_uid_can(0o444, 0, false));
        assert!(random_uid_can(0o440, 0, false));
        assert!(!random_uid_can(0o440, 5, false));
        assert!(!random_uid_can(0o600, 0, false));
        assert!(random_uid_can(0o555, 0, true));
        assert!(!random_uid_can(0o544, 0, true));
        assert!(random_uid_can(0o705, 7, true));
    }
}
