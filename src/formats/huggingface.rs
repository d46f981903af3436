//! Hugging Face model directories, as KServe's Hugging Face server (and vLLM behind it) loads
//! them from `/mnt/models`: `config.json` naming the architecture, weights as safetensors
//! (sharded with `model.safetensors.index.json`), tokenizer files.
//!
//! Weights are judged from their headers only: every safetensors header is parsed and its
//! tensors checked against the file's size ([`super::safetensors`]); the shard index must list
//! exactly the shards present and name only tensors they hold. PyTorch pickles load too, but
//! run code when they do, so they are warned about; GGUF files are recognised by their magic.

use std::collections::{BTreeMap, BTreeSet};

use super::safetensors::{self, Problem};
use super::{Checked, Detection, Finding, Format, ModelFiles, ModelFilesExt, RuntimeFit};
use crate::error::Result;
use crate::limits;
use crate::text::escape;

const INDEX: &str = "model.safetensors.index.json";
const PICKLE_INDEX: &str = "pytorch_model.bin.index.json";
/// Tensor names listed in one message at most.
const SHOWN: usize = 5;

fn is_pickle(name: &str) -> bool {
    (name.starts_with("pytorch_model") && name.ends_with(".bin")) || name.ends_with(".pt")
}

fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| escape(n).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// What `config.json` says the model is, or why it says nothing.
fn read_config(files: &dyn ModelFiles) -> Result<std::result::Result<String, Finding>> {
    let raw = match files.small("config.json", "config")? {
        Ok(raw) => raw,
        Err(f) => return Ok(Err(f)),
    };
    let json: serde_json::Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(Finding::fail(
                "config",
                format!("config.json is not JSON: {e}"),
            )
            .hint("write it with the model's save_pretrained, or fix the JSON")))
        }
    };
    let arch: Vec<&str> = json
        .get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let model_type = json.get("model_type").and_then(|t| t.as_str());
    match (arch.first(), model_type) {
        (None, None) => Ok(Err(Finding::fail(
            "config",
            "config.json names neither `architectures` nor `model_type`: transformers and vLLM cannot tell which model class to build",
        )
        .hint("save the config with the model's save_pretrained, which writes both"))),
        (a, t) => Ok(Ok(match (a, t) {
            (Some(a), Some(t)) => format!("architecture {} (model_type {})", escape(a), escape(t)),
            (Some(a), None) => format!("architecture {}", escape(a)),
            (None, Some(t)) => format!("model_type {}", escape(t)),
            (None, None) => unreachable!("matched above"),
        })),
    }
}

fn starts_as_safetensors(files: &dyn ModelFiles, rel: &str) -> Result<bool> {
    let size = files.size(rel).unwrap_or(0);
    let head = files.read_at(rel, 0, 9)?;
    Ok(head.len() == 9 && head[8] == b'{' && {
        let n = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        n >= 2 && n <= size - 8
    })
}

pub(super) fn detect(files: &dyn ModelFiles) -> Result<Option<Detection>> {
    let top = files.top();
    let has =
        |pred: &dyn Fn(&str) -> bool| top.iter().find(|(t, _)| pred(t)).map(|(t, _)| t.clone());
    let weights = has(&|t| t.ends_with(".safetensors"))
        .or_else(|| has(&|t| is_pickle(t)))
        .or_else(|| has(&|t| t.ends_with(".gguf")));
    let config = top.iter().any(|(t, _)| t == "config.json");
    Ok(match (config, weights) {
        (true, Some(w)) => {
            let what = match read_config(files)? {
                Ok(what) => format!("config.json names {what}"),
                Err(_) => "a config.json".to_string(),
            };
            Some(Detection {
                format: "huggingface",
                reason: format!("{what}, beside weights such as {}", escape(&w)),
            })
        }
        // Without a config, only a file that starts as safetensors (a length, then a JSON
        // object) counts: a name alone is no evidence.
        (false, Some(w)) if w.ends_with(".safetensors") && starts_as_safetensors(files, &w)? => {
            Some(Detection {
                format: "huggingface",
                reason: format!("{} starts with a safetensors header", escape(&w)),
            })
        }
        _ => None,
    })
}

