//! The fault suite: commands killed with SIGKILL at many points, and disks that fill up.
//!
//! Crash consistency: `build`, `push`, `build --push`, `pull` and `export` are killed at
//! pseudo-random moments (seeded: `FAULTS_SEED=N` repeats a run; the seed is printed) and once
//! while a temporary file of theirs is on disk. After every kill the store passes a full check
//! (index.json parses, every blob hashes to its name, every reference resolves, skopeo reads
//! each image); then the command is run again, must succeed with the image it would have made
//! anyway, must send or fetch only what is missing (counted through the fault proxy in front of
//! a real registry), and must leave no temporary file behind, the killed runs' included.
//!
//! Full disk: a small tmpfs as the store and as the export destination (root only; without root
//! these tests say they were skipped). Each failure is a clean error naming the path (for
//! `build` and `export` also saying the disk is full, with a hint), with a valid store and
//! nothing half-written left.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::cmd::{modelcar, q, sh, tool, Modelcar};
use support::files::{read_json, sha256, temp, walk, write_random};
use support::fixtures::{bases, sklearn_models};
use support::images::{blob_path, oci, oci_archive, skopeo_inspect};
use support::proxy::{Fault, FaultProxy, Rule};
use support::registries::Registry;

const MIB: u64 = 1 << 20;
/// Size of the random (incompressible) weights file: enough for every command to take a while
/// worth interrupting, small enough for the suite to stay within seconds.
const WEIGHTS: u64 = 24 * MIB;
/// Kills at random moments per command.
const RANDOM_KILLS: usize = 4;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/// xorshift64*: the same kill points for the same seed.
struct Rng(u64);

impl Rng {
    /// Seeded from `FAULTS_SEED` when set, else a fixed seed (printed either way), mixed with
    /// the test's name so that tests do not share kill points.
    fn new(test: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_f417);
        eprintln!("{test}: seed {seed} (FAULTS_SEED={seed} repeats these kill points)");
        Rng(seed
            ^ u64::from_le_bytes(
                sha256(test.as_bytes()).as_bytes()[7..15]
                    .try_into()
                    .unwrap(),
            )
            | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A delay between 0 and `max`.
    fn delay(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % ms)
    }
}

// ---------------------------------------------------------------------------------------------
// Killing

/// When to kill a command.
enum Kill<'a> {
    /// After this long.
    After(Duration),
    /// As soon as this holds (polled every millisecond).
    When(&'a dyn Fn() -> bool),
}

/// Run `cmd` and kill it with SIGKILL at `when`; whether it was killed (false: it ended first,
/// successfully).
fn run_killed(cmd: Modelcar, when: Kill) -> bool {
    let (mut child, line) = cmd.spawn();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "`{line}` failed before it could be killed ({status}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return false;
        }
        let now = match &when {
            Kill::After(d) => started.elapsed() >= *d,
            Kill::When(ready) => ready(),
        };
        if now {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            // It may have ended on its own between the check and the kill.
            return status.signal() == Some(9);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "`{line}` neither ended nor reached its kill point"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long `cmd` takes; it must succeed. Its standard output.
fn timed(cmd: Modelcar) -> (Duration, String) {
    let started = Instant::now();
    let out = cmd.run().success();
    (started.elapsed(), out.stdout)
}

/// Kill `cmd()` [`RANDOM_KILLS`] times at seeded random moments within `window`, checking the
/// store after each; how many runs were killed (the others finished first).
fn kill_at_random(
    rng: &mut Rng,
    window: Duration,
    store: &Path,
    cmd: &dyn Fn() -> Modelcar,
) -> usize {
    let mut killed = 0;
    for _ in 0..RANDOM_KILLS {
        let delay = rng.delay(window);
        killed += usize::from(run_killed(cmd(), Kill::After(delay)));
        assert_store_consistent(store);
    }
    killed
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Temporary files under a store: anything in `.modelcar/tmp`, and any `*.modelcar-tmp`.
fn store_temporaries(store: &Path) -> Vec<PathBuf> {
    let tmp = store.join(".modelcar/tmp");
    let mut found = Vec::new();
    walk(store, &mut |path, meta| {
        let hidden_temp = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".modelcar-tmp"));
        if meta.is_file() && (path.starts_with(&tmp) || hidden_temp) {
            found.push(path.to_path_buf());
        }
        true
    });
    found
}

