//! The ClusterServingRuntimes KServe ships, and KServe's rules for choosing one.
//!
//! The table says what KServe's own runtime files say (KServe, Apache-2.0, main line of
//! 2026-08; copies in `tests/fixtures/kserve/runtimes/`, and a test checks the table against
//! them): each runtime's supported model formats with their version, `autoSelect` and
//! `priority`, the protocols it speaks, its image, and whether it is a multi-node runtime (a
//! `workerSpec`). [`runtimes_for`] orders the runtimes for a format as KServe's controller does
//! when an InferenceService names no runtime: only formats marked `autoSelect`, single-node
//! runtimes only, higher `priority` first, runtimes without a priority last.

/// One entry of a runtime's `supportedModelFormats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedFormat {
    /// `modelFormat.name`, as KServe spells it.
    pub name: &'static str,
    pub version: Option<&'static str>,
    /// Whether KServe picks this runtime for the format when the InferenceService names none.
    pub auto_select: bool,
    /// Higher wins among auto-selected runtimes; `None` ranks after every number.
    pub priority: Option<u32>,
}

/// A ClusterServingRuntime KServe ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    pub name: &'static str,
    pub formats: &'static [SupportedFormat],
    /// `protocolVersions`; empty when the runtime declares none (KServe then assumes v1).
    pub protocols: &'static [&'static str],
    /// The container image of `kserve-container`, as KServe's file spells it before release
    /// tooling sets the tag.
    pub image: &'static str,
    /// A multi-node runtime (with a `workerSpec`): KServe selects it only for InferenceServices
    /// with a worker spec.
    pub multi_node: bool,
}

impl Runtime {
    /// Whether the runtime lists `format` at all (what KServe checks when the InferenceService
    /// names the runtime).
    pub fn serves(&self, format: &str) -> bool {
        self.entry(format, false).is_some()
    }

    /// Whether KServe may pick the runtime for `format` on its own.
    pub fn auto_selects(&self, format: &str) -> bool {
        self.entry(format, true).is_some()
    }

    /// The priority of the runtime for `format`: that of its first entry for the format, as
    /// KServe's `GetPriority` reads it.
    pub fn priority(&self, format: &str) -> Option<u32> {
        self.formats
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(format))
            .and_then(|f| f.priority)
    }

    /// Whether the runtime speaks `protocol` (KServe: v1 only, when it declares none).
    pub fn speaks(&self, protocol: &str) -> bool {
        if self.protocols.is_empty() {
            protocol == "v1"
        } else {
            self.protocols.contains(&protocol)
        }
    }

    /// The protocol a manifest asks for: v2 (the Open Inference Protocol) when the runtime
    /// speaks it, else v1, else the first it declares; `None` when it declares none.
    pub fn preferred_protocol(&self) -> Option<&'static str> {
        ["v2", "v1"]
            .into_iter()
            .find(|p| self.protocols.contains(p))
            .or_else(|| self.protocols.first().copied())
    }

    /// The versions of `format` the runtime lists.
    pub fn versions(&self, format: &str) -> Vec<&'static str> {
        self.formats
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(format))
            .filter_map(|f| f.version)
            .collect()
    }

    fn entry(&self, format: &str, auto: bool) -> Option<&SupportedFormat> {
        self.formats
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(format) && (!auto || f.auto_select))
    }
}

const fn fmt(
    name: &'static str,
    version: Option<&'static str>,
    auto_select: bool,
    priority: Option<u32>,
) -> SupportedFormat {
    SupportedFormat {
        name,
        version,
        auto_select,
        priority,
    }
}

