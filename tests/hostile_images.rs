//! Images made to hurt whoever reads them: every command answers each with a clean error or a
//! correct verdict, within bounded memory (the peak resident size of the run, measured) and
//! bounded time.
//!
//! Every hostile image is generated here, small on disk: layers of millions of entries or
//! gigabytes of zeros are one compressed block repeated as gzip members (or zstd frames), which
//! decompressors join into one stream.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use support::cmd::*;
use support::files::*;
use support::fixtures::*;
use support::registries::Registry;

/// Peak resident memory allowed for any command on any image here. modelcar itself needs
/// about ten MB and the largest case here about 35; unbounded, they took hundreds.
const MAX_RSS: u64 = 64 << 20;
/// Time allowed for any command on any image here (a debug build, on a busy machine): far from
/// what an unbounded one takes, minutes.
const MAX_TIME: Duration = Duration::from_secs(60);

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

// ---------------------------------------------------------------------------------------------
// Generators

/// An OCI layout being written by a test.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    /// Store `bytes` as a blob; its descriptor with `media_type`.
    fn put(&self, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    fn put_json(&self, media_type: &str, value: &Value) -> Value {
        self.put(media_type, &serde_json::to_vec(value).unwrap())
    }

    /// Write `index.json` with `entry` named `hostile`.
    fn name(&self, mut entry: Value) {
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": "hostile"});
        self.write_index(json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}));
    }

    fn write_index(&self, index: Value) {
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    fn location(&self) -> String {
        format!("oci:{}:hostile", self.dir.display())
    }

    /// A manifest of the busybox base's config and layers with `extra` layers on top, its
    /// config changed by `config`; its descriptor.
    fn image(&self, extra: &[Value], config: impl FnOnce(&mut Value)) -> Value {
        let base = &bases().layout;
        let index = read_json(&base.join("index.json"));
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "busybox")
            .unwrap();
        let blob = |d: &Value| {
            let hex = &d["digest"].as_str().unwrap()[7..];
            std::fs::read(base.join("blobs/sha256").join(hex)).unwrap()
        };
        let manifest: Value = serde_json::from_slice(&blob(entry)).unwrap();
        let mut layers: Vec<Value> = manifest["layers"].as_array().unwrap().clone();
        for layer in &layers {
            self.put(layer["mediaType"].as_str().unwrap(), &blob(layer));
        }
        let mut cfg: Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
        for layer in extra {
            layers.push(layer.clone());
            // Nothing here checks diff IDs against layers; they only need to be there.
            cfg["rootfs"]["diff_ids"]
                .as_array_mut()
                .unwrap()
                .push(json!(format!("sha256:{}", "0".repeat(64))));
        }
        config(&mut cfg);
        let cfg = self.put_json(CONFIG, &cfg);
        self.put_json(
            MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": cfg, "layers": layers}),
        )
    }
}

/// A tar header block for `path` (`kind` as the tar type flag) announcing `size` bytes.
fn header(path: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_size(size);
    h.set_cksum();
    *h.as_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// `chunk` compressed once and repeated `times`, then `head` before and `tail` after, each a
/// gzip member (or zstd frame) of its own: one stream of `head`, `times` x `chunk`, `tail`.
fn repeated(zstd: bool, head: &[u8], chunk: &[u8], times: usize, tail: &[u8]) -> Vec<u8> {
    let pack = |b: &[u8]| {
        if zstd {
            zstd::encode_all(b, 19).unwrap()
        } else {
            gzip(b)
        }
    };
    let member = pack(chunk);
    let mut out = pack(head);
    for _ in 0..times {
        out.extend_from_slice(&member);
    }
    out.extend(pack(tail));
    out
}

/// The end of a tar archive.
const END: [u8; 1024] = [0; 1024];

/// A model directory for `build --base`.
fn models(dir: &Path) -> PathBuf {
    sklearn_models(&dir.join("model"))
}

// ---------------------------------------------------------------------------------------------
// Running every command

/// What a command must answer.
enum Expect<'a> {
    /// A clean error whose message holds every one of these.
    Error(&'a [&'a str]),
    /// Success (or, for `verify`, a verdict) whose output holds every one of these.
    Answer(&'a [&'a str]),
}

