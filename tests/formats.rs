//! Model format checks on whole directories: what they read, and what `build` does with them.
//!
//! Model files are generated here (safetensors headers are an 8-byte length, JSON, then data);
//! large weights are sparse files, so a "many GB" model costs no disk.

mod support;

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};

use modelcar::formats::{self, ModelFiles, Severity};
use modelcar::model::ModelTree;
use support::cmd::*;
use support::files::*;
use support::fixtures::*;

/// A safetensors header (length + JSON) whose tensors tile `data` bytes.
fn safetensors_header(tensors: &[(&str, &str, Vec<u64>, u64)]) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    let mut at = 0;
    for (name, dtype, shape, bytes) in tensors {
        obj.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + bytes]}),
        );
        at += bytes;
    }
    let json = serde_json::to_vec(&obj).unwrap();
    [(json.len() as u64).to_le_bytes().to_vec(), json].concat()
}

/// Write a shard whose data is `gib` GiB of holes: one BF16 tensor per GiB.
fn sparse_shard(path: &Path, prefix: &str, gib: u64) -> Vec<String> {
    let names: Vec<String> = (0..gib)
        .map(|i| format!("{prefix}.layer{i}.weight"))
        .collect();
    let tensors: Vec<(&str, &str, Vec<u64>, u64)> = names
        .iter()
        .map(|n| (n.as_str(), "BF16", vec![1 << 15, 1 << 14], 1 << 30))
        .collect();
    let header = safetensors_header(&tensors);
    let f = fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &f, &header).unwrap();
    f.set_len(header.len() as u64 + (gib << 30)).unwrap();
    names
}

/// A Llama-style directory: config, tokenizer, `shards` shards of `gib` GiB each, an index.
fn llm_dir(dir: &Path, shards: u64, gib: u64) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("config.json"),
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096}"#,
    )
    .unwrap();
    fs::write(
        dir.join("tokenizer.json"),
        r#"{"version":"1.0","model":{"type":"BPE"}}"#,
    )
    .unwrap();
    let mut map = serde_json::Map::new();
    for i in 1..=shards {
        let name = format!("model-{i:05}-of-{shards:05}.safetensors");
        for t in sparse_shard(&dir.join(&name), &format!("s{i}"), gib) {
            map.insert(t, name.clone().into());
        }
    }
    fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec(&serde_json::json!({"metadata": {}, "weight_map": map})).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// A model directory that counts the bytes the checks read through it.
struct Counting {
    tree: ModelTree,
    read: Cell<u64>,
}

impl ModelFiles for Counting {
    fn files(&self) -> Vec<(String, u64)> {
        ModelFiles::files(&self.tree)
    }
    fn read_at(&self, rel: &str, offset: u64, n: u64) -> modelcar::error::Result<Vec<u8>> {
        let b = self.tree.read_at(rel, offset, n)?;
        self.read.set(self.read.get() + b.len() as u64);
        Ok(b)
    }
}