pub(super) fn check(format: &Format, files: &dyn ModelFiles) -> Result<Checked> {
    let top = files.top();
    let mut out = Checked::default();
    let present = |n: &str| top.iter().any(|(t, _)| t == n);

    if !present("config.json") {
        out.findings.push(
            Finding::fail("config", "config.json is missing: the Hugging Face server and vLLM read the model's architecture from it")
                .hint("copy the model's config.json into the directory (save_pretrained writes it)"),
        );
    } else {
        match read_config(files)? {
            Ok(what) => out
                .findings
                .push(Finding::pass("config", format!("config.json names {what}"))),
            Err(f) => out.findings.push(f),
        }
    }

    let shards: Vec<(String, u64)> = top
        .iter()
        .filter(|(t, _)| t.ends_with(".safetensors"))
        .cloned()
        .collect();
    check_safetensors(files, &shards, present(INDEX), &mut out.findings)?;

    let pickles: Vec<String> = top
        .iter()
        .map(|(t, _)| t.clone())
        .filter(|t| is_pickle(t))
        .collect();
    if !pickles.is_empty() {
        out.findings.push(
            Finding::warn(
                "pickle",
                format!(
                    "{} {} PyTorch pickle weights: loading a pickle runs the code inside it{}",
                    list(&pickles),
                    if pickles.len() == 1 { "is" } else { "are" },
                    if shards.is_empty() { "" } else { " (the safetensors weights beside them are loaded instead; the pickles are dead weight in the image)" }
                ),
            )
            .hint("convert the weights to safetensors, the safe form (transformers: save_pretrained(..., safe_serialization=True)), and leave the pickles out"),
        );
    }

    if present(PICKLE_INDEX) {
        missing_shards(files, PICKLE_INDEX, &mut out.findings)?;
    }

    let mut gguf = Vec::new();
    for (name, _) in top.iter().filter(|(t, _)| t.ends_with(".gguf")) {
        // GGUF's header: magic, version (u32), tensor count (u64), metadata count (u64).
        let head = files.read_at(name, 0, 24)?;
        if head.len() >= 24 && head.starts_with(b"GGUF") {
            let version = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
            let tensors = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
            gguf.push(format!(
                "{} (GGUF version {version}, {tensors} tensors)",
                escape(name)
            ));
        } else {
            out.findings.push(
                Finding::fail(
                    "gguf",
                    format!(
                        "{} is named .gguf but does not start with GGUF's magic",
                        escape(name)
                    ),
                )
                .hint("replace it with the GGUF file as llama.cpp's tools write it"),
            );
        }
    }
    if !gguf.is_empty() {
        out.findings.push(
            Finding::warn("gguf", format!("GGUF weights: {}", gguf.join(", ")))
                .hint("vLLM loads a GGUF file when its path is the model; KServe's Hugging Face server loads safetensors from the directory"),
        );
    }

    if shards.is_empty() && pickles.is_empty() && gguf.is_empty() {
        out.findings.push(
            Finding::fail("weights", "no weights at the top of the directory: no *.safetensors, pytorch_model*.bin, *.pt or *.gguf")
                .hint("put the weight files beside config.json"),
        );
    }

    let tokenizer = [
        "tokenizer.json",
        "tokenizer.model",
        "vocab.txt",
        "spiece.model",
    ]
    .into_iter()
    .find(|n| present(n))
    .map(str::to_string)
    .or_else(|| {
        (present("vocab.json") && present("merges.txt"))
            .then(|| "vocab.json and merges.txt".to_string())
    })
    .or_else(|| {
        top.iter()
            .find(|(t, _)| t.ends_with(".tiktoken"))
            .map(|(t, _)| escape(t).to_string())
    });
    match tokenizer {
        Some(t) => out.findings.push(Finding::pass("tokenizer", format!("tokenizer: {t}"))),
        None => out.findings.push(
            Finding::warn("tokenizer", "no tokenizer files (tokenizer.json, sentencepiece tokenizer.model, vocab.json with merges.txt, vocab.txt): text generation and the OpenAI routes need one")
                .hint("save the tokenizer beside the model (tokenizer.save_pretrained)"),
        ),
    }

    let failed: Vec<&Finding> = out
        .findings
        .iter()
        .filter(|f| f.severity == super::Severity::Fail)
        .collect();
    let loads = failed.is_empty() && (!shards.is_empty() || !pickles.is_empty());
    for r in format.runtimes {
        out.runtimes.push(RuntimeFit {
            runtime: r.runtime.to_string(),
            loads,
            reason: if loads {
                "loads config.json and the weights".to_string()
            } else if let Some(f) = failed.first() {
                format!("fails the {} check", f.check)
            } else {
                "finds no safetensors or PyTorch weights".to_string()
            },
        });
    }
    out.model_file = if present(INDEX) {
        Some(INDEX.to_string())
    } else {
        shards.first().map(|(n, _)| n.clone())
    };
    Ok(out)
}

