//! modelcar against registries that misbehave on purpose: one that never answers, one that
//! trickles bytes, one that asks to wait a day, ones that send wrong or extra bytes, ones that
//! send the client to another host (a redirect, an upload location), ones that stop reading an
//! upload or never answer it, one that answers a manifest asked for by digest with other bytes,
//! one whose documents name content by sha512, a port whose connections never complete, and a
//! TLS registry whose token service is plain HTTP.
//!
//! No real registry can be made to do most of this, so most tests here run a small fake
//! registry on a loopback port (the harness's HTTP helpers) that serves one tiny image and
//! records every request it gets. The token-realm test uses the real registry behind TLS, and
//! the real registry also serves an image named by sha512 digests. The connection that never
//! completes is the kernel's doing (a listening socket whose backlog is full), not a fake.
//! Timeouts are passed short on the command line so that no test waits long.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use support::env::Env;
use support::files::{sha256, write_random};
use support::fixtures::{bases, example_model, sklearn_models};
use support::http::{error_body, read_body, respond, Head, Server};
use support::registries::{Registry, RegistryOptions, Tls};
use support::token::TokenService;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pa55";

/// What the fake registry does wrong.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Accept connections, read requests, never answer.
    Silent,
    /// Send the blob one byte every `gap`.
    Trickle { gap: Duration },
    /// Answer blob requests 429 with this Retry-After.
    RetryAfter(u64),
    /// Send the blob with the right length and the wrong bytes.
    WrongBytes,
    /// Send the blob with more bytes than its descriptor says.
    ExtraBytes,
    /// Answer blob requests with a redirect to `other`.
    RedirectBlobs,
    /// Start uploads on this host, then refuse their bytes with 403 DENIED.
    DenyUploads,
    /// Start uploads on this host, then never read their bytes nor answer.
    StallUploads,
    /// Start uploads on this host, take those of at most 4 MiB (the base's layers), and never
    /// read the bytes of larger ones nor answer.
    StallLargeUploads,
    /// Start uploads on this host, read their bytes, and never answer.
    SilentAfterUploads,
    /// Start uploads on this host, take those of at most 4 MiB, and answer larger ones 413 at
    /// once, before reading any of their bytes, then read nothing more and keep the connection.
    RefuseLargeUploadsEarly,
    /// List a bill of materials among the image's referrers, and answer the request for its
    /// manifest, by digest, with another one (naming another BOM).
    SwappedReferrer,
    /// Nothing: serve the image (used with Basic auth, and with uploads sent to `other`).
    None,
}

/// One request as a fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
}

/// A tiny image: a config and a 3000-byte layer, and its manifest.
struct TinyImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

impl TinyImage {
    fn new() -> TinyImage {
        let layer: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
            "config": {}
        })
        .to_string()
        .into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(&layer), "size": layer.len()}]
        })
        .to_string()
        .into_bytes();
        TinyImage {
            manifest,
            config,
            layer,
        }
    }
    fn blob(&self, digest: &str) -> Option<&[u8]> {
        [&self.config, &self.layer]
            .into_iter()
            .find(|b| digest == sha256(b))
            .map(Vec::as_slice)
    }
}

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const BOM_TYPE: &str = "application/vnd.cyclonedx+json";

/// A bill of materials listed as a referrer (`listed`, the manifest of the real BOM) and the
/// manifest served in its place (`served`, naming the `forged` BOM).
struct SwappedBom {
    index: Vec<u8>,
    listed: Vec<u8>,
    served: Vec<u8>,
    forged: Vec<u8>,
}

impl SwappedBom {
    fn new() -> SwappedBom {
        let manifest_of = |bom: &[u8]| {
            serde_json::json!({
                "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": BOM_TYPE,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                           "digest": sha256(b"{}"), "size": 2},
                "layers": [{"mediaType": BOM_TYPE, "digest": sha256(bom), "size": bom.len()}]
            })
            .to_string()
            .into_bytes()
        };
        let real = br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}"#;
        let forged = br#"{"bomFormat":"CycloneDX","specVersion":"1.6","forged":true}"#.to_vec();
        let listed = manifest_of(real);
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX_TYPE,
            "manifests": [{"mediaType": MANIFEST_TYPE, "artifactType": BOM_TYPE,
                           "digest": sha256(&listed), "size": listed.len()}]
        })
        .to_string()
        .into_bytes();
        SwappedBom {
            index,
            served: manifest_of(&forged),
            listed,
            forged,
        }
    }
}

