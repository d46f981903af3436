//! TensorFlow SavedModels. TF Serving (`--model_base_path=/mnt/models`) loads numeric version
//! directories, `<version>/saved_model.pb` with `<version>/variables/`; Triton loads
//! `<name>/<version>/model.savedmodel/`. The graph file must start as a SavedModel protobuf.

use super::triton::{numeric, triton_fit};
use super::{Checked, Detection, Finding, Format, ModelFiles, ModelFilesExt, RuntimeFit};
use crate::error::Result;
use crate::text::escape;

const GRAPH: &str = "saved_model.pb";

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    Ok(files
        .files()
        .into_iter()
        .find(|(p, _)| p == GRAPH || p.ends_with("/saved_model.pb"))
        .map(|(p, _)| Detection {
            format: "tensorflow",
            reason: format!("{} is a TensorFlow SavedModel graph", escape(&p)),
        }))
}

/// A SavedModel starts with field 1 (schema version, a number) or field 2 (a MetaGraph).
fn looks_like_saved_model(head: &[u8]) -> bool {
    matches!(head.first(), Some(0x08) | Some(0x12))
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let mut out = Checked::default();
    let all = files.files();
    let graphs: Vec<&str> = all
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| *p == GRAPH || p.ends_with("/saved_model.pb"))
        .collect();
    if graphs.is_empty() {
        out.findings.push(
            Finding::fail("model-file", "no saved_model.pb in the directory")
                .hint("export with tf.saved_model.save(model, 'DIR/1') and package DIR"),
        );
    }
    let mut parsed = true;
    for g in &graphs {
        let head = files.head(g)?;
        if looks_like_saved_model(&head) {
            let dir = g.strip_suffix(GRAPH).unwrap_or("");
            let vars = all
                .iter()
                .any(|(p, _)| p.starts_with(&format!("{dir}variables/")));
            out.findings.push(Finding::pass(
                "model-file",
                format!("{} starts as a SavedModel", escape(g)),
            ));
            if !vars {
                out.findings.push(
                    Finding::warn(
                        "layout",
                        format!(
                            "no {dir}variables/ beside {}: a model with weights keeps them there",
                            escape(g)
                        ),
                    )
                    .hint("copy the whole SavedModel directory, variables/ included"),
                );
            }
        } else {
            parsed = false;
            out.findings.push(
                Finding::fail(
                    "model-file",
                    format!("{} does not start as a SavedModel protobuf", escape(g)),
                )
                .hint("export the model with tf.saved_model.save"),
            );
        }
    }
    if graphs.contains(&GRAPH) {
        out.findings.push(
            Finding::warn("layout", "saved_model.pb is at the top: TF Serving loads numeric version directories (1/saved_model.pb)")
                .hint("move the SavedModel into 1/"),
        );
    }
    for r in format.runtimes {
        let mut fit = if r.runtime == "kserve-tritonserver" {
            triton_fit(r.runtime, files, "model.savedmodel/saved_model.pb")
        } else {
            let versions: Vec<&str> = graphs
                .iter()
                .filter_map(|g| g.strip_suffix("/saved_model.pb"))
                .filter(|v| numeric(v))
                .collect();
            RuntimeFit {
                runtime: r.runtime.to_string(),
                loads: !versions.is_empty(),
                reason: if versions.is_empty() {
                    "needs <version>/saved_model.pb".into()
                } else {
                    format!("loads version {}", versions.join(", "))
                },
            }
        };
        fit.loads &= parsed;
        out.runtimes.push(fit);
    }
    out.model_file = graphs.first().map(|g| g.to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    #[test]
    fn savedmodels_need_a_version_directory() {
        let pb: &[u8] = b"\x08\x01\x12\x00";
        let (_d, t) = tree(&[
            ("1/saved_model.pb", pb),
            ("1/variables/variables.index", b"x"),
        ]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("tensorflow"));
        assert!(r.runtimes[0].loads, "{:?}", r.runtimes);
        let (_d, t) = tree(&[("saved_model.pb", pb)]);
        let r = check(&t, None, false).unwrap();
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Fail && f.check == "runtime"),
            "{:?}",
            r.findings
        );
        let (_d, t) = tree(&[("1/saved_model.pb", b"hello")]);
        let r = check(&t, None, false).unwrap();
        assert!(r
            .findings
            .iter()
            .any(|f| f.severity == Severity::Fail && f.message.contains("SavedModel")));
    }
}