/// The shards an index's weight_map names that are not in the directory (a failure), or why
/// the index cannot be read. Returns the map when it was read.
fn missing_shards(
    files: &dyn ModelFiles,
    index: &str,
    out: &mut Vec<Finding>,
) -> Result<Option<BTreeMap<String, String>>> {
    let raw = match files.small(index, "shards")? {
        Ok(raw) => raw,
        Err(f) => {
            out.push(f);
            return Ok(None);
        }
    };
    let map: Option<BTreeMap<String, String>> = serde_json::from_slice::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| v.get("weight_map").cloned())
        .and_then(|m| serde_json::from_value(m).ok());
    let Some(map) = map else {
        out.push(
            Finding::fail(
                "shards",
                format!("{index} has no weight_map of tensor names to shard files"),
            )
            .hint("write the index with save_pretrained, which maps every tensor to its shard"),
        );
        return Ok(None);
    };
    let top: BTreeSet<String> = files.top().into_iter().map(|(n, _)| n).collect();
    let missing: Vec<String> = map
        .values()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|s| !top.contains(*s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        out.push(
            Finding::fail(
                "shards",
                format!(
                    "{index} names shards that are not in the directory: {}",
                    list(&missing)
                ),
            )
            .hint("copy every shard the index names (a download may have stopped short)"),
        );
    }
    Ok(Some(map))
}

