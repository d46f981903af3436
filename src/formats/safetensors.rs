//! safetensors headers: read and checked without touching the tensor data.
//!
//! A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (an object
//! mapping tensor names to `{dtype, shape, data_offsets: [begin, end]}`, plus an optional
//! `__metadata__` map of strings), then the data. The loader refuses a file whose tensors do not
//! tile the data exactly: each tensor's bytes are its shape's product times its dtype's size,
//! tensors do not overlap, and the data ends where the last tensor does. Those are the checks
//! here, from the header and the file's size alone.

use std::collections::BTreeMap;

use super::ModelFiles;
use crate::error::Result;
use crate::limits;

/// One tensor as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    pub dtype: String,
    pub shape: Vec<u64>,
    pub begin: u64,
    pub end: u64,
}

/// A checked header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Bytes of tensor data the header accounts for.
    pub data_len: u64,
}

/// Why a safetensors file will not load, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file will not load; the message says why.
    Broken(String),
    /// Valid as far as read, but the header is larger than modelcar reads.
    TooLarge(u64),
}

/// Bits per element of every dtype the safetensors format defines.
pub fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// Read and check the header of `rel` (a file of `size` bytes).
pub fn read(
    files: &dyn ModelFiles,
    rel: &str,
    size: u64,
) -> Result<std::result::Result<Header, Problem>> {
    let broken = |m: String| Ok(Err(Problem::Broken(m)));
    if size < 8 {
        return broken(format!(
            "{rel} is {size} bytes, too short for a safetensors header"
        ));
    }
    let first = files.read_at(rel, 0, 8)?;
    let n = u64::from_le_bytes(first[..8].try_into().unwrap_or([0; 8]));
    if n > size - 8 {
        return broken(format!(
            "{rel}: the header claims {n} bytes but the file has only {} after the length (truncated, or not safetensors)",
            size - 8
        ));
    }
    if n > limits::SAFETENSORS_HEADER_REFUSED {
        return broken(format!(
            "{rel}: the header is {n} bytes, over the {} the safetensors library accepts",
            limits::SAFETENSORS_HEADER_REFUSED
        ));
    }
    if n > limits::SAFETENSORS_HEADER {
        return Ok(Err(Problem::TooLarge(n)));
    }
    let raw = files.read_at(rel, 8, n)?;
    if (raw.len() as u64) < n {
        return broken(format!("{rel}: the file ended inside its header"));
    }
    let json: serde_json::Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return broken(format!("{rel}: the header is not JSON ({e})")),
    };
    let Some(obj) = json.as_object() else {
        return broken(format!("{rel}: the header is not a JSON object"));
    };
    let mut tensors = BTreeMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            let strings = v
                .as_object()
                .is_some_and(|m| m.values().all(|x| x.is_string()));
            if !strings {
                return broken(format!("{rel}: __metadata__ must map names to strings"));
            }
            continue;
        }
        let shown = crate::text::escape(name);
        let dtype = v.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let Some(bits) = dtype_bits(dtype) else {
            return broken(format!(
                "{rel}: tensor {shown} has dtype `{}`, which safetensors does not define",
                crate::text::escape(dtype)
            ));
        };
        let shape: Option<Vec<u64>> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let offsets: Option<Vec<u64>> = v
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let (Some(shape), Some(offsets)) = (shape, offsets) else {
            return broken(format!(
                "{rel}: tensor {shown} lacks a shape or data_offsets of whole numbers"
            ));
        };
        let [begin, end] = offsets[..] else {
            return broken(format!(
                "{rel}: tensor {shown} has {} data_offsets, not 2",
                offsets.len()
            ));
        };
        let expected = shape
            .iter()
            .try_fold(bits, |acc, d| acc.checked_mul(*d))
            .filter(|b| b % 8 == 0)
            .map(|b| b / 8);
        let Some(expected) = expected else {
            return broken(format!(
                "{rel}: tensor {shown}'s shape {shape:?} of {dtype} is not a whole number of bytes"
            ));
        };
        if end < begin || end - begin != expected {
            return broken(format!(
                "{rel}: tensor {shown} spans bytes {begin}..{end} of the data, but its shape {shape:?} of {dtype} takes {expected}"
            ));
        }
        tensors.insert(
            name.clone(),
            Tensor {
                dtype: dtype.to_string(),
                shape,
                begin,
                end,
            },
        );
    }
    // The tensors must tile the data: sorted by offset, each starts where the last ended.
    let mut spans: Vec<(&String, &Tensor)> = tensors.iter().collect();
    spans.sort_by_key(|(_, t)| (t.begin, t.end));
    let mut at = 0u64;
    for (name, t) in &spans {
        if t.begin < at {
            return broken(format!(
                "{rel}: tensor {} overlaps the one before it (starts at {}, before {at})",
                crate::text::escape(name),
                t.begin
            ));
        }
        if t.begin > at {
            return broken(format!(
                "{rel}: bytes {at}..{} of the data belong to no tensor (the loader refuses gaps)",
                t.begin
            ));
        }
        at = t.end;
    }
    let data = size - 8 - n;
    if at > data {
        return broken(format!(
            "{rel}: the tensors need {at} bytes of data but the file holds {data} (truncated?)"
        ));
    }
    if at < data {
        return broken(format!(
            "{rel}: the file holds {data} bytes of data but its tensors account for {at} (the loader refuses trailing bytes)"
        ));
    }
    Ok(Ok(Header {
        tensors,
        data_len: at,
    }))
}

