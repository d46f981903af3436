//! modelcar against registries that misbehave on purpose: one that never answers, one that
//! trickles bytes, one that asks to wait a day, ones that send wrong or extra bytes, ones that
//! send the client to another host (a redirect, an upload location), and a TLS registry whose
//! token service is plain HTTP.
//!
//! No real registry can be made to do most of this, so most tests here run a small fake
//! registry on a loopback port (the harness's HTTP helpers) that serves one tiny image and
//! records every request it gets. The token-realm test uses the real registry behind TLS.
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
        if matches!(how, Misbehaviour::StallUploads) && target.contains("/upload/") {
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        let Ok(_body) = read_body(&mut r, &head) else {
            return;
        };
        if let Misbehaviour::Silent = how {
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
        let result = if target == "/v2/" {
            respond(&mut w, 200, &[dist], b"{}")
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
        } else if head.method() == "PUT" && target.contains("/manifests/") {
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
fn a_push_whose_registry_stops_reading_fails_within_the_read_timeout() {
    let env = Env::new();
    let reg = FakeRegistry::start(Misbehaviour::StallUploads, false, None);
    let models = sklearn_models(&env.path("models"));
    // Larger than what socket buffers hold, and than the one-PUT size.
    write_random(&models.join("weights.bin"), 40 << 20, 3);
    let dest = format!("{}/hostile/stalled:v1", reg.host());
    env.build(
        &models,
        &dest,
        &bases().busybox(),
        &["--layers", "single", "--compression", "none"],
    );
    let started = Instant::now();
    env.cmd()
        .args(["--read-timeout", "1", "--retries", "0", "push", &dest])
        .run()
        .failure()
        // The large blob stalls while sent; small ones are taken whole and never answered.
        .stderr_has(&[&reg.host(), "no bytes for 1 s", "uploading blob"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
