//! Validating the manifests `modelcar kserve` prints as a cluster would: `tests/validate_isvc.py`
//! against KServe's CRDs and runtimes copied into `tests/fixtures/kserve`, strictly (fields the
//! schema does not declare are errors).

use std::process::Command;

use super::cmd::{run, Outcome};
use super::fixtures::repo_root;

/// Run tests/validate_isvc.py on one or more YAML documents.
pub fn validate_kserve(yaml: &str) -> Outcome {
    let script = repo_root().join("tests/validate_isvc.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    let outcome = run(cmd, Some(yaml.as_bytes()));
    assert!(
        !outcome.stderr.contains("ModuleNotFoundError"),
        "install PyYAML and jsonschema (pip install pyyaml jsonschema): {}",
        outcome.stderr
    );
    outcome
}

/// Assert that every document validates: one `ok:` line each.
#[track_caller]
pub fn assert_valid(yaml: &str) {
    let docs = yaml
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .count();
    let v = validate_kserve(yaml);
    assert!(v.status.success(), "{yaml}\n{}", v.stderr);
    assert_eq!(
        v.stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        docs,
        "{}",
        v.stdout
    );
}
