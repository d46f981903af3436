//! Model formats: which file MLServer will load, and whether it looks like what it claims.
//!
//! The rules are MLServer's (1.5 to 1.7): for each runtime a list of well-known file names at the
//! top of the model directory, first found wins. Content checks read only the first bytes of the
//! chosen file. The same checks serve a model directory before a build and an image's `/models`
//! afterwards, through [`ModelFiles`].

use serde::Serialize;

use crate::error::Result;
use crate::model::{EntryKind, ModelTree};

/// Formats with a content check; any other declared name is recorded without checks.
pub const KNOWN_FORMATS: [&str; 3] = ["sklearn", "xgboost", "lightgbm"];
const HEAD: usize = 4096;

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
}

/// What the format checks found.
#[derive(Debug, Clone, Serialize)]
pub struct FormatReport {
    /// The format: as declared, or as detected.
    pub format: Option<String>,
    /// True when the format was detected rather than declared.
    pub detected: bool,
    /// The file MLServer will load, relative to the model directory.
    pub model_file: Option<String>,
    pub findings: Vec<Finding>,
}

/// Read access to the top of a model directory (on disk, or `/models` inside an image).
pub trait ModelFiles {
    /// Names of regular files (after following symlinks) at the top of the directory.
    fn top_files(&self) -> Vec<String>;
    /// Whether a file of that name exists anywhere below the top.
    fn contains_name(&self, name: &str) -> bool;
    /// The first `n` bytes of a top-level file.
    fn head(&self, name: &str, n: usize) -> Result<Vec<u8>>;
}

impl ModelFiles for ModelTree {
    fn top_files(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| !e.rel.contains('/'))
            .filter(|e| match &e.kind {
                EntryKind::File { .. } => true,
                EntryKind::Symlink { .. } => e.source.is_file(),
                EntryKind::Dir => false,
            })
            .map(|e| e.rel.clone())
            .collect()
    }

    fn contains_name(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.rel.rsplit('/').next() == Some(name))
    }

    fn head(&self, name: &str, n: usize) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = self.root.join(name);
        let mut buf = Vec::with_capacity(n);
        std::fs::File::open(&path)
            .and_then(|f| f.take(n as u64).read_to_end(&mut buf))
            .map_err(crate::error::io_err("read model file", &path))?;
        Ok(buf)
    }
}

/// The file names MLServer looks for, in order, for a runtime.
pub fn well_known_names(format: &str) -> &'static [&'static str] {
    match format {
        "sklearn" => &["model.joblib", "model.pickle", "model.pkl"],
        "xgboost" => &["model.bst", "model.json", "model.ubj"],
        "lightgbm" => &["model.bst"],
        _ => &[],
    }
}

/// The MLServer implementation class KServe sets for a format.
pub fn mlserver_implementation(format: &str) -> Option<&'static str> {
    match format {
        "sklearn" => Some("mlserver_sklearn.SKLearnModel"),
        "xgboost" => Some("mlserver_xgboost.XGBoostModel"),
        "lightgbm" => Some("mlserver_lightgbm.LightGBMModel"),
        _ => None,
    }
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Pickle,
    XgboostJson,
    XgboostUbjson,
    XgboostBinary,
    LightgbmText,
    Unknown,
}

impl Content {
    fn describe(self) -> &'static str {
        match self {
            Content::Pickle => "a joblib/pickle file",
            Content::XgboostJson => "an XGBoost JSON model",
            Content::XgboostUbjson => "an XGBoost UBJSON model",
            Content::XgboostBinary => "an XGBoost legacy binary model",
            Content::LightgbmText => "a LightGBM text model",
            Content::Unknown => "no known model format",
        }
    }

    fn format(self) -> Option<&'static str> {
        match self {
            Content::Pickle => Some("sklearn"),
            Content::XgboostJson | Content::XgboostUbjson | Content::XgboostBinary => {
                Some("xgboost")
            }
            Content::LightgbmText => Some("lightgbm"),
            Content::Unknown => None,
        }
    }
}

