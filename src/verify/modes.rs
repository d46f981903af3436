//! What each of KServe's three ways of running an OCI model asks of the image, beyond what all
//! three share (a readable, non-empty `/models` holding a model its runtime loads).
//!
//! - sidecar (`oci://`): the image runs `sh`, `ln`, `sleep`, `ls`, `mkdir`, with no entrypoint;
//!   those checks are made in [`super`] and filed under this mode.
//! - native (`oci+native://`): a Kubernetes image volume mounted with `subPath: models`; nothing
//!   runs, but the container runtime mounts only images whose layers are tar archives.
//! - fetch (`oci+fetch://`): KServe's storage initializer (`kserve-storage`, oras-py) resolves an
//!   index to `linux/<arch>`, streams each layer through Python's `tarfile` (plain tar or
//!   tar+gzip only: a zstd layer anywhere fails the pull) and extracts the `models/` entries with
//!   the `data` filter (no absolute or escaping links; hard links cannot be resolved in a stream).

use oci_spec::image::{MediaType, Platform};

use crate::error::Result;
use crate::formats::{Finding, Mode, Severity};
use crate::image::{DOCKER_LAYER_GZIP, DOCKER_LAYER_ZSTD};
use crate::rootfs::{self, Node, RootFs};
use crate::store::Store;

/// Layer media types the storage initializer reads (its `_LAYER_MEDIA_TYPE_MODES`).
const FETCH_READS: [&str; 3] = [
    "application/vnd.oci.image.layer.v1.tar+gzip",
    DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar",
];

/// One mode's findings for one platform.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeReport {
    pub mode: Mode,
    /// The storage URI scheme that selects the mode.
    pub scheme: &'static str,
    pub findings: Vec<Finding>,
}

fn is_tar_layer(m: &MediaType) -> bool {
    crate::image::layer_compression(m).is_ok()
}

fn is_zstd(m: &str) -> bool {
    m.ends_with("+zstd") || m == DOCKER_LAYER_ZSTD
}

/// Image volumes: nothing runs; Kubernetes version, layer kinds, a real `/models`.
pub(super) fn native(layers: &[(String, MediaType)], fs: &RootFs) -> Vec<Finding> {
    let mut out = vec![Finding::new(
        Severity::Pass,
        "image-volume",
        "mounted read-only at /mnt/models with subPath: models, never run: no shell, user or entrypoint needed. Needs Kubernetes 1.33 or later (1.33 and 1.34 with the ImageVolume feature gate; on by default from 1.35) and containerd 2.1+ or CRI-O 1.31+",
    )];
    if let Some(Node::Symlink { target }) = fs.entries.get("models") {
        out.push(
            Finding::new(
                Severity::Warn,
                "models",
                format!("/models is a symlink (to {target}): the kubelet resolves a subPath through symlinks only while they stay inside the volume"),
            )
            .hint("put the model files in a real /models directory"),
        );
    }
    let odd: Vec<String> = layers
        .iter()
        .filter(|(_, m)| !is_tar_layer(m))
        .map(|(d, m)| format!("{d} ({m})"))
        .collect();
    if !odd.is_empty() {
        out.push(
            Finding::new(
                Severity::Fail,
                "layers",
                format!("layers that are not tar archives: {}; the container runtime mounts only images whose layers are", odd.join(", ")),
            )
            .hint("rebuild the image with tar layers (modelcar build writes tar, tar+gzip or tar+zstd)"),
        );
    }
    out
}

