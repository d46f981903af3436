//! MLflow models under MLServer's `mlserver_mlflow` runtime: an `MLmodel` file (YAML) at the
//! top whose flavours include `python_function`, the one MLServer loads.

use super::{Checked, Detection, Finding, Format, ModelFiles, ModelFilesExt, RuntimeFit};
use crate::error::Result;
use crate::text::escape;

const MLMODEL: &str = "MLmodel";

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    Ok(files.size(MLMODEL).map(|_| Detection {
        format: "mlflow",
        reason: "an MLmodel file is at the top".into(),
    }))
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let mut out = Checked::default();
    let mut loads = false;
    if files.size(MLMODEL).is_none() {
        out.findings.push(
            Finding::fail(
                "model-file",
                "no MLmodel file at the top: MLServer's MLflow runtime loads the model through it",
            )
            .hint("package the directory mlflow.<flavour>.save_model wrote, MLmodel included"),
        );
    } else {
        match files.small(MLMODEL, "model-file")? {
            Err(f) => out.findings.push(f),
            Ok(raw) => match serde_yaml::from_slice::<serde_yaml::Value>(&raw) {
                Err(e) => out.findings.push(
                    Finding::fail("model-file", format!("MLmodel is not YAML: {e}"))
                        .hint("write it with mlflow's save_model"),
                ),
                Ok(doc) => {
                    let flavours: Vec<String> = doc
                        .get("flavors")
                        .and_then(|f| f.as_mapping())
                        .map(|m| {
                            m.keys()
                                .filter_map(|k| k.as_str())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    let shown = flavours
                        .iter()
                        .map(|f| escape(f).to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    if flavours.iter().any(|f| f == "python_function") {
                        loads = true;
                        out.findings.push(Finding::pass("model-file", format!("MLmodel has the python_function flavour MLServer loads (flavours: {shown})")));
                    } else {
                        out.findings.push(
                            Finding::fail("model-file", format!("MLmodel has no python_function flavour (flavours: {}), the one MLServer's MLflow runtime loads", if shown.is_empty() { "none".into() } else { shown }))
                                .hint("save the model with a flavour that adds python_function (mlflow.sklearn.save_model and most others do)"),
                        );
                    }
                }
            },
        }
    }
    for r in format.runtimes {
        out.runtimes.push(RuntimeFit {
            runtime: r.runtime.to_string(),
            loads,
            reason: if loads {
                "loads MLmodel's python_function flavour".into()
            } else {
                "needs MLmodel with python_function".into()
            },
        });
    }
    out.model_file = loads.then(|| MLMODEL.to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    #[test]
    fn mlmodel_needs_the_pyfunc_flavour_and_wins_over_the_pickle_beside_it() {
        let ok: &[u8] = b"flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n  sklearn:\n    pickled_model: model.pkl\n";
        let (_d, t) = tree(&[("MLmodel", ok), ("model.pkl", b"\x80\x04\x95")]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("mlflow"));
        assert!(r.runtimes[0].loads);
        let (_d, t) = tree(&[("MLmodel", b"flavors:\n  keras: {}\n")]);
        let r = check(&t, None, false).unwrap();
        assert!(r
            .findings
            .iter()
            .any(|f| f.severity == Severity::Fail && f.message.contains("keras")));
    }
}
