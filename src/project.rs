//! The project file, `modelcar.toml`: the images of a repository and their shared settings.
//!
//! Settings are taken, in order of precedence, from the command line, the environment
//! (`REGISTRY`, `VERSION`, `BASE_IMAGE`) and the file. Unknown keys are errors that name the
//! key, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{io_err, Error, Result};
use crate::layer::{CompressionChoice, LayerMode};

pub const FILE_NAME: &str = "modelcar.toml";
pub const DEFAULT_BASE: &str = "registry.access.redhat.com/ubi10/ubi-micro:latest";

/// A mode as written. Only the string form (`"0555"`) is accepted: a TOML number such as `444`
/// is decimal and would silently mean another mode, so numbers are refused with a message
/// saying how to write the mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ModeValue {
    Text(String),
    Number(u32),
}

/// A size written as bytes or with a unit (`"32MiB"`, `"1GB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Text(String),
    Number(u64),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    registry: Option<String>,
    version: Option<String>,
    base: Option<String>,
    owner: Option<String>,
    dir_mode: Option<ModeValue>,
    file_mode: Option<ModeValue>,
    user: Option<String>,
    layers: Option<String>,
    layer_threshold: Option<SizeValue>,
    compression: Option<String>,
    platform: Option<String>,
    allow_failing_checks: Option<bool>,
    /// Private key (PEM) signing the model files, relative to the project file.
    sign_model: Option<PathBuf>,
    /// Write a ModelPack manifest beside the image.
    modelpack: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ImageEntry {
    repository: String,
    models: PathBuf,
    format: Option<String>,
    /// The format is served by a custom ServingRuntime: any name is accepted.
    #[serde(default)]
    custom_format: bool,
    #[serde(flatten)]
    settings: Settings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegistryEntry {
    tls_verify: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    #[serde(flatten)]
    defaults: Settings,
    #[serde(default)]
    images: BTreeMap<String, ImageEntry>,
    /// Per-registry settings, keyed by host[:port].
    #[serde(default)]
    registries: BTreeMap<String, RegistryEntry>,
}

/// A loaded project file.
#[derive(Debug, Clone)]
pub struct Project {
    pub path: PathBuf,
    contents: FileContents,
}

/// Overrides from the command line; `None` means not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub registry: Option<String>,
    pub version: Option<String>,
    pub base: Option<String>,
    pub platform: Option<String>,
    pub compression: Option<String>,
    pub layers: Option<String>,
    pub layer_threshold: Option<String>,
}

/// Settings of one image with every source applied.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub name: String,
    pub repository: String,
    pub models: PathBuf,
    /// The ModelPack artifact `models` names (`models = "modelpack:REF"`); a relative
    /// `modelpack:oci:DIR` is relative to the project file, as a model directory is.
    pub model_source: Option<crate::modelpack::source::SourceRef>,
    pub format: Option<String>,
    /// Accept a format no KServe runtime serves (`custom-format = true`).
    pub custom_format: bool,
    pub registry: String,
    pub version: String,
    pub base: String,
    pub uid: u64,
    pub gid: u64,
    pub dir_mode: u32,
    pub file_mode: u32,
    pub user: String,
    pub layers: LayerMode,
    pub layer_threshold: Option<u64>,
    pub compression: CompressionChoice,
    pub platform: Option<String>,
    /// Keep images that fail a check of `modelcar verify` (`allow-failing-checks = true`).
    pub allow_failing_checks: bool,
    /// Private key (PEM) to sign the model files with.
    pub sign_model: Option<PathBuf>,
    /// Write a ModelPack manifest beside the image (`modelpack = true`).
    pub modelpack: bool,
}

impl ImageSettings {
    /// `registry/repository:version`.
    pub fn reference(&self) -> String {
        format!(
            "{}/{}:{}",
            self.registry.trim_end_matches('/'),
            self.repository,
            self.version
        )
    }
}