/// Run `modelcar ARGS` in a store of its own under `dir`, measured; checks memory and time.
#[track_caller]
fn measured(dir: &Path, args: &[&str]) -> Outcome {
    let store = dir.join("store");
    let (out, rss, took) = modelcar(&store).args(args).run_measured();
    assert!(
        out.status.code().is_some(),
        "`{}` was killed ({}):\n{}",
        out.command,
        out.status,
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("overflow"),
        "`{}` crashed:\n{}",
        out.command,
        out.stderr
    );
    assert!(
        rss < MAX_RSS,
        "`{}` used {} MB at its peak",
        out.command,
        rss >> 20
    );
    assert!(took < MAX_TIME, "`{}` took {took:?}", out.command);
    eprintln!("{}: {} MB, {took:.1?}", out.command, rss >> 20);
    out
}

#[track_caller]
fn check(out: Outcome, expect: &Expect) {
    match expect {
        Expect::Error(parts) => {
            out.failure().stderr_has(parts);
        }
        Expect::Answer(parts) => {
            assert!(
                !out.stderr.contains("error: ")
                    || out.stderr.contains("will not work as a KServe modelcar"),
                "`{}` did not answer:\n{}",
                out.command,
                out.stderr
            );
            let all = out.all_output();
            for p in *parts {
                assert!(
                    all.contains(p),
                    "`{}` should say `{p}`:\n{all}",
                    out.command
                );
            }
        }
    }
}

/// `verify`, `inspect --files`, `export` to each format and `build --base` on `image`, each in
/// a store of its own; `reads_layers` is what the commands that list layers must answer,
/// `copies` what those that only copy the image must. The directory of the runs, whose
/// `verify/store` is the store `verify` used.
#[track_caller]
fn every_command(image: &str, reads_layers: Expect, copies: Expect) -> tempfile::TempDir {
    let work = temp();
    let run = |name: &str, args: &[&str]| {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        measured(&dir, args)
    };
    check(run("verify", &["verify", image]), &reads_layers);
    check(
        run("inspect", &["inspect", image, "--files"]),
        &reads_layers,
    );
    let models = models(work.path());
    let out = run(
        "build",
        &[
            "build",
            "--models",
            models.to_str().unwrap(),
            "--tag",
            "localhost/test/built:v1",
            "--base",
            image,
        ],
    );
    check(out, &reads_layers);
    for (name, dest) in [
        ("oci", "oci:OUT"),
        ("oci-archive", "oci-archive:OUT.tar"),
        ("docker-archive", "docker-archive:OUT.tar"),
    ] {
        let dir = work.path().join(format!("export-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dest.replace("OUT", dir.join("out").to_str().unwrap());
        check(measured(&dir, &["export", image, &dest]), &copies);
    }
    work
}

// ---------------------------------------------------------------------------------------------
// Deep nesting

/// An index nesting `depth` indexes around the busybox image.
fn nested(layout: &Layout, depth: usize) -> Value {
    let mut top = layout.image(&[], |_| {});
    top["platform"] = json!({"os": "linux", "architecture": "amd64"});
    for _ in 0..depth {
        top = layout.put_json(
            INDEX,
            &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]}),
        );
    }
    top
}

#[test]
fn indexes_nested_thousands_deep_are_refused_at_the_depth_limit() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    layout.name(nested(&layout, 5000));
    let limit = format!(
        "nests indexes more than {} levels deep",
        modelcar::limits::MAX_INDEX_DEPTH
    );
    let refused = Expect::Error(&[&limit, "image sha256:"]);
    let _ = every_command(&layout.location(), refused, Expect::Error(&[&limit]));

    // An OCI archive nesting deeper than the limit (each blob of an archive is stored, so
    // not thousands deep: that only costs time).
    let shallower = Layout::new(dir.path().join("shallower"));
    shallower.name(nested(&shallower, 3 * modelcar::limits::MAX_INDEX_DEPTH));
    let archive = dir.path().join("nested.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        q(&shallower.dir),
        q(&archive)
    ));
    let out = measured(
        dir.path(),
        &["verify", &format!("oci-archive:{}", archive.display())],
    );
    check(out, &Expect::Error(&[&limit]));
}

