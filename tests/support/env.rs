//! A hermetic environment for modelcar and skopeo runs that talk to registries: a temporary
//! HOME, XDG_RUNTIME_DIR, auth file, working directory (no modelcar.toml) and store for each
//! test, and no proxy or credential settings inherited from the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::cmd::{run, Modelcar, Outcome, MODELCAR};
use super::files::temp;

/// A private environment for modelcar and skopeo runs.
pub struct Env {
    pub dir: TempDir,
    pub home: PathBuf,
    pub runtime: PathBuf,
    pub auth_file: PathBuf,
    pub store: PathBuf,
    pub cwd: PathBuf,
    policy: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = temp();
        let p = dir.path().to_path_buf();
        let home = p.join("home");
        let runtime = p.join("run");
        let cwd = p.join("work");
        for d in [&home, &runtime, &cwd] {
            std::fs::create_dir_all(d).unwrap();
        }
        let policy = p.join("policy.json");
        std::fs::write(
            &policy,
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        Env {
            auth_file: p.join("auth.json"),
            store: p.join("store"),
            home,
            runtime,
            cwd,
            policy,
            dir,
        }
    }

    /// The same environment with another store (shared fixtures).
    pub fn with_store(mut self, store: &Path) -> Env {
        self.store = store.to_path_buf();
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` in this environment, and nothing of the caller's but PATH.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("TMPDIR", self.dir.path())
            .env("LANG", "C.UTF-8")
            .current_dir(&self.cwd);
        c
    }

    /// A modelcar command line in this environment, with its auth file and store.
    pub fn cmd(&self) -> Modelcar {
        let mut c = self.command(MODELCAR);
        c.env("REGISTRY_AUTH_FILE", &self.auth_file)
            .env("MODELCAR_STORE", &self.store);
        Modelcar::new(c)
    }

    /// Run modelcar.
    pub fn modelcar(&self, args: &[&str]) -> Outcome {
        self.cmd().args(args).run()
    }

    /// Run modelcar with text on standard input.
    pub fn modelcar_stdin(&self, args: &[&str], input: &str) -> Outcome {
        self.cmd().args(args).run_with_input(input)
    }

    /// Build an image from a model directory into this environment's store; returns its digest.
    #[track_caller]
    pub fn build(&self, models: &Path, tag: &str, base: &str, extra: &[&str]) -> String {
        let mut flags = vec!["-q"];
        flags.extend_from_slice(extra);
        self.cmd().build_one(models, tag, base, &flags)
    }

    /// Run skopeo with a permissive policy and no credentials but those passed explicitly.
    pub fn skopeo(&self, args: &[&str]) -> Outcome {
        let mut c = self.command("skopeo");
        c.env("REGISTRY_AUTH_FILE", self.path("skopeo-auth.json"))
            .arg("--policy")
            .arg(&self.policy)
            .args(args);
        run(c, None)
    }

    /// `skopeo copy EXTRA... LOCATION docker://REFERENCE` to a plain-HTTP registry, which must
    /// succeed.
    #[track_caller]
    pub fn skopeo_push(&self, extra: &[&str], location: &str, reference: &str) {
        let dest = format!("docker://{reference}");
        let mut args = vec!["copy"];
        args.extend_from_slice(extra);
        args.extend(["--dest-tls-verify=false", location, &dest]);
        self.skopeo(&args).success();
    }

    /// `skopeo copy EXTRA... docker://REFERENCE LOCATION` from a plain-HTTP registry (skopeo
    /// checks every blob it copies against its digest).
    pub fn skopeo_pull(&self, extra: &[&str], reference: &str, location: &str) -> Outcome {
        let src = format!("docker://{reference}");
        let mut args = vec!["copy"];
        args.extend_from_slice(extra);
        args.extend(["--src-tls-verify=false", &src, location]);
        self.skopeo(&args)
    }

    /// `skopeo inspect --raw` of a plain-HTTP registry reference, parsed.
    #[track_caller]
    pub fn skopeo_raw(&self, reference: &str) -> serde_json::Value {
        let out = self
            .skopeo(&[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ])
            .success();
        serde_json::from_str(&out.stdout).expect("manifest JSON")
    }

    /// The digest skopeo reports for a plain-HTTP registry reference.
    #[track_caller]
    pub fn skopeo_digest(&self, reference: &str) -> String {
        let out = self
            .skopeo(&[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ])
            .success();
        out.json()["Digest"].as_str().expect("Digest").to_string()
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}
