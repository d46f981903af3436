//! The CNCF ModelPack vocabulary: the artifact's media types, its layer roles and packings, and
//! the annotations that place a layer's file.
//!
//! A ModelPack artifact (`application/vnd.cncf.model.manifest.v1+json`) is what modctl, KitOps,
//! Harbor and Dragonfly speak. KServe cannot run one (it has no `/models` directory), and a
//! runnable modelcar is not one; modelcar writes the first beside the second from the same blobs
//! and turns the first into the second.

pub mod config;
pub mod publish;
pub mod source;

/// The `artifactType` of a ModelPack manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
/// The media type of a ModelPack config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
/// Layer annotation: the file's path relative to the model's root.
pub const ANNOTATION_FILEPATH: &str = "org.cncf.model.filepath";
/// Layer annotation: the file's metadata (name, mode, uid, gid, size, mtime, typeflag) as JSON.
pub const ANNOTATION_FILE_METADATA: &str = "org.cncf.model.file.metadata+json";
/// Layer annotation: `"true"` when the layer's role was guessed rather than checked.
pub const ANNOTATION_MEDIATYPE_UNTESTED: &str = "org.cncf.model.file.mediatype.untested";

/// What a ModelPack layer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Model weights (safetensors, GGUF, pickles, ONNX graphs...).
    Weight,
    /// What the weights need to load: `config.json`, tokenizers, generation configs.
    WeightConfig,
    /// Documentation: README, model card, licence.
    Doc,
    /// Code: Python modules, scripts.
    Code,
    /// Datasets shipped with the model.
    Dataset,
}

/// How a ModelPack layer's bytes are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Packing {
    /// One file's bytes, as they are (named by the layer's filepath annotation).
    Raw,
    /// An uncompressed tar archive.
    Tar,
    /// A gzip-compressed tar archive.
    TarGzip,
    /// A zstd-compressed tar archive.
    TarZstd,
}

impl Role {
    /// Every role, in the order the specification lists them.
    pub const ALL: [Role; 5] = [
        Role::Weight,
        Role::WeightConfig,
        Role::Doc,
        Role::Code,
        Role::Dataset,
    ];

    fn stem(self) -> &'static str {
        match self {
            Role::Weight => "weight",
            Role::WeightConfig => "weight.config",
            Role::Doc => "doc",
            Role::Code => "code",
            Role::Dataset => "dataset",
        }
    }
}

impl Packing {
    /// Every packing.
    pub const ALL: [Packing; 4] = [
        Packing::Raw,
        Packing::Tar,
        Packing::TarGzip,
        Packing::TarZstd,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Packing::Raw => "raw",
            Packing::Tar => "tar",
            Packing::TarGzip => "tar+gzip",
            Packing::TarZstd => "tar+zstd",
        }
    }
}

/// The media type of a layer with this role and packing,
/// e.g. `application/vnd.cncf.model.weight.v1.tar`.
pub fn layer_media_type(role: Role, packing: Packing) -> String {
    format!(
        "application/vnd.cncf.model.{}.v1.{}",
        role.stem(),
        packing.suffix()
    )
}

/// The role and packing of a ModelPack layer media type; `None` for anything else.
pub fn parse_layer_media_type(media_type: &str) -> Option<(Role, Packing)> {
    let rest = media_type.strip_prefix("application/vnd.cncf.model.")?;
    Role::ALL.into_iter().find_map(|role| {
        let tail = rest.strip_prefix(role.stem())?.strip_prefix(".v1.")?;
        Packing::ALL
            .into_iter()
            .find(|p| p.suffix() == tail)
            .map(|p| (role, p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is the specification's: every constant of `mediatype.go` (kept as a fixture)
    /// parses to the role and packing its name says, and nothing else does.
    #[test]
    fn media_types_are_the_specifications() {
        let go = include_str!("../../tests/fixtures/modelpack/mediatype.go");
        let mut layers = 0;
        for line in go.lines() {
            let Some((name, value)) = line.trim().split_once(" = ") else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim() {
                "ArtifactTypeModelManifest" => assert_eq!(value, ARTIFACT_TYPE),
                "MediaTypeModelConfig" => assert_eq!(value, CONFIG_MEDIA_TYPE),
                _ if name.starts_with("MediaTypeModel") => {
                    let (role, packing) = parse_layer_media_type(value)
                        .unwrap_or_else(|| panic!("{value} is not in the table"));
                    assert_eq!(layer_media_type(role, packing), value);
                    layers += 1;
                }
                _ => {}
            }
        }
        assert_eq!(layers, Role::ALL.len() * Packing::ALL.len());
        assert_eq!(
            parse_layer_media_type("application/vnd.cncf.model.weight.v2.tar"),
            None
        );
        assert_eq!(
            parse_layer_media_type("application/vnd.cncf.model.weight.v1.tar+bz2"),
            None
        );
        assert_eq!(parse_layer_media_type(CONFIG_MEDIA_TYPE), None);
    }
}
