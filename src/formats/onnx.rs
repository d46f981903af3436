//! ONNX models, served by Triton (a model repository, `<name>/<version>/model.onnx`) and by
//! OpenVINO Model Server (`<version>/model.onnx`).
//!
//! The file must parse as an ONNX `ModelProto`: protobuf fields walked from the start, the
//! graph (which holds the weights, often gigabytes) skipped by its length without being read,
//! until the IR version and the operator sets are known.

use super::triton::{numeric, top_versions, triton_fit};
use super::{Checked, Detection, Finding, Format, ModelFiles, RuntimeFit, Severity};
use crate::error::Result;
use crate::limits;
use crate::text::escape;

/// What the header of a ModelProto says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub ir_version: u64,
    /// (domain, version); the default domain is "".
    pub opsets: Vec<(String, u64)>,
    pub producer: Option<String>,
    pub has_graph: bool,
}

fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The fields of a small protobuf message, as (field, wire type, varint or bytes).
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, u64, Vec<u8>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, n) = varint(buf)?;
        buf = &buf[n..];
        match tag & 7 {
            0 => {
                let (v, n) = varint(buf)?;
                out.push((tag >> 3, 0, v.to_le_bytes().to_vec()));
                buf = &buf[n..];
            }
            2 => {
                let (len, n) = varint(buf)?;
                let end = n.checked_add(usize::try_from(len).ok()?)?;
                out.push((tag >> 3, 2, buf.get(n..end)?.to_vec()));
                buf = &buf[end..];
            }
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(out)
}

/// Parse the header of an ONNX file of `size` bytes, or say why it is not one.
pub fn read(
    files: &dyn ModelFiles,
    rel: &str,
    size: u64,
) -> Result<std::result::Result<Header, String>> {
    let mut h = Header {
        ir_version: 0,
        opsets: Vec::new(),
        producer: None,
        has_graph: false,
    };
    let mut pos = 0u64;
    let not = |why: &str| Ok(Err(format!("{} is not an ONNX model: {why}", escape(rel))));
    for _ in 0..limits::ONNX_FIELDS {
        if pos == size {
            break;
        }
        // A field's tag and length are two varints of at most 10 bytes each.
        let head = files.read_at(rel, pos, 20)?;
        let Some((tag, n)) = varint(&head) else {
            return not("a protobuf field tag does not parse");
        };
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return not("a protobuf field numbered 0");
        }
        let rest = &head[n..];
        match wire {
            0 => {
                let Some((v, m)) = varint(rest) else {
                    return not("a protobuf number does not parse");
                };
                if field == 1 {
                    h.ir_version = v;
                }
                pos += (n + m) as u64;
            }
            2 => {
                let Some((len, m)) = varint(rest) else {
                    return not("a protobuf length does not parse");
                };
                let start = pos + (n + m) as u64;
                let Some(end) = start.checked_add(len).filter(|e| *e <= size) else {
                    return not(&format!(
                        "field {field} runs {len} bytes past the end of the file (truncated?)"
                    ));
                };
                match field {
                    7 => h.has_graph = true,
                    2 | 8 if len <= limits::FORMAT_HEAD => {
                        let body = files.read_at(rel, start, len)?;
                        if field == 2 {
                            h.producer = Some(String::from_utf8_lossy(&body).into_owned());
                        } else {
                            let Some(fs) = fields(&body) else {
                                return not("an opset_import entry does not parse");
                            };
                            let mut domain = String::new();
                            let mut version = 0;
                            for (f, _, v) in fs {
                                match f {
                                    1 => domain = String::from_utf8_lossy(&v).into_owned(),
                                    2 => {
                                        version =
                                            u64::from_le_bytes(v.try_into().unwrap_or_default())
                                    }
                                    _ => {}
                                }
                            }
                            h.opsets.push((domain, version));
                        }
                    }
                    _ => {}
                }
                pos = end;
            }
            1 => pos += n as u64 + 8,
            5 => pos += n as u64 + 4,
            _ => {
                return not(&format!(
                    "protobuf wire type {wire}, which ONNX files do not use"
                ))
            }
        }
    }
    if pos > size {
        return not("the last field runs past the end of the file (truncated?)");
    }
    if h.ir_version == 0 {
        return not("no ir_version");
    }
    if !h.has_graph {
        return not("no graph");
    }
    if !h.opsets.iter().any(|(_, v)| *v > 0) {
        return not("no opset_import");
    }
    Ok(Ok(h))
}