impl Project {
    /// Find `modelcar.toml` in `dir`.
    pub fn find(dir: &Path) -> Result<Option<Project>> {
        let path = dir.join(FILE_NAME);
        if path.is_file() {
            Project::load(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn load(path: &Path) -> Result<Project> {
        let text = std::fs::read_to_string(path).map_err(io_err("read the project file", path))?;
        let contents: FileContents = toml::from_str(&text).map_err(|e| {
            // One line, `FILE:LINE:COLUMN: message`: errors are printed on one line, and the
            // TOML crate's own rendering spans several.
            let at = e
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(&text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            Error::invalid(format!(
                "{}{at}: {}",
                path.display(),
                e.message().trim_end().replace('\n', "; ")
            ))
            .with_hint("see the README for the keys modelcar.toml accepts")
        })?;
        if contents.images.is_empty() {
            return Err(Error::invalid(format!(
                "{} defines no images (no [images.NAME] table)",
                path.display()
            ))
            .with_hint("add one: [images.NAME] with repository = \"...\" and models = \"DIR\""));
        }
        Ok(Project {
            path: path.to_path_buf(),
            contents,
        })
    }

    /// Registries marked `tls-verify = false`.
    pub fn insecure_registries(&self) -> Vec<String> {
        self.contents
            .registries
            .iter()
            .filter(|(_, r)| r.tls_verify == Some(false))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Image names in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        self.contents.images.keys().cloned().collect()
    }

    /// Settings of the image `name` with overrides, environment and file applied.
    pub fn image(&self, name: &str, cli: &Overrides) -> Result<ImageSettings> {
        let entry = self.contents.images.get(name).ok_or_else(|| {
            Error::invalid(format!("no image `{name}` in {}", self.path.display()))
                .with_hint(format!("images defined there: {}", self.names().join(", ")))
        })?;
        let d = &self.contents.defaults;
        let s = &entry.settings;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let pick = |cli: &Option<String>,
                    env_key: Option<&str>,
                    own: &Option<String>,
                    def: &Option<String>| {
            cli.clone()
                .or_else(|| env_key.and_then(env))
                .or_else(|| own.clone())
                .or_else(|| def.clone())
        };
        let file_ctx = |what: &str| format!("{} (image `{name}`): {what}", self.path.display());
        let owner = s
            .owner
            .clone()
            .or(d.owner.clone())
            .unwrap_or_else(|| "1001:0".into());
        let (uid, gid) =
            parse_owner(&owner).map_err(|e| Error::invalid(file_ctx(&e.to_string())))?;
        let mode = |v: &Option<ModeValue>,
                    dv: &Option<ModeValue>,
                    default: u32,
                    key: &str|
         -> Result<u32> {
            match v.clone().or(dv.clone()) {
                None => Ok(default),
                Some(ModeValue::Number(n)) => Err(Error::invalid(file_ctx(&format!(
                    "{key} = {n} is a TOML number, which is not read as octal digits"
                )))
                .with_hint(format!(
                    "write the mode as a string of octal digits: {key} = \"0444\""
                ))),
                Some(ModeValue::Text(t)) => parse_mode(&t).map_err(|e| {
                    Error::invalid(file_ctx(&format!("{key}: {e}"))).with_hint(format!(
                        "write it like {key} = \"0444\" (read and execute bits only)"
                    ))
                }),
            }
        };
        let base_dir = self.path.parent().unwrap_or(Path::new("."));
        let layers =
            pick(&cli.layers, None, &s.layers, &d.layers).unwrap_or_else(|| "split".into());
        let compression = pick(&cli.compression, None, &s.compression, &d.compression)
            .unwrap_or_else(|| "auto".into());
        let threshold = match &cli.layer_threshold {
            Some(t) => Some(parse_size(t)?),
            None => match s.layer_threshold.clone().or(d.layer_threshold.clone()) {
                None => None,
                Some(SizeValue::Number(n)) => Some(n),
                Some(SizeValue::Text(t)) => {
                    Some(parse_size(&t).map_err(|e| Error::invalid(file_ctx(&e.to_string())))?)
                }
            },
        };
        use crate::modelpack::source::SourceRef;
        let model_source = entry
            .models
            .to_str()
            .and_then(SourceRef::of_models_arg)
            .transpose()
            .map_err(|e| Error::invalid(file_ctx(&e.to_string())))?
            .map(|source| match source {
                SourceRef::Layout { path, reference } if path.is_relative() => SourceRef::Layout {
                    path: base_dir.join(path),
                    reference,
                },
                other => other,
            });
        Ok(ImageSettings {
            name: name.to_string(),
            repository: entry.repository.clone(),
            models: if model_source.is_some() {
                entry.models.clone()
            } else {
                base_dir.join(&entry.models)
            },
            model_source,
            format: entry.format.clone(),
            custom_format: entry.custom_format,
            registry: pick(&cli.registry, Some("REGISTRY"), &s.registry, &d.registry).ok_or_else(
                || {
                    Error::invalid(file_ctx("no registry set"))
                        .with_hint("set `registry` in the file or REGISTRY in the environment")
                },
            )?,
            version: pick(&cli.version, Some("VERSION"), &s.version, &d.version)
                .unwrap_or_else(|| "latest".into()),
            base: pick(&cli.base, Some("BASE_IMAGE"), &s.base, &d.base)
                .unwrap_or_else(|| DEFAULT_BASE.into()),
            uid,
            gid,
            dir_mode: mode(&s.dir_mode, &d.dir_mode, 0o555, "dir-mode")?,
            file_mode: mode(&s.file_mode, &d.file_mode, 0o444, "file-mode")?,
            user: s
                .user
                .clone()
                .or(d.user.clone())
                .unwrap_or_else(|| uid.to_string()),
            layers: layers.parse()?,
            layer_threshold: threshold,
            compression: compression.parse()?,
            platform: pick(&cli.platform, None, &s.platform, &d.platform),
            allow_failing_checks: s
                .allow_failing_checks
                .or(d.allow_failing_checks)
                .unwrap_or(false),
            sign_model: s
                .sign_model
                .as_ref()
                .or(d.sign_model.as_ref())
                .map(|k| base_dir.join(k)),
            modelpack: s.modelpack.or(d.modelpack).unwrap_or(false),
        })
    }
}

/// Parse `UID:GID` (numbers only: the image has no user database to look names up in). Each
/// is at most 2^32-1, the largest ID Linux and the OCI runtimes accept.
pub fn parse_owner(text: &str) -> Result<(u64, u64)> {
    let bad = || {
        Error::invalid(format!(
            "owner `{text}` is not UID:GID with numbers from 0 to {}",
            u32::MAX
        ))
        .with_hint("write numbers, for example 1001:0 (group 0 lets OpenShift's random UIDs read the files)")
    };
    let (u, g) = text.split_once(':').ok_or_else(bad)?;
    let id = |t: &str| t.parse::<u32>().map(u64::from).map_err(|_| bad());
    Ok((id(u)?, id(g)?))
}

/// Parse an octal mode such as `0555` or `555`: permission bits only. Setuid, setgid and
/// sticky bits mean nothing on model files and some runtimes refuse them, so they are refused.
pub fn parse_mode(text: &str) -> Result<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            Error::invalid(format!("mode `{text}` is not an octal file mode"))
                .with_hint("write it like 0555 or 0444")
        })?;
    if mode & 0o7000 != 0 {
        return Err(Error::invalid(format!(
            "mode `{text}` sets the setuid, setgid or sticky bit, which model files must not have"
        ))
        .with_hint("use permission bits only, like 0555 or 0444"));
    }
    Ok(mode)
}

/// Parse a size: bytes, or a number with KiB/MiB/GiB/KB/MB/GB.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => u64::MAX,
    };
    num.parse::<u64>()
        .ok()
        .filter(|_| mult != u64::MAX)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            Error::invalid(format!("size `{text}` is not understood"))
                .with_hint("write bytes or a number with KiB, MiB or GiB, like 32MiB")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(text: &str) -> Result<Project> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(&p, text).unwrap();
        Project::load(&p)
    }

    const FILE: &str = r#"
