//! Registry credentials, read where users already keep them, and `WWW-Authenticate` challenges.
//!
//! Credentials come from the first of `REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json` and
//! `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) that has an entry for the registry:
//! `auths` (base64 `user:password`, or an identity token), `credHelpers` and `credsStore`
//! (through the `docker-credential-*` helpers). `modelcar login` writes podman's `auth.json`
//! format, so `podman login` and `modelcar login` are interchangeable. Secrets are never part of
//! `Debug` output or error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};

use crate::error::{io_err, Error, Result};
use crate::limits;

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// The auth files consulted, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    let home = env("HOME");
    if let Some(d) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(d) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        files.push(d.join("config.json"));
    }
    files
}

/// The file `modelcar login` writes: `REGISTRY_AUTH_FILE`, else podman's default.
pub fn login_file() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        return f;
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        return d.join("containers/auth.json");
    }
    env("XDG_CONFIG_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("containers/auth.json")
}

/// Keys an auth file may use for a registry, most specific first (podman allows
/// `registry/namespace` keys; Docker Hub's historical key is its v1 URL).
fn candidate_keys(registry: &str, repository: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(repo) = repository {
        let parts: Vec<&str> = repo.split('/').collect();
        for n in (1..=parts.len()).rev() {
            keys.push(format!("{registry}/{}", parts[..n].join("/")));
        }
    }
    keys.push(registry.to_string());
    keys.push(format!("https://{registry}"));
    keys.push(format!("http://{registry}"));
    if registry == "docker.io" {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("index.docker.io".into());
        keys.push("registry-1.docker.io".into());
    }
    keys
}

/// Find a credential for `registry` (and optionally a repository, for namespaced entries).
pub fn lookup(registry: &str, repository: Option<&str>) -> Result<Option<Credential>> {
    for file in auth_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "auth file {} is not valid JSON: {e}",
                file.display()
            ))
            .with_hint("fix or remove it (podman login and modelcar login rewrite it)")
        })?;
        if let Some(c) = from_document(&doc, registry, repository, &file)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn from_document(
    doc: &Value,
    registry: &str,
    repository: Option<&str>,
    file: &Path,
) -> Result<Option<Credential>> {
    let keys = candidate_keys(registry, repository);
    if let Some(helpers) = doc.get("credHelpers").and_then(Value::as_object) {
        for k in &keys {
            if let Some(helper) = helpers.get(k).and_then(Value::as_str) {
                return helper_get(helper, registry);
            }
        }
    }
    if let Some(auths) = doc.get("auths").and_then(Value::as_object) {
        for k in &keys {
            if let Some(entry) = auths.get(k) {
                if let Some(c) = decode_entry(entry, file, k)? {
                    return Ok(Some(c));
                }
            }
        }
    }
    if let Some(store) = doc.get("credsStore").and_then(Value::as_str) {
        return helper_get(store, registry);
    }
    Ok(None)
}

