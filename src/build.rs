//! The build: base image + model layers + config, for every platform of the base at once.
//!
//! Checks come first (model directory, format, base binaries), then the model layers are written
//! once and shared by every platform's manifest. The model is a directory, or a ModelPack
//! artifact read by [`crate::modelpack::source`], whose layers are made from its blobs. The image becomes visible only when its name is
//! written into the store's index, after every blob it references is in place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::{self, FormatReport, Severity};
use crate::image::{self, PlatformFilter, PlatformImage};
use crate::json;
use crate::layer::{self, BuiltLayer, CompressionChoice, EntrySettings, LayerMode};
use crate::limits::MAX_SOURCE_DATE_EPOCH;
use crate::model::ModelTree;
use crate::progress::Progress;
use crate::provenance::model_signing;
use crate::reference::{ImageRef, Location};
use crate::registry::Client;
use crate::rootfs::{self, RootFs};
use crate::store::Store;
use crate::transport;

mod checks;

use checks::{checks_failed, unreadable_base_models, unreadable_modes, verify_findings};

/// Annotation (and label) recording the model format.
pub const FORMAT_ANNOTATION: &str = "io.modelcar.model.format";
/// Binaries KServe's init container and sidecar run.
pub const REQUIRED_BINARIES: [&str; 5] = ["sh", "ln", "sleep", "ls", "mkdir"];
/// Files at or above this size get a layer of their own (see the README for why 32 MiB).
pub const DEFAULT_LAYER_THRESHOLD: u64 = 32 << 20;
/// Model layers at most; runtimes accept about 125 layers in all.
pub const DEFAULT_MAX_MODEL_LAYERS: usize = 64;

/// Everything a build needs to know.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub reference: ImageRef,
    pub models: PathBuf,
    pub base: Location,
    pub format: Option<String>,
    /// Accept a format no KServe runtime serves (for a custom ServingRuntime).
    pub custom_format: bool,
    pub uid: u64,
    pub gid: u64,
    pub dir_mode: u32,
    pub file_mode: u32,
    pub user: String,
    pub layers: LayerMode,
    pub layer_threshold: u64,
    pub max_model_layers: usize,
    pub compression: CompressionChoice,
    pub platform: Option<PlatformFilter>,
    /// Seconds since the epoch for `created` and file mtimes.
    pub epoch: u64,
    pub base_check: bool,
    /// Tag (or push) the image even when it fails a check of [`crate::verify`]; the failures
    /// become notes. Off by default: a build never yields an image `verify` rejects.
    pub allow_failing_checks: bool,
    /// Worker threads for writing layers, and for each compressor (output does not depend on it).
    pub threads: usize,
    /// Private key (PEM) to sign the model files with, into `/models/model.sig`.
    pub sign_model: Option<PathBuf>,
    /// A ModelPack artifact to take the model from (`--models modelpack:REF`) instead of the
    /// directory `models`.
    pub model_source: Option<crate::modelpack::source::SourceRef>,
    /// Write a CNCF ModelPack manifest beside the runnable image, in its index, from the same
    /// blobs (see [`crate::modelpack::publish`]).
    pub modelpack: bool,
}

/// What a build produced.
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub platforms: Vec<String>,
    pub layers: Vec<BuiltLayer>,
    pub format: FormatReport,
    pub base: String,
    pub base_digest: String,
    /// Things the user should know (removed entrypoint, warnings of checks).
    pub notes: Vec<String>,
    /// What was pushed, for `build --push`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<crate::registry::push::PushOutcome>,
    /// The BOM pushed as a referrer, for `build --push`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers: Option<crate::provenance::referrers::Published>,
    /// The ModelPack manifest written beside the image, for `build --modelpack`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modelpack: Option<crate::modelpack::publish::ModelPackOutcome>,
}

/// `SOURCE_DATE_EPOCH` when set, else 0: whole seconds from the Unix epoch to the year 9999.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => parse_source_date_epoch(&v),
        _ => Ok(0),
    }
}