/// A store (an OCI layout anything may write) holding an image nested far deeper than the
/// limit: the walks over the store refuse it, and `clean --all` still empties the store.
#[test]
fn indexes_nested_far_too_deep_in_the_store_are_refused_by_its_walks() {
    let dir = temp();
    let store = Layout::new(dir.path().join("store"));
    let mut deep = nested(&store, 1000);
    deep["annotations"] = json!({"org.opencontainers.image.ref.name": "localhost/test/deep:v1"});
    let mut other = nested(&store, 1);
    other["annotations"] = json!({"org.opencontainers.image.ref.name": "localhost/test/other:v1"});
    store.write_index(json!({"schemaVersion": 2, "manifests": [deep, other]}));
    let limit = format!(
        "nests indexes more than {} levels deep",
        modelcar::limits::MAX_INDEX_DEPTH
    );
    let out = dir.path().join("out");
    for args in [
        vec![
            "export",
            "localhost/test/deep:v1",
            &format!("oci:{}", out.display()),
        ],
        vec!["push", "localhost/test/deep:v1", "127.0.0.1:9/test/deep:v1"],
        // Which blobs are garbage cannot be known: nothing is removed.
        vec!["clean", "localhost/test/other:v1"],
    ] {
        check(measured(dir.path(), &args), &Expect::Error(&[&limit]));
    }
    let blobs = || {
        std::fs::read_dir(store.dir.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    assert!(blobs() > 1000);
    check(
        measured(dir.path(), &["clean", "--all"]),
        &Expect::Answer(&[]),
    );
    assert_eq!(blobs(), 0);
}

#[test]
fn indexes_nested_as_deep_as_real_images_still_export() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    layout.name(nested(&layout, 3));
    let out = dir.path().join("out");
    let dest = format!("oci:{}:copy", out.display());
    measured(dir.path(), &["export", &layout.location(), &dest]).success();
    assert_eq!(
        read_json(&out.join("index.json"))["manifests"][0]["annotations"]
            ["org.opencontainers.image.ref.name"],
        "copy"
    );
}

// ---------------------------------------------------------------------------------------------
// Huge documents and strings

#[test]
fn a_huge_layout_index_is_refused_before_it_is_read() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    let mut entry = layout.image(&[], |_| {});
    entry["annotations"] = json!({
        "org.opencontainers.image.ref.name": "hostile",
        "padding": "x".repeat(40 << 20),
    });
    layout.write_index(json!({"schemaVersion": 2, "manifests": [entry]}));
    let limit = format!("more than the {} accepted", modelcar::limits::MAX_DOCUMENT);
    let refused = Expect::Error(&["index.json", &limit]);
    let _ = every_command(
        &layout.location(),
        refused,
        Expect::Error(&["index.json", &limit]),
    );
}

