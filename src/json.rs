//! Canonical JSON for image documents.
//!
//! Digests are taken over bytes, so every manifest, index and config this crate writes must
//! serialise to the same bytes for the same content. `oci-spec` keeps annotations in a
//! `HashMap`, whose iteration order changes from one process to the next; going through
//! [`serde_json::Value`] and sorting every object's keys removes that source of difference.

use serde::Serialize;
use serde_json::Value;

/// Serialise `value` compactly with the keys of every object sorted.
pub fn canonical<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("image documents serialise to JSON");
    canonical_value(&value)
}

/// [`canonical`] of a document already held as a [`Value`], without a copy of it (a bill of
/// materials lists every model file: for 10,000 files each copy is tens of MB).
pub fn canonical_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_sorted(value, &mut out);
    out
}

fn write_sorted(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("string serialises");
                out.push(b':');
                write_sorted(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalar serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let mut inner = HashMap::new();
        for k in ["zeta", "alpha", "mid", "beta", "omega"] {
            inner.insert(k.to_string(), 1);
        }
        let value = serde_json::json!({"b": [inner], "a": {"y": 1, "x": [2, "s"]}});
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            r#"{"a":{"x":[2,"s"],"y":1},"b":[{"alpha":1,"beta":1,"mid":1,"omega":1,"zeta":1}]}"#
        );
    }
}
