//! Build modelcar's own container image with modelcar's library: a base (any OCI layout or
//! stored image with a shell) plus one layer holding the static `modelcar` binary at
//! `/usr/local/bin/modelcar` (mode 0555) and a CA bundle at `/etc/ssl/certs/ca-certificates.crt`
//! (0444), tagged in the local store. `make image` runs it; `modelcar push` and `modelcar
//! export` take the result from there.
//!
//! Each `--binary` is put on the base's platform of its architecture, read from the binary's ELF
//! header (x86_64, aarch64, ppc64le, s390x, riscv64): one binary gives an image manifest, several
//! give an index with a manifest per platform. A binary whose platform the base lacks is refused.
//!
//! `modelcar build` writes model files under /models only, which is what a modelcar needs; a
//! tool image needs files elsewhere, so this example composes the image from the same library
//! parts the build uses (store, transport, image documents, canonical JSON) instead.
//!
//! Reproducible: every entry has owner 0:0, fixed modes and the time --epoch (else
//! SOURCE_DATE_EPOCH, else 0); gzip writes no name or time; the documents are canonical JSON. The same base, binary and
//! bundle give the same digest.
//!
//! The image has no ENTRYPOINT: CI systems (Tekton `script`, GitLab `script`, GitHub
//! `container:` jobs) run their own shell commands in it, and `modelcar ...` is on PATH. It runs
//! as 1001:0 and keeps its store in /tmp/modelcar (MODELCAR_STORE), writable by any user, so an
//! arbitrary UID (OpenShift) works too.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use modelcar::image;
use modelcar::reference::{ImageRef, Location};
use modelcar::store::Store;
use oci_spec::image::{Descriptor, ImageIndex, MediaType, Platform};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Parser)]
struct Args {
    /// Base image with a shell: oci:DIR[:REF] or a reference in the store.
    #[arg(long)]
    base: String,
    /// Reference to tag the image with in the store.
    #[arg(long)]
    tag: String,
    /// A static modelcar binary (repeat for more platforms: one per architecture).
    #[arg(long, required = true)]
    binary: Vec<PathBuf>,
    /// CA certificates bundle (PEM), installed as /etc/ssl/certs/ca-certificates.crt.
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    ca: PathBuf,
    /// Time of every entry and of the image, in seconds since the epoch (default:
    /// SOURCE_DATE_EPOCH, else 0). A flag rather than the variable, so that cargo, which runs
    /// this example, does not see a new value at every commit.
    #[arg(long)]
    epoch: Option<u64>,
    /// Local store (default: MODELCAR_STORE or modelcar's default).
    #[arg(long)]
    store: Option<PathBuf>,
}

/// An entry of the layer: a directory or a copy of a file, with its mode.
enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a Path, u32),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = Store::open(args.store.clone().unwrap_or_else(Store::default_path))?;
    let epoch = match args.epoch {
        Some(e) => e,
        None => modelcar::build::source_date_epoch()?,
    };
    let reference: ImageRef = args.tag.parse()?;
    let base_location: Location = args.base.parse()?;
    let base = modelcar::transport::resolve(&store, &base_location, None, None)
        .with_context(|| format!("reading the base {}", args.base))?;
    let images = image::platform_images(&store, &base.descriptor)?;
    // (position of the platform in the base, platform, manifest)
    let mut manifests: Vec<(usize, Platform, Descriptor)> = Vec::new();
    for binary in &args.binary {
        let arch = elf_architecture(binary)?;
        let mut found = Vec::new();
        let mut chosen = None;
        for (pos, img) in images.iter().enumerate() {
            let platform = match &img.platform {
                Some(p) => Some(p.clone()),
                None => modelcar::transport::platform_of_config(&image::read_config(
                    &store,
                    img.manifest.config(),
                )?),
            };
            let Some(platform) = platform else { continue };
            found.push(image::platform_string(&platform));
            if platform.os().to_string() == "linux"
                && platform.architecture().to_string() == arch
                && chosen.is_none()
            {
                chosen = Some((pos, img, platform));
            }
        }
        let Some((pos, base_image, platform)) = chosen else {
            anyhow::bail!(
                "{} is a linux/{arch} binary, and the base {} has no linux/{arch} platform (it has {}): give a base with every platform of the binaries (TOOL_BASE)",
                binary.display(),
                args.base,
                if found.is_empty() { "none".to_string() } else { found.join(", ") }
            );
        };
        if manifests
            .iter()
            .any(|(_, p, _)| p.architecture() == platform.architecture())
        {
            anyhow::bail!("two binaries for linux/{arch}: give one per architecture");
        }
        let desc = platform_manifest(&store, base_image, binary, &args.ca, epoch)?;
        manifests.push((pos, platform, desc));
    }
    // In the base's order, whatever the order of the binaries.
    manifests.sort_by_key(|(pos, _, _)| *pos);
    let top = if manifests.len() == 1 {
        manifests.remove(0).2
    } else {
        let mut index = ImageIndex::default();
        index.set_schema_version(2);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(
            manifests
                .into_iter()
                .map(|(_, platform, mut d)| {
                    d.set_platform(Some(platform));
                    d
                })
                .collect(),
        );
        index.set_annotations(Some(std::collections::HashMap::from([
            (
                "org.opencontainers.image.created".to_string(),
                modelcar::build::rfc3339(epoch),
            ),
            (
                "org.opencontainers.image.title".to_string(),
                "modelcar".to_string(),
            ),
            (
                "org.opencontainers.image.base.digest".to_string(),
                base.descriptor.digest().to_string(),
            ),
        ])));
        store.put_document(MediaType::ImageIndex, &modelcar::json::canonical(&index))?
    };
    store.tag(&reference.tagged(), &top)?;
    println!("{}@{}", reference.tagged(), top.digest());
    Ok(())
}

