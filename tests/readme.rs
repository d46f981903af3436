//! The README's quickstart is real: its commands, between the `<!-- quickstart` and
//! `<!-- /quickstart -->` markers, run here against a real registry, and their standard output
//! must be what the README shows, digests aside (shown as `sha256:…`).
//!
//! `quay.io/you` stands for the test registry; `build/base` is made by
//! `scripts/offline-base.sh` (what `make offline-base` runs) in the directory the commands run in.

mod support;

use std::fs;
use std::process::Command;

use support::fixtures::{example_model, repo_root};
use support::registries::Registry;

const MODELCAR: &str = env!("CARGO_BIN_EXE_modelcar");

/// The quickstart's commands (`$ ` lines) and the output shown after each.
fn quickstart() -> Vec<(String, Vec<String>)> {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("<!-- quickstart").expect("quickstart marker");
    let end = readme
        .find("<!-- /quickstart -->")
        .expect("quickstart end marker");
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in readme[start..end].lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push((cmd.to_string(), Vec::new()));
        } else if line.starts_with("```") || line.starts_with("<!--") {
            continue;
        } else if let Some((_, out)) = steps.last_mut() {
            out.push(line.to_string());
        }
    }
    steps
}

/// Digests as the README shows them.
fn elide_digests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        let (head, tail) = rest.split_at(i + "sha256:".len());
        out.push_str(head);
        let hex = tail.chars().take_while(char::is_ascii_hexdigit).count();
        if hex == 64 {
            out.push('…');
            rest = &tail[64..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_quickstart_runs_and_prints_what_the_readme_shows() {
    let steps = quickstart();
    assert!(steps.len() >= 4, "{steps:?}");
    let reg = Registry::plain();
    let dir = support::files::temp();
    let work = dir.path();
    let model = work.join("my-model");
    fs::create_dir(&model).unwrap();
    fs::copy(
        example_model("sklearn").join("model.joblib"),
        model.join("model.joblib"),
    )
    .unwrap();
    let base = work.join("build/base");
    let made = Command::new(repo_root().join("scripts/offline-base.sh"))
        .arg(&base)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let bin = work.join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(MODELCAR, bin.join("modelcar")).unwrap();
    let here = format!("{}/you", reg.host());
    let mut mismatches = Vec::new();
    for (cmd, shown) in &steps {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd.replace("quay.io/you", &here))
            .current_dir(work)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", work)
            .env("MODELCAR_STORE", work.join("store"))
            .env("REGISTRY_AUTH_FILE", work.join("auth.json"))
            .env_remove("REGISTRY")
            .env_remove("VERSION")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{cmd}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = elide_digests(&stdout.replace(&here, "quay.io/you"));
        let want = shown.join("\n");
        if got.trim_end() != want.trim_end() {
            mismatches.push(format!("$ {cmd}\n--- README\n{want}\n--- actual\n{got}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
