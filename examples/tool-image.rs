//! Build modelcar's own container image with modelcar's library: a base (any OCI layout or
//! stored image with a shell) plus one layer holding the static `modelcar` binary at
//! `/usr/local/bin/modelcar` (mode 0555) and a CA bundle at `/etc/ssl/certs/ca-certificates.crt`
//! (0444), tagged in the local store. `make image` runs it; `modelcar push` and `modelcar
//! export` take the result from there.
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
use oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Parser)]
struct Args {
    /// Base image with a shell: oci:DIR[:REF] or a reference in the store.
    #[arg(long)]
    base: String,
    /// Reference to tag the image with in the store.
    #[arg(long)]
    tag: String,
    /// The static modelcar binary.
    #[arg(long)]
    binary: PathBuf,
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
    let [base_image] = images.as_slice() else {
        anyhow::bail!("the base {} must have exactly one platform", args.base);
    };

    let entries = [
        Entry::Dir("etc/", 0o755),
        Entry::Dir("etc/ssl/", 0o755),
        Entry::Dir("etc/ssl/certs/", 0o755),
        Entry::File("etc/ssl/certs/ca-certificates.crt", &args.ca, 0o444),
        Entry::Dir("tmp/", 0o1777),
        Entry::Dir("usr/", 0o755),
        Entry::Dir("usr/local/", 0o755),
        Entry::Dir("usr/local/bin/", 0o755),
        Entry::File("usr/local/bin/modelcar", &args.binary, 0o555),
    ];
    let (layer, diff_id) = write_layer(&store, &entries, epoch)?;

    let created = modelcar::build::rfc3339(epoch);
    let mut config = image::read_config(&store, base_image.manifest.config())?;
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
    let top = store.put_document(
        MediaType::ImageManifest,
        &modelcar::json::canonical(&manifest),
    )?;
    store.tag(&reference.tagged(), &top)?;
    println!("{}@{}", reference.tagged(), top.digest());
    Ok(())
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
