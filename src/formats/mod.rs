//! Model formats: what each KServe runtime loads from `/mnt/models`, and whether a model
//! directory holds it.
//!
//! One table, [`FORMATS`], says for every format KServe names (`modelFormat.name`) which family
//! of checks it belongs to and which runtimes load it, each with the files it loads and what is
//! known of it per delivery mode (sidecar, image volume, fetch). `build`, `verify` and `kserve`
//! all read it. A family is one file of this folder behind one small interface, [`Family`]:
//! `detect` (is this directory of my family, and why), and `check` (what the runtimes will load,
//! and whether it parses). Checks read headers and small files only, through [`ModelFiles`], and
//! every read is capped by [`crate::limits`]: checking a 100 GB model reads a few megabytes.
//!
//! The same checks serve a model directory before a build and an image's `/models` afterwards.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::limits;
use crate::model::{EntryKind, ModelTree};

mod huggingface;
mod mlflow;
mod onnx;
mod openvino;
mod predictive;
mod pytorch;
pub(crate) mod safetensors;
mod table;
mod tensorflow;
mod triton;

pub use predictive::{sniff, xgboost_sidecar_warning, Content};
pub use table::FORMATS;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Pass,
    Warn,
    Fail,
}

/// One check's outcome, with the reason and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub check: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    pub fn new(severity: Severity, check: &str, message: impl Into<String>) -> Finding {
        Finding {
            severity,
            check: check.to_string(),
            message: message.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, h: impl Into<String>) -> Finding {
        self.hint = Some(h.into());
        self
    }
    fn pass(check: &str, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Pass, check, message)
    }
    fn warn(check: &str, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Warn, check, message)
    }
    fn fail(check: &str, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Fail, check, message)
    }
}

/// How KServe gets the model out of an OCI image (the storage URI's scheme picks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `oci://`: the modelcar sidecar, sharing the pod's process namespace.
    Sidecar,
    /// `oci+native://`: a Kubernetes image volume, mounted read-only, never run.
    Native,
    /// `oci+fetch://`: the storage initializer pulls the image and extracts `models/`.
    Fetch,
}

impl Mode {
    /// Every mode, in the order they are reported.
    pub const ALL: [Mode; 3] = [Mode::Sidecar, Mode::Native, Mode::Fetch];

    /// The name users type (`--mode`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::Native => "native",
            Mode::Fetch => "fetch",
        }
    }

    /// The storage URI scheme KServe reads as this mode.
    pub fn scheme(self) -> &'static str {
        match self {
            Mode::Sidecar => "oci",
            Mode::Native => "oci+native",
            Mode::Fetch => "oci+fetch",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sidecar" | "oci" => Ok(Mode::Sidecar),
            "native" | "oci+native" => Ok(Mode::Native),
            "fetch" | "oci+fetch" => Ok(Mode::Fetch),
            _ => Err(
                Error::invalid(format!("mode `{s}` is not known")).with_hint(
                    "use sidecar (oci://), native (oci+native://), fetch (oci+fetch://) or all",
                ),
            ),
        }
    }
}

/// A model format as KServe's `modelFormat.name` spells it, and who serves it.
#[derive(Debug)]
pub struct Format {
    /// Lowercase, as in `modelFormat.name`.
    pub name: &'static str,
    /// The checks it gets.
    pub family: &'static Family,
    /// The runtimes KServe ships that load it, the preferred (KServe's default) first.
    pub runtimes: &'static [RuntimeUse],
}

/// One runtime serving a format: what it loads, and what is known of it per mode.
#[derive(Debug)]
pub struct RuntimeUse {
    /// The ClusterServingRuntime's name.
    pub runtime: &'static str,
    /// The files it loads from the model directory.
    pub loads: Loads,
    /// MLServer's implementation class, which KServe passes in `MLSERVER_MODEL_IMPLEMENTATION`.
    pub implementation: Option<&'static str>,
    /// Known incompatibilities (or confirmations) per delivery mode.
    pub modes: &'static [ModeNote],
}

/// The rule by which a runtime finds its files.
#[derive(Debug, Clone, Copy)]
pub enum Loads {
    /// The first of these names found at the top of the directory wins (MLServer).
    FirstOf(&'static [&'static str]),
    /// The one file at the top whose name ends with one of these; more than one is refused
    /// (KServe's predictive servers: "More than one model file is detected").
    OneByExtension(&'static [&'static str]),
    /// A directory layout, in words.
    Layout(&'static str),
}

