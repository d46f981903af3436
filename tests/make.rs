//! The Makefile does what its targets' names say, and `make -n` shows where images go.
//!
//! Only `make -n` and `make help` run here: nothing is compiled, built or removed.

mod support;

use std::process::Command;

use support::fixtures::repo_root;

/// `make ARGS` in the repository with `env` set and REGISTRY, VERSION and BASE_IMAGE unset
/// unless given; returns standard output.
fn make(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("make");
    cmd.current_dir(repo_root())
        .arg("--no-print-directory")
        .args(args);
    for k in ["REGISTRY", "VERSION", "BASE_IMAGE", "MAKEFLAGS", "MFLAGS"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("make runs");
    assert!(
        out.status.success(),
        "make {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn make_n_all_shows_the_registry_and_version_given_on_the_command_line_or_in_the_environment() {
    let given = make(&["-n", "REGISTRY=quay.io/me", "VERSION=v2.0.0", "all"], &[]);
    let from_env = make(
        &["-n", "all"],
        &[("REGISTRY", "quay.io/me"), ("VERSION", "v2.0.0")],
    );
    for out in [&given, &from_env] {
        let modelcar_lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("modelcar build") || l.contains("modelcar push"))
            .collect();
        assert_eq!(modelcar_lines.len(), 4, "{out}");
        for l in modelcar_lines {
            assert!(
                l.contains("--registry quay.io/me --image-version v2.0.0"),
                "{l}"
            );
        }
    }
    let base = make(
        &["-n", "BASE_IMAGE=oci:build/base:busybox", "build-all"],
        &[],
    );
    assert!(base.contains("--base oci:build/base:busybox"), "{base}");
}

#[test]
fn without_variables_make_passes_nothing_so_the_project_file_decides() {
    let out = make(&["-n", "all"], &[]);
    assert!(!out.contains("--registry"), "{out}");
    assert!(!out.contains("--image-version"), "{out}");
    assert!(!out.contains("--base"), "{out}");
}

#[test]
fn the_first_compile_is_announced() {
    let out = make(&["-n", "bin", "MODELCAR=/nonexistent/modelcar"], &[]);
    assert!(out.contains("the first build takes a few minutes"), "{out}");
}

#[test]
fn clean_says_what_it_keeps_and_distclean_removes_build_and_target() {
    let clean = make(&["-n", "clean", "REGISTRY=quay.io/me"], &[]);
    assert!(
        clean.contains("modelcar clean --registry quay.io/me"),
        "{clean}"
    );
    assert!(clean.contains("make distclean deletes them too"), "{clean}");
    let distclean = make(&["-n", "distclean"], &[]);
    assert!(distclean.contains("modelcar clean"), "{distclean}");
    assert!(distclean.contains("rm -rf build target"), "{distclean}");
    let help = make(&["help"], &[]);
    for word in [
        "distclean",
        "clean removes this REGISTRY/VERSION",
        "make -n shows them",
    ] {
        assert!(
            help.contains(word),
            "make help should mention `{word}`:\n{help}"
        );
    }
}