/// Temporary files of exports in `dir` (not below; none when `dir` does not exist).
fn export_temporaries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".modelcar-tmp"))
        })
        .collect()
}

/// Whether `dir` holds a file of at least one byte.
fn has_partial_file(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() > 0))
}

/// A document blob of a layout, checked against its descriptor's digest and size.
#[track_caller]
fn document(layout: &Path, desc: &Value) -> Value {
    let digest = desc["digest"].as_str().unwrap();
    let bytes = fs::read(blob_path(layout, digest))
        .unwrap_or_else(|e| panic!("{digest} is named but cannot be read: {e}"));
    assert_eq!(sha256(&bytes), digest, "{digest} does not match its name");
    assert_eq!(
        Some(bytes.len() as u64),
        desc["size"].as_u64(),
        "{digest}: size"
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// The full consistency check of a store: `index.json` parses; every blob hashes to its name;
/// every reference resolves to documents and blobs that are all there with their sizes; skopeo
/// reads every image.
#[track_caller]
fn assert_store_consistent(store: &Path) {
    if !store.join("index.json").exists() {
        // Killed before the store was created: there is nothing to be inconsistent.
        assert!(
            !store.join("blobs/sha256").exists()
                || fs::read_dir(store.join("blobs/sha256"))
                    .unwrap()
                    .next()
                    .is_none(),
            "blobs without an index.json in {}",
            store.display()
        );
        return;
    }
    let index = read_json(&store.join("index.json"));
    let hashed = sh(&format!(
        "cd {} && find . -type f -print0 | xargs -0 -r sha256sum",
        q(store.join("blobs/sha256"))
    ));
    for line in hashed.lines() {
        let (hash, name) = line.split_once("  ").unwrap();
        assert_eq!(
            format!("./{hash}"),
            name,
            "blob {name} does not hash to its name"
        );
    }
    for entry in index["manifests"].as_array().expect("manifests") {
        let mut pending = vec![entry.clone()];
        while let Some(desc) = pending.pop() {
            let doc = document(store, &desc);
            if let Some(children) = doc["manifests"].as_array() {
                pending.extend(children.iter().cloned());
                continue;
            }
            for blob in std::iter::once(&doc["config"]).chain(doc["layers"].as_array().unwrap()) {
                let digest = blob["digest"].as_str().unwrap();
                let len = fs::metadata(blob_path(store, digest))
                    .unwrap_or_else(|e| panic!("{digest} is referenced but missing: {e}"))
                    .len();
                assert_eq!(Some(len), blob["size"].as_u64(), "{digest}: size");
            }
        }
        let Some(name) = entry["annotations"]["org.opencontainers.image.ref.name"].as_str() else {
            // Untagged entries are what refers to an image (its bill of materials).
            assert!(
                entry["artifactType"].is_string(),
                "every store entry is named or a referrer: {entry}"
            );
            continue;
        };
        assert_eq!(
            skopeo_inspect(&oci(store, name), &[])["Digest"],
            entry["digest"],
            "skopeo reads {name}"
        );
    }
}

/// The digest of the one tagged image of a store (its other entries are referrers).
fn tagged_digest(store: &Path) -> serde_json::Value {
    let index = read_json(&store.join("index.json"));
    let tagged: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"].is_string())
        .collect();
    assert_eq!(tagged.len(), 1, "one tagged image in {index}");
    tagged[0]["digest"].clone()
}

/// Assert that nothing temporary is left in a store.
#[track_caller]
fn assert_no_temporaries(store: &Path) {
    let left = store_temporaries(store);
    assert!(left.is_empty(), "temporary files survived: {left:?}");
}

/// The config and layers of the one manifest `digest` names in a layout: (digest, size).
fn image_blobs(layout: &Path, digest: &str) -> Vec<(String, u64)> {
    let m = read_json(&blob_path(layout, digest));
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_string(),
                d["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Digests the registry received whole during the records of `proxy` (final PUT of an upload).
fn uploaded_blobs(proxy: &FaultProxy) -> BTreeSet<String> {
    proxy
        .records()
        .iter()
        .filter(|r| {
            r.method == "PUT" && r.target.contains("/blobs/uploads/") && r.status == Some(201)
        })
        .filter_map(|r| r.query("digest"))
        .collect()
}

/// Blob digests fetched through `proxy`.
fn fetched_blobs(proxy: &FaultProxy) -> BTreeSet<String> {
    proxy
        .records()
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/sha256:"))
        .filter_map(|r| r.target.rsplit('/').next().map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The sklearn example with [`WEIGHTS`] of random bytes beside it.
fn big_model(dir: &Path) -> PathBuf {
    let models = sklearn_models(&dir.join("model"));
    write_random(&models.join("weights.bin"), WEIGHTS, 0xfa17);
    models
}

/// `build` of `models` as `tag` on the busybox base, into `store`.
fn build_cmd(store: &Path, models: &Path, tag: &str) -> Modelcar {
    modelcar(store)
        .build(models, tag, &bases().busybox())
        .args(["--format", "sklearn", "-q"])
}

fn plain_registry() -> (Registry, FaultProxy) {
    let reg = Registry::plain();
    let proxy = FaultProxy::start(reg.addr());
    (reg, proxy)
}

// ---------------------------------------------------------------------------------------------
// Crash consistency

#[test]
fn a_build_killed_anywhere_leaves_a_valid_store_and_the_rerun_reclaims_its_temporary_files() {
    let mut rng = Rng::new("build");
    let dir = temp();
    let models = big_model(dir.path());
    let tag = "localhost/faults/build:v1";
    let (window, out) = timed(build_cmd(&dir.path().join("reference"), &models, tag));
    let want = out.trim().to_string();

    let store = dir.path().join("store");
    let build = || build_cmd(&store, &models, tag);
    let mut killed = kill_at_random(&mut rng, window, &store, &build);
    // Once more while a temporary blob is being written, so that one is surely left behind (from
    // scratch: a build that finished above leaves nothing to write).
    modelcar(&store)
        .args(["clean", "-q", "--all"])
        .run()
        .success();
    let tmp = store.join(".modelcar/tmp");
    killed += usize::from(run_killed(build(), Kill::When(&|| has_partial_file(&tmp))));
    assert!(killed > 0, "no build was killed; the test proves nothing");
    assert_store_consistent(&store);
    let leftovers = store_temporaries(&store);
    assert!(
        !leftovers.is_empty(),
        "a killed build left no temporary file to reclaim"
    );

    let (_, out) = timed(build());
    assert_eq!(out.trim(), want, "the rerun builds the same image");
    assert_store_consistent(&store);
    assert_no_temporaries(&store);
}

#[test]
fn commands_run_while_a_build_writes_never_remove_its_temporary_files() {
    let dir = temp();
    let models = big_model(dir.path());
    let tag = "localhost/faults/live:v1";
    let want = build_cmd(&dir.path().join("reference"), &models, tag)
        .run()
        .success()
        .stdout;
    let store = dir.path().join("store");
    let tmp = store.join(".modelcar/tmp");
    let (mut child, line) = build_cmd(&store, &models, tag).spawn();
    let pid = child.id().to_string();
    // Whenever a new temporary blob appears, stop the build (its files stay open and locked, as
    // a running build's are), run a command that opens the store and reclaims what is stale,
    // and let the build go on. (Blobs only: the store's creation holds its lock exclusively,
    // and a command opening the store then waits for the build.)
    let mut seen = BTreeSet::new();
    while child.try_wait().unwrap().is_none() {
        let new: Vec<PathBuf> = fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("blob-"))
            })
            .filter(|p| !seen.contains(p))
            .collect();
        if !new.is_empty() {
            assert!(tool("kill", ["-STOP", &pid]).status.success());
            let (mut other, other_line) = modelcar(&store).args(["images", "--json"]).spawn();
            let started = Instant::now();
            while other.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(tool("kill", ["-CONT", &pid]).status.success());
            support::cmd::wait(other, other_line).success();
            seen.extend(new);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = support::cmd::wait(child, line).success();
    assert!(!seen.is_empty(), "no command ran while the build wrote");
    assert_eq!(out.stdout, want, "the build made its image whole");
    assert_store_consistent(&store);
    assert_no_temporaries(&store);
}

#[test]
fn a_pull_killed_anywhere_leaves_a_valid_store_and_the_rerun_fetches_only_what_is_missing() {
    let mut rng = Rng::new("pull");
    let dir = temp();
    let models = big_model(dir.path());
    let source = dir.path().join("source");
    build_cmd(&source, &models, "localhost/faults/pull:v1")
        .run()
        .success();
    let (_reg, proxy) = plain_registry();
    let remote = format!("{}/faults/pull:v1", proxy.host());
    modelcar(&source)
        .args(["push", "-q", "localhost/faults/pull:v1", &remote])
        .run()
        .success();
    let pull = |store: &Path| modelcar(store).args(["pull", "-q", &remote]);
    let (window, out) = timed(pull(&dir.path().join("reference")));
    let digest = out.trim().rsplit('@').next().unwrap().to_string();

    let store = dir.path().join("store");
    let mut killed = kill_at_random(&mut rng, window, &store, &|| pull(&store));
    // From scratch: a pull that finished above leaves nothing to fetch.
    modelcar(&store)
        .args(["clean", "-q", "--all"])
        .run()
        .success();
    let tmp = store.join(".modelcar/tmp");
    killed += usize::from(run_killed(
        pull(&store),
        Kill::When(&|| has_partial_file(&tmp)),
    ));
    assert!(killed > 0, "no pull was killed; the test proves nothing");
    assert_store_consistent(&store);
    assert!(
        !store_temporaries(&store).is_empty(),
        "a killed pull left no temporary file to reclaim"
    );

    assert!(
        proxy.wait_idle(Duration::from_secs(30)),
        "the proxy is still busy with the killed pull"
    );
    let missing: BTreeSet<String> = image_blobs(&source, &digest)
        .into_iter()
        .filter(|(d, size)| fs::metadata(blob_path(&store, d)).map(|m| m.len()).ok() != Some(*size))
        .map(|(d, _)| d)
        .collect();
    proxy.clear_records();
    let out = pull(&store).run().success();
    assert!(out.stdout.trim().ends_with(&digest), "{}", out.stdout);
    assert_eq!(
        fetched_blobs(&proxy),
        missing,
        "fetched:\n{}",
        proxy.summary()
    );
    assert_store_consistent(&store);
    assert_no_temporaries(&store);
}

/// An image's digest and its config and layers (digest, size).
type Expected = (String, Vec<(String, u64)>);

/// Whether a request carrying blob bytes has reached the proxy since its records were cleared.
fn sending(proxy: &FaultProxy) -> bool {
    proxy
        .records()
        .iter()
        .any(|r| r.is_upload_data() && r.received > 0)
}

/// Kill pushes to a fresh registry (by `kill`, given the proxy in front of it and a command
/// pushing through it), then rerun: the rerun must upload exactly the blobs of the `expected`
/// image (digest and blobs, for the destination reference) that the registry did not have
/// whole, and the image must then be complete there. How many runs were killed.
fn kill_then_complete_push(
    expected: &dyn Fn(&str) -> Expected,
    require_missing: bool,
    kill: &dyn Fn(&FaultProxy, &dyn Fn() -> Modelcar) -> usize,
    push: &dyn Fn(&str) -> Modelcar,
) -> usize {
    let (reg, proxy) = plain_registry();
    let remote = format!("{}/faults/pushed:v1", proxy.host());
    let (digest, blobs) = expected(&remote);
    let killed = kill(&proxy, &|| push(&remote));
    assert!(
        proxy.wait_idle(Duration::from_secs(30)),
        "the registry is still busy with the killed push"
    );
    // One repository, so a blob the registry holds whole is one this repository has.
    let missing: BTreeSet<String> = blobs
        .iter()
        .filter(|(d, _)| !reg.blob_data(d).exists())
        .map(|(d, _)| d.clone())
        .collect();
    assert!(
        !require_missing || !missing.is_empty(),
        "the killed push left nothing to send; the test proves nothing"
    );
    proxy.clear_records();
    push(&remote).run().success();
    // Of the image's blobs, exactly those missing are sent. Beside them, the image's bill of
    // materials (its blob and an empty config) goes as a referrer when the registry lacks it.
    let image: BTreeSet<&String> = blobs.iter().map(|(d, _)| d).collect();
    let (sent, others): (BTreeSet<String>, BTreeSet<String>) = uploaded_blobs(&proxy)
        .into_iter()
        .partition(|d| image.contains(d));
    assert_eq!(
        sent,
        missing,
        "the rerun sends what is missing and nothing else; requests:\n{}",
        proxy.summary()
    );
    assert!(
        others.len() <= 2,
        "the rerun sends more than the image and its BOM: {others:?}\n{}",
        proxy.summary()
    );
    assert_registry_digest(&reg, "faults/pushed:v1", &digest);
    killed
}

/// skopeo finds `reference` (a repository and tag) in `reg` with this digest.
#[track_caller]
fn assert_registry_digest(reg: &Registry, reference: &str, digest: &str) {
    let got = tool(
        "skopeo",
        [
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/{reference}", reg.host()),
        ],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let got: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(got["Digest"], digest);
}

/// Kill `push` (whose image is `expected`) at seeded random moments within `window`, then in the
/// middle of sending a blob, which the rerun must send again; each time a rerun must complete
/// the push. The store `push` uses stays consistent throughout and keeps no temporaries; `what`
/// names the command when none was killed at all (then the test proves nothing).
fn kill_pushes_anywhere_then_mid_blob(
    mut rng: Rng,
    window: Duration,
    store: &Path,
    expected: &dyn Fn(&str) -> Expected,
    push: &dyn Fn(&str) -> Modelcar,
    what: &str,
) {
    let seed = rng.next() | 1;
    let random = kill_then_complete_push(
        expected,
        false,
        &|_, cmd| kill_at_random(&mut Rng(seed), window, store, cmd),
        push,
    );
    assert_store_consistent(store);
    let targeted = kill_then_complete_push(
        expected,
        true,
        &|proxy, cmd| usize::from(run_killed(cmd(), Kill::When(&|| sending(proxy)))),
        push,
    );
    assert!(
        random + targeted > 0,
        "no {what} was killed; the test proves nothing"
    );
    assert_store_consistent(store);
    assert_no_temporaries(store);
}

#[test]
fn a_push_killed_anywhere_is_completed_by_a_rerun_that_sends_only_what_is_missing() {
    let rng = Rng::new("push");
    let dir = temp();
    let models = big_model(dir.path());
    let store = dir.path().join("store");
    let local = "localhost/faults/push:v1";
    let out = build_cmd(&store, &models, local).run().success();
    let digest = out.stdout.trim().rsplit('@').next().unwrap().to_string();
    let blobs = image_blobs(&store, &digest);
    let push = |remote: &str| modelcar(&store).args(["push", "-q", local, remote]);
    let (window, _) = {
        let (_reg, proxy) = plain_registry();
        timed(push(&format!("{}/faults/timed:v1", proxy.host())))
    };

    let expected = |_: &str| (digest.clone(), blobs.clone());
    kill_pushes_anywhere_then_mid_blob(rng, window, &store, &expected, &push, "push");
}

#[test]
fn a_build_with_push_killed_anywhere_is_completed_by_a_rerun_that_sends_only_what_is_missing() {
    let rng = Rng::new("build --push");
    let dir = temp();
    let models = big_model(dir.path());
    let reference_store = dir.path().join("reference");
    let (window, _) = timed(build_cmd(
        &reference_store,
        &models,
        "localhost/faults/bp:v1",
    ));
    // What a plain build makes for the destination's reference (which the config names).
    let expected = |remote: &str| {
        let out = build_cmd(&reference_store, &models, remote).run().success();
        let digest = out.stdout.trim().rsplit('@').next().unwrap().to_string();
        let blobs = image_blobs(&reference_store, &digest);
        (digest, blobs)
    };
    let store = dir.path().join("store");
    let build_push = |remote: &str| build_cmd(&store, &models, remote).arg("--push");

    kill_pushes_anywhere_then_mid_blob(
        rng,
        window * 2,
        &store,
        &expected,
        &build_push,
        "build --push",
    );
}

#[test]
fn a_build_with_push_that_loses_the_answer_to_a_layers_closing_put_does_not_send_the_layer_again() {
    // The registry completes the weights layer, and its answer never reaches modelcar: what a
    // build killed in that instant, or a connection lost then, leaves behind.
    let dir = temp();
    let models = big_model(dir.path());
    let reference_store = dir.path().join("reference");
    let (reg, proxy) = plain_registry();
    let remote = format!("{}/faults/lost:v1", proxy.host());
    let out = build_cmd(&reference_store, &models, &remote)
        .run()
        .success();
    let digest = out.stdout.trim().rsplit('@').next().unwrap().to_string();
    let blobs = image_blobs(&reference_store, &digest);
    let (weights, weights_size) = blobs.iter().max_by_key(|(_, size)| *size).unwrap().clone();
    assert!(weights_size > WEIGHTS, "{blobs:?}");
    proxy.add_rule(
        Rule::new(Fault::Drop {
            after: 0,
            forward: true,
        })
        .method("PUT")
        .path(&format!("digest={weights}")),
    );

    let store = dir.path().join("store");
    let build_push = || build_cmd(&store, &models, &remote).arg("--push");
    if !build_push().run().status.success() {
        // Failed after the lost answer: the rerun completes it.
        build_push().run().success();
    }
    let dropped = proxy
        .records()
        .iter()
        .filter(|r| {
            r.fault
                .as_deref()
                .is_some_and(|f| f.contains("which the registry got"))
        })
        .count();
    assert_eq!(dropped, 1, "the fault never fired:\n{}", proxy.summary());
    assert!(reg.blob_data(&weights).exists());
    // The weights went over the wire once; what else was sent is far smaller than they are.
    let sent: u64 = proxy
        .records()
        .iter()
        .filter(|r| r.is_upload_data())
        .map(|r| r.received)
        .sum();
    let image: u64 = blobs.iter().map(|(_, size)| size).sum();
    assert!(
        sent < image + weights_size / 2,
        "{sent} bytes sent for an image of {image}: the weights layer went twice\n{}",
        proxy.summary()
    );
    assert_registry_digest(&reg, "faults/lost:v1", &digest);
}

#[test]
fn an_export_killed_anywhere_leaves_no_partial_archive_and_the_rerun_removes_its_temporary_files() {
    let mut rng = Rng::new("export");
    let dir = temp();
    let models = big_model(dir.path());
    let store = dir.path().join("store");
    let tag = "localhost/faults/export:v1";
    build_cmd(&store, &models, tag).run().success();
    let out_dir = dir.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let archive = out_dir.join("model.tar");
    let export = |file: &Path| {
        modelcar(&store).args([
            "export",
            "-q",
            tag,
            &format!("oci-archive:{}", file.display()),
        ])
    };
    let (window, _) = timed(export(&dir.path().join("reference.tar")));

    let mut killed = 0;
    let want = tagged_digest(&store);
    for _ in 0..RANDOM_KILLS {
        let delay = rng.delay(window);
        killed += usize::from(run_killed(export(&archive), Kill::After(delay)));
        // Either no archive, or (killed after it was in place) a whole one: never a partial one.
        if archive.exists() {
            assert_eq!(
                skopeo_inspect(&oci_archive(&archive), &[])["Digest"],
                want,
                "an export left a partial archive"
            );
            fs::remove_file(&archive).unwrap();
        }
        assert_store_consistent(&store);
    }
    let partial = || {
        export_temporaries(&out_dir)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
    };
    killed += usize::from(run_killed(export(&archive), Kill::When(&partial)));
    assert!(killed > 0, "no export was killed; the test proves nothing");
    assert!(
        !export_temporaries(&out_dir).is_empty(),
        "a killed export left no temporary file"
    );

    export(&archive).run().success();
    assert_eq!(skopeo_inspect(&oci_archive(&archive), &[])["Digest"], want);
    let left = export_temporaries(&out_dir);
    assert!(
        left.is_empty(),
        "temporary files survived the rerun: {left:?}"
    );
    assert_store_consistent(&store);
    assert_no_temporaries(&store);
}

#[test]
fn an_export_to_a_layout_killed_while_copying_is_completed_by_the_rerun_without_leftovers() {
    let test =
        "an_export_to_a_layout_killed_while_copying_is_completed_by_the_rerun_without_leftovers";
    // Another filesystem than the store's, so that blobs are copied (not hard-linked) and there
    // is a copy to interrupt.
    let Some(disk) = SmallDisk::mount("256m", test) else {
        return;
    };
    let dir = temp();
    let models = big_model(dir.path());
    let store = dir.path().join("store");
    let tag = "localhost/faults/layout:v1";
    build_cmd(&store, &models, tag).run().success();
    let layout = disk.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    let export =
        || modelcar(&store).args(["export", "-q", tag, &format!("oci:{}:v1", layout.display())]);
    let copying = || {
        export_temporaries(&blobs)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
    };
    assert!(
        run_killed(export(), Kill::When(&copying)),
        "the export ended before it could be killed"
    );
    assert!(
        !export_temporaries(&blobs).is_empty(),
        "the killed export left no temporary file"
    );

    export().run().success();
    let want = tagged_digest(&store);
    assert_eq!(skopeo_inspect(&oci(&layout, "v1"), &[])["Digest"], want);
    assert_store_consistent(&layout);
    let left = export_temporaries(&blobs);
    assert!(
        left.is_empty(),
        "temporary files survived the rerun: {left:?}"
    );
    assert!(export_temporaries(&layout).is_empty());
}

#[test]
fn clean_reports_the_temporary_files_of_killed_commands_it_freed() {
    let dir = temp();
    let models = big_model(dir.path());
    let store = dir.path().join("store");
    // Kill a build while it writes a temporary file. A small one (a document, a layer of the
    // small files) may be renamed into place between the check and the kill: try again then.
    let kill_a_build = || {
        let tmp = store.join(".modelcar/tmp");
        for attempt in 0..10 {
            if attempt > 0 {
                // New weights, so that no layer of an earlier try is found in the store.
                write_random(&models.join("weights.bin"), WEIGHTS, 0xc1ea + attempt);
            }
            let killed = run_killed(
                build_cmd(&store, &models, "localhost/faults/clean:v1"),
                Kill::When(&|| has_partial_file(&tmp)),
            );
            if killed && !store_temporaries(&store).is_empty() {
                return;
            }
        }
        panic!("no killed build left a temporary file in 10 tries");
    };
    kill_a_build();
    let left: u64 = store_temporaries(&store)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();

    let out = modelcar(&store)
        .args(["clean", "--all", "--json"])
        .run()
        .success();
    let report = out.json();
    assert!(report["temporary_files"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["removed"].as_array().is_some() && report["blobs"].is_u64(),
        "{report}"
    );
    // The file may have grown between the measure and the kill's effect, never shrunk.
    assert!(
        report["temporary_bytes"].as_u64().unwrap() >= left,
        "{report} < {left}"
    );
    assert_no_temporaries(&store);

    // Said in words too.
    kill_a_build();
    modelcar(&store)
        .args(["clean", "--all"])
        .run()
        .success()
        .stderr_has(&["temporary files left by commands that were killed"]);
    assert_no_temporaries(&store);
}

// ---------------------------------------------------------------------------------------------
// Full disk

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped; `None` (after saying
/// so) where tests cannot mount (not root, or no mount permission in this container).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str, test: &str) -> Option<SmallDisk> {
        let dir = temp();
        let out = tool(
            "mount",
            [
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &dir.path().to_string_lossy(),
            ],
        );
        if !out.status.success() {
            eprintln!(
                "SKIPPED {test}: cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = tool("umount", ["-l", &self.dir.path().to_string_lossy()]);
    }
}

/// Everything below `dir`, for messages and checks.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(dir, &mut |p, m| {
        if m.is_file() {
            found.push(p.to_path_buf());
        }
        true
    });
    found
}

#[test]
fn a_build_into_a_full_store_fails_cleanly_with_a_hint_and_leaves_a_valid_store() {
    let test = "a_build_into_a_full_store_fails_cleanly_with_a_hint_and_leaves_a_valid_store";
    let Some(disk) = SmallDisk::mount("6m", test) else {
        return;
    };
    let dir = temp();
    let models = big_model(dir.path());
    let store = disk.path().join("store");
    let out = build_cmd(&store, &models, "localhost/faults/full:v1")
        .run()
        .failure();
    out.stderr_has(&[
        &store.display().to_string(),
        "No space left on device",
        "hint: the disk holding that path is full",
    ]);
    assert_store_consistent(&store);
    assert!(
        read_json(&store.join("index.json"))["manifests"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing is tagged"
    );
    assert_no_temporaries(&store);
    // The store stays usable on the full disk: clean frees what the build imported.
    let report = modelcar(&store)
        .args(["clean", "--all", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(report["temporary_files"], 0, "{report}");
    assert_store_consistent(&store);
}

#[test]
fn a_pull_into_a_full_store_fails_cleanly_and_leaves_a_valid_store() {
    let test = "a_pull_into_a_full_store_fails_cleanly_and_leaves_a_valid_store";
    let Some(disk) = SmallDisk::mount("6m", test) else {
        return;
    };
    let dir = temp();
    let models = big_model(dir.path());
    let source = dir.path().join("source");
    build_cmd(&source, &models, "localhost/faults/full-pull:v1")
        .run()
        .success();
    let reg = Registry::plain();
    let remote = format!("{}/faults/full-pull:v1", reg.host());
    modelcar(&source)
        .args(["push", "-q", "localhost/faults/full-pull:v1", &remote])
        .run()
        .success();
    let store = disk.path().join("store");
    modelcar(&store)
        .args(["pull", &remote])
        .run()
        .failure()
        .stderr_has(&[&store.display().to_string()]);
    assert_store_consistent(&store);
    assert!(
        read_json(&store.join("index.json"))["manifests"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing is tagged"
    );
    assert_no_temporaries(&store);
}

#[test]
fn an_export_onto_a_full_disk_fails_cleanly_with_a_hint_and_leaves_nothing_behind() {
    let test = "an_export_onto_a_full_disk_fails_cleanly_with_a_hint_and_leaves_nothing_behind";
    let Some(disk) = SmallDisk::mount("6m", test) else {
        return;
    };
    let dir = temp();
    let models = big_model(dir.path());
    let store = dir.path().join("store");
    let tag = "localhost/faults/full-export:v1";
    build_cmd(&store, &models, tag).run().success();
    let layout = disk.path().join("layout");
    let archive = disk.path().join("model.tar");
    let docker = disk.path().join("model.docker.tar");
    for (dest, named) in [
        (format!("oci:{}", layout.display()), &layout),
        (format!("oci-archive:{}", archive.display()), &archive),
        (format!("docker-archive:{}", docker.display()), &docker),
    ] {
        modelcar(&store)
            .args(["export", tag, &dest])
            .run()
            .failure()
            .stderr_has(&[
                &named.display().to_string(),
                "No space left on device",
                "hint: the disk holding that path is full",
            ]);
        let left = files_below(disk.path());
        assert!(left.is_empty(), "export to {dest} left {left:?}");
        assert!(!named.exists(), "export to {dest} left {}", named.display());
    }
    assert_store_consistent(&store);
    assert_no_temporaries(&store);
}
