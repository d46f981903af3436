//! Store snapshots, to prove that a failed command changed nothing: every file with its size
//! (the layer cache and lock files aside), and `index.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::files::walk;

/// What a store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Paths relative to the store (directories end with `/` and have size 0), with their size.
    pub files: BTreeMap<String, u64>,
    pub index: String,
}

/// Take a snapshot of a store.
pub fn snapshot(store: &Path) -> Snapshot {
    let mut files = BTreeMap::new();
    walk(store, &mut |path, meta| {
        let rel = path
            .strip_prefix(store)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".modelcar/cache" || rel.ends_with(".lock") || rel == ".modelcar/lock" {
            return false;
        }
        if meta.is_dir() {
            files.insert(format!("{rel}/"), 0);
        } else {
            files.insert(rel, meta.len());
        }
        true
    });
    Snapshot {
        files,
        index: fs::read_to_string(store.join("index.json")).unwrap_or_default(),
    }
}

/// Assert that a store is as it was.
#[track_caller]
pub fn assert_unchanged(before: &Snapshot, store: &Path, what: &str) {
    let after = snapshot(store);
    if &after == before {
        return;
    }
    let added: Vec<_> = after
        .files
        .keys()
        .filter(|k| !before.files.contains_key(*k))
        .collect();
    let removed: Vec<_> = before
        .files
        .keys()
        .filter(|k| !after.files.contains_key(*k))
        .collect();
    let resized: Vec<_> = before
        .files
        .iter()
        .filter(|(k, v)| after.files.get(*k).is_some_and(|a| a != *v))
        .collect();
    panic!(
        "{what} changed the store:\nadded {added:?}\nremoved {removed:?}\nresized {resized:?}\nindex before {}\nindex after {}",
        before.index, after.index
    );
}