fn parse_source_date_epoch(text: &str) -> Result<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= MAX_SOURCE_DATE_EPOCH)
        .ok_or_else(|| {
            Error::invalid(format!(
                "SOURCE_DATE_EPOCH `{text}` is not a whole number of seconds from 0 to {MAX_SOURCE_DATE_EPOCH} (the end of the year 9999)"
            ))
            .with_hint("set it to a Unix time such as $(git log -1 --format=%ct), or unset it")
        })
}

pub fn rfc3339(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Check the model directory and its format; nothing is written.
pub fn check_models(spec: &BuildSpec) -> Result<(ModelTree, FormatReport)> {
    let tree = ModelTree::scan(&spec.models)?;
    let report = check_format(
        &tree,
        &format!("model directory {}", spec.models.display()),
        spec,
    )?;
    Ok((tree, report))
}

/// Run the format checks on a model's files (`what` names them in the error), and refuse the
/// model when one fails.
pub fn check_format(
    files: &dyn formats::ModelFiles,
    what: &str,
    spec: &BuildSpec,
) -> Result<FormatReport> {
    let mut report = formats::check(files, spec.format.as_deref(), spec.custom_format)?;
    // The sidecar is KServe's default mode; `verify` reports the others.
    let notes = formats::mode_notes(&report, formats::Mode::Sidecar);
    report.findings.extend(notes);
    let failed: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .collect();
    if !failed.is_empty() {
        let fails: Vec<&str> = failed.iter().map(|f| f.message.as_str()).collect();
        let hints: Vec<&str> = failed.iter().filter_map(|f| f.hint.as_deref()).collect();
        let err = Error::invalid(format!("{what}: {}", fails.join("; ")));
        return Err(if hints.is_empty() {
            err
        } else {
            err.with_hint(hints.join("; "))
        });
    }
    Ok(report)
}

/// Check that a base platform provides what KServe runs; returns missing binaries.
pub fn missing_binaries(store: &Store, img: &PlatformImage) -> Result<Vec<&'static str>> {
    let config = image::read_config(store, img.manifest.config())?;
    let fs = RootFs::from_layers(store, img.manifest.layers())?;
    let path = rootfs::search_path(&config);
    Ok(REQUIRED_BINARIES
        .iter()
        .copied()
        .filter(|b| fs.find_executable(b, &path).is_none())
        .collect())
}