registry = "quay.io/jooholee"
version = "v1.0.0"
owner = "1001:0"
dir-mode = "0555"
file-mode = "0444"

[images.sklearn]
repository = "mlserver-sklearn"
models = "models/mlserver/sklearn"
format = "sklearn"
"#;

    #[test]
    fn file_values_and_command_line_precedence() {
        let p = project(FILE).unwrap();
        let cli = Overrides {
            version: Some("v9".into()),
            ..Default::default()
        };
        let s = p.image("sklearn", &cli).unwrap();
        // REGISTRY may be set by whoever runs the tests; the file value or the env value wins.
        let want_registry = std::env::var("REGISTRY")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or("quay.io/jooholee".into());
        assert_eq!(
            s.reference(),
            format!("{want_registry}/mlserver-sklearn:v9")
        );
        assert_eq!(
            (s.uid, s.gid, s.dir_mode, s.file_mode),
            (1001, 0, 0o555, 0o444)
        );
        assert_eq!(s.user, "1001");
        assert!(s.models.ends_with("models/mlserver/sklearn"));
        assert!(!s.custom_format);
    }

    #[test]
    fn a_custom_format_is_marked_per_image() {
        let text = format!("{FILE}\n[images.mine]\nrepository = \"m\"\nmodels = \"m\"\nformat = \"my-runtime\"\ncustom-format = true\n");
        let p = project(&text).unwrap();
        let s = p.image("mine", &Overrides::default()).unwrap();
        assert_eq!(
            (s.format.as_deref(), s.custom_format),
            (Some("my-runtime"), true)
        );
    }

    #[test]
    fn models_may_name_a_modelpack_artifact() {
        let text = format!("{FILE}\n[images.pack]\nrepository = \"p\"\nmodels = \"modelpack:quay.io/org/pack:v1\"\n[images.local]\nrepository = \"l\"\nmodels = \"modelpack:oci:packs/iris:v1\"\n");
        let p = project(&text).unwrap();
        let s = p.image("pack", &Overrides::default()).unwrap();
        assert_eq!(
            s.model_source.map(|m| m.to_string()).as_deref(),
            Some("modelpack:quay.io/org/pack:v1")
        );
        let l = p.image("local", &Overrides::default()).unwrap();
        match l.model_source {
            Some(crate::modelpack::source::SourceRef::Layout { path, reference }) => {
                assert!(
                    path.is_absolute() && path.ends_with("packs/iris"),
                    "{path:?}"
                );
                assert_eq!(reference.as_deref(), Some("v1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(p
            .image("sklearn", &Overrides::default())
            .unwrap()
            .model_source
            .is_none());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = project(&FILE.replace("owner =", "ownr ="))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ownr"), "{e}");
        let e = project(&format!("{FILE}\nrepo = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("repo"), "{e}");
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_mode("0555").unwrap(), 0o555);
        assert!(parse_mode("999").is_err());
        assert!(parse_owner("root:0").is_err());
        let p = project(&FILE.replace("\"1001:0\"", "\"x\"")).unwrap();
        assert!(p
            .image("sklearn", &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("UID:GID"));
        assert!(p
            .image("nope", &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }

    #[test]
    fn a_toml_number_as_mode_is_refused_with_the_string_form() {
        let p = project(&FILE.replace("file-mode = \"0444\"", "file-mode = 444")).unwrap();
        let e = p.image("sklearn", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("file-mode = 444"), "{e}");
        assert!(e.hint().unwrap().contains("file-mode = \"0444\""), "{e:?}");
    }

    #[test]
    fn special_mode_bits_and_large_owner_ids_are_refused() {
        for mode in ["4755", "2555", "1444", "0o4444"] {
            let e = parse_mode(mode).unwrap_err().to_string();
            assert!(e.contains("setuid, setgid or sticky"), "{mode}: {e}");
        }
        assert!(parse_mode("+444").is_err());
        let p = project(&FILE.replace("file-mode = \"0444\"", "file-mode = \"4444\"")).unwrap();
        let e = p.image("sklearn", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("file-mode"), "{e}");
        assert_eq!(parse_owner("4294967295:0").unwrap(), (u32::MAX as u64, 0));
        for owner in ["4294967296:0", "0:4294967296", "-1:0"] {
            let e = parse_owner(owner).unwrap_err().to_string();
            assert!(e.contains("4294967295"), "{owner}: {e}");
        }
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_place() {
        let e = project(&format!("{FILE}\nrepo = \n"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.contains(&format!("{FILE_NAME}:{}:", FILE.lines().count() + 2)),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_images_is_an_error() {
        let e = project("registry = \"quay.io/x\"\n").unwrap_err();
        assert!(e.to_string().contains("defines no images"), "{e}");
        assert!(e.hint().unwrap().contains("[images.NAME]"), "{e:?}");
    }
}