/// A fake registry on a loopback port; records requests; Basic auth when `basic`.
struct FakeRegistry {
    server: Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeRegistry {
    fn start(how: Misbehaviour, basic: bool, other: Option<String>) -> FakeRegistry {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let image = Arc::new(TinyImage::new());
        let s = seen.clone();
        let server = Server::start(move |conn| {
            serve(conn, how, basic, other.as_deref(), &image, &s);
        });
        FakeRegistry { server, seen }
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    /// The most GET requests any one target containing `fragment` got.
    fn most_requests(&self, fragment: &str) -> usize {
        let seen = self.seen();
        seen.iter()
            .filter(|s| s.method == "GET" && s.target.contains(fragment))
            .map(|s| {
                seen.iter()
                    .filter(|o| o.method == "GET" && o.target == s.target)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

fn expected_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

fn serve(
    conn: TcpStream,
    how: Misbehaviour,
    basic: bool,
    other: Option<&str>,
    image: &TinyImage,
    seen: &Mutex<Vec<Seen>>,
) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Ok(Some(head)) = Head::read(&mut r) {
        let target = head.target().to_string();
        let authorization = head.get("Authorization").map(str::to_string);
        seen.lock().unwrap().push(Seen {
            method: head.method().to_string(),
            target: target.clone(),
            authorization: authorization.clone(),
        });
        if matches!(how, Misbehaviour::DenyUploads) && target.contains("/upload/") {
            // Refused before the body is read, as registries do; the rest of the body is then
            // read and dropped, so that the client gets the answer rather than a broken pipe.
            let body = error_body("DENIED", "requested access to the resource is denied");
            let _ = respond(&mut w, 403, &[("Connection", "close".to_string())], &body);
            let _ = read_body(&mut r, &head);
            return;
        }
        let large = head.content_length().is_some_and(|n| n > 4 << 20);
        if matches!(how, Misbehaviour::RefuseLargeUploadsEarly)
            && large
            && target.contains("/upload/")
        {
            let body = error_body(
                "SIZE_INVALID",
                "the upload is larger than this registry takes",
            );
            let _ = respond(&mut w, 413, &[], &body);
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        if (matches!(how, Misbehaviour::StallUploads)
            || matches!(how, Misbehaviour::StallLargeUploads) && large)
            && target.contains("/upload/")
        {
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        let Ok(_body) = read_body(&mut r, &head) else {
            return;
        };
        let upload = target.contains("/upload/");
        if matches!(how, Misbehaviour::Silent)
            || (matches!(how, Misbehaviour::SilentAfterUploads) && upload)
        {
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        let dist = (
            "Docker-Distribution-Api-Version",
            "registry/2.0".to_string(),
        );
        if basic && authorization.as_deref() != Some(expected_basic().as_str()) {
            let challenge = ("WWW-Authenticate", r#"Basic realm="fake""#.to_string());
            let _ = respond(
                &mut w,
                401,
                &[dist, challenge],
                &error_body("UNAUTHORIZED", "log in"),
            );
            continue;
        }
        let swapped = SwappedBom::new();
        let result = if target == "/v2/" {
            respond(&mut w, 200, &[dist], b"{}")
        } else if matches!(how, Misbehaviour::SwappedReferrer) && target.contains("/referrers/") {
            let ct = ("Content-Type", INDEX_TYPE.to_string());
            respond(&mut w, 200, &[dist, ct], &swapped.index)
        } else if matches!(how, Misbehaviour::SwappedReferrer)
            && target.ends_with(&format!("/manifests/{}", sha256(&swapped.listed)))
        {
            let ct = ("Content-Type", MANIFEST_TYPE.to_string());
            respond(&mut w, 200, &[dist, ct], &swapped.served)
        } else if matches!(how, Misbehaviour::SwappedReferrer)
            && target.ends_with(&format!("/blobs/{}", sha256(&swapped.forged)))
        {
            respond(&mut w, 200, &[dist], &swapped.forged)
        } else if target.contains("/manifests/sha256-") && head.method() != "PUT" {
            // The referrers tag schema's tags: nothing there yet.
            respond(&mut w, 404, &[dist], &error_body("MANIFEST_UNKNOWN", "no"))
        } else if target.contains("/manifests/") && head.method() == "GET" {
            let ct = (
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".to_string(),
            );
            respond(&mut w, 200, &[dist, ct], &image.manifest)
        } else if let Some(digest) = target
            .split("/blobs/")
            .nth(1)
            .filter(|_| head.method() == "GET")
        {
            let Some(blob) = image.blob(digest) else {
                let _ = respond(&mut w, 404, &[dist], &error_body("BLOB_UNKNOWN", "no"));
                continue;
            };
            match how {
                Misbehaviour::Trickle { gap } => {
                    let mut h = Head {
                        start: "HTTP/1.1 200 OK".into(),
                        headers: vec![],
                    };
                    h.set("Content-Length", blob.len().to_string());
                    let _ = h.write_to(&mut w);
                    // The config goes out at once; the layer a byte at a time.
                    if blob.len() > 1000 {
                        for (i, b) in blob.iter().enumerate() {
                            if i < 12 {
                                std::thread::sleep(gap);
                            }
                            if w.write_all(&[*b]).and_then(|_| w.flush()).is_err() {
                                return;
                            }
                        }
                        Ok(())
                    } else {
                        w.write_all(blob)
                    }
                }
                Misbehaviour::RetryAfter(secs) => respond(
                    &mut w,
                    429,
                    &[dist, ("Retry-After", secs.to_string())],
                    &error_body("TOOMANYREQUESTS", "slow down"),
                ),
                Misbehaviour::WrongBytes => {
                    let mut wrong = blob.to_vec();
                    wrong[0] ^= 0xff;
                    respond(&mut w, 200, &[], &wrong)
                }
                Misbehaviour::ExtraBytes => {
                    let mut more = blob.to_vec();
                    more.extend_from_slice(&[0u8; 100]);
                    respond(&mut w, 200, &[], &more)
                }
                Misbehaviour::RedirectBlobs => {
                    let to = format!("http://{}/elsewhere/{digest}", other.unwrap());
                    respond(&mut w, 307, &[("Location", to)], b"")
                }
                _ => respond(&mut w, 200, &[], blob),
            }
        } else if head.method() == "HEAD" && target.contains("/blobs/") {
            respond(&mut w, 404, &[dist], b"")
        } else if head.method() == "POST" && target.contains("/blobs/uploads/") {
            let to = match other {
                Some(o) => format!("http://{o}/upload/session-1"),
                None => "/upload/session-1".to_string(),
            };
            respond(&mut w, 202, &[dist, ("Location", to)], b"")
        } else if head.method() == "PUT" && (target.contains("/manifests/") || upload) {
            respond(&mut w, 201, &[dist], b"")
        } else {
            respond(&mut w, 404, &[dist], &error_body("UNSUPPORTED", "no"))
        };
        if result.is_err() {
            return;
        }
    }
}

/// Another host (a loopback port of its own) that records what it got and serves blobs of the
/// tiny image or accepts uploads.
fn other_host(seen: Arc<Mutex<Vec<Seen>>>) -> Server {
    let image = Arc::new(TinyImage::new());
    Server::start(move |conn| {
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        while let Ok(Some(head)) = Head::read(&mut r) {
            if read_body(&mut r, &head).is_err() {
                return;
            }
            let target = head.target().to_string();
            seen.lock().unwrap().push(Seen {
                method: head.method().to_string(),
                target: target.clone(),
                authorization: head.get("Authorization").map(str::to_string),
            });
            let digest = target.rsplit('/').next().unwrap_or("").to_string();
            let res = match head.method() {
                "GET" => match image.blob(&digest) {
                    Some(b) => respond(&mut w, 200, &[], b),
                    None => respond(&mut w, 404, &[], b""),
                },
                _ => respond(&mut w, 201, &[], b""),
            };
            if res.is_err() {
                return;
            }
        }
    })
}

fn write_auth(env: &Env, host: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        &env.auth_file,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

fn pull(env: &Env, host: &str, extra: &[&str]) -> (support::cmd::Outcome, Duration) {
    let reference = format!("{host}/hostile/model:v1");
    let mut args = vec!["pull", reference.as_str()];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = env.modelcar(&args);
    (out, started.elapsed())
}

#[test]
fn a_registry_that_never_answers_fails_the_pull_within_the_read_timeout_naming_it() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::Silent, false, None);
    let (out, took) = pull(
        &env,
        &reg.host(),
        &["--read-timeout", "1", "--retries", "1"],
    );
    let out = out.failure();
    out.stderr_has(&[&reg.host(), "sent no bytes for 1 s", "--read-timeout"]);
    // Two attempts of one second each, and the backoff between them.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_trickling_registry_is_waited_for_while_bytes_come_and_dropped_when_they_stop() {
    let env = Env::new();
    // Gaps of 0.15 s under a 0.5 s read timeout: the download takes several times the timeout
    // (it is no limit on a whole transfer), and completes.
    let slow = FakeRegistry::start(
        Misbehaviour::Trickle {
            gap: Duration::from_millis(150),
        },
        false,
        None,
    );
    let (out, took) = pull(
        &env,
        &slow.host(),
        &["--read-timeout", "0.5", "--retries", "0"],
    );
    out.success();
    assert!(
        took >= Duration::from_millis(1500),
        "the trickle took {took:?}"
    );

    // Gaps of 1 s under the same timeout: the layer's download fails, naming the blob.
    let env = Env::new();
    let stalled = FakeRegistry::start(
        Misbehaviour::Trickle {
            gap: Duration::from_millis(1000),
        },
        false,
        None,
    );
    let (out, took) = pull(
        &env,
        &stalled.host(),
        &["--read-timeout", "0.5", "--retries", "0"],
    );
    out.failure().stderr_has(&[
        &stalled.host(),
        "sent no bytes for 0.5 s",
        "reading blob sha256:",
    ]);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_retry_after_longer_than_the_maximum_wait_fails_at_once_saying_so() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::RetryAfter(86_400), false, None);
    let (out, took) = pull(&env, &reg.host(), &["--max-retry-wait", "2"]);
    out.failure()
        .stderr_has(&["429", "TOOMANYREQUESTS", "86400 s", "--max-retry-wait"]);
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A short Retry-After is honoured (retried), up to the retries.
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::RetryAfter(1), false, None);
    let (out, took) = pull(&env, &reg.host(), &["--retries", "1"]);
    out.failure().stderr_has(&["gave up after 2 attempts"]);
    assert!(took >= Duration::from_secs(1), "took {took:?}");
}

#[test]
fn a_blob_with_wrong_bytes_is_refused_without_a_retry() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::WrongBytes, false, None);
    let (out, _) = pull(&env, &reg.host(), &["--jobs", "1"]);
    out.failure()
        .stderr_has(&["does not match its descriptor", &reg.host()]);
    // The bad blob was asked for once: an integrity failure is not retried.
    assert_eq!(reg.most_requests("/blobs/"), 1, "{:?}", reg.seen());
    assert!(env.modelcar(&["images", "--json"]).success().stdout.trim() == "[]");
}

#[test]
fn a_blob_longer_than_its_descriptor_is_refused_without_a_retry() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::ExtraBytes, false, None);
    let (out, _) = pull(&env, &reg.host(), &["--jobs", "1"]);
    out.failure()
        .stderr_has(&["more bytes", "than its descriptor says"]);
    // The bad blob was asked for once: an integrity failure is not retried.
    assert_eq!(reg.most_requests("/blobs/"), 1, "{:?}", reg.seen());
}

#[test]
fn a_redirect_to_another_host_carries_no_credentials_there() {
    let env = Env::new();
    let other_seen = Arc::new(Mutex::new(Vec::new()));
    let other = other_host(other_seen.clone());
    let reg = FakeRegistry::start(
        Misbehaviour::RedirectBlobs,
        true,
        Some(format!("127.0.0.1:{}", other.port)),
    );
    write_auth(&env, &reg.host());
    let (out, _) = pull(&env, &reg.host(), &[]);
    out.success();
    let got = other_seen.lock().unwrap().clone();
    assert!(!got.is_empty(), "the blobs came from the other host");
    assert!(got.iter().all(|s| s.authorization.is_none()), "{got:?}");
    // The registry itself did get the credentials.
    assert!(reg
        .seen()
        .iter()
        .any(|s| s.authorization.as_deref() == Some(expected_basic().as_str())));
}

#[test]
fn an_upload_location_on_another_host_gets_no_credentials() {
    let env = Env::new();
    let other_seen = Arc::new(Mutex::new(Vec::new()));
    let other = other_host(other_seen.clone());
    let reg = FakeRegistry::start(
        Misbehaviour::None,
        true,
        Some(format!("127.0.0.1:{}", other.port)),
    );
    write_auth(&env, &reg.host());
    let dest = format!("{}/hostile/pushed:v1", reg.host());
    env.build(&example_model("sklearn"), &dest, &bases().busybox(), &[]);
    env.modelcar(&["push", &dest]).success();
    let got = other_seen.lock().unwrap().clone();
    assert!(
        got.iter().any(|s| s.method == "PUT"),
        "blobs were uploaded to the other host: {got:?}"
    );
    assert!(got.iter().all(|s| s.authorization.is_none()), "{got:?}");
    assert!(reg.seen().iter().any(
        |s| s.method == "PUT" && s.authorization.as_deref() == Some(expected_basic().as_str())
    ));
}

#[test]
fn a_plain_http_token_realm_is_refused_for_a_tls_registry_and_gets_no_credentials() {
    let env = Env::new();
    let tls = Tls::generate(&env.path("tls"));
    let tokens = TokenService::start(&env.path("token"), &[(USER, PASSWORD)]);
    assert!(tokens.realm().starts_with("http://"));
    let reg = Registry::start(RegistryOptions {
        tls: Some((tls.server_cert.clone(), tls.server_key.clone())),
        auth: tokens.auth(),
    });
    write_auth(&env, &reg.host());
    let cert_dir = tls.cert_dir.to_str().unwrap();
    let reference = format!("{}/models/any:v1", reg.host());
    env.modelcar(&["--cert-dir", cert_dir, "pull", &reference])
        .failure()
        .stderr_has(&["over plain HTTP", &reg.host()]);
    assert!(tokens.issued().is_empty(), "no token was asked for");
}

#[test]
fn a_denied_upload_during_build_push_reads_as_denied_with_the_registrys_reason_and_is_not_retried()
{
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::DenyUploads, false, None);
    let dest = format!("{}/hostile/pushed:v1", reg.host());
    let out = env
        .cmd()
        .build(&example_model("sklearn"), &dest, &bases().busybox())
        .args(["--push", "--layers", "single"])
        .run()
        .failure()
        .stderr_has(&[
            "403",
            "DENIED",
            "requested access to the resource is denied",
            "hint:",
            "modelcar login",
        ]);
    assert!(
        !out.stderr.contains("cannot write a layer"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("corrupt"), "{}", out.stderr);
    // One model layer: refused once, not written and sent again.
    let seen = reg.seen();
    let started = seen.iter().filter(|s| s.method == "POST").count();
    let uploads = seen
        .iter()
        .filter(|s| s.target.contains("/upload/"))
        .count();
    assert_eq!((started, uploads), (1, 1), "{seen:?}");
}

#[test]
fn a_build_push_whose_registry_stops_reading_fails_within_the_read_timeout() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::StallUploads, false, None);
    let models = sklearn_models(&env.path("models"));
    // Larger than what socket buffers and the upload's queue hold.
    write_random(&models.join("weights.bin"), 40 << 20, 3);
    let dest = format!("{}/hostile/stalled:v1", reg.host());
    let started = Instant::now();
    env.cmd()
        .args(["--read-timeout", "1", "--retries", "0"])
        .build(&models, &dest, &bases().busybox())
        .args(["--push", "--layers", "single", "--compression", "none"])
        .run()
        .failure()
        .stderr_has(&[&reg.host(), "took no bytes for 1 s", "uploading a layer"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_build_push_whose_registry_takes_the_bytes_and_never_answers_fails_within_the_read_timeout() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::SilentAfterUploads, false, None);
    let models = sklearn_models(&env.path("models"));
    write_random(&models.join("weights.bin"), 2 << 20, 4);
    let dest = format!("{}/hostile/silent:v1", reg.host());
    let started = Instant::now();
    env.cmd()
        .args(["--read-timeout", "1", "--retries", "0"])
        .build(&models, &dest, &bases().busybox())
        .args(["--push", "--layers", "single", "--compression", "none"])
        .run()
        .failure()
        .stderr_has(&[
            &reg.host(),
            "took the whole body and sent no answer for 1 s",
            "uploading a layer",
        ]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// `modelcar push` of an image whose model layer is `size` bytes (uncompressed) to a fake
/// registry misbehaving as `how`, with a read timeout of 1 s and no retries: the failure and
/// how long it took.
fn push_to_stalling(
    how: Misbehaviour,
    size: u64,
) -> (support::cmd::Outcome, FakeRegistry, Duration) {
    push_to_misbehaving(how, size, "1")
}

/// A push of an image with a `size`-byte weights layer to a fake registry that misbehaves as
/// `how`, with `--read-timeout` `read_timeout`: its failure, the registry and how long it took.
fn push_to_misbehaving(
    how: Misbehaviour,
    size: u64,
    read_timeout: &str,
) -> (support::cmd::Outcome, FakeRegistry, Duration) {
    let env = Env::new();
    let reg = FakeRegistry::start(how, false, None);
    let models = sklearn_models(&env.path("models"));
    write_random(&models.join("weights.bin"), size, 5);
    let dest = format!("{}/hostile/stalled:v1", reg.host());
    env.build(
        &models,
        &dest,
        &bases().busybox(),
        &["--layers", "single", "--compression", "none"],
    );
    let started = Instant::now();
    let out = env
        .cmd()
        .args([
            "--read-timeout",
            read_timeout,
            "--retries",
            "0",
            "push",
            &dest,
        ])
        .run()
        .failure();
    (out, reg, started.elapsed())
}

/// A push of a `size`-byte layer to a registry that stops reading large uploads fails within
/// the read timeout, naming the registry and the upload; its body went in a `method` request.
fn a_stalled_upload_fails_within_the_read_timeout(size: u64, method: &str) {
    let (out, reg, took) = push_to_stalling(Misbehaviour::StallLargeUploads, size);
    out.stderr_has(&[
        &reg.host(),
        "took no bytes for 1 s",
        "uploading blob sha256:",
    ]);
    assert!(reg
        .seen()
        .iter()
        .any(|s| s.method == method && s.target.contains("/upload/")));
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_push_whose_registry_stops_reading_a_put_body_fails_within_the_read_timeout() {
    // 15 MiB: one PUT (blobs up to 16 MiB), more than the socket buffers on both sides hold.
    a_stalled_upload_fails_within_the_read_timeout(15 << 20, "PUT");
}

#[test]
fn a_push_whose_registry_stops_reading_a_patch_body_fails_within_the_read_timeout() {
    // 40 MiB: a streamed PATCH (blobs over 16 MiB), far more than the socket buffers hold.
    a_stalled_upload_fails_within_the_read_timeout(40 << 20, "PATCH");
}

#[test]
fn a_push_whose_registry_answers_before_the_body_and_stops_reading_gets_the_answer_at_once() {
    // 15 MiB: one PUT, more than the socket buffers on both sides hold; a read timeout far above
    // what the answer takes, so that waiting for it would show.
    let (out, reg, took) =
        push_to_misbehaving(Misbehaviour::RefuseLargeUploadsEarly, 15 << 20, "60");
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: {}",
        out.stderr
    );
    out.stderr_has(&[&reg.host(), "413", "SIZE_INVALID"]);
}

#[test]
fn a_push_whose_registry_takes_the_bytes_and_never_answers_fails_within_the_read_timeout() {
    let (out, reg, took) = push_to_stalling(Misbehaviour::SilentAfterUploads, 2 << 20);
    out.stderr_has(&[
        &reg.host(),
        "took the whole body and sent no answer for 1 s",
        "uploading blob sha256:",
    ]);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// A loopback port whose listening socket accepts nothing: its queue of connections waiting to
/// be accepted holds one, and that one is taken here, so the kernel drops every further SYN and
/// a connection to the port never completes (as with a firewall that drops packets). The
/// kernel does this on its own; no fake protocol is involved.
struct FullBacklog {
    _listener: std::net::TcpListener,
    _queued: TcpStream,
    port: u16,
}

impl FullBacklog {
    fn new() -> FullBacklog {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) on a socket this value owns; only its backlog changes.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let port = listener.local_addr().unwrap().port();
        let queued = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The queue is now full: a further connection must not complete.
        let probe = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            TcpStream::connect_timeout(&probe, Duration::from_millis(300)).is_err(),
            "the kernel completed a connection to a full backlog"
        );
        FullBacklog {
            _listener: listener,
            _queued: queued,
            port,
        }
    }
}

#[test]
fn a_registry_that_never_accepts_the_connection_fails_within_the_connect_timeout_saying_so() {
    let port = FullBacklog::new();
    let host = format!("127.0.0.1:{}", port.port);
    let reference = format!("{host}/hostile/model:v1");
    // By option, and by environment variable; the read timeout is long, so that only the
    // connect timeout can end the wait.
    for how in ["option", "environment"] {
        let env = Env::new();
        let mut cmd = env.cmd().args(["--read-timeout", "600", "--retries", "0"]);
        cmd = match how {
            "option" => cmd.args(["--connect-timeout", "1"]),
            _ => cmd.env("MODELCAR_CONNECT_TIMEOUT", "1"),
        };
        let started = Instant::now();
        let out = cmd.args(["pull", &reference]).run().failure();
        let took = started.elapsed();
        out.stderr_has(&[
            &host,
            "did not accept a connection within 1 s",
            "--connect-timeout",
        ]);
        // HTTPS, then plain HTTP (a loopback registry may be either): one second each.
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(10),
            "{how}: took {took:?}"
        );
    }
}

/// `sha512:<hex>` of `bytes`, by coreutils' sha512sum (a digest modelcar does not compute).
fn sha512(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new("sha512sum")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha512:{}", text.split_whitespace().next().unwrap())
}

/// A registry serving documents that refer to content by sha512 digests: tag `index` is an
/// index whose one manifest is named by sha512, tag `blobs` a manifest whose config and layer
/// are. It serves 404 for everything else, and records what is asked.
fn sha512_registry(seen: Arc<Mutex<Vec<Seen>>>) -> Server {
    let image = TinyImage::new();
    let manifest_512 = sha512(&image.manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_512, "size": image.manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha512(&image.config), "size": image.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha512(&image.layer), "size": image.layer.len()}]
    })
    .to_string();
    Server::start(move |conn| {
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        while let Ok(Some(head)) = Head::read(&mut r) {
            if read_body(&mut r, &head).is_err() {
                return;
            }
            let target = head.target().to_string();
            seen.lock().unwrap().push(Seen {
                method: head.method().to_string(),
                target: target.clone(),
                authorization: None,
            });
            let dist = (
                "Docker-Distribution-Api-Version",
                "registry/2.0".to_string(),
            );
            let doc = |media: &str| ("Content-Type", media.to_string());
            let res = if target == "/v2/" {
                respond(&mut w, 200, &[dist], b"{}")
            } else if target.ends_with("/manifests/index") {
                let ct = doc("application/vnd.oci.image.index.v1+json");
                respond(&mut w, 200, &[dist, ct], index.as_bytes())
            } else if target.ends_with("/manifests/blobs") {
                let ct = doc("application/vnd.oci.image.manifest.v1+json");
                respond(&mut w, 200, &[dist, ct], manifest.as_bytes())
            } else {
                respond(&mut w, 404, &[dist], &error_body("MANIFEST_UNKNOWN", "no"))
            };
            if res.is_err() {
                return;
            }
        }
    })
}