/// Findings for every `.onnx` file of the directory; whether all parsed.
pub(super) fn check_files(files: &dyn ModelFiles, out: &mut Vec<Finding>) -> Result<bool> {
    let mut all = true;
    for (rel, size) in files
        .files()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".onnx"))
    {
        match read(files, &rel, size)? {
            Ok(h) => {
                let opset = h
                    .opsets
                    .iter()
                    .map(|(d, v)| {
                        if d.is_empty() {
                            v.to_string()
                        } else {
                            format!("{} {v}", escape(d))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Finding::pass(
                    "model-file",
                    format!(
                        "{} is an ONNX model: IR version {}, opset {opset}{}",
                        escape(&rel),
                        h.ir_version,
                        h.producer
                            .map(|p| format!(", from {}", escape(&p)))
                            .unwrap_or_default()
                    ),
                ));
            }
            Err(why) => {
                all = false;
                out.push(
                    Finding::fail("model-file", why)
                        .hint("export the model again (torch.onnx.export, tf2onnx, onnx.save)"),
                );
            }
        }
    }
    Ok(all)
}

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    Ok(files
        .files()
        .into_iter()
        .find(|(p, _)| p.ends_with(".onnx"))
        .map(|(p, _)| Detection {
            format: "onnx",
            reason: format!("{} is an .onnx file", escape(&p)),
        }))
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let mut out = Checked::default();
    let parsed = check_files(files, &mut out.findings)?;
    let onnx: Vec<(String, u64)> = files
        .files()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".onnx"))
        .collect();
    if onnx.is_empty() {
        out.findings.push(
            Finding::fail("model-file", "no .onnx file in the directory")
                .hint("add the model as <version>/model.onnx"),
        );
    }
    let plain: Vec<&str> = onnx
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.contains('/'))
        .collect();
    if !plain.is_empty() {
        out.findings.push(
            Finding::new(Severity::Warn, "layout", format!("{} at the top: Triton and OpenVINO Model Server both read numeric version directories", plain.join(", ")))
                .hint("move it to 1/model.onnx (OpenVINO Model Server) or <name>/1/model.onnx (Triton)"),
        );
    }
    for r in format.runtimes {
        let mut fit = if r.runtime == "kserve-tritonserver" {
            triton_fit(r.runtime, files, "model.onnx")
        } else {
            let found: Vec<String> = top_versions(files)
                .into_iter()
                .filter(|(v, fs)| {
                    numeric(v) && fs.iter().any(|f| f.ends_with(".onnx") && !f.contains('/'))
                })
                .map(|(v, _)| format!("{v}/"))
                .collect();
            RuntimeFit {
                runtime: r.runtime.to_string(),
                loads: !found.is_empty(),
                reason: if found.is_empty() {
                    "needs <version>/model.onnx".into()
                } else {
                    format!("loads the .onnx file of {}", found.join(", "))
                },
            }
        };
        fit.loads &= parsed;
        out.runtimes.push(fit);
    }
    out.model_file = onnx.first().map(|(p, _)| p.clone());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    fn field(n: u64, wire: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | wire) as u8];
        if wire == 2 {
            out.push(body.len() as u8);
        }
        out.extend(body);
        out
    }

    /// A minimal ModelProto: ir_version 9, producer, a graph, opset 17.
    fn model() -> Vec<u8> {
        [
            field(1, 0, &[9]),
            field(2, 2, b"test"),
            field(7, 2, &[0x0a, 0x01, b'g']),
            field(8, 2, &[0x10, 17]),
        ]
        .concat()
    }

    #[test]
    fn onnx_headers_are_read_and_layouts_judged() {
        let m = model();
        let (_d, t) = tree(&[
            ("style/config.pbtxt", b"platform: \"onnxruntime_onnx\"\n"),
            ("style/1/model.onnx", &m),
        ]);
        // A repository with config.pbtxt reads as Triton's own format...
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("triton"));
        // ... and declared as onnx, Triton loads it; OpenVINO Model Server does not.
        let r = check(&t, Some("onnx"), false).unwrap();
        let pass = r.findings.iter().find(|f| f.check == "model-file").unwrap();
        assert!(
            pass.message.contains("IR version 9, opset 17, from test"),
            "{pass:?}"
        );
        assert!(
            r.runtimes[0].loads && !r.runtimes[1].loads,
            "{:?}",
            r.runtimes
        );
        // The plain single-file layout: detected, parsed, and loaded by neither.
        let (_d, t) = tree(&[("model.onnx", &m)]);
        let r = check(&t, None, false).unwrap();
        assert_eq!(r.format.as_deref(), Some("onnx"));
        assert!(r
            .findings
            .iter()
            .any(|f| f.severity == Severity::Fail && f.check == "runtime"));
        // OpenVINO's version directory.
        let (_d, t) = tree(&[("1/model.onnx", &m)]);
        let r = check(&t, Some("onnx"), false).unwrap();
        assert!(r.runtimes[1].loads, "{:?}", r.runtimes);
        // A truncated file and a text file fail.
        let (_d, t) = tree(&[("1/model.onnx", &m[..m.len() - 1])]);
        let r = check(&t, Some("onnx"), false).unwrap();
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Fail && f.message.contains("past the end")),
            "{:?}",
            r.findings
        );
        let (_d, t) = tree(&[("1/model.onnx", b"hello, world")]);
        let r = check(&t, Some("onnx"), false).unwrap();
        assert!(r
            .findings
            .iter()
            .any(|f| f.severity == Severity::Fail && f.message.contains("not an ONNX model")));
    }
}
