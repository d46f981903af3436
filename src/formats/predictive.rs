//! KServe's predictive formats: sklearn, XGBoost and LightGBM (served by MLServer and by
//! KServe's own servers), PMML and Paddle (KServe's servers only).
//!
//! The two kinds of runtime find the model differently. MLServer (1.5 to 1.7) looks for
//! well-known names at the top of the model directory, first found wins. KServe's
//! `kserve-sklearnserver`, `-xgbserver`, `-lgbserver` and `-pmmlserver` list the top and load
//! the one file with their extension, refusing more than one ("More than one model file is
//! detected"); `kserve-paddleserver` wants one `.pdmodel` (or `.json`) and one `.pdiparams`.
//! So a directory can load under one and not the other, and the check says so. Content checks
//! read the first bytes of the chosen file only.

use super::{
    Checked, Detection, Finding, Format, Loads, ModelFiles, ModelFilesExt, RuntimeFit, Severity,
};
use crate::error::Result;
use crate::limits;

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
        let text = String::from_utf8_lossy(&head[..head.len().min(limits::FORMAT_HEAD as usize)]);
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

pub(super) const XGBOOST_SIDECAR: &str = "xgboost-sidecar";
pub(super) const XGBOOST_SIDECAR_MESSAGE: &str = "XGBoost resolves the model path to a canonical one, which fails through the sidecar's /proc/<pid>/root/models link: \
     .json and .ubj models never load that way, and with XGBoost 3.x (what mlserver-xgboost 1.7.1 installs) no format does";
pub(super) const XGBOOST_SIDECAR_HINT: &str = "serve it as an image volume (storageUri oci+native://..., `modelcar kserve --storage native`), with kserve-xgbserver (it reads the file's bytes itself), or pin xgboost below 3 in the runtime and name the file model.bst";

/// The warning about XGBoost under MLServer behind KServe's modelcar sidecar.
pub fn xgboost_sidecar_warning() -> Finding {
    Finding::new(Severity::Warn, XGBOOST_SIDECAR, XGBOOST_SIDECAR_MESSAGE)
        .hint(XGBOOST_SIDECAR_HINT)
}

/// Which runtime would load what, by the runtime's own rule.
pub(super) fn fit(
    runtime: &str,
    loads: &Loads,
    top: &[(String, u64)],
) -> (RuntimeFit, Option<String>) {
    let present = |n: &str| top.iter().any(|(t, _)| t == n);
    let (ok, file, reason) = match loads {
        Loads::FirstOf(names) => match names.iter().find(|n| present(n)) {
            Some(n) => {
                let ignored: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|o| o != n && present(o))
                    .collect();
                let reason = if ignored.is_empty() {
                    format!("loads {n}")
                } else {
                    format!("loads {n}, ignores {}", ignored.join(", "))
                };
                (true, Some(n.to_string()), reason)
            }
            None => (
                false,
                None,
                format!("looks for {} at the top; none is there", names.join(", ")),
            ),
        },
        Loads::OneByExtension(exts) => {
            let matches: Vec<&str> = top
                .iter()
                .map(|(t, _)| t.as_str())
                .filter(|t| exts.iter().any(|e| t.ends_with(e)))
                .collect();
            match matches.as_slice() {
                [] => (
                    false,
                    None,
                    format!(
                        "loads the one file ending {} at the top; there is none",
                        exts.join(", ")
                    ),
                ),
                [one] => (true, Some(one.to_string()), format!("loads {one}")),
                many => (
                    false,
                    None,
                    format!(
                        "refuses more than one model file ending {}: {}",
                        exts.join(", "),
                        many.join(", ")
                    ),
                ),
            }
        }
        Loads::Layout(_) => (false, None, "not a single-file runtime".to_string()),
    };
    (
        RuntimeFit {
            runtime: runtime.to_string(),
            loads: ok,
            reason,
        },
        file,
    )
}

/// Paddle's rule: one `.pdmodel` (or, failing that, one `.json`) and one `.pdiparams`.
fn paddle_fit(runtime: &str, top: &[(String, u64)]) -> (RuntimeFit, Option<String>) {
    let with = |ext: &str| -> Vec<&str> {
        top.iter()
            .map(|(t, _)| t.as_str())
            .filter(|t| t.ends_with(ext))
            .collect()
    };
    let one = |ext: &str| -> std::result::Result<Option<String>, String> {
        match with(ext).as_slice() {
            [] => Ok(None),
            [f] => Ok(Some(f.to_string())),
            many => Err(format!(
                "refuses more than one {ext} file: {}",
                many.join(", ")
            )),
        }
    };
    let graph = one(".pdmodel").and_then(|g| match g {
        Some(g) => Ok(Some(g)),
        None => one(".json"),
    });
    let params = one(".pdiparams");
    let (ok, file, reason) = match (graph, params) {
        (Err(e), _) | (_, Err(e)) => (false, None, e),
        (Ok(None), _) => (
            false,
            None,
            "needs a .pdmodel (or .json) program file at the top".to_string(),
        ),
        (_, Ok(None)) => (
            false,
            None,
            "needs a .pdiparams parameters file at the top".to_string(),
        ),
        (Ok(Some(g)), Ok(Some(p))) => (true, Some(g.clone()), format!("loads {g} and {p}")),
    };
    (
        RuntimeFit {
            runtime: runtime.to_string(),
            loads: ok,
            reason,
        },
        file,
    )
}