#[test]
fn sha512_digests_in_a_registrys_documents_are_called_unsupported_not_a_mismatch() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = sha512_registry(seen.clone());
    let host = format!("127.0.0.1:{}", server.port);
    for tag in ["index", "blobs"] {
        let env = Env::new();
        let reference = format!("{host}/hostile/model:{tag}");
        for args in [
            vec!["pull", reference.as_str()],
            vec!["inspect", reference.as_str()],
        ] {
            let out = env.modelcar(&args).failure();
            let out = out.stderr_has(&["sha512", "sha256 digests only", "hint:"]);
            assert!(!out.stderr.contains("does not match"), "{}", out.stderr);
        }
        assert_eq!(
            env.modelcar(&["images", "--json"]).success().stdout.trim(),
            "[]"
        );
    }
    // Refused before it was asked for: no request names a sha512 digest.
    let got = seen.lock().unwrap().clone();
    assert!(!got.iter().any(|s| s.target.contains("sha512")), "{got:?}");
}

/// Upload `bytes` to a real registry as a blob named by `digest`, which must be accepted.
fn upload_as(http: &reqwest::blocking::Client, host: &str, repo: &str, digest: &str, bytes: &[u8]) {
    let start = http
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(start.status().as_u16(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{location}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text());
}

#[test]
fn sha512_digests_in_an_image_on_a_real_registry_are_called_unsupported_not_a_mismatch() {
    // The distribution registry takes blobs and manifests named by sha512 (as the OCI
    // specification allows); modelcar refuses to pull them, saying why.
    let reg = Registry::plain();
    let host = reg.host();
    let http = reqwest::blocking::Client::new();
    let image = TinyImage::new();
    let (config, layer) = (sha512(&image.config), sha512(&image.layer));
    upload_as(&http, &host, "hostile/model", &config, &image.config);
    upload_as(&http, &host, "hostile/model", &layer, &image.layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": image.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": image.layer.len()}]
    })
    .to_string();
    let put = http
        .put(format!("http://{host}/v2/hostile/model/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text());
    // The registry serves the blob by its sha512 name: the content is there to be pulled.
    let got = http
        .get(format!("http://{host}/v2/hostile/model/blobs/{layer}"))
        .send()
        .unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), image.layer.as_slice());

    let env = Env::new();
    let out = env
        .modelcar(&["pull", &format!("{host}/hostile/model:v1")])
        .failure();
    let out = out.stderr_has(&["sha512", "sha256 digests only", "hint:"]);
    assert!(!out.stderr.contains("does not match"), "{}", out.stderr);
    assert_eq!(
        env.modelcar(&["images", "--json"]).success().stdout.trim(),
        "[]"
    );
}

#[test]
fn a_referrer_manifest_that_does_not_match_the_digest_it_was_asked_by_is_refused() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::SwappedReferrer, false, None);
    let reference = format!("{}/hostile/model:v1", reg.host());
    let out = env.modelcar(&["sbom", &reference]).failure();
    let out = out.stderr_has(&[
        "does not match its digest",
        &sha256(&SwappedBom::new().listed),
    ]);
    assert!(!out.stdout.contains("forged"), "{}", out.stdout);
}
