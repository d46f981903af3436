//! modelcar's own image as `make image` composes it (`examples/tool-image.rs`): each binary goes
//! on the base's platform of its architecture, read from its ELF header; one binary gives a
//! manifest, several an index; skopeo and GNU tar read what was written.
//!
//! Only x86_64 binaries are built by the tests (an aarch64 release build is a second full
//! compile), so the arm64 binary here is an ELF header for aarch64 and nothing more: what is
//! checked is where each binary lands, not that it runs. `e2e/image.sh` runs the x86_64 image.
//!
//! The example is built here with the cargo that builds the tests (a few seconds: the library
//! is built already), and the binaries put in images are Debian's static busybox (x86_64) and
//! an ELF header for aarch64.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use support::files::{sha256, temp};
use support::fixtures::bases;
use support::images::{blob_path, oci, skopeo_raw_json, tar_member};

const TAG: &str = "localhost/tools/modelcar:v1";

fn tool_image() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--locked",
                    "--quiet",
                    "--example",
                    "tool-image",
                    "--message-format=json",
                ])
                .current_dir(support::fixtures::repo_root())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cargo build --example tool-image: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|m| m["target"]["name"] == "tool-image")
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .expect("cargo names the example's executable")
        })
        .clone()
}

/// A static x86_64 executable, small enough to compress at once.
fn x86_binary() -> PathBuf {
    std::env::var_os("BUSYBOX")
        .unwrap_or_else(|| "/bin/busybox".into())
        .into()
}

/// Run the example; standard output on success, standard error on failure.
fn compose(store: &Path, base: &str, binaries: &[&Path]) -> Result<String, String> {
    let mut cmd = Command::new(tool_image());
    cmd.args(["--base", base, "--tag", TAG, "--epoch", "1700000000"])
        .arg("--store")
        .arg(store)
        .arg("--ca")
        .arg(support::fixtures::repo_root().join("README.md")); // any file will do as the bundle
    for b in binaries {
        cmd.arg("--binary").arg(b);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An ELF header of a 64-bit little-endian executable for `machine` (183: aarch64).
fn elf_header(path: &Path, machine: u16) {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little endian
    h[6] = 1; // version
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    fs::write(path, h).unwrap();
}

/// `/usr/local/bin/modelcar` of a manifest of `store`, and the manifest's config.
fn binary_of(store: &Path, manifest_digest: &str) -> (Vec<u8>, Value) {
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob_path(store, manifest_digest)).unwrap()).unwrap();
    let last = manifest["layers"].as_array().unwrap().last().unwrap();
    let bytes = tar_member(
        &blob_path(store, last["digest"].as_str().unwrap()),
        last["mediaType"].as_str().unwrap(),
        "usr/local/bin/modelcar",
    );
    let config: Value = serde_json::from_slice(
        &fs::read(blob_path(
            store,
            manifest["config"]["digest"].as_str().unwrap(),
        ))
        .unwrap(),
    )
    .unwrap();
    (bytes, config)
}

#[test]
fn one_binary_gives_a_manifest_and_several_an_index_with_each_binary_on_its_platform() {
    let dir = temp();
    let x86 = &x86_binary();
    let arm = dir.path().join("modelcar-aarch64");
    elf_header(&arm, 183);

    // One binary on the single-platform base: a manifest, the same twice.
    let store = dir.path().join("store");
    let single = compose(&store, &bases().busybox(), &[x86]).unwrap();
    assert_eq!(
        compose(&dir.path().join("store2"), &bases().busybox(), &[x86]).unwrap(),
        single
    );
    let top = skopeo_raw_json(&oci(&store, TAG));
    assert_eq!(
        top["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let digest = single.rsplit_once('@').unwrap().1;
    let (bytes, config) = binary_of(&store, digest);
    assert_eq!(sha256(&bytes), sha256(&fs::read(x86).unwrap()));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["User"], "1001:0");

    // Both on the linux/amd64 + linux/arm64 base: an index, each binary on its platform.
    let multi = compose(&store, &bases().multi(), &[x86, &arm]).unwrap();
    let index = skopeo_raw_json(&oci(&store, TAG));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        format!("{TAG}@{}", sha256(&skopeo_raw_bytes(&store))),
        multi
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    for (m, (arch, source)) in manifests
        .iter()
        .zip([("amd64", x86.as_path()), ("arm64", arm.as_path())])
    {
        assert_eq!(m["platform"]["architecture"], arch, "{index}");
        assert_eq!(m["platform"]["os"], "linux");
        let (bytes, config) = binary_of(&store, m["digest"].as_str().unwrap());
        assert_eq!(sha256(&bytes), sha256(&fs::read(source).unwrap()), "{arch}");
        assert_eq!(config["architecture"], arch);
    }
    // The order of the binaries given does not matter.
    assert_eq!(
        compose(&dir.path().join("store3"), &bases().multi(), &[&arm, x86]).unwrap(),
        multi
    );
}

fn skopeo_raw_bytes(store: &Path) -> Vec<u8> {
    support::images::skopeo_raw(&oci(store, TAG))
}

#[test]
fn a_binary_the_base_has_no_platform_for_or_that_is_no_executable_is_refused() {
    let dir = temp();
    let store = dir.path().join("store");
    let arm = dir.path().join("modelcar-aarch64");
    elf_header(&arm, 183);
    let said = compose(&store, &bases().busybox(), &[&arm]).unwrap_err();
    assert!(
        said.contains("is a linux/arm64 binary")
            && said.contains("has no linux/arm64 platform (it has linux/amd64)"),
        "{said}"
    );
    let text = dir.path().join("notes.txt");
    fs::write(&text, "not a binary, but long enough to have a header\n").unwrap();
    let said = compose(&store, &bases().busybox(), &[&text]).unwrap_err();
    assert!(said.contains("is not an ELF executable"), "{said}");
    let sparc = dir.path().join("modelcar-sparc");
    elf_header(&sparc, 43);
    let said = compose(&store, &bases().busybox(), &[&sparc]).unwrap_err();
    assert!(said.contains("machine 43"), "{said}");
    let x86 = &x86_binary();
    let said = compose(&store, &bases().multi(), &[x86, x86]).unwrap_err();
    assert!(said.contains("two binaries for linux/amd64"), "{said}");
    assert!(
        !store.join("index.json").exists() || support::images::index_refs(&store).is_empty(),
        "a refused image was tagged"
    );
}