/// The content a format's model file must have.
fn content_fits(format: &str, content: Content, head: &[u8]) -> bool {
    match format {
        "pmml" => looks_like_pmml(head),
        "paddle" => true,
        f => content.format() == Some(f),
    }
}

fn looks_like_pmml(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    (t.starts_with("<?xml") || t.starts_with("<PMML")) && text.contains("<PMML")
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let top = files.top();
    let mut out = Checked::default();
    let mut chosen: Option<(String, String)> = None;
    for r in format.runtimes {
        let (fit, file) = if format.name == "paddle" {
            paddle_fit(r.runtime, &top)
        } else {
            fit(r.runtime, &r.loads, &top)
        };
        if let (Some(f), None) = (file, &chosen) {
            chosen = Some((r.runtime.to_string(), f));
        }
        out.runtimes.push(fit);
    }
    let preferred = &format.runtimes[0];
    if let (Loads::FirstOf(names), false) = (&preferred.loads, out.runtimes[0].loads) {
        // MLServer is KServe's runtime for these formats: a miss there fails the build, as it
        // always has, with a word on the KServe server that would load the directory.
        let other = out.runtimes.iter().find(|f| f.loads);
        let mut hint = format!(
            "rename the model file to {} (top level, not in a subdirectory)",
            names[0]
        );
        if let Some(o) = other {
            hint.push_str(&format!(
                "; or serve it with {}, which {}",
                o.runtime, o.reason
            ));
        }
        out.findings.push(
            Finding::new(
                Severity::Fail,
                "model-file",
                format!("MLServer's {} runtime looks for {} at the top of the model directory and none is there", format.name, names.join(", ")),
            )
            .hint(hint),
        );
    }
    let Some((runtime, file)) = chosen else {
        return Ok(out);
    };
    let head = files.head(&file)?;
    let content = sniff(&head);
    if content_fits(format.name, content, &head) {
        let what = match format.name {
            "pmml" => "a PMML document".to_string(),
            "paddle" => "a Paddle program".to_string(),
            _ => content.describe().to_string(),
        };
        out.findings.push(Finding::new(
            Severity::Pass,
            "model-file",
            format!("{file} is {what}, as {runtime} expects for {}", format.name),
        ));
    } else {
        let mut f = Finding::new(
            Severity::Fail,
            "model-file",
            format!(
                "{file} is {}, not what {runtime} loads for {}",
                content.describe(),
                format.name
            ),
        );
        f = match content.format() {
            Some(other) => f.hint(format!(
                "the file looks like a {other} model: declare --format {other}"
            )),
            None => f.hint(format!(
                "save the model with the {} library's own save function",
                format.name
            )),
        };
        out.findings.push(f);
    }
    out.model_file = Some(file);
    Ok(out)
}

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    let top = files.top();
    let present = |n: &str| top.iter().any(|(t, _)| t == n);
    for name in [
        "model.joblib",
        "model.pickle",
        "model.pkl",
        "model.bst",
        "model.json",
        "model.ubj",
    ] {
        if !present(name) {
            continue;
        }
        if let Some(f) = sniff(&files.head(name)?).format() {
            // A pickle named model.bst is nobody's model; only trust names that fit.
            let fits = super::lookup(f).is_some_and(|fmt| {
                fmt.runtimes
                    .iter()
                    .any(|r| matches!(r.loads, Loads::FirstOf(n) if n.contains(&name)))
            });
            if fits {
                let f = super::lookup(f).map(|x| x.name).unwrap_or_default();
                return Ok(Some(Detection {
                    format: f,
                    reason: format!("{name} starts as {}", sniff(&files.head(name)?).describe()),
                }));
            }
        }
    }
    for (name, _) in top.iter().filter(|(t, _)| t.ends_with(".pmml")) {
        if looks_like_pmml(&files.head(name)?) {
            return Ok(Some(Detection {
                format: "pmml",
                reason: format!("{name} is a PMML document"),
            }));
        }
    }
    if top.iter().any(|(t, _)| t.ends_with(".pdiparams")) {
        return Ok(Some(Detection {
            format: "paddle",
            reason: "a .pdiparams file (Paddle's parameters) is at the top".into(),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{check, testing::tree};

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
        let r = check(&t, None, false).unwrap();
        assert_eq!((r.format.as_deref(), r.detected), (Some("lightgbm"), true));
        assert!(r.reason.unwrap().contains("model.bst"));
        let (_d, t) = tree(&[("model.joblib", b"\x80\x04\x95")]);
        assert_eq!(
            check(&t, None, false).unwrap().format.as_deref(),
            Some("sklearn")
        );
        let (_d, t) = tree(&[("weights.bin", b"\x00\x01")]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format, None);
        assert!(r.findings.iter().any(|f| f.severity == Severity::Warn));
        let (_d, t) = tree(&[(
            "iris.pmml",
            b"<?xml version=\"1.0\"?>\n<PMML version=\"4.4\">",
        )]);
        assert_eq!(
            check(&t, None, false).unwrap().format.as_deref(),
            Some("pmml")
        );
    }

    #[test]
    fn wrong_content_and_missing_files_fail_with_a_hint() {
        let (_d, t) = tree(&[("model.bst", b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner")]);
        let r = check(&t, Some("lightgbm"), false).unwrap();
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
        let r = check(&t, Some("sklearn"), false).unwrap();
        let fail = r
            .findings
            .iter()
            .find(|f| f.severity == Severity::Fail)
            .unwrap();
        assert!(fail.message.contains("model.joblib"));
        // KServe's own server loads it, and the hint says so.
        assert!(
            fail.hint
                .as_deref()
                .unwrap()
                .contains("kserve-sklearnserver"),
            "{fail:?}"
        );
    }

    #[test]
    fn mlserver_and_kserve_servers_are_judged_apart() {
        // MLServer takes model.joblib first; KServe's server refuses two model files.
        let (_d, t) = tree(&[
            ("model.joblib", b"\x80\x04\x95"),
            ("backup.pkl", b"\x80\x04\x95"),
        ]);
        let r = check(&t, Some("sklearn"), false).unwrap();
        let fit = |n: &str| r.runtimes.iter().find(|f| f.runtime == n).unwrap().clone();
        assert!(fit("kserve-mlserver").loads);
        let k = fit("kserve-sklearnserver");
        assert!(!k.loads && k.reason.contains("more than one"), "{k:?}");
        let warn = r
            .findings
            .iter()
            .find(|f| f.check == "runtime" && f.severity == Severity::Warn)
            .unwrap();
        assert!(warn.message.contains("kserve-sklearnserver"), "{warn:?}");
        assert!(
            r.findings.iter().all(|f| f.severity != Severity::Fail),
            "{:?}",
            r.findings
        );
        // One file: both load it.
        let (_d, t) = tree(&[("model.joblib", b"\x80\x04\x95")]);
        let r = check(&t, Some("sklearn"), false).unwrap();
        assert!(r.runtimes.iter().all(|f| f.loads), "{:?}", r.runtimes);
        // PMML has only KServe's server: two files fail.
        let pmml: &[u8] = b"<PMML version=\"4.4\">";
        let (_d, t) = tree(&[("a.pmml", pmml), ("b.pmml", pmml)]);
        let r = check(&t, Some("pmml"), false).unwrap();
        let fail = r
            .findings
            .iter()
            .find(|f| f.severity == Severity::Fail)
            .unwrap();
        assert!(fail.message.contains("a.pmml, b.pmml"), "{fail:?}");
        // Paddle wants one program and one parameters file.
        let (_d, t) = tree(&[
            ("inference.pdmodel", b"\x0a\x01"),
            ("inference.pdiparams", b"\x00"),
        ]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("paddle"));
        assert!(r.runtimes[0].loads, "{:?}", r.runtimes);
        let (_d, t) = tree(&[("inference.pdiparams", b"\x00")]);
        let r = check(&t, Some("paddle"), false).unwrap();
        assert!(r
            .findings
            .iter()
            .any(|f| f.severity == Severity::Fail && f.message.contains(".pdmodel")));
    }

    #[test]
    fn xgboost_gets_the_sidecar_warning_only_under_mlserver() {
        let (_d, t) = tree(&[("model.json", b"{\"learner\": {}}")]);
        let r = check(&t, Some("xgboost"), false).unwrap();
        let notes = crate::formats::mode_notes(&r, crate::formats::Mode::Sidecar);
        let w = notes.iter().find(|f| f.check == XGBOOST_SIDECAR).unwrap();
        assert_eq!(w.severity, Severity::Warn);
        assert!(w.message.contains("kserve-mlserver"), "{w:?}");
        assert!(crate::formats::mode_notes(&r, crate::formats::Mode::Native).is_empty());
    }
}
