//! The one table of formats and the runtimes KServe ships for them.
//!
//! Rows follow KServe's ClusterServingRuntimes (`supportedModelFormats`) and what each runtime's
//! loader reads from `/mnt/models`: MLServer 1.5 to 1.7 by well-known name, KServe's predictive
//! servers (`python/*server/*/model.py`) by extension, the others by directory layout. Which
//! runtime KServe selects on its own is [`crate::kserve::runtimes`]'s to say (its `autoSelect`
//! and `priority` rules); a test checks that every row describes that runtime.

use super::predictive::{XGBOOST_SIDECAR, XGBOOST_SIDECAR_HINT, XGBOOST_SIDECAR_MESSAGE};
use super::{
    huggingface, mlflow, onnx, openvino, predictive, pytorch, tensorflow, triton, Family, Format,
    Loads, Mode, ModeNote, RuntimeUse, Severity,
};

pub(super) static PREDICTIVE: Family = Family {
    name: "predictive",
    detect: predictive::detect,
    check: predictive::check,
};
pub(super) static HUGGINGFACE: Family = Family {
    name: "huggingface",
    detect: huggingface::detect,
    check: huggingface::check,
};
pub(super) static ONNX: Family = Family {
    name: "onnx",
    detect: onnx::detect,
    check: onnx::check,
};
pub(super) static TENSORFLOW: Family = Family {
    name: "tensorflow",
    detect: tensorflow::detect,
    check: tensorflow::check,
};
pub(super) static PYTORCH: Family = Family {
    name: "pytorch",
    detect: pytorch::detect,
    check: pytorch::check,
};
pub(super) static TRITON: Family = Family {
    name: "triton",
    detect: triton::detect,
    check: triton::check,
};
pub(super) static OPENVINO: Family = Family {
    name: "openvino",
    detect: openvino::detect,
    check: openvino::check,
};
pub(super) static MLFLOW: Family = Family {
    name: "mlflow",
    detect: mlflow::detect,
    check: mlflow::check,
};

/// Families in the order detection asks them: the most specific layouts first (an MLflow
/// directory holds a pickle, a Triton repository an ONNX file), single files last.
pub(super) static DETECT_ORDER: [&Family; 8] = [
    &MLFLOW,
    &PYTORCH,
    &TRITON,
    &TENSORFLOW,
    &OPENVINO,
    &HUGGINGFACE,
    &ONNX,
    &PREDICTIVE,
];

const SKLEARN_EXTENSIONS: &[&str] = &[".joblib", ".pkl", ".pickle"];
const XGBOOST_EXTENSIONS: &[&str] = &[".bst", ".json", ".ubj"];

const XGBOOST_UNDER_MLSERVER: &[ModeNote] = &[ModeNote {
    mode: Mode::Sidecar,
    severity: Severity::Warn,
    check: XGBOOST_SIDECAR,
    message: XGBOOST_SIDECAR_MESSAGE,
    hint: XGBOOST_SIDECAR_HINT,
}];