/// Every ClusterServingRuntime KServe ships, by name.
pub const RUNTIMES: &[Runtime] = &[
    Runtime {
        name: "kserve-autogluonserver",
        formats: &[fmt("autogluon", Some("1"), true, Some(1))],
        protocols: &["v1", "v2"],
        image: "kserve-autogluonserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-huggingfaceserver",
        formats: &[fmt("huggingface", Some("1"), true, Some(1))],
        protocols: &["v2", "v1"],
        image: "huggingfaceserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-huggingfaceserver-multinode",
        formats: &[fmt("huggingface", Some("1"), true, Some(2))],
        protocols: &["v2", "v1"],
        image: "huggingfaceserver-gpu:replace",
        multi_node: true,
    },
    Runtime {
        name: "kserve-lgbserver",
        formats: &[fmt("lightgbm", Some("4"), true, Some(1))],
        protocols: &["v1", "v2"],
        image: "kserve-lgbserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-mlserver",
        formats: &[
            fmt("sklearn", Some("0"), true, Some(2)),
            fmt("sklearn", Some("1"), true, Some(2)),
            fmt("xgboost", Some("1"), true, Some(2)),
            fmt("xgboost", Some("2"), true, Some(2)),
            fmt("lightgbm", Some("3"), true, Some(2)),
            fmt("lightgbm", Some("4"), true, Some(2)),
            fmt("mlflow", Some("1"), true, Some(1)),
            fmt("mlflow", Some("2"), true, Some(1)),
        ],
        protocols: &["v2"],
        image: "mlserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-openvino",
        formats: &[
            fmt("openvino", Some("10"), true, Some(1)),
            fmt("onnx", Some("1"), true, Some(2)),
            fmt("tensorflow", Some("1"), true, Some(3)),
            fmt("huggingface", None, true, None),
        ],
        protocols: &["v1", "v2", "grpc-v2"],
        image: "openvino/model_server:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-paddleserver",
        formats: &[fmt("paddle", Some("2"), true, Some(1))],
        protocols: &["v1", "v2"],
        image: "kserve-paddleserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-pmmlserver",
        formats: &[
            fmt("pmml", Some("3"), true, Some(1)),
            fmt("pmml", Some("4"), true, Some(1)),
        ],
        protocols: &["v1", "v2"],
        image: "kserve-pmmlserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-predictiveserver",
        formats: &[
            fmt("sklearn", Some("1"), false, Some(3)),
            fmt("xgboost", Some("2"), false, Some(3)),
            fmt("lightgbm", Some("4"), false, Some(3)),
        ],
        protocols: &["v1", "v2"],
        image: "kserve-predictiveserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-sklearnserver",
        formats: &[fmt("sklearn", Some("1"), true, Some(1))],
        protocols: &["v1", "v2"],
        image: "kserve-sklearnserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-tensorflow-serving",
        formats: &[
            fmt("tensorflow", Some("1"), true, Some(2)),
            fmt("tensorflow", Some("2"), true, Some(2)),
        ],
        protocols: &["v1", "grpc-v1"],
        image: "tensorflow-serving:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-torchserve",
        formats: &[fmt("pytorch", Some("1"), true, Some(2))],
        protocols: &["v1", "v2", "grpc-v2"],
        image: "kserve-torchserve:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-tritonserver",
        formats: &[
            fmt("tensorrt", Some("8"), true, Some(1)),
            fmt("tensorflow", Some("1"), true, Some(1)),
            fmt("tensorflow", Some("2"), true, Some(1)),
            fmt("onnx", Some("1"), true, Some(1)),
            fmt("pytorch", Some("1"), false, None),
            fmt("triton", Some("2"), true, Some(1)),
        ],
        protocols: &["v2", "grpc-v2"],
        image: "kserve-tritonserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-vllmserver",
        formats: &[fmt("vLLM", Some("1"), true, Some(1))],
        protocols: &[],
        image: "vllmserver:replace",
        multi_node: false,
    },
    Runtime {
        name: "kserve-xgbserver",
        formats: &[fmt("xgboost", Some("2"), true, Some(1))],
        protocols: &["v1", "v2"],
        image: "kserve-xgbserver:replace",
        multi_node: false,
    },
];

/// The runtime called `name`, if KServe ships it.
pub fn find(name: &str) -> Option<&'static Runtime> {
    RUNTIMES.iter().find(|r| r.name == name)
}