/// Build the image. Without `push`, the image is written to the store and tagged there. With
/// `push`, model layers stream straight to the registry of `spec.reference` while they are built
/// (they are never written to the store), then the rest of the image is pushed after them.
pub fn build(
    store: &Store,
    spec: &BuildSpec,
    remote: Option<&transport::Remote>,
    push: Option<&Client>,
    progress: &Progress,
) -> Result<BuildOutcome> {
    if spec.reference.digest.is_some() {
        return Err(Error::invalid(format!(
            "{} names a digest: a build computes the digest of what it writes, it cannot choose one",
            spec.reference
        ))
        .with_hint("name the image by tag only, like quay.io/me/model:v1"));
    }
    let settings = EntrySettings {
        uid: spec.uid,
        gid: spec.gid,
        dir_mode: spec.dir_mode,
        file_mode: spec.file_mode,
        mtime: spec.epoch,
    };
    if let (Some(source), true) = (&spec.model_source, spec.modelpack) {
        return Err(Error::invalid(format!(
            "--modelpack publishes a ModelPack beside an image built from a directory; {source} is one already"
        ))
        .with_hint("leave out --modelpack (or `modelpack = true`): the source artifact is the ModelPack of these files"));
    }
    let (tree, format, artifact) = match &spec.model_source {
        None => {
            let (tree, format) = check_models(spec)?;
            (tree, format, None)
        }
        Some(source) => {
            let client = remote.map(|r| r.client).or(push);
            let artifact = crate::modelpack::source::Artifact::open(
                source,
                client,
                &settings,
                store.expansion(),
            )?;
            let format = check_format(&artifact, &artifact.name, spec)?;
            (artifact.tree().clone(), format, Some(artifact))
        }
    };
    if spec.modelpack {
        crate::modelpack::publish::check(&tree)?;
    }
    let signer = match &spec.sign_model {
        Some(key) => {
            model_signing::check_unsigned(&tree)?;
            Some(model_signing::SigningKey::from_pem_file(key)?)
        }
        None => None,
    };
    let mut notes: Vec<String> = Vec::new();
    // Known before anything is written; with --push it is the only permission check possible,
    // since model layers never reach the store for `verify` to read.
    if let Some(problem) = unreadable_modes(spec) {
        checks_failed(spec, vec![problem], &mut notes)?;
    }
    if format.detected {
        if let Some(f) = &format.format {
            notes.push(format!(
                "detected model format {f}: {}",
                format.reason.as_deref().unwrap_or("?")
            ));
        }
    }
    for f in format
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warn)
    {
        notes.push(format!("warning: {}", f.message));
        if let Some(h) = &f.hint {
            notes.push(format!("hint: {h}"));
        }
    }

    if spec.compression == CompressionChoice::Zstd {
        notes.push("warning: zstd layers will not work with oci+fetch:// (KServe's storage initializer reads only tar and tar+gzip layers) (hint: use --compression gzip or auto to serve it in every mode)".to_string());
    }

    let base = transport::resolve(store, &spec.base, spec.platform.as_ref(), remote)?;
    let base_images = image::platform_images(store, &base.descriptor)?;
    let selected: Vec<PlatformImage> = base_images
        .into_iter()
        .filter(|i| match (&spec.platform, &i.platform) {
            (Some(f), Some(p)) => f.matches(p),
            _ => true,
        })
        .collect();
    if selected.is_empty() {
        return Err(Error::invalid(format!(
            "base image {} has no platform {}",
            base.name,
            spec.platform
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default()
        ))
        .with_hint(
            "leave out --platform, or name one the base provides (modelcar inspect shows them)",
        ));
    }
    if spec.base_check {
        for img in &selected {
            let missing = missing_binaries(store, img)?;
            if !missing.is_empty() {
                let plat = img
                    .platform
                    .as_ref()
                    .map(image::platform_string)
                    .or_else(|| {
                        image::read_config(store, img.manifest.config())
                            .ok()
                            .and_then(|c| transport::platform_of_config(&c))
                            .map(|p| image::platform_string(&p))
                    })
                    .unwrap_or_else(|| "its platform".into());
                return Err(Error::invalid(format!(
                    "base image {} ({plat}) lacks {}: KServe's modelcar-init container runs `sh -c '[ -d /models ] && [ \"$(ls -A /models)\" ] ...'` and its sidecar runs `sh -c 'ln -sf /proc/$$/root/models /mnt/models && sleep infinity'` (newer releases prefix `mkdir -p`), so the base must provide sh, ln, sleep, ls and mkdir",
                    base.name,
                    missing.join(", ")
                ))
                .with_hint("use a base such as registry.access.redhat.com/ubi10/ubi-micro or busybox; pass --no-base-check only if the image will be mounted as an image volume (oci+native://), never run"));
            }
        }
    }

    if push.is_some() {
        // `verify` cannot read the image after a build that streams its model layers away, so
        // what it would find in the base's own /models is checked here, before anything is sent.
        for img in &selected {
            if let Some(problem) = unreadable_base_models(store, img, &tree)? {
                checks_failed(spec, vec![problem], &mut notes)?;
            }
        }
    }

    // The signature takes a layer of its own.
    let max_layers = spec
        .max_model_layers
        .saturating_sub(usize::from(signer.is_some()))
        .max(1);
    let plans = layer::plan_layers(&tree, spec.layers, spec.layer_threshold, max_layers);
    progress.start_bytes(tree.total_size(), &format!("writing {}", spec.reference));
    let tick = |n: u64| progress.inc(n);
    let mut layers = match (&artifact, push) {
        (Some(a), None) => {
            a.write_layers(store, store, spec, &settings, max_layers, None, None, &tick)?
        }
        (Some(a), Some(client)) => {
            let dest = crate::registry::push::RegistryUpload {
                client,
                target: &spec.reference,
            };
            a.write_layers(
                store,
                &dest,
                spec,
                &settings,
                max_layers,
                Some(&spec.reference),
                Some(client),
                &tick,
            )?
        }
        (None, None) => {
            write_layers_parallel(store, store, &tree, &plans, &settings, spec, None, progress)?
        }
        (None, Some(client)) => {
            let dest = crate::registry::push::RegistryUpload {
                client,
                target: &spec.reference,
            };
            write_layers_parallel(
                store,
                &dest,
                &tree,
                &plans,
                &settings,
                spec,
                Some(client),
                progress,
            )?
        }
    };
    if let Some(key) = &signer {
        let (tree, settings) = (&tree, &settings);
        let signed = match push {
            None => model_signing::add_signature(store, store, key, tree, &layers, settings)?,
            Some(client) => {
                let dest = crate::registry::push::RegistryUpload {
                    client,
                    target: &spec.reference,
                };
                model_signing::add_signature(store, &dest, key, tree, &layers, settings)?
            }
        };
        layers.push(signed);
    }
    progress.finish();

    let created = rfc3339(spec.epoch);
    let modelpack = if spec.modelpack {
        let identity = crate::modelpack::publish::Identity {
            name: spec
                .reference
                .repository
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            version: spec
                .reference
                .tag
                .clone()
                .unwrap_or_else(|| "latest".into()),
            created: created.clone(),
        };
        let codec = layer::Codec {
            choice: spec.compression,
            threads: spec.threads.max(1),
        };
        let (tree, format) = (&tree, &format);
        Some(match push {
            None => crate::modelpack::publish::write(
                store, store, tree, &plans, &layers, &settings, codec, format, &identity,
            )?,
            Some(client) => {
                let dest = crate::registry::push::RegistryUpload {
                    client,
                    target: &spec.reference,
                };
                client.retrying(|| {
                    crate::modelpack::publish::write(
                        store, &dest, tree, &plans, &layers, &settings, codec, format, &identity,
                    )
                })?
            }
        })
    } else {
        None
    };
    let base_name = base_display_name(&spec.base, &base);
    let version = spec
        .reference
        .tag
        .clone()
        .unwrap_or_else(|| "latest".into());
    let title = spec
        .reference
        .repository
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut common: HashMap<String, String> = HashMap::new();
    common.insert("org.opencontainers.image.created".into(), created.clone());
    common.insert("org.opencontainers.image.version".into(), version);
    common.insert("org.opencontainers.image.title".into(), title);
    if let Some(n) = &base_name {
        common.insert("org.opencontainers.image.base.name".into(), n.clone());
    }
    if let Some(f) = &format.format {
        common.insert(FORMAT_ANNOTATION.into(), f.clone());
    }

    let mut manifests = Vec::new();
    let mut entrypoint_removed = false;
    for img in &selected {
        let mut annotations = common.clone();
        annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            img.descriptor.digest().to_string(),
        );
        let mut config = image::read_config(store, img.manifest.config())?;
        entrypoint_removed |= edit_config(
            &mut config,
            spec,
            &layers,
            img.manifest.layers().len(),
            &annotations,
            &created,
        );
        let config_desc = store.put_document(MediaType::ImageConfig, &json::canonical(&config))?;
        let mut layer_descs = Vec::new();
        for l in img.manifest.layers() {
            let mut d = Descriptor::new(
                image::oci_layer_media_type(l.media_type())?,
                l.size(),
                l.digest().clone(),
            );
            d.set_urls(l.urls().clone());
            layer_descs.push(d);
        }
        layer_descs.extend(layers.iter().map(BuiltLayer::descriptor));
        let mut manifest = image::new_manifest(config_desc, layer_descs);
        manifest.set_annotations(Some(annotations));
        let mut desc = store.put_document(MediaType::ImageManifest, &json::canonical(&manifest))?;
        desc.set_platform(
            img.platform
                .clone()
                .or_else(|| transport::platform_of_config(&config)),
        );
        manifests.push(desc);
    }
    if entrypoint_removed {
        notes.push("removed the base image's ENTRYPOINT: KServe passes only args, and an entrypoint would be put in front of its `sh -c` commands".into());
    }
    let platforms: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform().as_ref().map(image::platform_string))
        .collect();
    if let Some(mp) = &modelpack {
        manifests.push(mp.descriptor.clone());
    }
    let top = if image::Document::classify(base.descriptor.media_type())
        == image::DocumentKind::Index
        || modelpack.is_some()
    {
        let mut annotations = common.clone();
        annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            base.descriptor.digest().to_string(),
        );
        let mut index = ImageIndex::default();
        index.set_schema_version(2);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(manifests);
        index.set_annotations(Some(annotations));
        store.put_document(MediaType::ImageIndex, &json::canonical(&index))?
    } else {
        let mut d = manifests.remove(0);
        d.set_platform(None);
        d
    };
    // The BOM is kept beside the image before the image is named, so no image lacks one, and
    // only once its checks passed, so a refused build leaves the store's index as it was.
    let file_digests = match &artifact {
        Some(a) => a.file_digests(),
        None => crate::provenance::bom::file_digests(store, &tree, &layers)?,
    };
    let bom = crate::provenance::bom::for_build(
        spec,
        &file_digests,
        &format,
        base_name.as_deref(),
        base.descriptor.digest().as_ref(),
    )?;
    let pushed = match push {
        None => {
            // The checks `modelcar verify` makes, on what was built, before it gets a name.
            let report = crate::verify::verify(store, &top, &spec.reference.tagged())?;
            let (fails, warnings) = verify_findings(&report, spec.base_check);
            notes.extend(warnings);
            checks_failed(spec, fails, &mut notes)?;
            crate::provenance::referrers::store_bom(store, &top, &bom, &created)?;
            store.tag(&spec.reference.tagged(), &top)?;
            None
        }
        Some(client) => {
            crate::provenance::referrers::store_bom(store, &top, &bom, &created)?;
            let mut sent: std::collections::HashSet<String> =
                layers.iter().map(|l| l.digest.clone()).collect();
            sent.extend(modelpack.iter().flat_map(|m| m.written.iter().cloned()));
            let mount_from = match &spec.base {
                Location::Registry(r) | Location::Remote(r) => Some(r.clone()),
                _ => None,
            };
            Some(crate::registry::push::push_except(
                client,
                store,
                &top,
                &spec.reference,
                mount_from.as_ref(),
                &sent,
                progress,
            )?)
        }
    };
    let referrers = match push {
        None => None,
        Some(client) => Some(crate::provenance::referrers::publish(
            client,
            store,
            &top,
            &spec.reference,
            None,
        )?),
    };
    Ok(BuildOutcome {
        reference: spec.reference.tagged(),
        digest: top.digest().to_string(),
        media_type: top.media_type().to_string(),
        platforms,
        layers,
        format,
        base: base_name.unwrap_or(base.name),
        base_digest: base.descriptor.digest().to_string(),
        notes,
        pushed,
        referrers,
        modelpack,
    })
}