/// Bytes this process has read through system calls (`rchar` of /proc/self/io).
fn rchar() -> u64 {
    let io = fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn checking_a_32_gib_model_reads_a_few_kilobytes() {
    let dir = temp();
    let models = llm_dir(&dir.path().join("llm"), 4, 8);
    let tree = ModelTree::scan(&models).unwrap();
    assert_eq!(tree.total_size() >> 30, 32, "four sparse shards of 8 GiB");
    let counting = Counting {
        tree,
        read: Cell::new(0),
    };
    let before = rchar();
    let report = formats::check(&counting, None, false).unwrap();
    let syscalls = rchar() - before;
    let fails: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .collect();
    assert!(fails.is_empty(), "{fails:?}");
    assert_eq!(report.format.as_deref(), Some("huggingface"));
    assert!(
        report.findings.iter().any(|f| f
            .message
            .contains(&format!("{} bytes of tensor data", 32u64 << 30))),
        "{:?}",
        report.findings
    );
    let through_checks = counting.read.get();
    eprintln!("format check of 32 GiB: {through_checks} bytes through the checks, {syscalls} bytes by read(2)");
    // Every header was read (each is a few hundred bytes), and nothing near the data.
    assert!(through_checks > 4 * 8 * 50, "{through_checks}");
    assert!(through_checks < 64 << 10, "{through_checks} bytes read");
    // The process as a whole (the test's own reads of /proc included) stays as small.
    assert!(syscalls < 64 << 10, "{syscalls} bytes read by the process");
}

/// A store, a busybox base, and a build of `models` that must fail naming `words`.
fn build_fails(models: &Path, words: &[&str]) {
    let dir = temp();
    let store = dir.path().join("store");
    modelcar(&store)
        .build(models, "quay.io/test/llm:v1", &bases().busybox())
        .run()
        .failure()
        .stderr_has(words);
    assert!(
        !store.join("index.json").exists()
            || !fs::read_to_string(store.join("index.json"))
                .unwrap()
                .contains("quay.io/test/llm"),
        "no image may be left behind"
    );
}

#[test]
fn broken_llm_directories_fail_the_build_naming_the_file() {
    let dir = temp();
    // A shard missing.
    let missing = llm_dir(&dir.path().join("missing"), 2, 1);
    fs::remove_file(missing.join("model-00002-of-00002.safetensors")).unwrap();
    build_fails(
        &missing,
        &["model-00002-of-00002.safetensors", "not in the directory"],
    );
    // The index names a tensor no shard holds.
    let ghost = llm_dir(&dir.path().join("ghost"), 2, 1);
    let index = ghost.join("model.safetensors.index.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    v["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors".into();
    fs::write(&index, serde_json::to_vec(&v).unwrap()).unwrap();
    build_fails(
        &ghost,
        &["lm_head.weight", "model-00001-of-00002.safetensors"],
    );
    // A shard cut short.
    let cut = llm_dir(&dir.path().join("cut"), 2, 1);
    let shard = cut.join("model-00001-of-00002.safetensors");
    let len = fs::metadata(&shard).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    build_fails(&cut, &["model-00001-of-00002.safetensors", "truncated"]);
}

#[test]
fn an_llm_directory_builds_and_says_what_was_detected() {
    let dir = temp();
    let models = llm_dir(&dir.path().join("llm"), 2, 0);
    // Zero-GiB shards hold no tensors; give each one small real tensor instead.
    for i in 1..=2 {
        let name = format!("model-{i:05}-of-00002.safetensors");
        let header = safetensors_header(&[(&format!("t{i}"), "F32", vec![2, 2], 16)]);
        fs::write(models.join(&name), [header, vec![0u8; 16]].concat()).unwrap();
    }
    fs::write(
        models.join("model.safetensors.index.json"),
        r#"{"weight_map":{"t1":"model-00001-of-00002.safetensors","t2":"model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = modelcar(&store)
        .build(&models, "quay.io/test/llm:v1", &bases().busybox())
        .run()
        .success();
    out.stderr_has(&["detected model format huggingface", "LlamaForCausalLM"]);
    // verify reads the same headers back out of the image's layers.
    let (ok, report) = verify_json(&store, "quay.io/test/llm:v1", "all");
    assert!(ok, "{report}");
    let messages: Vec<&str> = report["platforms"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("2 safetensors files, 2 tensors, 32 bytes")),
        "{messages:?}"
    );
    // The build recorded the detected format, so verify checks it as declared.
    assert!(
        messages.iter().all(|m| !m.contains("detected format")),
        "{messages:?}"
    );
    // An unknown format is refused with the known ones listed.
    modelcar(&store)
        .build(&models, "quay.io/test/llm:v2", &bases().busybox())
        .args(["--format", "bogus"])
        .run()
        .failure()
        .stderr_has(&["bogus", "huggingface", "sklearn", "--custom-format"]);
}

/// `modelcar verify IMAGE --json --mode MODE` on the store: the exit status and the report.
fn verify_json(store: &Path, image: &str, mode: &str) -> (bool, serde_json::Value) {
    let out = modelcar(store)
        .args(["verify", image, "--json", "--mode", mode])
        .run();
    let ok = out.status.success();
    (ok, serde_json::from_str(&out.stdout).unwrap())
}

/// Each mode's worst severity and its failed checks' messages, from a report.
fn mode_verdicts(report: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    report["platforms"][0]["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let findings = m["findings"].as_array().unwrap();
            let fails: Vec<String> = findings
                .iter()
                .filter(|f| f["severity"] == "fail")
                .map(|f| f["message"].as_str().unwrap().to_string())
                .collect();
            let worst = if !fails.is_empty() {
                "fail"
            } else if findings.iter().any(|f| f["severity"] == "warn") {
                "warn"
            } else {
                "pass"
            };
            (
                m["mode"].as_str().unwrap().to_string(),
                worst.to_string(),
                fails,
            )
        })
        .collect()
}

#[test]
fn verify_reports_each_mode_and_zstd_fails_only_fetch() {
    let dir = temp();
    let store = dir.path().join("store");
    let models = example_model("sklearn");
    let out = modelcar(&store)
        .build(&models, "quay.io/test/zstd:v1", &bases().busybox())
        .args(["--compression", "zstd"])
        .run()
        .success();
    out.stderr_has(&["oci+fetch://", "zstd"]);
    let (ok, report) = verify_json(&store, "quay.io/test/zstd:v1", "all");
    assert!(!ok, "a zstd image fails verify in its default (all modes)");
    let verdicts = mode_verdicts(&report);
    let names: Vec<&str> = verdicts.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(names, ["sidecar", "native", "fetch"]);
    assert_eq!(verdicts[0].1, "pass", "{verdicts:?}");
    assert_eq!(verdicts[1].1, "pass", "{verdicts:?}");
    assert_eq!(verdicts[2].1, "fail", "{verdicts:?}");
    assert!(
        verdicts[2].2.iter().any(|m| m.contains("zstd")),
        "{verdicts:?}"
    );
    // One mode at a time: native passes, fetch fails.
    let (ok, report) = verify_json(&store, "quay.io/test/zstd:v1", "native");
    assert!(ok);
    assert_eq!(mode_verdicts(&report).len(), 1);
    assert!(!verify_json(&store, "quay.io/test/zstd:v1", "fetch").0);
    // The same model with gzip passes every mode.
    modelcar(&store)
        .build(&models, "quay.io/test/gzip:v1", &bases().busybox())
        .args(["--compression", "gzip"])
        .run()
        .success();
    let (ok, report) = verify_json(&store, "quay.io/test/gzip:v1", "all");
    assert!(ok, "{report}");
    assert!(
        mode_verdicts(&report).iter().all(|v| v.1 == "pass"),
        "{report}"
    );
    // A mode that does not exist is refused naming the known ones.
    modelcar(&store)
        .args(["verify", "quay.io/test/gzip:v1", "--mode", "bogus"])
        .run()
        .failure()
        .stderr_has(&["bogus", "sidecar", "native", "fetch"]);
}

#[test]
fn a_base_without_a_shell_fails_the_sidecar_mode_only() {
    let dir = temp();
    let store = dir.path().join("store");
    modelcar(&store)
        .build(
            &example_model("sklearn"),
            "quay.io/test/noshell:v1",
            &bases().oci("noshell"),
        )
        .args(["--no-base-check", "--compression", "gzip"])
        .run()
        .success();
    let (ok, report) = verify_json(&store, "quay.io/test/noshell:v1", "all");
    assert!(!ok);
    let verdicts = mode_verdicts(&report);
    assert_eq!(verdicts[0].1, "fail", "{verdicts:?}");
    assert!(
        verdicts[0].2.iter().any(|m| m.contains("sh")),
        "{verdicts:?}"
    );
    assert_ne!(verdicts[1].1, "fail", "{verdicts:?}");
    assert_ne!(verdicts[2].1, "fail", "{verdicts:?}");
    assert!(verify_json(&store, "quay.io/test/noshell:v1", "native").0);
}

/// Run `umoci` with these arguments; it must succeed.
fn umoci(args: &[&str]) {
    let out = std::process::Command::new("umoci")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fetch_warns_when_a_layer_deletes_model_files() {
    // umoci writes a whiteout for a file deleted between two repacks, as any engine does.
    let dir = temp();
    let layout = dir.path().join("layout");
    let bundle = dir.path().join("bundle");
    let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    let image = format!("{l}:w");
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, b]);
    let models = bundle.join("rootfs/models");
    fs::create_dir_all(&models).unwrap();
    fs::write(models.join("model.joblib"), b"\x80\x04\x95 a pickle").unwrap();
    fs::write(models.join("old.pkl"), b"\x80\x04\x95 an old one").unwrap();
    umoci(&["repack", "--refresh-bundle", "--image", &image, b]);
    fs::remove_file(models.join("old.pkl")).unwrap();
    umoci(&["repack", "--image", &image, b]);
    let store = dir.path().join("store");
    let (ok, report) = verify_json(&store, &format!("oci:{image}"), "fetch");
    assert!(ok, "a warning, not a failure: {report}");
    let fetch = &report["platforms"][0]["modes"][0];
    assert_eq!(fetch["mode"], "fetch");
    let warning = fetch["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "whiteouts")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(warning["severity"], "warn");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("/models/.wh.old.pkl"),
        "{warning}"
    );
}
