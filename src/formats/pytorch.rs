//! PyTorch models under TorchServe (`kserve-torchserve` runs `torchserve
//! --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties`):
//! the properties file and model archives (`.mar`, zip files); or TorchScript in a Triton
//! repository (`<name>/<version>/model.pt`).

use super::triton::triton_fit;
use super::{Checked, Detection, Finding, Format, ModelFiles, ModelFilesExt, RuntimeFit};
use crate::error::Result;
use crate::text::escape;

const PROPERTIES: &str = "config/config.properties";

fn archives(files: &dyn ModelFiles) -> Vec<String> {
    files
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.strip_prefix("model-store/")
                .is_some_and(|n| n.ends_with(".mar") && !n.contains('/'))
        })
        .collect()
}

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    let props = files.size(PROPERTIES).is_some();
    let mars = archives(files);
    Ok(if props || !mars.is_empty() {
        Some(Detection {
            format: "pytorch",
            reason: match mars.first() {
                Some(m) => format!("{} is a TorchServe model archive", escape(m)),
                None => format!("{PROPERTIES} is TorchServe's configuration"),
            },
        })
    } else {
        None
    })
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let mut out = Checked::default();
    let mars = archives(files);
    let mut torchserve = true;
    match files.size(PROPERTIES) {
        None => {
            torchserve = false;
            out.findings.push(
                Finding::fail("layout", format!("{PROPERTIES} is missing: KServe starts TorchServe with --ts-config={PROPERTIES} under /mnt/models"))
                    .hint("write config/config.properties (inference_address, model_store, load_models or model_snapshot)"),
            );
        }
        Some(_) => match files.small(PROPERTIES, "layout")? {
            Err(f) => {
                torchserve = false;
                out.findings.push(f);
            }
            Ok(raw) => {
                let text = String::from_utf8_lossy(&raw);
                let keys: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
                    .filter_map(|l| l.split(['=', ':']).next().map(str::trim))
                    .collect();
                if keys
                    .iter()
                    .any(|k| *k == "load_models" || *k == "model_snapshot")
                {
                    out.findings.push(Finding::pass(
                        "layout",
                        format!("{PROPERTIES} names the models to load"),
                    ));
                } else {
                    out.findings.push(
                        Finding::warn("layout", format!("{PROPERTIES} sets neither load_models nor model_snapshot: TorchServe starts with no model"))
                            .hint("add load_models=all, or a model_snapshot naming the archives"),
                    );
                }
            }
        },
    }
    if mars.is_empty() {
        torchserve = false;
        out.findings.push(
            Finding::fail(
                "layout",
                "no model-store/*.mar archive: TorchServe has nothing to load",
            )
            .hint("package the model with torch-model-archiver into model-store/"),
        );
    }
    for m in &mars {
        if files.read_at(m, 0, 4)? != b"PK\x03\x04" {
            torchserve = false;
            out.findings.push(
                Finding::fail(
                    "model-file",
                    format!("{} is not a zip archive, which a .mar is", escape(m)),
                )
                .hint("package the model again with torch-model-archiver"),
            );
        } else {
            out.findings.push(Finding::pass(
                "model-file",
                format!("{} is a zip archive", escape(m)),
            ));
        }
    }
    for r in format.runtimes {
        out.runtimes.push(if r.runtime == "kserve-tritonserver" {
            triton_fit(r.runtime, files, "model.pt")
        } else {
            RuntimeFit {
                runtime: r.runtime.to_string(),
                loads: torchserve,
                reason: if torchserve {
                    format!("loads {}", mars.join(", "))
                } else {
                    format!("needs {PROPERTIES} and model-store/*.mar")
                },
            }
        });
    }
    out.model_file = mars.first().cloned();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    #[test]
    fn torchserve_needs_its_properties_and_archives() {
        let (_d, t) = tree(&[
            (
                "config/config.properties",
                b"inference_address=http://0.0.0.0:8085\nload_models=all\n",
            ),
            ("model-store/mnist.mar", b"PK\x03\x04rest"),
        ]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("pytorch"));
        assert!(r.runtimes[0].loads, "{:?}", r.findings);
        let (_d, t) = tree(&[("model-store/mnist.mar", b"nope")]);
        let r = check(&t, None, false).unwrap();
        let fails: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Fail)
            .map(|f| f.message.clone())
            .collect();
        assert!(
            fails.iter().any(|m| m.contains("config.properties"))
                && fails.iter().any(|m| m.contains("zip")),
            "{fails:?}"
        );
    }
}