fn decode_entry(entry: &Value, file: &Path, key: &str) -> Result<Option<Credential>> {
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential::IdentityToken(token.to_string())));
    }
    let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid(format!(
            "the `auth` entry for {key} in {} is not base64 of user:password",
            file.display()
        ))
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credential::Basic {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// Ask a `docker-credential-NAME` helper for the registry's credential.
///
/// The helper is a program named by the user's Docker config, run with the registry on its
/// stdin: its answer is read up to [`limits::MAX_CREDENTIAL_HELPER_ANSWER`] bytes, and a helper that
/// has not answered in [`helper_timeout`] is stopped.
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credential>> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::invalid(format!(
            "credential helper name \"{}\" in your Docker config is not a helper name",
            crate::text::escape(helper)
        ))
        .with_hint("helper names are like \"pass\" or \"ecr-login\" (docker-credential-NAME on the PATH); fix credHelpers/credsStore"));
    }
    let program = format!("docker-credential-{helper}");
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::invalid(format!("credential helper {program} cannot be run: {e}")).with_hint(
                "install it, or remove it from credHelpers/credsStore in your Docker config",
            )
        })?;
    // The registry goes in and the answer comes out on threads of their own, so that neither
    // a helper that never reads nor one that never ends its answer can hold this one.
    let mut stdin = child.stdin.take().expect("piped");
    let question = server.to_string();
    std::thread::spawn(move || {
        let _ = stdin.write_all(question.as_bytes());
    });
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answer = Vec::new();
        let read = stdout
            .take(limits::MAX_CREDENTIAL_HELPER_ANSWER + 1)
            .read_to_end(&mut answer);
        let _ = tx.send(read.map(|_| answer));
    });
    let limit = helper_timeout()?;
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait().map_err(io_err("run", &program))? {
            Some(status) => break status,
            None if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::invalid(format!(
                    "credential helper {program} gave no answer for {registry} in {} s; it was stopped",
                    limit.as_secs()
                ))
                .with_hint("it may be waiting for you to unlock a keychain: unlock it and run the command again, set MODELCAR_CREDENTIAL_HELPER_TIMEOUT (seconds) to wait longer, or log in with `modelcar login`"));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    // The helper has ended: its stdout closes unless it left a child holding it.
    let stdout = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .map_err(|_| {
            Error::invalid(format!(
                "credential helper {program} ended, but its output stayed open"
            ))
        })?
        .map_err(io_err("read the answer of", &program))?;
    if stdout.len() as u64 > limits::MAX_CREDENTIAL_HELPER_ANSWER {
        return Err(Error::invalid(format!(
            "credential helper {program} answered more than {} bytes",
            limits::MAX_CREDENTIAL_HELPER_ANSWER
        ))
        .with_hint(
            "a credential is a few hundred bytes of JSON; check what the helper prints for `get`",
        ));
    }
    if !status.success() {
        // Helpers answer "credentials not found" with a failure: no credential, not an error.
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&stdout).map_err(|_| {
        Error::invalid(format!(
            "credential helper {program} answered something that is not JSON"
        ))
    })?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if user == "<token>" {
        Credential::IdentityToken(secret.to_string())
    } else {
        Credential::Basic {
            username: user.to_string(),
            password: secret.to_string(),
        }
    }))
}

/// How long a credential helper may take: [`limits::CREDENTIAL_HELPER_TIMEOUT_SECS`], or
/// `MODELCAR_CREDENTIAL_HELPER_TIMEOUT` seconds.
fn helper_timeout() -> Result<std::time::Duration> {
    let Ok(v) = std::env::var("MODELCAR_CREDENTIAL_HELPER_TIMEOUT") else {
        return Ok(std::time::Duration::from_secs(
            limits::CREDENTIAL_HELPER_TIMEOUT_SECS,
        ));
    };
    match v.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(std::time::Duration::from_secs(secs)),
        _ => Err(Error::invalid(format!(
            "MODELCAR_CREDENTIAL_HELPER_TIMEOUT is \"{}\", not a number of seconds",
            crate::text::escape(&v)
        ))
        .with_hint(
            "set it to a whole number of seconds above 0, or unset it for the default of 60",
        )),
    }
}

/// Record a credential in `file` (podman's format), keeping everything else in it.
pub fn store(file: &Path, registry: &str, username: &str, password: &str) -> Result<()> {
    let mut doc = read_or_empty(file)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    doc["auths"][registry] = json!({ "auth": auth });
    write_private(file, &doc)
}

/// Remove a registry's entry from `file`; returns whether there was one.
pub fn remove(file: &Path, registry: &str) -> Result<bool> {
    let mut doc = read_or_empty(file)?;
    let removed = doc
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .map(|a| a.remove(registry).is_some())
        .unwrap_or(false);
    if removed {
        write_private(file, &doc)?;
    }
    Ok(removed)
}