impl Loads {
    /// A short description for messages and documentation.
    pub fn describe(&self) -> String {
        match self {
            Loads::FirstOf(names) => format!("the first of {} at the top", names.join(", ")),
            Loads::OneByExtension(exts) => {
                format!("exactly one file ending {} at the top", exts.join(", "))
            }
            Loads::Layout(words) => words.to_string(),
        }
    }
}

/// What is known of a runtime in one delivery mode.
#[derive(Debug)]
pub struct ModeNote {
    pub mode: Mode,
    pub severity: Severity,
    /// The finding's check name.
    pub check: &'static str,
    pub message: &'static str,
    pub hint: &'static str,
}

impl ModeNote {
    /// The note as a finding.
    pub fn finding(&self) -> Finding {
        Finding::new(self.severity, self.check, self.message).hint(self.hint)
    }
}

/// A family of formats: the checks one file of this folder provides.
pub struct Family {
    pub name: &'static str,
    /// Whether the directory holds this family's model; the format and why.
    pub detect: fn(&dyn ModelFiles) -> Result<Option<Detection>>,
    /// Check the directory for a format of this family.
    pub check: fn(&Format, &dyn ModelFiles) -> Result<Checked>,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A format found in a directory that declared none, and the evidence.
#[derive(Debug, Clone)]
pub struct Detection {
    pub format: &'static str,
    /// What was seen, for the user ("model.bst starts with LightGBM's `tree` header").
    pub reason: String,
}

/// What a family's check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The file the preferred runtime loads, when it loads one file.
    pub model_file: Option<String>,
    pub findings: Vec<Finding>,
    /// Per runtime of the format: whether it will load the directory.
    pub runtimes: Vec<RuntimeFit>,
}

/// Whether one runtime will load the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeFit {
    pub runtime: String,
    pub loads: bool,
    /// What it loads, or why it will not.
    pub reason: String,
}

/// What the format checks found.
#[derive(Debug, Clone, Serialize)]
pub struct FormatReport {
    /// The format: as declared, or as detected.
    pub format: Option<String>,
    /// True when the format was detected rather than declared.
    pub detected: bool,
    /// Why the format was detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The file the preferred runtime loads, relative to the model directory.
    pub model_file: Option<String>,
    pub findings: Vec<Finding>,
    /// Per runtime KServe ships for the format: whether it loads this directory.
    pub runtimes: Vec<RuntimeFit>,
}

/// Read access to a model directory (on disk, or `/models` inside an image).
pub trait ModelFiles {
    /// Every regular file (after following symlinks) with its size, by `/`-separated path
    /// relative to the top, sorted by path.
    fn files(&self) -> Vec<(String, u64)>;
    /// Up to `n` bytes of a file from `offset` (fewer at its end).
    fn read_at(&self, rel: &str, offset: u64, n: u64) -> Result<Vec<u8>>;
}

/// Views of a [`ModelFiles`] that every family uses.
pub(crate) trait ModelFilesExt: ModelFiles {
    /// Names and sizes of the files at the top.
    fn top(&self) -> Vec<(String, u64)> {
        self.files()
            .into_iter()
            .filter(|(p, _)| !p.contains('/'))
            .collect()
    }
    /// The size of a file, if it exists.
    fn size(&self, rel: &str) -> Option<u64> {
        self.files()
            .into_iter()
            .find(|(p, _)| p == rel)
            .map(|(_, s)| s)
    }
    /// The first bytes of a file ([`limits::FORMAT_HEAD`]).
    fn head(&self, rel: &str) -> Result<Vec<u8>> {
        self.read_at(rel, 0, limits::FORMAT_HEAD)
    }
    /// A small file read whole, or a finding saying why not (too large for its kind).
    fn small(&self, rel: &str, check: &str) -> Result<std::result::Result<Vec<u8>, Finding>> {
        let size = self.size(rel).unwrap_or(0);
        if size > limits::FORMAT_SMALL_FILE {
            return Ok(Err(Finding::fail(
                check,
                format!(
                    "{rel} is {size} bytes, more than the {} such a file ever needs; modelcar does not read it",
                    limits::FORMAT_SMALL_FILE
                ),
            )
            .hint(format!("check that {rel} is what its name says"))));
        }
        Ok(Ok(self.read_at(rel, 0, limits::FORMAT_SMALL_FILE)?))
    }
}

