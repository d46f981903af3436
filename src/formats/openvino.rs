//! OpenVINO IR under OpenVINO Model Server (`--model_path=/mnt/models`): numeric version
//! directories holding `<model>.xml` (the network, XML with a `<net>` element) and
//! `<model>.bin` (the weights) of the same name.

use super::triton::top_versions;
use super::{Checked, Detection, Finding, Format, ModelFiles, ModelFilesExt, RuntimeFit};
use crate::error::Result;
use crate::text::escape;

/// `.xml` files that are OpenVINO networks, anywhere in the directory.
fn networks(files: &dyn ModelFiles) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (p, _) in files
        .files()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".xml"))
    {
        if String::from_utf8_lossy(&files.head(&p)?).contains("<net ") {
            out.push(p);
        }
    }
    Ok(out)
}

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    Ok(networks(files)?.first().map(|p| Detection {
        format: "openvino",
        reason: format!("{} is an OpenVINO network (<net>)", escape(p)),
    }))
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let mut out = Checked::default();
    let nets = networks(files)?;
    if nets.is_empty() {
        out.findings.push(
            Finding::fail(
                "model-file",
                "no OpenVINO network (.xml with <net>) in the directory",
            )
            .hint("convert the model with openvino.save_model into 1/model.xml and 1/model.bin"),
        );
    }
    let mut complete = Vec::new();
    for n in &nets {
        let bin = format!("{}.bin", n.trim_end_matches(".xml"));
        if files.size(&bin).is_some() {
            out.findings.push(Finding::pass(
                "model-file",
                format!("{} with its weights {}", escape(n), escape(&bin)),
            ));
            complete.push(n.clone());
        } else {
            out.findings.push(
                Finding::fail(
                    "model-file",
                    format!(
                        "{} has no {} beside it: the weights are missing",
                        escape(n),
                        escape(&bin)
                    ),
                )
                .hint("copy the .bin that openvino.save_model wrote with the .xml"),
            );
        }
    }
    let versions: Vec<String> = top_versions(files)
        .into_iter()
        .filter(|(v, fs)| fs.iter().any(|f| complete.contains(&format!("{v}/{f}"))))
        .map(|(v, _)| v)
        .collect();
    for r in format.runtimes {
        out.runtimes.push(RuntimeFit {
            runtime: r.runtime.to_string(),
            loads: !versions.is_empty(),
            reason: if versions.is_empty() {
                "needs <version>/<model>.xml and .bin".into()
            } else {
                format!("loads version {}", versions.join(", "))
            },
        });
    }
    out.model_file = complete.first().cloned();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    #[test]
    fn ir_needs_its_weights_and_a_version_directory() {
        let xml: &[u8] = b"<?xml version=\"1.0\"?>\n<net name=\"m\" version=\"11\">";
        let (_d, t) = tree(&[("1/model.xml", xml), ("1/model.bin", b"\0")]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("openvino"));
        assert!(r.runtimes[0].loads, "{:?}", r.findings);
        let (_d, t) = tree(&[("model.xml", xml)]);
        let r = check(&t, None, false).unwrap();
        let fails: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Fail)
            .collect();
        assert!(
            fails.iter().any(|f| f.message.contains("model.bin"))
                && fails.iter().any(|f| f.check == "runtime"),
            "{fails:?}"
        );
    }
}
