//! Image references and image locations, spelled as container tools spell them.
//!
//! An [`ImageRef`] is a registry reference (`host[:port]/path[:tag][@sha256:...]`, with Docker
//! Hub's short names expanded as Docker does). A [`Location`] says where an image is read from
//! or written to, with skopeo's transport prefixes: `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE[:REF]`, `docker://REF`, or a plain reference (the local store, then the
//! registry).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::Digest;

use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

/// A parsed registry reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path (`library/busybox`, `org/model`).
    pub repository: String,
    /// Tag; `None` when only a digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// The reference without its digest: `registry/repository:tag`.
    pub fn tagged(&self) -> String {
        format!(
            "{}/{}:{}",
            self.registry,
            self.repository,
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository@digest`.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}/{}@{}", self.registry, self.repository, digest)
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn bad(input: &str, why: impl fmt::Display) -> Error {
    Error::invalid(format!("invalid image reference `{input}`: {why}"))
        .with_hint("write it as host[:port]/path[:tag][@sha256:<64 hex digits>], for example quay.io/org/model:v1")
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if sep.is_empty() || !ok {
            return false;
        }
    }
    true
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) => {
                if !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                ("x", port.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    host_ok && port_ok
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        if input.is_empty() {
            return Err(bad(input, "it is empty"));
        }
        if input.contains("://") {
            return Err(bad(
                input,
                "a reference has no scheme (drop the `xxx://` prefix)",
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = crate::digest::parse(d).map_err(|_| {
                    match d.split_once(':') {
                        // A digest of another algorithm is well formed, just not one modelcar
                        // can check: say so rather than call it malformed.
                        Some((alg @ ("sha384" | "sha512"), _)) => bad(
                            input,
                            format!("{alg} digests are not supported: modelcar checks content against sha256 digests only"),
                        ),
                        _ => bad(
                            input,
                            format!("`{d}` is not sha256: followed by 64 lowercase hex digits"),
                        ),
                    }
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(
                    input,
                    format!(
                        "tag `{t}` must be 1 to 128 of A-Z a-z 0-9 _ . - and not start with . or -"
                    ),
                ));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                if !valid_host(first) {
                    return Err(bad(
                        input,
                        format!("`{first}` is not a valid registry host[:port]"),
                    ));
                }
                (first.to_string(), path.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for c in path.split('/') {
            if !valid_component(c) {
                return Err(bad(
                    input,
                    format!("repository part `{c}` must be lowercase letters and digits, separated by . _ __ or -"),
                ));
            }
        }
        if registry.len() + 1 + path.len() > 255 {
            return Err(bad(input, "the name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry,
            repository: path,
            tag,
            digest,
        })
    }
}

/// Where an image is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A registry reference; when reading, the local store is tried first.
    Registry(ImageRef),
    /// A registry reference given as `docker://REF`: always the registry.
    Remote(ImageRef),
    /// An OCI image layout directory and the `ref.name` of an image in it.
    OciDir {
        path: PathBuf,
        reference: Option<String>,
    },
    /// A tar archive of an OCI image layout.
    OciArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    /// A `docker save` archive.
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
}

fn split_path(rest: &str) -> (PathBuf, Option<String>) {
    // As skopeo does on Unix: the path ends at the first colon.
    match rest.split_once(':') {
        Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
        Some((p, _)) => (PathBuf::from(p), None),
        None => (PathBuf::from(rest), None),
    }
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let need_path = |kind: &str| {
            Error::invalid(format!("`{input}` names no path after `{kind}:`"))
                .with_hint(format!("write {kind}:PATH[:REFERENCE]"))
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            let (path, reference) = split_path(rest);
            if path.as_os_str().is_empty() {
                return Err(need_path("oci"));
            }
            return Ok(Location::OciDir { path, reference });
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (path, reference) = split_path(rest);
            if path.as_os_str().is_empty() {
                return Err(need_path("oci-archive"));
            }
            return Ok(Location::OciArchive { path, reference });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            let (path, reference) = split_path(rest);
            if path.as_os_str().is_empty() {
                return Err(need_path("docker-archive"));
            }
            return Ok(Location::DockerArchive { path, reference });
        }
        if let Some(rest) = input.strip_prefix("docker://") {
            return Ok(Location::Remote(rest.parse()?));
        }
        if let Some((scheme, _)) = input.split_once(':') {
            if [
                "dir",
                "containers-storage",
                "docker-daemon",
                "oci-layout",
                "ostree",
            ]
            .contains(&scheme)
            {
                return Err(Error::invalid(format!("transport `{scheme}:` of `{input}` is not supported"))
                    .with_hint("use oci:DIR[:REF], oci-archive:FILE, docker-archive:FILE or a registry reference"));
            }
        }
        Ok(Location::Registry(input.parse()?))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, kind: &str, p: &PathBuf, r: &Option<String>| {
            write!(f, "{kind}:{}", p.display())?;
            if let Some(r) = r {
                write!(f, ":{r}")?;
            }
            Ok(())
        };
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Remote(r) => write!(f, "docker://{r}"),
            Location::OciDir { path, reference } => with(f, "oci", path, reference),
            Location::OciArchive { path, reference } => with(f, "oci-archive", path, reference),
            Location::DockerArchive { path, reference } => {
                with(f, "docker-archive", path, reference)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn docker_hub_short_names_expand() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r("me/model:v1").to_string(), "docker.io/me/model:v1");
        assert_eq!(
            r("index.docker.io/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let x = r("localhost:5000/a/b:1.0");
        assert_eq!(
            (x.registry.as_str(), x.repository.as_str(), x.tag.as_deref()),
            ("localhost:5000", "a/b", Some("1.0"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let y = r(&format!("quay.io/org/m@{d}"));
        assert_eq!(y.tag, None);
        assert_eq!(y.digest.as_ref().unwrap().to_string(), d);
        let z = r(&format!("quay.io/org/m:v1@{d}"));
        assert_eq!(z.to_string(), format!("quay.io/org/m:v1@{d}"));
        assert_eq!(r("127.0.0.1:5000/x").tagged(), "127.0.0.1:5000/x:latest");
        assert_eq!(r("[::1]:5000/x:y").registry, "[::1]:5000");
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        for (input, says) in [
            ("", "empty"),
            ("Quay.io/Org/Model", "lowercase"),
            ("quay.io/org/model:", "tag"),
            ("quay.io/org/model:-x", "tag"),
            ("quay.io/org/model@sha256:abc", "64"),
            ("quay.io//model", "repository part"),
            ("https://quay.io/x", "scheme"),
            ("quay.io:99999999/x", "host"),
            ("localhost:99999/x", "host"),
        ] {
            let err = input.parse::<ImageRef>().unwrap_err().to_string();
            assert!(err.contains(says), "{input}: {err}");
        }
    }

    #[test]
    fn locations_use_skopeo_spellings() {
        assert_eq!(
            "oci:/tmp/lay:quay.io/x/y:v1".parse::<Location>().unwrap(),
            Location::OciDir {
                path: "/tmp/lay".into(),
                reference: Some("quay.io/x/y:v1".into())
            }
        );
        assert_eq!(
            "oci-archive:base.tar".parse::<Location>().unwrap(),
            Location::OciArchive {
                path: "base.tar".into(),
                reference: None
            }
        );
        assert!(
            matches!("docker-archive:a.tar:busybox:latest".parse::<Location>().unwrap(),
            Location::DockerArchive { reference: Some(ref r), .. } if r == "busybox:latest")
        );
        assert!(matches!(
            "busybox".parse::<Location>().unwrap(),
            Location::Registry(_)
        ));
        assert!(matches!(
            "docker://busybox".parse::<Location>().unwrap(),
            Location::Remote(_)
        ));
        assert!("oci:".parse::<Location>().is_err());
        assert!("containers-storage:x".parse::<Location>().is_err());
    }

    #[test]
    fn a_sha512_digest_is_called_unsupported_not_malformed() {
        let text = format!("quay.io/org/model@sha512:{}", "a".repeat(128));
        let e = text.parse::<ImageRef>().unwrap_err().to_string();
        assert!(e.contains("sha512 digests are not supported"), "{e}");
    }
}