/// The runtimes KServe may pick for `format` on its own, best first: single-node runtimes whose
/// entry for the format has `autoSelect`, by priority (higher first, none last), ties in table
/// order. The first is the one `modelcar kserve` names.
pub fn runtimes_for(format: &str) -> Vec<&'static Runtime> {
    let mut out: Vec<&Runtime> = RUNTIMES
        .iter()
        .filter(|r| !r.multi_node && r.auto_selects(format))
        .collect();
    // Stable: equal priorities keep the table's order, as KServe keeps the list's.
    out.sort_by_key(|r| std::cmp::Reverse(r.priority(format).map_or(0, |p| u64::from(p) + 1)));
    out
}

/// Every runtime listing `format`, whether or not KServe would pick it on its own (what an
/// InferenceService may name in `runtime`).
pub fn serving(format: &str) -> Vec<&'static Runtime> {
    RUNTIMES.iter().filter(|r| r.serves(format)).collect()
}

/// The format names some runtime serves, as KServe spells them, sorted and without repeats.
pub fn known_formats() -> Vec<&'static str> {
    let mut v: Vec<&str> = RUNTIMES
        .iter()
        .flat_map(|r| r.formats.iter().map(|f| f.name))
        .collect();
    v.sort_by_key(|n| n.to_ascii_lowercase());
    v.dedup();
    v
}

/// The spelling KServe's runtimes use for `format` (`vllm` is `vLLM`), if any runtime serves it.
pub fn canonical_format(format: &str) -> Option<&'static str> {
    known_formats()
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(format))
}

