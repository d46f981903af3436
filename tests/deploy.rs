//! The manifests in deploy/ parse as YAML and use the fields the way Tekton and Kubernetes
//! read them, and the modelcar command each runs is one modelcar accepts.
//!
//! No Kubernetes or Tekton schema is available offline, so the fields used are checked by name
//! here; the commands themselves run through the real binary with a model directory that does
//! not exist, which must end in modelcar's error about it (exit 1), not in a usage error (2).

mod support;

use std::fs;
use std::process::Command;

use serde_yaml::Value;
use support::fixtures::repo_root;

const MODELCAR: &str = env!("CARGO_BIN_EXE_modelcar");

fn load(name: &str) -> Value {
    let path = repo_root().join("deploy").join(name);
    let text = fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for k in path {
        v = match k.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*k],
        };
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string: {v:?}"))
}

/// Run `script` with `sh`, modelcar on PATH, and check it reached modelcar's own error about
/// the missing model directory.
#[track_caller]
fn runs_into_the_missing_model(script: &str, env: &[(&str, &str)]) {
    let bin = support::files::temp();
    std::os::unix::fs::symlink(MODELCAR, bin.path().join("modelcar")).unwrap();
    let store = support::files::temp();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
        .env("MODELCAR_STORE", store.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{script}\n{stderr}");
    assert!(stderr.contains("/workspace/model"), "{script}\n{stderr}");
}

#[test]
fn the_tekton_task_builds_and_pushes_with_credentials_from_its_workspace_and_a_digest_result() {
    let task = load("tekton-task.yaml");
    assert_eq!(s(&task, &["apiVersion"]), "tekton.dev/v1");
    assert_eq!(s(&task, &["kind"]), "Task");
    let spec = &task["spec"];
    let names = |key: &str| -> Vec<String> {
        spec[key]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| s(p, &["name"]).to_string())
            .collect()
    };
    assert_eq!(names("workspaces"), ["source", "registry-auth"]);
    assert_eq!(names("results"), ["IMAGE_DIGEST", "IMAGE_URL"]);
    for p in ["IMAGE", "MODEL_DIR", "BASE", "MODELCAR_IMAGE"] {
        assert!(names("params").contains(&p.to_string()), "param {p}");
    }
    let step = &spec["steps"][0];
    assert_eq!(s(step, &["image"]), "$(params.MODELCAR_IMAGE)");
    assert_eq!(s(step, &["env", "0", "name"]), "REGISTRY_AUTH_FILE");
    let auth = s(step, &["env", "0", "value"]);
    assert!(
        auth.starts_with("$(workspaces.registry-auth.path)/"),
        "{auth}"
    );
    // Every $(...) the script uses names a declared param, workspace or result.
    let script = s(step, &["script"]);
    let results = support::files::temp();
    let digest = results.path().join("IMAGE_DIGEST");
    let url = results.path().join("IMAGE_URL");
    let filled = script
        .replace("$(workspaces.source.path)", "/workspace")
        .replace("$(params.MODEL_DIR)", "model")
        .replace("$(params.IMAGE)", "127.0.0.1:1/me/my-model:v1")
        .replace("$(params.BASE)", "oci:/nonexistent:busybox")
        .replace("$(results.IMAGE_DIGEST.path)", digest.to_str().unwrap())
        .replace("$(results.IMAGE_URL.path)", url.to_str().unwrap());
    assert!(
        !filled.contains("$("),
        "an undeclared substitution is left:\n{filled}"
    );
    assert!(
        filled.contains("--push") && filled.contains("--digestfile"),
        "{filled}"
    );
    runs_into_the_missing_model(&filled, &[("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")]);
}

#[test]
fn the_job_mounts_the_model_and_the_secret_and_writes_the_digest_as_its_termination_message() {
    let job = load("job.yaml");
    assert_eq!(s(&job, &["apiVersion"]), "batch/v1");
    assert_eq!(s(&job, &["kind"]), "Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(s(pod, &["restartPolicy"]), "Never");
    let c = &pod["containers"][0];
    let task = load("tekton-task.yaml");
    let task_image = task["spec"]["params"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| s(p, &["name"]) == "MODELCAR_IMAGE")
        .map(|p| s(p, &["default"]).to_string())
        .unwrap();
    assert_eq!(
        s(c, &["image"]),
        task_image,
        "the Job and the Task run the same image"
    );
    let mounts: Vec<(&str, &str)> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (s(m, &["name"]), s(m, &["mountPath"])))
        .collect();
    let volumes: Vec<&str> = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| s(v, &["name"]))
        .collect();
    for (name, _) in &mounts {
        assert!(
            volumes.contains(name),
            "volume {name} is mounted but not declared"
        );
    }
    let secret = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_mapping())
        .expect("a Secret volume");
    let secret_path = mounts
        .iter()
        .find(|(n, _)| *n == s(secret, &["name"]))
        .unwrap()
        .1;
    assert_eq!(s(c, &["env", "0", "name"]), "REGISTRY_AUTH_FILE");
    assert!(s(c, &["env", "0", "value"]).starts_with(secret_path));
    let command: Vec<&str> = c["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        command.contains(&"--digestfile=/dev/termination-log"),
        "{command:?}"
    );
    let models = command
        .iter()
        .find_map(|a| a.strip_prefix("--models="))
        .unwrap();
    assert!(
        mounts.iter().any(|(_, p)| *p == models),
        "{models} is not a mount"
    );
    // The command as the container runs it (its tag pointed at a closed loopback port).
    let script = command
        .iter()
        .map(|a| {
            if a.starts_with("--tag=") {
                "--tag=127.0.0.1:1/me/my-model:v1".to_string()
            } else if a.starts_with("--digestfile=") {
                "--digestfile=/dev/null".to_string()
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    runs_into_the_missing_model(&script, &[]);
}