/// The image of one platform: the base's manifest plus the layer with `binary` and `ca`.
fn platform_manifest(
    store: &Store,
    base_image: &image::PlatformImage,
    binary: &Path,
    ca: &Path,
    epoch: u64,
) -> anyhow::Result<Descriptor> {
    let entries = [
        Entry::Dir("etc/", 0o755),
        Entry::Dir("etc/ssl/", 0o755),
        Entry::Dir("etc/ssl/certs/", 0o755),
        Entry::File("etc/ssl/certs/ca-certificates.crt", ca, 0o444),
        Entry::Dir("tmp/", 0o1777),
        Entry::Dir("usr/", 0o755),
        Entry::Dir("usr/local/", 0o755),
        Entry::Dir("usr/local/bin/", 0o755),
        Entry::File("usr/local/bin/modelcar", binary, 0o555),
    ];
    let (layer, diff_id) = write_layer(store, &entries, epoch)?;

    let created = modelcar::build::rfc3339(epoch);
    let mut config = image::read_config(store, base_image.manifest.config())?;
    let c = &mut config["config"];
    c["Env"] = serde_json::json!([
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/tmp",
        "MODELCAR_STORE=/tmp/modelcar/store"
    ]);
    c["Cmd"] = serde_json::json!(["modelcar", "--help"]);
    c["User"] = "1001:0".into();
    c["WorkingDir"] = "/tmp".into();
    if let Some(o) = c.as_object_mut() {
        o.remove("Entrypoint");
    }
    c["Labels"] = serde_json::json!({
        "org.opencontainers.image.title": "modelcar",
        "org.opencontainers.image.version": env!("CARGO_PKG_VERSION"),
        "org.opencontainers.image.description": env!("CARGO_PKG_DESCRIPTION"),
    });
    config["created"] = created.clone().into();
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("the base config has no rootfs.diff_ids")?
        .push(format!("sha256:{diff_id}").into());
    if let Some(history) = config["history"].as_array_mut() {
        history.push(serde_json::json!({
            "created": created,
            "created_by": "modelcar tool image: /usr/local/bin/modelcar and CA certificates",
        }));
    }
    let config_desc =
        store.put_document(MediaType::ImageConfig, &modelcar::json::canonical(&config))?;

    let mut layers = Vec::new();
    for l in base_image.manifest.layers() {
        layers.push(Descriptor::new(
            image::oci_layer_media_type(l.media_type())?,
            l.size(),
            l.digest().clone(),
        ));
    }
    layers.push(layer);
    let mut manifest = image::new_manifest(config_desc, layers);
    let mut annotations = std::collections::HashMap::new();
    annotations.insert("org.opencontainers.image.created".to_string(), created);
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        "modelcar".to_string(),
    );
    annotations.insert(
        "org.opencontainers.image.base.digest".to_string(),
        base_image.descriptor.digest().to_string(),
    );
    manifest.set_annotations(Some(annotations));
    Ok(store.put_document(
        MediaType::ImageManifest,
        &modelcar::json::canonical(&manifest),
    )?)
}

/// The OCI architecture of an ELF executable, from its header.
fn elf_architecture(path: &Path) -> anyhow::Result<&'static str> {
    use std::io::Read as _;
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading the ELF header of {}", path.display()))?;
    if &head[..4] != b"\x7fELF" {
        anyhow::bail!("{} is not an ELF executable", path.display());
    }
    let (class64, little) = (head[4] == 2, head[5] == 1);
    let machine = if little {
        u16::from_le_bytes([head[18], head[19]])
    } else {
        u16::from_be_bytes([head[18], head[19]])
    };
    Ok(match (machine, class64, little) {
        (62, true, true) => "amd64",
        (183, true, true) => "arm64",
        (21, true, true) => "ppc64le",
        (22, true, false) => "s390x",
        (243, true, true) => "riscv64",
        _ => anyhow::bail!(
            "{} is an ELF executable for machine {machine} ({}-bit, {} endian), not one of amd64, arm64, ppc64le, s390x, riscv64",
            path.display(),
            if class64 { 64 } else { 32 },
            if little { "little" } else { "big" }
        ),
    })
}

/// Write the layer (gzip) into the store; returns its descriptor and the hex SHA-256 of the
/// uncompressed tar (its diff ID).
fn write_layer(
    store: &Store,
    entries: &[Entry],
    epoch: u64,
) -> anyhow::Result<(Descriptor, String)> {
    let blob = store.blob_writer()?;
    let gz = flate2::GzBuilder::new().write(blob, flate2::Compression::best());
    let mut tar = tar::Builder::new(Tee {
        hash: Sha256::new(),
        inner: gz,
    });
    for entry in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(epoch);
        match entry {
            Entry::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                tar.append_data(&mut h, path, io::empty())?;
            }
            Entry::File(path, source, mode) => {
                let file = std::fs::File::open(source)
                    .with_context(|| format!("opening {}", source.display()))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(file.metadata()?.len());
                tar.append_data(&mut h, path, file)?;
            }
        }
    }
    let tee = tar.into_inner()?;
    let diff_id = hex::encode(tee.hash.finalize());
    let blob = tee.inner.finish()?;
    let (digest, size) = blob.commit(store, None)?;
    Ok((
        Descriptor::new(MediaType::ImageLayerGzip, size, digest),
        diff_id,
    ))
}

/// Hashes what passes through: the tar stream on its way to gzip.
struct Tee<W> {
    hash: Sha256,
    inner: W,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