/// The model format names of KServe's own runtimes, in KServe's spelling: what both the format
/// table and the runtime table must know.
#[cfg(test)]
pub(crate) const KSERVE_FORMATS: [&str; 12] = [
    "sklearn",
    "xgboost",
    "lightgbm",
    "huggingface",
    "onnx",
    "tensorflow",
    "pytorch",
    "triton",
    "openvino",
    "mlflow",
    "pmml",
    "paddle",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    /// What KServe's runtime files say, read from the copies in tests/fixtures/kserve.
    #[derive(Debug, PartialEq)]
    struct FromFile {
        formats: Vec<SupportedFormatOwned>,
        protocols: Vec<String>,
        image: String,
        multi_node: bool,
    }

    #[derive(Debug, PartialEq)]
    struct SupportedFormatOwned {
        name: String,
        version: Option<String>,
        auto_select: bool,
        priority: Option<u32>,
    }

    fn fixture_runtimes() -> BTreeMap<String, FromFile> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kserve/runtimes");
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(
                doc["kind"].as_str(),
                Some("ClusterServingRuntime"),
                "{path:?}"
            );
            let spec = &doc["spec"];
            let formats = spec["supportedModelFormats"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|f| SupportedFormatOwned {
                    name: f["name"].as_str().unwrap().to_string(),
                    version: f["version"].as_str().map(str::to_string),
                    auto_select: f["autoSelect"].as_bool().unwrap_or(false),
                    priority: f["priority"].as_u64().map(|p| p as u32),
                })
                .collect();
            let protocols = spec["protocolVersions"]
                .as_sequence()
                .map(|s| s.iter().map(|p| p.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let image = spec["containers"][0]["image"].as_str().unwrap().to_string();
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            out.insert(
                name,
                FromFile {
                    formats,
                    protocols,
                    image,
                    multi_node: !spec["workerSpec"].is_null(),
                },
            );
        }
        out
    }

    #[test]
    fn the_table_says_what_kserves_runtime_files_say() {
        let files = fixture_runtimes();
        let table: BTreeMap<String, FromFile> = RUNTIMES
            .iter()
            .map(|r| {
                (
                    r.name.to_string(),
                    FromFile {
                        formats: r
                            .formats
                            .iter()
                            .map(|f| SupportedFormatOwned {
                                name: f.name.into(),
                                version: f.version.map(Into::into),
                                auto_select: f.auto_select,
                                priority: f.priority,
                            })
                            .collect(),
                        protocols: r.protocols.iter().map(|p| p.to_string()).collect(),
                        image: r.image.into(),
                        multi_node: r.multi_node,
                    },
                )
            })
            .collect();
        assert_eq!(table, files);
    }

    #[test]
    fn names_are_unique_and_sorted() {
        let names: Vec<&str> = RUNTIMES.iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn runtimes_for_a_format_follow_kserves_selection() {
        for format in known_formats() {
            let chosen = runtimes_for(format);
            for r in &chosen {
                assert!(
                    r.auto_selects(format) && !r.multi_node,
                    "{format}: {}",
                    r.name
                );
            }
            // Higher priority first; none last.
            let keys: Vec<i64> = chosen
                .iter()
                .map(|r| r.priority(format).map_or(-1, i64::from))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{format}: {keys:?}");
            // Nothing auto-selectable and single-node is left out.
            let all = RUNTIMES
                .iter()
                .filter(|r| r.auto_selects(format) && !r.multi_node)
                .count();
            assert_eq!(chosen.len(), all, "{format}");
            // Every runtime chosen is one that serves the format.
            assert!(chosen.iter().all(|r| serving(format).contains(r)));
        }
    }

    #[test]
    fn the_choice_for_each_format() {
        let first = |f: &str| runtimes_for(f).first().map(|r| r.name);
        // MLServer outranks KServe's own servers (priority 2 against 1), and speaks v2 only.
        for f in ["sklearn", "xgboost", "lightgbm", "mlflow"] {
            assert_eq!(first(f), Some("kserve-mlserver"), "{f}");
        }
        assert_eq!(first("huggingface"), Some("kserve-huggingfaceserver"));
        assert_eq!(first("onnx"), Some("kserve-openvino"));
        assert_eq!(first("tensorflow"), Some("kserve-openvino"));
        assert_eq!(first("pytorch"), Some("kserve-torchserve"));
        assert_eq!(first("triton"), Some("kserve-tritonserver"));
        assert_eq!(first("openvino"), Some("kserve-openvino"));
        assert_eq!(first("pmml"), Some("kserve-pmmlserver"));
        assert_eq!(first("paddle"), Some("kserve-paddleserver"));
        assert_eq!(first("vllm"), Some("kserve-vllmserver"));
        assert_eq!(first("bogus"), None);
        // The multi-node runtime and those without autoSelect are named only on request.
        assert!(!runtimes_for("huggingface")
            .iter()
            .any(|r| r.name == "kserve-huggingfaceserver-multinode"));
        assert!(serving("pytorch")
            .iter()
            .any(|r| r.name == "kserve-tritonserver"));
        assert!(!runtimes_for("pytorch")
            .iter()
            .any(|r| r.name == "kserve-tritonserver"));
        // A runtime without a priority ranks last.
        assert_eq!(
            runtimes_for("huggingface").last().map(|r| r.name),
            Some("kserve-openvino")
        );
    }

    #[test]
    fn the_preferred_protocol_is_one_the_runtime_speaks() {
        for r in RUNTIMES {
            match r.preferred_protocol() {
                Some(p) => assert!(r.speaks(p), "{}: {p}", r.name),
                None => assert!(r.protocols.is_empty(), "{}", r.name),
            }
        }
        assert_eq!(
            find("kserve-mlserver").unwrap().preferred_protocol(),
            Some("v2")
        );
        assert_eq!(
            find("kserve-tensorflow-serving")
                .unwrap()
                .preferred_protocol(),
            Some("v1")
        );
        assert!(find("kserve-vllmserver").unwrap().speaks("v1"));
        assert!(!find("kserve-vllmserver").unwrap().speaks("v2"));
    }

    #[test]
    fn formats_are_known_by_kserves_spelling() {
        let known = known_formats();
        for f in KSERVE_FORMATS {
            assert!(known.contains(&f), "{f}");
            assert_eq!(canonical_format(f), Some(f));
        }
        assert_eq!(canonical_format("vllm"), Some("vLLM"));
        assert_eq!(canonical_format("bogus"), None);
    }
}