/// Classify the first bytes of a model file.
pub fn sniff(head: &[u8]) -> Content {
    let starts = |p: &[u8]| head.starts_with(p);
    if starts(b"tree\n") || starts(b"tree\r\n") {
        return Content::LightgbmText;
    }
    // Pickle protocols 2 to 5, and the compressors joblib writes with.
    if (head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]))
        || starts(&[0x1f, 0x8b])
        || starts(b"BZh")
        || starts(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || starts(&[0x5d, 0, 0])
        || starts(&[0x04, 0x22, 0x4d, 0x18])
        || starts(b"ZF0x")
        || (head.len() >= 2 && head[0] == 0x78 && matches!(head[1], 0x01 | 0x5e | 0x9c | 0xda))
    {
        return Content::Pickle;
    }
    if head.first() == Some(&b'{') {
        let rest = &head[1..];
        let text = String::from_utf8_lossy(&head[..head.len().min(HEAD)]);
        if rest
            .first()
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'"')
        {
            return if text.contains("\"learner\"") {
                Content::XgboostJson
            } else {
                Content::Unknown
            };
        }
        if rest.first().is_some_and(|b| b"iUIlL".contains(b)) && text.contains("learner") {
            return Content::XgboostUbjson;
        }
        return Content::Unknown;
    }
    if starts(b"binf") {
        return Content::XgboostBinary;
    }
    // Legacy binary without header: LearnerModelParam (base_score f32, num_feature u32,
    // num_class i32, ...) then the objective name's length and text.
    if head.len() >= 136 {
        let f = |i: usize| [head[i], head[i + 1], head[i + 2], head[i + 3]];
        let base_score = f32::from_le_bytes(f(0));
        let num_feature = u32::from_le_bytes(f(4));
        let num_class = i32::from_le_bytes(f(8));
        if base_score.is_finite()
            && (1..10_000_000).contains(&num_feature)
            && (0..1_000_000).contains(&num_class)
        {
            let text = String::from_utf8_lossy(head);
            if text.contains("reg:")
                || text.contains("binary:")
                || text.contains("multi:")
                || text.contains("rank:")
            {
                return Content::XgboostBinary;
            }
        }
    }
    Content::Unknown
}

const XGBOOST_SIDECAR: &str = "xgboost-sidecar";

/// The warning about XGBoost behind KServe's modelcar sidecar.
pub fn xgboost_sidecar_warning() -> Finding {
    Finding::new(
        Severity::Warn,
        XGBOOST_SIDECAR,
        "XGBoost resolves the model path to a canonical one, which fails through the sidecar's /proc/<pid>/root/models link: \
         .json and .ubj models never load that way, and with XGBoost 3.x (what mlserver-xgboost 1.7.1 installs) no format does",
    )
    .hint("serve it as an image volume (storageUri oci+native://..., `modelcar kserve --storage native`), or pin xgboost below 3 in the runtime and name the file model.bst")
}