/// Build a safetensors header for tests: the 8-byte length, then the JSON.
#[cfg(test)]
pub fn header_bytes(tensors: &[(&str, &str, &[u64])]) -> (Vec<u8>, u64) {
    let mut obj = serde_json::Map::new();
    let mut at = 0u64;
    for (name, dtype, shape) in tensors {
        let bytes = shape.iter().product::<u64>() * dtype_bits(dtype).unwrap() / 8;
        obj.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + bytes]}),
        );
        at += bytes;
    }
    let json = serde_json::to_vec(&obj).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::tree;

    fn file(tensors: &[(&str, &str, &[u64])]) -> Vec<u8> {
        let (mut h, data) = header_bytes(tensors);
        h.extend(vec![0u8; data as usize]);
        h
    }

    fn check(bytes: &[u8]) -> std::result::Result<Header, Problem> {
        let (_d, t) = tree(&[("m.safetensors", bytes)]);
        read(&t, "m.safetensors", bytes.len() as u64).unwrap()
    }

    fn broken(bytes: &[u8], words: &str) {
        match check(bytes) {
            Err(Problem::Broken(m)) => {
                assert!(m.contains(words) && m.contains("m.safetensors"), "{m}")
            }
            other => panic!("expected broken ({words}), got {other:?}"),
        }
    }

    #[test]
    fn a_good_header_is_read() {
        let h = check(&file(&[
            ("a", "F16", &[2, 3]),
            ("b", "BF16", &[4]),
            ("c", "F4", &[2, 2]),
        ]))
        .unwrap();
        assert_eq!(h.tensors.len(), 3);
        assert_eq!(h.data_len, 12 + 8 + 2);
        assert_eq!(h.tensors["b"].shape, vec![4]);
    }

    #[test]
    fn broken_headers_say_why() {
        let good = file(&[("a", "F32", &[4]), ("b", "F32", &[2])]);
        broken(&good[..good.len() - 1], "truncated");
        broken(&[good.clone(), vec![0]].concat(), "trailing");
        broken(&good[..6], "too short");
        let mut long = good.clone();
        long[..8].copy_from_slice(&1_000_000u64.to_le_bytes());
        broken(&long, "claims 1000000 bytes");
        let mut text = 5u64.to_le_bytes().to_vec();
        text.extend(b"nope!");
        broken(&text, "not JSON");
        let bad = |json: &str, data: usize| {
            let mut v = (json.len() as u64).to_le_bytes().to_vec();
            v.extend(json.as_bytes());
            v.extend(vec![0u8; data]);
            v
        };
        broken(
            &bad(
                r#"{"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#,
                4,
            ),
            "F99",
        );
        broken(
            &bad(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                4,
            ),
            "takes 8",
        );
        broken(
            &bad(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
            ),
            "overlaps",
        );
        broken(
            &bad(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
            ),
            "belong to no tensor",
        );
        broken(
            &bad(r#"{"a":{"dtype":"F32","shape":[1]}}"#, 0),
            "data_offsets",
        );
        broken(&bad(r#"{"__metadata__":{"x":1}}"#, 0), "__metadata__");
        broken(
            &bad(
                r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,0]}}"#,
                0,
            ),
            "whole number",
        );
    }
}