impl<T: ModelFiles + ?Sized> ModelFilesExt for T {}

impl ModelFiles for ModelTree {
    fn files(&self) -> Vec<(String, u64)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::File { size } => Some((e.rel.clone(), *size)),
                EntryKind::Symlink { .. } => std::fs::metadata(&e.source)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| (e.rel.clone(), m.len())),
                EntryKind::Dir => None,
            })
            .collect()
    }

    fn read_at(&self, rel: &str, offset: u64, n: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.root.join(rel);
        let mut buf = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(offset))?;
                f.take(n).read_to_end(&mut buf)
            })
            .map_err(crate::error::io_err("read model file", &path))?;
        Ok(buf)
    }
}

/// The format of that name, if KServe's runtimes serve it.
pub fn lookup(name: &str) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.name == name)
}

/// Names of every known format, in table order.
pub fn known_names() -> Vec<&'static str> {
    FORMATS.iter().map(|f| f.name).collect()
}

/// Check that a declared format name is known, or allowed as custom; the error lists the
/// known names.
pub fn validate_name(name: &str, custom: bool) -> Result<()> {
    if lookup(name).is_some() || custom {
        return Ok(());
    }
    let suggestion = known_names()
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map(|k| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    Err(Error::invalid(format!(
        "model format `{}` is not one KServe's runtimes serve (known: {})",
        crate::text::escape(name),
        known_names().join(", ")
    ))
    .with_hint(format!(
        "{suggestion}declare one of the known formats, or pass --custom-format (custom-format = true in modelcar.toml) for a custom ServingRuntime"
    )))
}

/// What the model directory's format checks found. A declared format not in [`FORMATS`] is an
/// error unless `custom` is true (a custom ServingRuntime's format: recorded, not checked).
pub fn check(files: &dyn ModelFiles, declared: Option<&str>, custom: bool) -> Result<FormatReport> {
    let mut findings = Vec::new();
    if files
        .files()
        .iter()
        .any(|(p, _)| p.rsplit('/').next() == Some("model-settings.json"))
    {
        findings.push(
            Finding::warn("model-settings", "a model-settings.json is present: MLServer takes its settings (implementation, URI) over those KServe passes in the environment")
                .hint("make sure it names the same runtime and file, or remove it"),
        );
    }
    let (format, detected, reason) = match declared {
        Some(name) => {
            validate_name(name, custom)?;
            match lookup(name) {
                Some(f) => (f, false, None),
                None => {
                    findings.push(
                        Finding::warn(
                            "format",
                            format!(
                                "format {} is not one KServe's runtimes serve: it is recorded, not checked",
                                crate::text::escape(name)
                            ),
                        )
                        .hint("a custom ServingRuntime naming this format in supportedModelFormats must serve it"),
                    );
                    return Ok(FormatReport {
                        format: Some(name.to_string()),
                        detected: false,
                        reason: None,
                        model_file: None,
                        findings,
                        runtimes: Vec::new(),
                    });
                }
            }
        }
        None => match detect(files)?.and_then(|d| lookup(d.format).map(|f| (f, d.reason))) {
            Some((f, reason)) => (f, true, Some(reason)),
            None => {
                findings.push(
                    Finding::warn(
                        "format",
                        format!(
                            "no known model format detected (looked for {})",
                            known_names().join(", ")
                        ),
                    )
                    .hint("declare the format with --format (or `format` in modelcar.toml) so KServe can pick a runtime"),
                );
                return Ok(FormatReport {
                    format: None,
                    detected: true,
                    reason: None,
                    model_file: None,
                    findings,
                    runtimes: Vec::new(),
                });
            }
        },
    };
    if let Some(r) = &reason {
        findings.push(Finding::pass(
            "format",
            format!("detected format {}: {r}", format.name),
        ));
    }
    if !format.runtimes.iter().any(|r| r.implementation.is_some()) {
        // model-settings.json concerns MLServer only.
        findings.retain(|f| f.check != "model-settings");
    }
    let checked = (format.family.check)(format, files)?;
    findings.extend(checked.findings);
    findings.extend(runtime_verdict(format, &checked.runtimes));
    Ok(FormatReport {
        format: Some(format.name.to_string()),
        detected,
        reason,
        model_file: checked.model_file,
        findings,
        runtimes: checked.runtimes,
    })
}

/// The format of a directory that declares none: the first family in table order that
/// recognises it.
pub fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    for family in table::DETECT_ORDER {
        if let Some(d) = (family.detect)(files)? {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// The summary of which runtimes load the directory: a failure when none does, a warning naming
/// those that do not when some do.
fn runtime_verdict(format: &Format, fits: &[RuntimeFit]) -> Vec<Finding> {
    if fits.is_empty() {
        return Vec::new();
    }
    let (yes, no): (Vec<&RuntimeFit>, Vec<&RuntimeFit>) = fits.iter().partition(|f| f.loads);
    let list = |v: &[&RuntimeFit]| {
        v.iter()
            .map(|f| format!("{} {}", f.runtime, f.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if yes.is_empty() {
        return vec![Finding::fail(
            "runtime",
            format!(
                "no runtime KServe ships for {} loads this directory: {}",
                format.name,
                list(&no)
            ),
        )
        .hint(format!(
            "lay the directory out as one of them needs: {}",
            describe_runtimes(format)
        ))];
    }
    let mut out = vec![Finding::pass("runtime", list(&yes))];
    if !no.is_empty() {
        out.push(
            Finding::warn("runtime", format!("not under every runtime: {}", list(&no))).hint(
                format!(
                "serve it with {} (runtime: in the InferenceService; `modelcar kserve` picks it)",
                yes[0].runtime
            ),
            ),
        );
    }
    out
}

fn describe_runtimes(format: &Format) -> String {
    format
        .runtimes
        .iter()
        .map(|r| format!("{} loads {}", r.runtime, r.loads.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The findings a format's runtimes carry for a delivery mode (the XGBoost-through-the-sidecar
/// warning, for example), for the runtimes that load the directory.
pub fn mode_notes(report: &FormatReport, mode: Mode) -> Vec<Finding> {
    let Some(format) = report.format.as_deref().and_then(lookup) else {
        return Vec::new();
    };
    let loads = |name: &str| {
        report.runtimes.is_empty() || report.runtimes.iter().any(|f| f.runtime == name && f.loads)
    };
    // A note applies when every runtime that loads the directory carries it: XGBoost through
    // the sidecar is a problem of MLServer's runtime, not of KServe's xgbserver.
    let users: Vec<&RuntimeUse> = format
        .runtimes
        .iter()
        .filter(|r| loads(r.runtime))
        .collect();
    let mut out: Vec<Finding> = Vec::new();
    for r in &users {
        for n in r.modes.iter().filter(|n| n.mode == mode) {
            let everywhere = users
                .iter()
                .all(|u| u.modes.iter().any(|m| m.mode == mode && m.check == n.check));
            let f = if everywhere {
                n.finding()
            } else {
                Finding::new(
                    Severity::Warn.min(n.severity),
                    n.check,
                    format!("under {}: {}", r.runtime, n.message),
                )
                .hint(n.hint)
            };
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// The runtime KServe selects for a format on its own (by its `autoSelect` and `priority`
/// rules, from the table of the runtimes it ships), when there is one.
pub fn preferred_runtime(format: &str) -> Option<&'static str> {
    lookup(format)?;
    crate::kserve::runtimes_for(format).first().map(|r| r.name)
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::model::ModelTree;

    /// A model directory holding these files (paths may have directories).
    pub fn tree(files: &[(&str, &[u8])]) -> (tempfile::TempDir, ModelTree) {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            let p = d.path().join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        let t = ModelTree::scan(d.path()).unwrap();
        (d, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_lowercase_and_the_ones_kserve_uses() {
        let names: Vec<&str> = known_names();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for n in &names {
            assert_eq!(*n, n.to_ascii_lowercase());
        }
        for kserve in crate::kserve::runtimes::KSERVE_FORMATS {
            assert!(lookup(kserve).is_some(), "{kserve} missing");
        }
    }

    #[test]
    fn every_format_has_runtimes_and_its_family_is_asked_by_detection() {
        for f in FORMATS {
            assert!(!f.runtimes.is_empty(), "{} has no runtime", f.name);
            assert!(
                table::DETECT_ORDER
                    .iter()
                    .any(|fam| std::ptr::eq(*fam, f.family)),
                "{}'s family is never asked to detect",
                f.name
            );
            let rts: HashSet<&str> = f.runtimes.iter().map(|r| r.runtime).collect();
            assert_eq!(
                rts.len(),
                f.runtimes.len(),
                "{} lists a runtime twice",
                f.name
            );
            for r in f.runtimes {
                assert!(r.runtime.starts_with("kserve-"), "{}", r.runtime);
                // MLServer needs its implementation class; nobody else has one.
                assert_eq!(
                    r.implementation.is_some(),
                    r.runtime == "kserve-mlserver",
                    "{}",
                    r.runtime
                );
                if let Loads::FirstOf(n) | Loads::OneByExtension(n) = r.loads {
                    assert!(!n.is_empty());
                }
                for m in r.modes {
                    assert!(!m.hint.is_empty() && !m.message.is_empty());
                }
            }
        }
        // Every family in the detection order serves some format.
        for fam in table::DETECT_ORDER {
            assert!(
                FORMATS.iter().any(|f| std::ptr::eq(f.family, fam)),
                "{}",
                fam.name
            );
        }
    }

    #[test]
    fn every_runtime_of_the_table_serves_its_format_in_kserve() {
        // Read against the one table of KServe's runtimes (`kserve::runtimes`, itself tested
        // against KServe's runtime files), so the two cannot drift.
        for f in FORMATS {
            for r in f.runtimes {
                let runtime = crate::kserve::runtimes::find(r.runtime)
                    .unwrap_or_else(|| panic!("{} is not a runtime KServe ships", r.runtime));
                assert!(
                    runtime.serves(f.name),
                    "{} does not serve {}",
                    r.runtime,
                    f.name
                );
            }
            // The runtime KServe picks on its own is one whose loading rules the row knows.
            if let Some(picked) = crate::kserve::runtimes_for(f.name).first() {
                assert!(
                    f.runtimes.iter().any(|r| r.runtime == picked.name),
                    "{}: KServe picks {}, which the row does not describe",
                    f.name,
                    picked.name
                );
            }
        }
        // And every format a KServe runtime serves by a lowercase name has a row, except the
        // ones modelcar knows nothing to check of.
        for runtime in crate::kserve::runtimes::RUNTIMES {
            for served in runtime.formats {
                let name = served.name;
                if ["autogluon", "tensorrt", "vLLM"].contains(&name) {
                    continue;
                }
                assert!(lookup(name).is_some(), "{name} has no row");
            }
        }
    }

    #[test]
    fn the_three_original_formats_keep_mlserver_first() {
        for f in ["sklearn", "xgboost", "lightgbm", "mlflow"] {
            assert_eq!(preferred_runtime(f), Some("kserve-mlserver"), "{f}");
        }
        assert_eq!(preferred_runtime("bogus"), None);
    }

    #[test]
    fn model_settings_are_warned_about_for_mlserver_formats_only() {
        let settings: &[u8] = b"{}";
        let (_d, t) = testing::tree(&[
            ("model.joblib", b"\x80\x04\x95"),
            ("model-settings.json", settings),
        ]);
        let r = check(&t, None, false).unwrap();
        assert!(r.findings.iter().any(|f| f.check == "model-settings"));
        let (_d, t) = testing::tree(&[("iris.pmml", b"<PMML>"), ("model-settings.json", settings)]);
        let r = check(&t, None, false).unwrap();
        assert!(
            r.findings.iter().all(|f| f.check != "model-settings"),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn unknown_formats_are_refused_unless_custom() {
        let (_d, t) = testing::tree(&[("model.joblib", b"\x80\x04\x95")]);
        let e = check(&t, Some("bogus"), false).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("bogus") && text.contains("sklearn") && text.contains("huggingface"),
            "{text}"
        );
        assert!(e.hint().unwrap().contains("--custom-format"));
        assert!(validate_name("SKLearn", false)
            .unwrap_err()
            .hint()
            .unwrap()
            .contains("`sklearn`"));
        let r = check(&t, Some("my-format"), true).unwrap();
        assert_eq!(r.format.as_deref(), Some("my-format"));
        assert!(r
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warn && f.message.contains("recorded")));
    }

    #[test]
    fn detection_returns_formats_of_the_asking_family() {
        // Each family's detection names only formats that are in the table under that family.
        let samples: &[&[(&str, &[u8])]] = &[
            &[("model.bst", b"tree\n")],
            &[("model.joblib", b"\x80\x04\x95")],
            &[("m.pmml", b"<PMML>")],
        ];
        for files in samples {
            let (_d, t) = testing::tree(files);
            let d = detect(&t).unwrap().unwrap();
            let f = lookup(d.format).unwrap();
            assert!(table::DETECT_ORDER
                .iter()
                .any(|fam| std::ptr::eq(*fam, f.family)));
        }
    }
}