/// Check the model files for a declared format, or detect the format.
pub fn check(files: &dyn ModelFiles, declared: Option<&str>) -> Result<FormatReport> {
    let top = files.top_files();
    let mut findings = Vec::new();
    if files.contains_name("model-settings.json") {
        findings.push(
            Finding::new(Severity::Warn, "model-settings", "a model-settings.json is present: MLServer takes its settings (implementation, URI) over those KServe passes in the environment")
                .hint("make sure it names the same runtime and file, or remove it"),
        );
    }
    let Some(format) = declared.map(str::to_string).or_else(|| detect(files, &top)) else {
        findings.push(
            Finding::new(Severity::Warn, "format", "no known model format detected (looked for sklearn, xgboost and lightgbm files)")
                .hint("declare the format with --format (or `format` in modelcar.toml) so KServe can pick a runtime"),
        );
        return Ok(FormatReport {
            format: None,
            detected: true,
            model_file: None,
            findings,
        });
    };
    let detected = declared.is_none();
    if !KNOWN_FORMATS.contains(&format.as_str()) {
        findings.push(Finding::new(
            Severity::Pass,
            "format",
            format!("format {format} recorded; modelcar has no content check for it"),
        ));
        return Ok(FormatReport {
            format: Some(format),
            detected,
            model_file: None,
            findings,
        });
    }
    let names = well_known_names(&format);
    let Some(chosen) = names.iter().find(|n| top.iter().any(|t| t == *n)) else {
        findings.push(
            Finding::new(
                Severity::Fail,
                "model-file",
                format!("MLServer's {format} runtime looks for {} at the top of the model directory and none is there", names.join(", ")),
            )
            .hint(format!("rename the model file to {} (top level, not in a subdirectory)", names[0])),
        );
        return Ok(FormatReport {
            format: Some(format),
            detected,
            model_file: None,
            findings,
        });
    };
    let others: Vec<&&str> = names
        .iter()
        .filter(|n| *n != chosen && top.iter().any(|t| t == **n))
        .collect();
    if !others.is_empty() {
        findings.push(Finding::new(
            Severity::Warn,
            "model-file",
            format!(
                "MLServer loads {chosen} and ignores {}",
                others
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let content = sniff(&files.head(chosen, HEAD)?);
    let fits = content.format() == Some(format.as_str());
    if fits {
        findings.push(Finding::new(
            Severity::Pass,
            "model-file",
            format!(
                "{chosen} is {}, as the {format} runtime expects",
                content.describe()
            ),
        ));
    } else {
        let mut f = Finding::new(
            Severity::Fail,
            "model-file",
            format!(
                "{chosen} is {}, not what MLServer's {format} runtime loads",
                content.describe()
            ),
        );
        f = match content.format() {
            Some(other) => f.hint(format!(
                "the file looks like a {other} model: declare --format {other}"
            )),
            None => f.hint(format!(
                "save the model with the {format} library's own save function"
            )),
        };
        findings.push(f);
    }
    if format == "xgboost" {
        findings.push(xgboost_sidecar_warning());
    }
    Ok(FormatReport {
        format: Some(format),
        detected,
        model_file: Some(chosen.to_string()),
        findings,
    })
}

fn detect(files: &dyn ModelFiles, top: &[String]) -> Option<String> {
    for name in [
        "model.joblib",
        "model.pickle",
        "model.pkl",
        "model.bst",
        "model.json",
        "model.ubj",
    ] {
        if top.iter().any(|t| t == name) {
            if let Ok(head) = files.head(name, HEAD) {
                if let Some(f) = sniff(&head).format() {
                    // A pickle named model.bst is nobody's model; only trust names that fit.
                    if well_known_names(f).contains(&name) {
                        return Some(f.to_string());
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &[u8])]) -> (tempfile::TempDir, ModelTree) {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            std::fs::write(d.path().join(n), c).unwrap();
        }
        let t = ModelTree::scan(d.path()).unwrap();
        (d, t)
    }

    #[test]
    fn headers_are_recognised() {
        assert_eq!(sniff(b"\x80\x04\x95abc"), Content::Pickle);
        assert_eq!(sniff(b"tree\nversion=v4\n"), Content::LightgbmText);
        assert_eq!(sniff(b"{\"learner\":{}}"), Content::XgboostJson);
        assert_eq!(
            sniff(b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{"),
            Content::XgboostUbjson
        );
        assert_eq!(sniff(b"binf...."), Content::XgboostBinary);
        assert_eq!(sniff(b"hello world"), Content::Unknown);
    }

    #[test]
    fn formats_are_detected_and_said() {
        let (_d, t) = tree(&[("model.bst", b"tree\nversion=v4\n")]);
        let r = check(&t, None).unwrap();
        assert_eq!((r.format.as_deref(), r.detected), (Some("lightgbm"), true));
        let (_d, t) = tree(&[("model.joblib", b"\x80\x04\x95")]);
        assert_eq!(check(&t, None).unwrap().format.as_deref(), Some("sklearn"));
        let (_d, t) = tree(&[("weights.bin", b"\x00\x01")]);
        let r = check(&t, None).unwrap();
        assert_eq!(r.format, None);
        assert!(r.findings.iter().any(|f| f.severity == Severity::Warn));
    }

    #[test]
    fn wrong_content_and_missing_files_fail_with_a_hint() {
        let (_d, t) = tree(&[("model.bst", b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner")]);
        let r = check(&t, Some("lightgbm")).unwrap();
        let fail = r
            .findings
            .iter()
            .find(|f| f.severity == Severity::Fail)
            .unwrap();
        assert!(
            fail.hint.as_deref().unwrap().contains("--format xgboost"),
            "{fail:?}"
        );
        let (_d, t) = tree(&[("clf.joblib", b"\x80\x04")]);
        let r = check(&t, Some("sklearn")).unwrap();
        let fail = r
            .findings
            .iter()
            .find(|f| f.severity == Severity::Fail)
            .unwrap();
        assert!(fail.message.contains("model.joblib"));
    }

    #[test]
    fn xgboost_gets_the_sidecar_warning() {
        let (_d, t) = tree(&[("model.json", b"{\"learner\": {}}")]);
        let r = check(&t, Some("xgboost")).unwrap();
        assert!(r
            .findings
            .iter()
            .any(|f| f.check == XGBOOST_SIDECAR && f.severity == Severity::Warn));
    }
}