/// Every format KServe's runtimes serve, by `modelFormat.name`.
pub static FORMATS: &[Format] = &[
    Format {
        name: "sklearn",
        family: &PREDICTIVE,
        runtimes: &[
            RuntimeUse {
                runtime: "kserve-mlserver",
                loads: Loads::FirstOf(&["model.joblib", "model.pickle", "model.pkl"]),
                implementation: Some("mlserver_sklearn.SKLearnModel"),
                modes: &[],
            },
            RuntimeUse {
                runtime: "kserve-sklearnserver",
                loads: Loads::OneByExtension(SKLEARN_EXTENSIONS),
                implementation: None,
                modes: &[],
            },
        ],
    },
    Format {
        name: "xgboost",
        family: &PREDICTIVE,
        runtimes: &[
            RuntimeUse {
                runtime: "kserve-mlserver",
                loads: Loads::FirstOf(&["model.bst", "model.json", "model.ubj"]),
                implementation: Some("mlserver_xgboost.XGBoostModel"),
                modes: XGBOOST_UNDER_MLSERVER,
            },
            RuntimeUse {
                runtime: "kserve-xgbserver",
                loads: Loads::OneByExtension(XGBOOST_EXTENSIONS),
                implementation: None,
                // It reads the file's bytes itself and hands them to XGBoost: no path for
                // XGBoost to canonicalise, so the sidecar's /proc link is no problem.
                modes: &[],
            },
        ],
    },
    Format {
        name: "lightgbm",
        family: &PREDICTIVE,
        runtimes: &[
            RuntimeUse {
                runtime: "kserve-mlserver",
                loads: Loads::FirstOf(&["model.bst"]),
                implementation: Some("mlserver_lightgbm.LightGBMModel"),
                modes: &[],
            },
            RuntimeUse {
                runtime: "kserve-lgbserver",
                loads: Loads::OneByExtension(&[".bst"]),
                implementation: None,
                modes: &[],
            },
        ],
    },
    Format {
        name: "huggingface",
        family: &HUGGINGFACE,
        runtimes: &[RuntimeUse {
            runtime: "kserve-huggingfaceserver",
            loads: Loads::Layout(
                "config.json, safetensors weights (sharded with model.safetensors.index.json) and tokenizer files at the top",
            ),
            implementation: None,
            modes: &[],
        }],
    },
    Format {
        name: "onnx",
        family: &ONNX,
        runtimes: &[
            RuntimeUse {
                runtime: "kserve-tritonserver",
                loads: Loads::Layout(
                    "a model repository: <name>/<version>/model.onnx, with <name>/config.pbtxt",
                ),
                implementation: None,
                modes: &[],
            },
            RuntimeUse {
                runtime: "kserve-openvino",
                loads: Loads::Layout("numeric version directories: <version>/model.onnx"),
                implementation: None,
                modes: &[],
            },
        ],
    },
    Format {
        name: "tensorflow",
        family: &TENSORFLOW,
        runtimes: &[
            RuntimeUse {
                runtime: "kserve-tensorflow-serving",
                loads: Loads::Layout(
                    "a SavedModel in a numeric version directory: <version>/saved_model.pb and <version>/variables/",
                ),
                implementation: None,
                modes: &[],
            },
            RuntimeUse {
                runtime: "kserve-tritonserver",
                loads: Loads::Layout(
                    "a model repository: <name>/<version>/model.savedmodel/saved_model.pb, with <name>/config.pbtxt",
                ),
                implementation: None,
                modes: &[],
            },
            RuntimeUse {
                runtime: "kserve-openvino",
                loads: Loads::Layout(
                    "a SavedModel in a numeric version directory: <version>/saved_model.pb",
                ),
                implementation: None,
                modes: &[],
            },
        ],
    },
    Format {
        name: "pytorch",
        family: &PYTORCH,
        runtimes: &[
            RuntimeUse {
                runtime: "kserve-torchserve",
                loads: Loads::Layout("config/config.properties and model-store/*.mar"),
                implementation: None,
                modes: &[],
            },
            RuntimeUse {
                runtime: "kserve-tritonserver",
                loads: Loads::Layout(
                    "a model repository: <name>/<version>/model.pt (TorchScript), with <name>/config.pbtxt",
                ),
                implementation: None,
                modes: &[],
            },
        ],
    },
    Format {
        name: "triton",
        family: &TRITON,
        runtimes: &[RuntimeUse {
            runtime: "kserve-tritonserver",
            loads: Loads::Layout(
                "a model repository: <name>/config.pbtxt and numeric version directories <name>/<version>/",
            ),
            implementation: None,
            modes: &[],
        }],
    },
    Format {
        name: "openvino",
        family: &OPENVINO,
        runtimes: &[RuntimeUse {
            runtime: "kserve-openvino",
            loads: Loads::Layout(
                "OpenVINO IR in numeric version directories: <version>/<model>.xml with <model>.bin",
            ),
            implementation: None,
            modes: &[],
        }],
    },
    Format {
        name: "mlflow",
        family: &MLFLOW,
        runtimes: &[RuntimeUse {
            runtime: "kserve-mlserver",
            loads: Loads::Layout("an MLmodel file with the python_function flavour at the top"),
            implementation: Some("mlserver_mlflow.MLflowRuntime"),
            modes: &[],
        }],
    },
    Format {
        name: "pmml",
        family: &PREDICTIVE,
        runtimes: &[RuntimeUse {
            runtime: "kserve-pmmlserver",
            loads: Loads::OneByExtension(&[".pmml"]),
            implementation: None,
            modes: &[],
        }],
    },
    Format {
        name: "paddle",
        family: &PREDICTIVE,
        runtimes: &[RuntimeUse {
            runtime: "kserve-paddleserver",
            loads: Loads::Layout(
                "exactly one .pdmodel (or .json) program and one .pdiparams file at the top",
            ),
            implementation: None,
            modes: &[],
        }],
    },
];