#[test]
fn a_huge_archive_manifest_is_refused_before_it_is_read() {
    let dir = temp();
    let content = dir.path().join("content");
    std::fs::create_dir_all(&content).unwrap();
    // Just past the limit: these were read only up to it before, never whole.
    let padding = "x".repeat(modelcar::limits::MAX_DOCUMENT as usize + 1);
    std::fs::write(
        content.join("manifest.json"),
        serde_json::to_vec(&json!([{"Config": "c", "Layers": [], "RepoTags": [padding]}])).unwrap(),
    )
    .unwrap();
    std::fs::write(
        content.join("index.json"),
        format!("{{\"x\":\"{padding}\"}}"),
    )
    .unwrap();
    std::fs::write(
        content.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.path().join("a.tar");
    sh(&format!("tar -C {} -cf {} .", q(&content), q(&archive)));
    let limit = format!("more than the {} accepted", modelcar::limits::MAX_DOCUMENT);
    for (transport, name) in [
        ("docker-archive", "manifest.json"),
        ("oci-archive", "index.json"),
    ] {
        let image = format!("{transport}:{}", archive.display());
        check(
            measured(dir.path(), &["verify", &image]),
            &Expect::Error(&[name, &limit]),
        );
    }
}

#[test]
fn long_annotations_and_labels_are_refused() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    let long = "y".repeat(modelcar::limits::MAX_ANNOTATION + 1);
    let mut manifest: Value = {
        let d = layout.image(&[], |_| {});
        let hex = &d["digest"].as_str().unwrap()[7..];
        serde_json::from_slice(&std::fs::read(layout.dir.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    manifest["annotations"] = json!({"org.example.long": long});
    layout.name(layout.put_json(MANIFEST, &manifest));
    let refused = Expect::Error(&["annotation longer than"]);
    let _ = every_command(
        &layout.location(),
        refused,
        Expect::Error(&["annotation longer than"]),
    );

    let labelled = Layout::new(dir.path().join("labelled"));
    labelled.name(labelled.image(&[], |c| c["config"]["Labels"] = json!({"long": long})));
    let out = measured(dir.path(), &["verify", &labelled.location()]);
    check(out, &Expect::Error(&["label longer than"]));
}

#[test]
fn documents_declared_too_large_or_too_long_are_refused() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    // A manifest whose descriptor declares 100 MB: refused before a byte of it is read.
    let mut entry = layout.image(&[], |_| {});
    entry["size"] = json!(100u64 << 20);
    layout.name(entry);
    let out = measured(dir.path(), &["verify", &layout.location()]);
    check(out, &Expect::Error(&["is 104857600 bytes, more than"]));

    // An index of more descriptors than any image lists.
    let many = Layout::new(dir.path().join("many"));
    let image = many.image(&[], |_| {});
    let entries: Vec<Value> = (0..modelcar::limits::MAX_DESCRIPTORS + 1)
        .map(|_| image.clone())
        .collect();
    many.name(many.put_json(INDEX, &json!({"schemaVersion": 2, "manifests": entries})));
    let out = measured(dir.path(), &["verify", &many.location()]);
    check(out, &Expect::Error(&["descriptors, more than the"]));
}

// ---------------------------------------------------------------------------------------------
// Layers made to exhaust memory or time

/// A million entries in a gzip layer of a few hundred KB.
#[test]
fn a_layer_of_a_million_entries_is_refused_at_the_entry_limit() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    let chunk: Vec<u8> = header("models/f", b'0', 0).repeat(2048);
    let blob = repeated(false, &header("models/", b'5', 0), &chunk, 489, &END);
    assert!(blob.len() < 4 << 20, "{} bytes", blob.len());
    let layer = layout.put(LAYER_GZIP, &blob);
    layout.name(layout.image(&[layer], |_| {}));
    let limit = format!("holds more than {} entries", modelcar::limits::MAX_ENTRIES);
    let work = every_command(
        &layout.location(),
        Expect::Error(&[&limit]),
        Expect::Answer(&[]),
    );
    // Nothing of the listing was kept in the store's cache.
    let mut cached = 0;
    walk(
        &work.path().join("verify/store/.modelcar/cache"),
        &mut |_, m| {
            cached += m.len();
            true
        },
    );
    assert!(cached < 1 << 20, "{cached} bytes cached");
}

/// One entry announcing a gigabyte of zeros: listed by decompressing and discarding, in
/// constant memory, with the right verdict.
#[test]
fn decompression_bombs_are_listed_in_bounded_memory() {
    let dir = temp();
    let zeros = vec![0u8; 1 << 20];
    for zstd in [false, true] {
        let layout = Layout::new(dir.path().join(format!("layout-{zstd}")));
        let mut head = header("models/", b'5', 0).to_vec();
        head.extend(header("models/zeros.bin", b'0', 1 << 30));
        let mut tail = header("models/model.joblib", b'0', 0).to_vec();
        tail.extend(END);
        let blob = repeated(zstd, &head, &zeros, 1024, &tail);
        assert!(blob.len() < 2 << 20, "{} bytes", blob.len());
        let layer = layout.put(if zstd { LAYER_ZSTD } else { LAYER_GZIP }, &blob);
        layout.name(layout.image(&[layer], |_| {}));
        let image = layout.location();
        let out = measured(dir.path(), &["inspect", &image, "--files", "--json"]);
        check(
            out,
            &Expect::Answer(&["zeros.bin", "1073741824", "model.joblib"]),
        );
        let out = measured(dir.path(), &["verify", &image]);
        check(out, &Expect::Answer(&["/models holds 2 entries"]));
    }
}

/// Layers of tens of gigabytes of zeros in a few MB (gzip's ratio for them is about 1000:1,
/// zstd's far beyond): the commands that read layers stop each when it reaches the expansion
/// limit (100 times its size, then 1 GiB more) and say why, in seconds rather than the minutes
/// reading it all would take; export, which copies blobs without decompressing them, copies it.
#[test]
fn decompression_bombs_are_refused_at_the_expansion_limit_saying_why() {
    let dir = temp();
    let zeros = vec![0u8; 1 << 20];
    for (zstd, gib) in [(false, 8usize), (true, 64)] {
        let layout = Layout::new(dir.path().join(format!("layout-{zstd}")));
        let mut head = header("models/", b'5', 0).to_vec();
        head.extend(header("models/zeros.bin", b'0', (gib as u64) << 30));
        let mut tail = header("models/model.joblib", b'0', 0).to_vec();
        tail.extend(END);
        let blob = repeated(zstd, &head, &zeros, gib << 10, &tail);
        assert!(blob.len() < 12 << 20, "{} bytes", blob.len());
        let layer = layout.put(if zstd { LAYER_ZSTD } else { LAYER_GZIP }, &blob);
        layout.name(layout.image(std::slice::from_ref(&layer), |_| {}));
        let digest = layer["digest"].as_str().unwrap().to_string();
        let started = std::time::Instant::now();
        let work = every_command(
            &layout.location(),
            Expect::Error(&[
                &digest,
                "expands to more than",
                "more than 100 times its compressed size",
                "decompression bomb",
                "--max-layer-expansion",
            ]),
            Expect::Answer(&[]),
        );
        drop(work);
        eprintln!("{gib} GiB of zeros, zstd {zstd}: {:?}", started.elapsed());
        // Where it stopped: at the ratio times its size, then the shared allowance; the ratio
        // is the option's or the environment's.
        let size = blob.len() as u64;
        let ratios: [(&str, u64); 2] = if zstd {
            [("default", 100), ("environment", 1000)]
        } else {
            [("default", 100), ("option", 150)]
        };
        for (how, ratio) in ratios {
            let run = temp();
            let mut cmd = modelcar(&run.path().join("store"));
            cmd = match how {
                "option" => cmd.args(["--max-layer-expansion", &ratio.to_string()]),
                "environment" => cmd.env("MODELCAR_MAX_LAYER_EXPANSION", ratio.to_string()),
                _ => cmd,
            };
            let out = cmd
                .args(["inspect", &layout.location(), "--files"])
                .run()
                .failure();
            let stopped: u64 = out
                .stderr
                .split("expands to more than ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}", out.stderr));
            let limit = ratio * size + modelcar::limits::LAYER_EXPANSION_ALLOWANCE;
            assert!(
                stopped <= limit && stopped + (4 << 20) > limit,
                "{how}: stopped at {stopped}, the limit is {limit}"
            );
            assert!(out.stderr.contains(&format!("more than {ratio} times")));
        }
    }
}

