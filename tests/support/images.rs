//! Reading images with tools nobody here wrote (skopeo, umoci, GNU tar with the system's gzip and
//! zstd), and the files of an OCI layout (a modelcar store is one).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cmd::{q, tool, tool_ok, tool_ok_bytes};
use super::files::read_json;

/// `oci:LAYOUT:REF`, as skopeo spells an image in a layout (or a store).
pub fn oci(layout: &Path, reference: &str) -> String {
    format!("oci:{}:{reference}", layout.display())
}

/// `oci-archive:FILE`.
pub fn oci_archive(file: &Path) -> String {
    format!("oci-archive:{}", file.display())
}

/// `docker-archive:FILE`.
pub fn docker_archive(file: &Path) -> String {
    format!("docker-archive:{}", file.display())
}

/// `skopeo inspect EXTRA... LOCATION` as JSON.
#[track_caller]
pub fn skopeo_inspect(location: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(location);
    serde_json::from_str(&tool_ok("skopeo", &args)).expect("skopeo prints JSON")
}

/// `skopeo inspect --raw LOCATION`: the raw bytes of the top document.
#[track_caller]
pub fn skopeo_raw(location: &str) -> Vec<u8> {
    tool_ok_bytes("skopeo", ["inspect", "--raw", location])
}

/// `skopeo inspect --raw` parsed.
#[track_caller]
pub fn skopeo_raw_json(location: &str) -> Value {
    serde_json::from_slice(&skopeo_raw(location)).expect("a raw manifest is JSON")
}

/// Whether skopeo can inspect a location at all.
pub fn skopeo_can_inspect(location: &str) -> bool {
    tool("skopeo", ["inspect", location]).status.success()
}

/// `skopeo copy --quiet EXTRA... FROM TO`, which must succeed (skopeo checks every blob it
/// copies against its digest).
#[track_caller]
pub fn skopeo_copy(extra: &[&str], from: &str, to: &str) {
    let mut args = vec!["copy", "--quiet"];
    args.extend_from_slice(extra);
    args.extend([from, to]);
    tool_ok("skopeo", &args);
}

/// `umoci unpack` an image of an OCI layout into `bundle` (as root, so ownership is kept).
#[track_caller]
pub fn umoci_unpack(layout: &Path, reference: &str, bundle: &Path) {
    let image = format!("{}:{reference}", layout.display());
    tool_ok_bytes(
        "umoci",
        [
            std::ffi::OsStr::new("unpack"),
            "--image".as_ref(),
            image.as_ref(),
            bundle.as_os_str(),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Layer blobs

/// The path of a blob of an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// The shell command that decompresses a layer of `media_type` with the system's tools.
#[track_caller]
fn decompressor(media_type: &str) -> &'static str {
    if media_type.ends_with("+gzip") {
        "gzip -dc"
    } else if media_type.ends_with("+zstd") {
        "zstd -dcq"
    } else {
        assert!(
            media_type.ends_with(".tar"),
            "unexpected media type {media_type}"
        );
        "cat"
    }
}

/// `tar -tv` of a layer blob, decompressing it according to its media type with the system's
/// gzip or zstd; lines of GNU tar's verbose listing, in UTC.
#[track_caller]
pub fn tar_listing(blob: &Path, media_type: &str) -> Vec<String> {
    let script = format!(
        "set -o pipefail; {} {} | TZ=UTC tar --full-time --numeric-owner -tvf -",
        decompressor(media_type),
        q(blob)
    );
    tool_ok("bash", ["-c", &script])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The content of one member of a layer blob, extracted with GNU tar.
#[track_caller]
pub fn tar_member(blob: &Path, media_type: &str, member: &str) -> Vec<u8> {
    let script = format!(
        "set -o pipefail; {} {} | tar -xOf - {}",
        decompressor(media_type),
        q(blob),
        q(member)
    );
    tool_ok_bytes("bash", ["-c", &script])
}

// ---------------------------------------------------------------------------------------------
// Layouts

/// The names (hex digests) of the blobs of a layout.
pub fn blob_names(layout: &Path) -> BTreeSet<String> {
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap_or_else(|e| panic!("{}: {e}", layout.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The references `index.json` of a layout names.
pub fn index_refs(layout: &Path) -> Vec<String> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}