/// A base name that does not depend on where files sit on this machine.
fn base_display_name(location: &Location, base: &transport::Resolved) -> Option<String> {
    match location {
        Location::Registry(r) | Location::Remote(r) => Some(r.to_string()),
        Location::OciDir { reference, .. }
        | Location::OciArchive { reference, .. }
        | Location::DockerArchive { reference, .. } => {
            reference.clone().or_else(|| base.tag.clone())
        }
    }
}

/// Write every layer with up to `spec.threads` workers; results keep the plan's order.
/// With `retry`, a layer streamed to a registry whose upload failed temporarily is written
/// again from the files, as that client retries.
#[allow(clippy::too_many_arguments)]
fn write_layers_parallel<D: layer::LayerDestination>(
    store: &Store,
    dest: &D,
    tree: &ModelTree,
    plans: &[layer::LayerPlan],
    settings: &EntrySettings,
    spec: &BuildSpec,
    retry: Option<&Client>,
    progress: &Progress,
) -> Result<Vec<BuiltLayer>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<BuiltLayer>>>> =
        Mutex::new((0..plans.len()).map(|_| None).collect());
    let workers = spec.threads.max(1).min(plans.len().max(1));
    let tick = |n: u64| progress.inc(n);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plans.len() {
                    break;
                }
                let write = || {
                    layer::write_layer(
                        store,
                        dest,
                        tree,
                        &plans[i],
                        settings,
                        layer::Codec {
                            choice: spec.compression,
                            threads: spec.threads.max(1),
                        },
                        &tick,
                    )
                };
                let r = match retry {
                    Some(client) => client.retrying(write),
                    None => write(),
                };
                let failed = r.is_err();
                results.lock().expect("no worker panics")[i] = Some(r);
                if failed {
                    // Stop handing out work; running layers finish.
                    next.store(plans.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(plans.len());
    for r in results
        .into_inner()
        .expect("no worker panics")
        .into_iter()
        .flatten()
    {
        out.push(r?);
    }
    Ok(out)
}

/// Set user, drop the entrypoint, add labels, diff IDs and history. Returns whether an
/// entrypoint was removed.
fn edit_config(
    config: &mut serde_json::Value,
    spec: &BuildSpec,
    layers: &[BuiltLayer],
    base_layers: usize,
    labels: &HashMap<String, String>,
    created: &str,
) -> bool {
    use serde_json::{json, Value};
    if !config.is_object() {
        *config = json!({});
    }
    let obj = config.as_object_mut().expect("object");
    obj.insert("created".into(), json!(created));
    let inner = obj.entry("config").or_insert_with(|| json!({}));
    if !inner.is_object() {
        *inner = json!({});
    }
    let inner = inner.as_object_mut().expect("object");
    inner.insert("User".into(), json!(spec.user));
    let had_entrypoint = inner
        .remove("Entrypoint")
        .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    let label_map = inner.entry("Labels").or_insert_with(|| json!({}));
    if !label_map.is_object() {
        *label_map = json!({});
    }
    for (k, v) in labels {
        label_map[k] = json!(v);
    }
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        ids.extend(layers.iter().map(|l| json!(l.diff_id)));
    }
    let history = obj.entry("history").or_insert_with(|| json!([]));
    if let Some(h) = history.as_array_mut() {
        if h.is_empty() && base_layers > 0 {
            for _ in 0..base_layers {
                h.push(json!({"created": created, "created_by": "base image layer", "comment": "history not recorded by the base image"}));
            }
        }
        for l in layers {
            let what = if l.files.len() == 1 {
                l.files[0].clone()
            } else {
                format!("{} files", l.files.len())
            };
            h.push(json!({
                "created": created,
                "created_by": format!(
                    "modelcar build: COPY {what} /models/ (owner {}:{}, dirs {:04o}, files {:04o})",
                    spec.uid, spec.gid, spec.dir_mode, spec.file_mode
                ),
            }));
        }
    }
    had_entrypoint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_is_a_time_up_to_the_year_9999() {
        assert_eq!(
            parse_source_date_epoch("1700000000").unwrap(),
            1_700_000_000
        );
        assert_eq!(
            rfc3339(parse_source_date_epoch("253402300799").unwrap()),
            "9999-12-31T23:59:59Z"
        );
        for bad in [
            "253402300800",
            "-1",
            "1e9",
            "soon",
            "99999999999999999999999",
        ] {
            let e = parse_source_date_epoch(bad).unwrap_err().to_string();
            assert!(
                e.contains("SOURCE_DATE_EPOCH") && e.contains("9999"),
                "{bad}: {e}"
            );
        }
    }
}