fn read_or_empty(file: &Path) -> Result<Value> {
    let doc = match std::fs::read_to_string(file) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| {
            Error::invalid(format!(
                "auth file {} is not valid JSON: {e}",
                file.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(io_err("read", file)(e)),
    };
    let mut doc = if doc.is_object() { doc } else { json!({}) };
    if !doc.get("auths").is_some_and(Value::is_object) {
        doc["auths"] = json!({});
    }
    Ok(doc)
}

fn write_private(file: &Path, doc: &Value) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err("write into", dir))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("set permissions of", file))?;
    let text = serde_json::to_string_pretty(doc).expect("serialises");
    tmp.write_all(text.as_bytes())
        .map_err(io_err("write", file))?;
    tmp.persist(file)
        .map_err(|e| io_err("write", file)(e.error))?;
    Ok(())
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="...",service="...",scope="..."` (quoted or token values).
///
/// The header comes from the registry: one longer than [`limits::MAX_CHALLENGE`] is refused
/// (`None`), and only the first [`limits::MAX_CHALLENGE_PARAMS`] parameters are kept, so what
/// is kept is never larger than the header.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    if header.len() > limits::MAX_CHALLENGE {
        return None;
    }
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        if params.len() < limits::MAX_CHALLENGE_PARAMS || params.contains_key(&key) {
            params.insert(key, value);
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.params["realm"].as_str()),
            ("basic", "Registry Realm")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_challenge_header_parses_without_panic_into_no_more_than_it_holds(header in ".{0,600}") {
            if let Some(c) = parse_challenge(&header) {
                proptest::prop_assert!(c.params.len() <= limits::MAX_CHALLENGE_PARAMS);
                let kept: usize = c.scheme.len() + c.params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                proptest::prop_assert!(kept <= header.len(), "{kept} from {}", header.len());
            }
        }

        #[test]
        fn challenge_bytes_from_the_network_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let header = String::from_utf8_lossy(&bytes);
            let _ = parse_challenge(&header);
        }

        #[test]
        fn quoted_values_come_back_as_sent(realm in "[ -~]{0,60}", scope in "[ -~]{0,60}") {
            let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
            let header = format!(r#"Bearer realm="{}",scope="{}""#, quote(&realm), quote(&scope));
            let c = parse_challenge(&header).expect("parses");
            proptest::prop_assert_eq!(c.scheme.as_str(), "bearer");
            proptest::prop_assert_eq!(&c.params["realm"], &realm);
            proptest::prop_assert_eq!(&c.params["scope"], &scope);
        }
    }

    #[test]
    fn an_oversized_challenge_is_refused_and_parameters_are_capped() {
        assert_eq!(
            parse_challenge(&format!(
                "Bearer realm=\"{}\"",
                "a".repeat(limits::MAX_CHALLENGE)
            )),
            None
        );
        let many: Vec<String> = (0..1000).map(|i| format!("k{i}=v")).collect();
        let c = parse_challenge(&format!("Bearer {}", many.join(","))).unwrap();
        assert_eq!(c.params.len(), limits::MAX_CHALLENGE_PARAMS);
    }

    #[test]
    fn auth_files_round_trip_and_namespaced_keys_win() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("auth.json");
        store(&f, "localhost:5000", "alice", "s3cr:et").unwrap();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(
            from_document(&doc, "localhost:5000", None, &f).unwrap(),
            Some(Credential::Basic {
                username: "alice".into(),
                password: "s3cr:et".into()
            })
        );
        let mut doc = doc;
        doc["auths"]["localhost:5000/team"] =
            json!({"auth": base64::engine::general_purpose::STANDARD.encode("bob:pw")});
        let c = from_document(&doc, "localhost:5000", Some("team/model"), &f)
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Credential::Basic {
                username: "bob".into(),
                password: "pw".into()
            }
        );
        assert!(remove(&f, "localhost:5000").unwrap());
        assert!(!remove(&f, "localhost:5000").unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn docker_hub_keys_and_identity_tokens() {
        let doc = json!({"auths": {"https://index.docker.io/v1/": {"identitytoken": "tok"}}});
        let c = from_document(&doc, "docker.io", Some("library/busybox"), Path::new("x")).unwrap();
        assert_eq!(c, Some(Credential::IdentityToken("tok".into())));
        assert!(!format!("{c:?}").contains("tok"));
    }
}
