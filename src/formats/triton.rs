//! Triton model repositories (`kserve-tritonserver` runs `tritonserver
//! --model-store=/mnt/models`): one directory per model, holding `config.pbtxt` and numeric
//! version directories with the model files. The layout helpers here serve the ONNX,
//! TensorFlow and PyTorch families too, which Triton also serves.

use std::collections::BTreeMap;

use super::{Checked, Detection, Finding, Format, ModelFiles, ModelFilesExt, RuntimeFit};
use crate::error::Result;
use crate::text::escape;

/// One model of a repository.
#[derive(Debug, Default)]
pub(super) struct Model {
    pub name: String,
    pub config: bool,
    /// Version directory names (numeric or not) and the files below each, relative to it.
    pub versions: BTreeMap<String, Vec<String>>,
}

/// Whether a directory name is a version Triton, TF Serving and OVMS accept.
pub(super) fn numeric(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// Top-level directories read as a model repository: those with a `config.pbtxt` or a
/// numeric directory inside.
pub(super) fn repository(files: &dyn ModelFiles) -> Vec<Model> {
    let mut models: BTreeMap<String, Model> = BTreeMap::new();
    for (path, _) in files.files() {
        let parts: Vec<&str> = path.splitn(3, '/').collect();
        match parts.as_slice() {
            [name, "config.pbtxt"] => {
                let m = models.entry(name.to_string()).or_default();
                m.name = name.to_string();
                m.config = true;
            }
            [name, version, rest] if numeric(version) => {
                let m = models.entry(name.to_string()).or_default();
                m.name = name.to_string();
                m.versions
                    .entry(version.to_string())
                    .or_default()
                    .push(rest.to_string());
            }
            _ => {}
        }
    }
    models.into_values().collect()
}

/// Files at `<version>/<file>` directly under the top, by numeric version (TF Serving and
/// OpenVINO Model Server read `--model_base_path` this way).
pub(super) fn top_versions(files: &dyn ModelFiles) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, _) in files.files() {
        if let Some((version, rest)) = path.split_once('/') {
            if numeric(version) {
                out.entry(version.to_string())
                    .or_default()
                    .push(rest.to_string());
            }
        }
    }
    out
}

/// Whether Triton would load `file` (relative to a version directory, e.g. `model.onnx` or
/// `model.savedmodel/saved_model.pb`) for some model of the repository, and where.
pub(super) fn triton_fit(runtime: &str, files: &dyn ModelFiles, file: &str) -> RuntimeFit {
    let found: Vec<String> = repository(files)
        .iter()
        .flat_map(|m| {
            m.versions
                .iter()
                .filter(|(_, fs)| fs.iter().any(|f| f == file))
                .map(move |(v, _)| format!("{}/{v}/{file}", m.name))
        })
        .collect();
    RuntimeFit {
        runtime: runtime.to_string(),
        loads: !found.is_empty(),
        reason: if found.is_empty() {
            format!("needs <name>/<version>/{file} (a model repository)")
        } else {
            format!("loads {}", found.join(", "))
        },
    }
}

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    let with_config: Vec<String> = repository(files)
        .into_iter()
        .filter(|m| m.config)
        .map(|m| m.name)
        .collect();
    Ok(with_config.first().map(|m| Detection {
        format: "triton",
        reason: format!("{}/config.pbtxt makes a Triton model repository", escape(m)),
    }))
}

/// What `config.pbtxt` says runs the model (`platform:` or `backend:`).
fn backend(files: &dyn ModelFiles, model: &str) -> Result<Option<String>> {
    let Ok(raw) = files.small(&format!("{model}/config.pbtxt"), "layout")? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&raw);
    Ok(text.lines().find_map(|l| {
        let l = l.trim();
        ["platform:", "backend:"].iter().find_map(|k| {
            l.strip_prefix(k)
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    }))
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let mut out = Checked::default();
    let models = repository(files);
    let mut ok = Vec::new();
    for m in &models {
        let name = escape(&m.name);
        if m.versions.is_empty() {
            out.findings.push(
                Finding::fail(
                    "layout",
                    format!("model {name} has no numeric version directory ({name}/1/...): Triton loads none of it"),
                )
                .hint(format!("put the model file in {name}/1/")),
            );
            continue;
        }
        if !m.config {
            out.findings.push(
                Finding::warn(
                    "layout",
                    format!("model {name} has no config.pbtxt: Triton builds one only for ONNX, TensorFlow and TensorRT models"),
                )
                .hint(format!("write {name}/config.pbtxt naming the backend, inputs and outputs")),
            );
        }
        let backend = if m.config {
            backend(files, &m.name)?
        } else {
            None
        };
        let versions: Vec<&str> = m.versions.keys().map(String::as_str).collect();
        out.findings.push(Finding::pass(
            "layout",
            format!(
                "model {name}: versions {}{}",
                versions.join(", "),
                backend
                    .map(|b| format!(", backend {}", escape(&b)))
                    .unwrap_or_default()
            ),
        ));
        ok.push(m.name.clone());
    }
    if models.is_empty() {
        out.findings.push(
            Finding::fail("layout", "no model directory (<name>/config.pbtxt with <name>/<version>/...) at the top: Triton would start with an empty repository")
                .hint("lay the directory out as a Triton model repository"),
        );
    }
    for r in format.runtimes {
        out.runtimes.push(RuntimeFit {
            runtime: r.runtime.to_string(),
            loads: !ok.is_empty(),
            reason: if ok.is_empty() {
                "finds no loadable model directory".into()
            } else {
                format!("loads {}", ok.join(", "))
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    #[test]
    fn a_repository_needs_version_directories() {
        let config: &[u8] = b"name: \"m\"\nbackend: \"python\"\n";
        let (_d, t) = tree(&[
            ("m/config.pbtxt", config),
            ("m/1/model.py", b"import triton"),
        ]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("triton"));
        assert!(
            r.findings
                .iter()
                .any(|f| f.message.contains("versions 1, backend python")),
            "{:?}",
            r.findings
        );
        assert!(r.runtimes[0].loads);
        let (_d, t) = tree(&[("m/config.pbtxt", config), ("m/latest/model.py", b"x")]);
        let r = check(&t, None, false).unwrap();
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Fail && f.message.contains("no numeric version")),
            "{:?}",
            r.findings
        );
    }
}
