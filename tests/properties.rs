//! Property tests of the parsers of outside input: image references and locations, digests,
//! media types, platforms, the values of the project file and the project file itself. On any
//! input each one answers with a value or an error, never a panic, and what it accepts it
//! accepts again in the form it prints.

use std::str::FromStr;

use modelcar::image::{self, Document, DocumentKind, PlatformFilter};
use modelcar::project::{self, Overrides, Project};
use modelcar::reference::{ImageRef, Location};
use oci_spec::image::MediaType;
use proptest::prelude::*;

/// Text shaped like references: the characters they use, plus a few that they must not.
fn reference_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:/@\\-\\[\\]]{0,80}",
        "(docker://|oci:|oci-archive:|docker-archive:)?[a-z0-9.:/@_-]{0,60}",
        "[a-z0-9.]{1,20}(:[0-9]{1,6})?/[a-z0-9/_.-]{1,40}(:[A-Za-z0-9_.-]{1,20})?(@sha256:[0-9a-f]{64})?",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_reference_parses_or_is_refused_and_what_parses_prints_back_the_same(text in reference_like()) {
        if let Ok(r) = ImageRef::from_str(&text) {
            let again = ImageRef::from_str(&r.to_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&r), "{} printed as {}", text, r);
            // Derived forms of an accepted reference never panic either.
            let _ = (r.tagged(), r.name());
        }
    }

    #[test]
    fn a_location_parses_or_is_refused(text in reference_like()) {
        if let Ok(l) = Location::from_str(&text) {
            let _ = l.to_string();
        }
    }

    #[test]
    fn a_digest_is_accepted_exactly_when_it_is_sha256_and_64_lowercase_hex(
        text in prop_oneof!["sha256:[0-9a-fA-F]{60,68}", "[a-z0-9]{0,8}:[0-9a-f]{0,130}", any::<String>()]
    ) {
        let well_formed = text.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        match modelcar::digest::parse(&text) {
            Ok(d) => {
                prop_assert!(well_formed, "accepted {}", text);
                prop_assert_eq!(d.to_string(), text);
                prop_assert!(modelcar::digest::require_sha256(&d).is_ok());
            }
            Err(_) => prop_assert!(!well_formed, "refused {}", text),
        }
    }

    #[test]
    fn any_media_type_is_classified_or_refused(
        text in prop_oneof![
            "application/vnd\\.(oci|docker)\\.[a-z.]{0,30}(\\.v[12])?(\\+(json|gzip|zstd|prettyjws))?",
            any::<String>(),
        ]
    ) {
        let mt = MediaType::from(text.as_str());
        let kind = Document::classify(&mt);
        let _ = image::reject_schema1(&mt);
        if let Ok(oci) = image::oci_layer_media_type(&mt) {
            // A layer type maps to an OCI layer type, which maps to itself.
            prop_assert_eq!(kind, DocumentKind::Other);
            prop_assert_eq!(image::oci_layer_media_type(&oci).ok(), Some(oci.clone()));
        }
    }

    #[test]
    fn any_bytes_sniffed_as_a_document_are_classified_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Document::sniff(&bytes);
    }

    #[test]
    fn a_platform_filter_parses_or_is_refused(text in prop_oneof!["[a-z0-9/]{0,30}", any::<String>()]) {
        let _ = PlatformFilter::from_str(&text);
    }

    #[test]
    fn modes_sizes_and_owners_parse_or_are_refused(text in prop_oneof!["(0o)?[0-9]{0,6}", "[0-9]{0,25}[KMGiB ]{0,4}", "[0-9-]{0,12}:[0-9-]{0,12}", any::<String>()]) {
        if let Ok(m) = project::parse_mode(&text) {
            prop_assert!(m <= 0o777, "{} gave {:o}", text, m);
        }
        let _ = project::parse_size(&text);
        if let Ok((u, g)) = project::parse_owner(&text) {
            prop_assert!(u <= u32::MAX as u64 && g <= u32::MAX as u64);
        }
    }
}

/// A TOML value of any type, for any key.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| format!("{:?}", s)),
        "[0-9a-zA-Z:./@_ -]{0,20}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("0o444".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ]
}

const KEYS: [&str; 15] = [
    "registry",
    "version",
    "base",
    "owner",
    "dir-mode",
    "file-mode",
    "user",
    "layers",
    "layer-threshold",
    "compression",
    "platform",
    "allow-failing-checks",
    "modelpack",
    "repository",
    "models",
];

/// Project files: the keys modelcar knows (and one it does not) with values of any type, at
/// the top and in an image table, sometimes with a registries table; or any text at all.
fn project_text() -> impl Strategy<Value = String> {
    let pairs = || prop::collection::vec((prop::sample::select(&KEYS[..]), toml_value()), 0..8);
    prop_oneof![
        3 => (pairs(), pairs(), any::<bool>(), "[a-z]{1,8}").prop_map(|(top, image, registries, name)| {
            let mut text = String::new();
            let mut seen = std::collections::HashSet::new();
            for (k, v) in top.iter().filter(|(k, _)| seen.insert(*k)) {
                text.push_str(&format!("{k} = {v}\n"));
            }
            if registries {
                text.push_str("[registries.\"localhost:5000\"]\ntls-verify = false\n");
            }
            text.push_str(&format!("[images.{name}]\n"));
            let mut seen = std::collections::HashSet::new();
            for (k, v) in image.iter().filter(|(k, _)| seen.insert(*k)) {
                text.push_str(&format!("{k} = {v}\n"));
            }
            text
        }),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_project_file_loads_or_is_refused_naming_the_file(text in project_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(project::FILE_NAME);
        std::fs::write(&path, &text).unwrap();
        match Project::load(&path) {
            Ok(p) => {
                for name in p.names() {
                    match p.image(&name, &Overrides::default()) {
                        Ok(s) => {
                            prop_assert!(s.file_mode <= 0o777 && s.dir_mode <= 0o777);
                            let _ = s.reference().parse::<ImageRef>();
                        }
                        Err(e) => prop_assert!(!e.to_string().is_empty()),
                    }
                }
                let _ = p.insecure_registries();
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(&path.display().to_string()), "{}", message);
            }
        }
    }
}