/// The storage initializer's pull: platform, layer media types, links under `models/`.
pub(super) fn fetch(
    platform: Option<&Platform>,
    layers: &[(String, MediaType)],
    fs: &RootFs,
    whiteouts: &[String],
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(p) = platform {
        let os = p.os().to_string();
        if os != "linux" {
            out.push(
                Finding::new(
                    Severity::Fail,
                    "platform",
                    format!("platform {os}/{}: the storage initializer picks linux/<arch> from an index, never this one", p.architecture()),
                )
                .hint("build for linux"),
            );
        }
    }
    let mut zstd = Vec::new();
    let mut skipped = Vec::new();
    for (i, (digest, m)) in layers.iter().enumerate() {
        let text = m.to_string();
        let which = format!("layer {} of {} ({digest})", i + 1, layers.len());
        if is_zstd(&text) {
            zstd.push(which);
        } else if !FETCH_READS.contains(&text.as_str()) {
            skipped.push(format!("{which} ({text})"));
        }
    }
    if zstd.is_empty() {
        out.push(Finding::new(
            Severity::Pass,
            "layers",
            "every layer is tar or tar+gzip, which the storage initializer reads",
        ));
    } else {
        out.push(
            Finding::new(
                Severity::Fail,
                "layers",
                format!(
                    "zstd-compressed: {}; KServe's storage initializer (Python 3.11 tarfile) cannot read zstd and fails the pull",
                    zstd.join(", ")
                ),
            )
            .hint("rebuild with --compression gzip (or auto), on a base whose layers are gzip or plain tar"),
        );
    }
    if !skipped.is_empty() {
        out.push(
            Finding::new(
                Severity::Warn,
                "layers",
                format!("the storage initializer skips layers of media types it does not know: {}", skipped.join(", ")),
            )
            .hint("files under /models in those layers never reach the model directory: use OCI tar or tar+gzip layers"),
        );
    }
    if let Some(Node::Symlink { target }) = fs.entries.get("models") {
        out.push(
            Finding::new(
                Severity::Fail,
                "models",
                format!("/models is a symlink (to {target}): the storage initializer extracts only entries named models/..., so the files behind the link never arrive"),
            )
            .hint("put the model files in a real /models directory"),
        );
    }
    if !whiteouts.is_empty() {
        let shown: Vec<&str> = whiteouts.iter().take(5).map(String::as_str).collect();
        out.push(
            Finding::new(
                Severity::Warn,
                "whiteouts",
                format!(
                    "layers delete files under /models ({}{}): the storage initializer extracts every layer in order without applying deletions, so the deleted files come back and the .wh. markers are written as files",
                    shown.join(", "),
                    if whiteouts.len() > 5 { ", ..." } else { "" }
                ),
            )
            .hint("build the model files into one layer set with no deletions (modelcar build writes none)"),
        );
    }
    // Links under /models as tarfile's data filter and a streamed read meet them.
    let mut refused = Vec::new();
    for (path, node) in fs.entries.iter().filter(|(p, _)| p.starts_with("models/")) {
        match node {
            Node::Hardlink { .. } => refused.push(format!("/{path} (a hard link)")),
            Node::Symlink { target } => {
                let depth = path.matches('/').count() - 1;
                if target.starts_with('/') || escapes(target, depth) {
                    refused.push(format!("/{path} -> {target}"));
                }
            }
            _ => {}
        }
    }
    if !refused.is_empty() {
        out.push(
            Finding::new(
                Severity::Fail,
                "links",
                format!(
                    "the storage initializer refuses these links (absolute, leaving /models, or hard links in a streamed layer): {}",
                    refused.join(", ")
                ),
            )
            .hint("replace them by the files, or by relative symlinks that stay inside /models"),
        );
    }
    out
}

/// Whiteout entries (`.wh.NAME`, `.wh..wh..opq`) under `models/` in any layer, from the layer
/// listings (cached per digest, so reading them again after the merge costs no layer read).
pub(super) fn model_whiteouts(
    store: &Store,
    layers: &[oci_spec::image::Descriptor],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for layer in layers {
        for (path, _) in rootfs::layer_listing(store, layer)? {
            let name = path.rsplit('/').next().unwrap_or("");
            if path.starts_with("models/") && name.starts_with(".wh.") {
                out.push(format!("/{path}"));
            }
        }
    }
    Ok(out)
}

/// Whether a relative link target, from a directory `depth` levels below `/models`, leaves it.
fn escapes(target: &str, depth: usize) -> bool {
    let mut level = depth as i64;
    for part in target.split('/') {
        match part {
            ".." => level -= 1,
            "" | "." => {}
            _ => level += 1,
        }
        if level < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_leaving_models_are_found() {
        assert!(!escapes("w.bin", 0));
        assert!(escapes("../etc/passwd", 0));
        assert!(!escapes("../w.bin", 1));
        assert!(escapes("../../w.bin", 1));
        assert!(escapes("a/../../x", 0));
    }

    #[test]
    fn zstd_anywhere_fails_fetch_but_not_native() {
        let layers = vec![
            ("sha256:aa".to_string(), MediaType::ImageLayerZstd),
            ("sha256:bb".to_string(), MediaType::ImageLayerGzip),
        ];
        let f = fetch(None, &layers, &RootFs::default(), &[]);
        let fail = f.iter().find(|f| f.severity == Severity::Fail).unwrap();
        assert!(
            fail.message.contains("layer 1 of 2 (sha256:aa)"),
            "{fail:?}"
        );
        assert!(native(&layers, &RootFs::default())
            .iter()
            .all(|f| f.severity == Severity::Pass));
        let other = vec![(
            "sha256:cc".to_string(),
            MediaType::Other("application/x-thing".into()),
        )];
        assert!(native(&other, &RootFs::default())
            .iter()
            .any(|f| f.severity == Severity::Fail));
    }

    #[test]
    fn a_models_symlink_fails_fetch_and_warns_native() {
        let mut fs = RootFs::default();
        fs.entries.insert(
            "models".into(),
            Node::Symlink {
                target: "data/models".into(),
            },
        );
        let layers = vec![("sha256:bb".to_string(), MediaType::ImageLayerGzip)];
        let f = fetch(None, &layers, &fs, &[]);
        assert!(f
            .iter()
            .any(|f| f.severity == Severity::Fail && f.message.contains("symlink")));
        let n = native(&layers, &fs);
        assert!(n
            .iter()
            .any(|f| f.severity == Severity::Warn && f.message.contains("symlink")));
    }
}