/// Every safetensors header, and the shard index against them.
fn check_safetensors(
    files: &dyn ModelFiles,
    shards: &[(String, u64)],
    has_index: bool,
    out: &mut Vec<Finding>,
) -> Result<()> {
    if shards.len() > limits::SAFETENSORS_FILES {
        out.push(Finding::warn(
            "weights",
            format!(
                "{} safetensors files: modelcar checks the first {}",
                shards.len(),
                limits::SAFETENSORS_FILES
            ),
        ));
    }
    let mut headers: BTreeMap<&str, safetensors::Header> = BTreeMap::new();
    let mut broken = false;
    for (name, size) in shards.iter().take(limits::SAFETENSORS_FILES) {
        match safetensors::read(files, name, *size)? {
            Ok(h) => {
                headers.insert(name, h);
            }
            Err(Problem::Broken(why)) => {
                broken = true;
                out.push(Finding::fail("weights", why).hint(format!(
                    "{} will not load: copy it again from the source, or save the model again",
                    escape(name)
                )));
            }
            Err(Problem::TooLarge(n)) => out.push(Finding::warn(
                "weights",
                format!(
                    "{}: a header of {n} bytes, more than modelcar reads ({}); not checked",
                    escape(name),
                    limits::SAFETENSORS_HEADER
                ),
            )),
        }
    }

    if has_index {
        let Some(map) = missing_shards(files, INDEX, out)? else {
            return Ok(());
        };
        let listed: BTreeSet<&str> = map.values().map(String::as_str).collect();
        let present: BTreeSet<&str> = shards.iter().map(|(n, _)| n.as_str()).collect();
        let missing = listed.difference(&present).count();
        let unlisted: Vec<String> = present.difference(&listed).map(|s| s.to_string()).collect();
        if !unlisted.is_empty() {
            out.push(
                Finding::fail(
                    "shards",
                    format!(
                        "{} not listed in {INDEX}: loaders read only the shards the index names",
                        list(&unlisted)
                    ),
                )
                .hint("remove the stray shard, or write the index again with save_pretrained"),
            );
        }
        // Tensor names: the index against the headers of the shards that exist and parsed.
        let mut absent = Vec::new();
        for (tensor, shard) in &map {
            if let Some(h) = headers.get(shard.as_str()) {
                if !h.tensors.contains_key(tensor) {
                    absent.push(format!("{tensor} (in {shard})"));
                }
            }
        }
        if !absent.is_empty() {
            out.push(
                Finding::fail("shards", format!("{INDEX} names tensors their shards do not hold: {}", list(&absent)))
                    .hint("the index and the shards come from different saves: copy both from the same one"),
            );
        }
        let mut extra = Vec::new();
        for (shard, h) in &headers {
            for tensor in h.tensors.keys() {
                if map.get(tensor).map(String::as_str) != Some(*shard) {
                    extra.push(format!("{tensor} (in {shard})"));
                }
            }
        }
        if !extra.is_empty() {
            out.push(
                Finding::warn(
                    "shards",
                    format!(
                        "shards hold tensors {INDEX} does not map to them: {}",
                        list(&extra)
                    ),
                )
                .hint("the loader will not find them through the index: write the index again"),
            );
        }
        if missing == 0 && unlisted.is_empty() && absent.is_empty() && !broken {
            out.push(Finding::pass(
                "shards",
                format!(
                    "{INDEX} maps {} tensors to {} shards, all present and matching their headers",
                    map.len(),
                    listed.len()
                ),
            ));
        }
    } else if shards.len() > 1 {
        out.push(
            Finding::warn("shards", format!("{} safetensors files and no {INDEX}: transformers loads a sharded model through its index", shards.len()))
                .hint("save the model with save_pretrained, which writes the index beside the shards"),
        );
    }
    if !broken && !headers.is_empty() {
        let tensors: usize = headers.values().map(|h| h.tensors.len()).sum();
        let bytes: u64 = headers.values().map(|h| h.data_len).sum();
        out.push(Finding::pass(
            "weights",
            format!("{} safetensors files, {tensors} tensors, {bytes} bytes of tensor data, checked from their headers", headers.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::safetensors::header_bytes;
    use crate::formats::testing::tree;
    use crate::formats::{check, Severity};

    fn shard(tensors: &[(&str, &str, &[u64])]) -> Vec<u8> {
        let (mut h, data) = header_bytes(tensors);
        h.extend(vec![0u8; data as usize]);
        h
    }

    const CONFIG: &[u8] = br#"{"architectures":["LlamaForCausalLM"],"model_type":"llama"}"#;

    fn sharded() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("config.json", CONFIG.to_vec()),
            ("tokenizer.json", b"{}".to_vec()),
            ("model-00001-of-00002.safetensors", shard(&[("a", "BF16", &[4, 4])])),
            ("model-00002-of-00002.safetensors", shard(&[("b", "F32", &[3])])),
            (
                "model.safetensors.index.json",
                br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#.to_vec(),
            ),
        ]
    }

    fn run(files: &[(&str, Vec<u8>)], declared: Option<&str>) -> crate::formats::FormatReport {
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        let (_d, t) = tree(&refs);
        check(&t, declared, false).unwrap()
    }

    fn fails(r: &crate::formats::FormatReport) -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.severity == Severity::Fail)
            .map(|f| f.message.clone())
            .collect()
    }

    #[test]
    fn a_sharded_model_is_detected_and_passes() {
        let r = run(&sharded(), None);
        assert_eq!(r.format.as_deref(), Some("huggingface"));
        assert!(
            r.reason.as_deref().unwrap().contains("LlamaForCausalLM"),
            "{:?}",
            r.reason
        );
        assert!(fails(&r).is_empty(), "{:?}", r.findings);
        assert!(r.runtimes[0].loads);
        assert!(r
            .findings
            .iter()
            .any(|f| f.message.contains("2 tensors to 2 shards")));
    }

    #[test]
    fn broken_variants_fail_naming_the_file() {
        // A missing shard.
        let mut files = sharded();
        files.retain(|(n, _)| *n != "model-00002-of-00002.safetensors");
        let f = fails(&run(&files, Some("huggingface")));
        assert!(
            f.iter()
                .any(|m| m.contains("model-00002-of-00002.safetensors")
                    && m.contains("not in the directory")),
            "{f:?}"
        );
        // An index naming a tensor no shard holds.
        let mut files = sharded();
        files[4].1 = br#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#.to_vec();
        let f = fails(&run(&files, Some("huggingface")));
        assert!(
            f.iter()
                .any(|m| m.contains("c (in model-00002-of-00002.safetensors)")),
            "{f:?}"
        );
        // A truncated shard.
        let mut files = sharded();
        let cut = files[2].1.len() - 3;
        files[2].1.truncate(cut);
        let f = fails(&run(&files, Some("huggingface")));
        assert!(
            f.iter()
                .any(|m| m.contains("model-00001-of-00002.safetensors") && m.contains("truncated")),
            "{f:?}"
        );
        // A shard the index does not list.
        let mut files = sharded();
        files.push((
            "model-00003-of-00002.safetensors",
            shard(&[("z", "U8", &[1])]),
        ));
        let f = fails(&run(&files, Some("huggingface")));
        assert!(f.iter().any(|m| m.contains("model-00003-of-00002.safetensors") && m.contains("not listed")), "{f:?}");
        // A PyTorch index naming a shard that is not there.
        let files = vec![
            ("config.json", CONFIG.to_vec()),
            ("pytorch_model-00001-of-00002.bin", b"PK".to_vec()),
            ("pytorch_model.bin.index.json", br#"{"weight_map":{"a":"pytorch_model-00001-of-00002.bin","b":"pytorch_model-00002-of-00002.bin"}}"#.to_vec()),
        ];
        let f = fails(&run(&files, Some("huggingface")));
        assert!(
            f.iter()
                .any(|m| m.contains("pytorch_model-00002-of-00002.bin")),
            "{f:?}"
        );
        // A config naming nothing.
        let mut files = sharded();
        files[0].1 = b"{\"hidden_size\": 4}".to_vec();
        let f = fails(&run(&files, Some("huggingface")));
        assert!(f.iter().any(|m| m.contains("architectures")), "{f:?}");
    }

    #[test]
    fn pickles_gguf_and_missing_tokenizers_are_reported() {
        let files = vec![
            ("config.json", CONFIG.to_vec()),
            ("pytorch_model.bin", b"PK\x03\x04".to_vec()),
            (
                "model.gguf",
                [
                    b"GGUF".as_slice(),
                    &3u32.to_le_bytes(),
                    &7u64.to_le_bytes(),
                    &2u64.to_le_bytes(),
                ]
                .concat(),
            ),
        ];
        let r = run(&files, None);
        assert_eq!(r.format.as_deref(), Some("huggingface"));
        let warn = |check: &str| {
            r.findings
                .iter()
                .find(|f| f.check == check && f.severity == Severity::Warn)
                .unwrap_or_else(|| panic!("no {check} warning in {:?}", r.findings))
                .clone()
        };
        assert!(warn("pickle").message.contains("runs the code"));
        assert!(warn("pickle").hint.unwrap().contains("safetensors"));
        assert!(warn("gguf").message.contains("GGUF version 3, 7 tensors"));
        assert!(warn("tokenizer").message.contains("tokenizer.json"));
        // A file of zeros named .safetensors is not taken for a model.
        let r = run(&[("w.safetensors", vec![0u8; 64])], None);
        assert_eq!(r.format, None);
        // sentencepiece counts as a tokenizer.
        let mut files = sharded();
        files[1] = ("tokenizer.model", b"\x0a".to_vec());
        let r = run(&files, None);
        assert!(r
            .findings
            .iter()
            .any(|f| f.check == "tokenizer" && f.severity == Severity::Pass));
    }
}