/// A zstd frame declaring a window past the limit (one libzstd would accept by default, and
/// hold in memory): refused.
#[test]
fn zstd_layers_declaring_huge_windows_are_refused() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layout"));
    let tar = [header("models/", b'5', 0).as_slice(), &END].concat();
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder
        .window_log(modelcar::limits::MAX_ZSTD_WINDOW_LOG + 1)
        .unwrap();
    encoder.long_distance_matching(true).unwrap();
    encoder.write_all(&tar).unwrap();
    let blob = encoder.finish().unwrap();
    let layer = layout.put(LAYER_ZSTD, &blob);
    layout.name(layout.image(&[layer], |_| {}));
    let out = measured(dir.path(), &["inspect", &layout.location(), "--files"]);
    check(out, &Expect::Error(&["layer sha256:", "too much memory"]));
}

/// PAX and GNU long-name headers announcing a gigabyte: refused, not read into memory.
#[test]
fn oversized_tar_extension_headers_are_refused() {
    let dir = temp();
    let zeros = vec![0u8; 1 << 20];
    for kind in [b'x', b'L'] {
        let layout = Layout::new(dir.path().join(format!("layout-{}", kind as char)));
        let head = header("././@LongHeader", kind, 1 << 30);
        let mut tail = header("models/f", b'0', 0).to_vec();
        tail.extend(END);
        let blob = repeated(false, &head, &zeros, 1024, &tail);
        let layer = layout.put(LAYER_GZIP, &blob);
        layout.name(layout.image(&[layer], |_| {}));
        let limit = format!(
            "more than the {} accepted",
            modelcar::limits::MAX_TAR_EXTENSION
        );
        let _ = every_command(
            &layout.location(),
            Expect::Error(&["PAX or long-name header", &limit]),
            Expect::Answer(&[]),
        );
    }
}

