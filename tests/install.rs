//! Shell completions, man pages and `make install`: what a packager or a user installing from
//! source gets.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::fixtures::repo_root;

const MODELCAR: &str = env!("CARGO_BIN_EXE_modelcar");
const SUBCOMMANDS: [&str; 7] = [
    "build", "push", "pull", "verify", "kserve", "export", "inspect",
];

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(MODELCAR)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.len() > 1000, "{shell}: a short script:\n{script}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completions lack `{sub}`");
        }
        assert!(script.contains("tls-verify"), "{shell}: no global option");
    }
    let bad = Command::new(MODELCAR)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_bash_completion_script_loads_in_bash() {
    let dir = support::files::temp();
    let script = dir.path().join("modelcar.bash");
    let out = Command::new(MODELCAR)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    fs::write(&script, out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {} && complete -p modelcar",
            support::cmd::q(&script)
        ))
        .output()
        .unwrap();
    assert!(
        check.status.success() && String::from_utf8_lossy(&check.stdout).contains("modelcar"),
        "{check:?}"
    );
}

#[test]
fn make_install_honours_destdir_and_prefix() {
    let root = support::files::temp();
    let dest = root.path().join("stage");
    // CARGO=true: the binary this test run built stands in for the release build.
    let out = Command::new("make")
        .current_dir(repo_root())
        .args([
            "--no-print-directory",
            "install",
            "PREFIX=/usr",
            "CARGO=true",
        ])
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("MODELCAR={MODELCAR}"))
        .arg(format!(
            "CARGO_TARGET_DIR={}",
            root.path().join("target").display()
        ))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usr = dest.join("usr");
    let bin = usr.join("bin/modelcar");
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("modelcar "));
    let man1 = usr.join("share/man/man1");
    for page in [
        "modelcar.1",
        "modelcar-build.1",
        "modelcar-push.1",
        "modelcar-verify.1",
    ] {
        let text = fs::read_to_string(man1.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    assert!(
        !man1.join("modelcar-man.1").exists(),
        "the hidden man command has no page"
    );
    let build = fs::read_to_string(man1.join("modelcar-build.1")).unwrap();
    assert!(build.contains("models"), "modelcar-build.1 lacks --models");
    for file in [
        "share/bash-completion/completions/modelcar",
        "share/zsh/site-functions/_modelcar",
        "share/fish/vendor_completions.d/modelcar.fish",
    ] {
        let text = fs::read_to_string(usr.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains("verify"), "{file} lacks the subcommands");
    }
    // Nothing outside DESTDIR: the staging root holds only usr/.
    let top: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["usr"]);
}

#[test]
fn each_subcommand_s_help_shows_its_own_options_before_the_global_ones_then_examples() {
    for sub in SUBCOMMANDS {
        let out = Command::new(MODELCAR)
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let own = help
            .find("\nOptions:")
            .unwrap_or_else(|| panic!("{sub}:\n{help}"));
        let global = help
            .find("\nGlobal options:")
            .unwrap_or_else(|| panic!("{sub}:\n{help}"));
        let examples = help
            .find("\nExamples:\n")
            .unwrap_or_else(|| panic!("{sub}:\n{help}"));
        assert!(own < global && global < examples, "{sub}:\n{help}");
        assert!(
            help[global..examples].contains("--registry"),
            "{sub}:\n{help}"
        );
        assert!(
            help[examples..].contains(&format!("modelcar {sub}")),
            "{sub}:\n{help}"
        );
    }
}