/// Archives are read by the same bounded tar reader as layers: a PAX header announcing 200 MB in
/// an archive of that size (sparse on disk) is refused, not read into memory.
#[test]
fn oversized_tar_extension_headers_in_archives_are_refused() {
    let dir = temp();
    let archive = dir.path().join("a.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    file.write_all(&header("././@PaxHeader", b'x', 200 << 20))
        .unwrap();
    file.set_len(512 + (200 << 20) + 1024).unwrap();
    drop(file);
    let limit = format!(
        "more than the {} accepted",
        modelcar::limits::MAX_TAR_EXTENSION
    );
    for transport in ["oci-archive", "docker-archive"] {
        let image = format!("{transport}:{}", archive.display());
        check(
            measured(dir.path(), &["verify", &image]),
            &Expect::Error(&["a.tar", "PAX or long-name header", &limit]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Lies about content

#[test]
fn blobs_that_do_not_match_their_digest_or_size_are_refused() {
    let dir = temp();
    let layer_tar = [header("models/", b'5', 0).as_slice(), &END].concat();
    // A layer whose bytes were changed after it was described.
    let layout = Layout::new(dir.path().join("changed"));
    let layer = layout.put(LAYER_GZIP, &gzip(&layer_tar));
    let hex = layer["digest"].as_str().unwrap()[7..].to_string();
    layout.name(layout.image(&[layer], |_| {}));
    let path = layout.dir.join("blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let _ = every_command(
        &layout.location(),
        Expect::Error(&["does not match"]),
        Expect::Error(&["does not match"]),
    );
    // A layer whose descriptor declares one byte less than it holds.
    let layout = Layout::new(dir.path().join("size"));
    let mut layer = layout.put(LAYER_GZIP, &gzip(&layer_tar));
    layer["size"] = json!(layer["size"].as_u64().unwrap() - 1);
    layout.name(layout.image(&[layer], |_| {}));
    let out = measured(dir.path(), &["verify", &layout.location()]);
    check(out, &Expect::Error(&["does not match"]));
}

#[test]
fn unknown_media_types_are_refused_with_their_name() {
    let dir = temp();
    let layout = Layout::new(dir.path().join("layer"));
    let layer_tar = [header("models/", b'5', 0).as_slice(), &END].concat();
    let layer = layout.put("application/vnd.example.unknown", &layer_tar);
    layout.name(layout.image(&[layer], |_| {}));
    let out = measured(dir.path(), &["verify", &layout.location()]);
    check(
        out,
        &Expect::Error(&["application/vnd.example.unknown", "not supported"]),
    );
    // A top document of an unknown type that is neither an index nor a manifest.
    let layout = Layout::new(dir.path().join("top"));
    layout.name(layout.put_json("application/vnd.example.other", &json!({"hello": 1})));
    let out = measured(dir.path(), &["verify", &layout.location()]);
    check(out, &Expect::Error(&["not an image manifest or index"]));
}

// ---------------------------------------------------------------------------------------------
// From a registry

/// Hostile images pushed to a real registry (by skopeo): `pull` refuses what breaks a document
/// limit, and `build --base` what breaks a layer limit, in bounded memory.
#[test]
fn hostile_images_from_a_registry_are_refused_cleanly() {
    let registry = Registry::plain();
    let dir = temp();
    let push = |layout: &Layout, repo: &str| -> String {
        let dest = format!("docker://{}/{repo}:v1", registry.host());
        tool_ok(
            "skopeo",
            [
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &layout.location(),
                &dest,
            ],
        );
        format!("{}/{repo}:v1", registry.host())
    };

    let long = Layout::new(dir.path().join("long"));
    let label = "z".repeat(modelcar::limits::MAX_ANNOTATION + 1);
    long.name(long.image(&[], |c| c["config"]["Labels"] = json!({"long": label})));
    let reference = push(&long, "test/long");
    let work = dir.path().join("w1");
    std::fs::create_dir_all(&work).unwrap();
    check(measured(&work, &["pull", &reference]), &Expect::Answer(&[]));
    check(
        measured(&work, &["verify", &reference]),
        &Expect::Error(&["label longer than"]),
    );

    let many = Layout::new(dir.path().join("many"));
    let chunk: Vec<u8> = header("models/f", b'0', 0).repeat(2048);
    let blob = repeated(false, &header("models/", b'5', 0), &chunk, 489, &END);
    let layer = many.put(LAYER_GZIP, &blob);
    many.name(many.image(&[layer], |_| {}));
    let reference = push(&many, "test/many");
    let work = dir.path().join("w2");
    std::fs::create_dir_all(&work).unwrap();
    let models = models(&work);
    let limit = format!("holds more than {} entries", modelcar::limits::MAX_ENTRIES);
    let out = measured(
        &work,
        &[
            "build",
            "--models",
            models.to_str().unwrap(),
            "--tag",
            "localhost/test/built:v1",
            "--base",
            &format!("docker://{reference}"),
        ],
    );
    check(out, &Expect::Error(&[&limit]));
}
