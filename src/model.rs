//! The model directory: what will land under `/models`, checked before anything is written.
//!
//! A scan walks the directory in sorted order (so inode order, creation order and the machine
//! do not matter), refuses what cannot be packed (special files, symlinks leaving the tree,
//! unreadable files, names that are not UTF-8) with an error naming the path, and records for
//! each file the `stat` fields the layer cache keys on.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{io_err, Error, Result};

/// A scanned model directory.
#[derive(Debug, Clone)]
pub struct ModelTree {
    /// The directory as given.
    pub root: PathBuf,
    /// Every entry below the root, sorted by path; directories before their contents.
    pub entries: Vec<ModelEntry>,
}

/// One file, directory or symlink of a model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Path relative to the model directory, `/`-separated.
    pub rel: String,
    pub kind: EntryKind,
    /// Where to read a file's content from.
    pub source: PathBuf,
    pub stat: StatKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
    },
    /// A symlink, with a target relative to the link's directory.
    Symlink {
        target: String,
    },
}

/// The `stat` fields that tell whether a file may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl StatKey {
    fn of(m: &fs::Metadata) -> StatKey {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

impl ModelTree {
    /// Scan and check `root`.
    pub fn scan(root: &Path) -> Result<ModelTree> {
        let meta = fs::metadata(root).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(format!("model directory {} does not exist", root.display()))
                    .with_hint("pass the directory holding the model files (for example --models models/mlserver/sklearn)")
            } else {
                io_err("read the model directory", root)(e)
            }
        })?;
        if !meta.is_dir() {
            return Err(
                Error::invalid(format!("{} is not a directory", root.display()))
                    .with_hint("pass the directory that holds the model file, not the file itself"),
            );
        }
        let canonical_root = fs::canonicalize(root).map_err(io_err("resolve", root))?;
        let mut entries = Vec::new();
        walk(root, &canonical_root, "", &mut entries)?;
        if !entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::File { .. }))
        {
            return Err(Error::invalid(format!(
                "model directory {} holds no files",
                root.display()
            ))
            .with_hint("KServe's modelcar-init container fails when /models is empty: put the model files in it"));
        }
        Ok(ModelTree {
            root: root.to_path_buf(),
            entries,
        })
    }

    /// Regular files, in path order.
    pub fn files(&self) -> impl Iterator<Item = (&ModelEntry, u64)> {
        self.entries.iter().filter_map(|e| match e.kind {
            EntryKind::File { size } => Some((e, size)),
            _ => None,
        })
    }

    /// Total bytes of regular files.
    pub fn total_size(&self) -> u64 {
        self.files().map(|(_, s)| s).sum()
    }

    /// An entry by relative path.
    pub fn get(&self, rel: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.rel == rel)
    }
}

fn walk(dir: &Path, canonical_root: &Path, prefix: &str, out: &mut Vec<ModelEntry>) -> Result<()> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err("read the model directory", dir))? {
        let item = item.map_err(io_err("read the model directory", dir))?;
        names.push(item.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(
                Error::invalid(format!("file name {} is not valid UTF-8", path.display()))
                    .with_hint("rename the file: image layers and KServe expect UTF-8 names"),
            );
        };
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(io_err("read", &path))?;
        let ft = meta.file_type();
        let stat = StatKey::of(&meta);
        if ft.is_dir() {
            out.push(ModelEntry {
                rel: rel.clone(),
                kind: EntryKind::Dir,
                source: path.clone(),
                stat,
            });
            walk(&path, canonical_root, &rel, out)?;
        } else if ft.is_file() {
            // Opening proves readability now rather than halfway through writing a layer.
            File::open(&path).map_err(|e| {
                Error::invalid(format!("model file {} cannot be read: {e}", path.display()))
                    .with_hint("fix its permissions (every model file must be readable) or move it out of the model directory")
            })?;
            out.push(ModelEntry {
                rel,
                kind: EntryKind::File { size: meta.len() },
                source: path,
                stat,
            });
        } else if ft.is_symlink() {
            let target = check_symlink(&path, canonical_root)?;
            out.push(ModelEntry {
                rel,
                kind: EntryKind::Symlink { target },
                source: path,
                stat,
            });
        } else {
            let what = if ft.is_fifo() {
                "a named pipe"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(Error::invalid(format!("{} is {what}", path.display()))
                .with_hint("a model directory may hold only regular files, directories and symlinks inside it; remove it"));
        }
    }
    Ok(())
}

/// The errno of "too many levels of symbolic links" (std has no stable `ErrorKind` for it).
#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;

/// Check that a symlink resolves to something inside the model directory and return its target
/// relative to the link's directory.
fn check_symlink(link: &Path, canonical_root: &Path) -> Result<String> {
    let raw = fs::read_link(link).map_err(io_err("read the symlink", link))?;
    let resolved = fs::canonicalize(link).map_err(|e| {
        let why = if e.raw_os_error() == Some(ELOOP) {
            "which is a loop of symlinks (a link that leads back to itself)".to_string()
        } else if e.kind() == std::io::ErrorKind::NotFound {
            "which does not exist".to_string()
        } else {
            format!("which cannot be resolved ({e})")
        };
        Error::invalid(format!(
            "symlink {} points to {}, {why}",
            link.display(),
            raw.display()
        ))
        .with_hint("fix or remove the link: KServe would find nothing behind it")
    })?;
    let inside = resolved.strip_prefix(canonical_root).map_err(|_| {
        Error::invalid(format!(
            "symlink {} points outside the model directory (to {})",
            link.display(),
            resolved.display()
        ))
        .with_hint("copy the file into the model directory instead of linking to it: the image holds only what is inside")
    })?;
    let link_dir = fs::canonicalize(link.parent().unwrap_or(Path::new(".")))
        .map_err(io_err("resolve", link))?;
    let link_dir = link_dir
        .strip_prefix(canonical_root)
        .unwrap_or(Path::new(""));
    if raw.is_relative() && raw.to_str().is_some() {
        return Ok(raw.to_string_lossy().into_owned());
    }
    // Absolute (or non-UTF-8) targets inside the tree become relative, so they resolve in the image.
    relative_path(link_dir, inside).ok_or_else(|| {
        Error::invalid(format!(
            "symlink {} has a target that is not valid UTF-8",
            link.display()
        ))
    })
}

fn relative_path(from_dir: &Path, to: &Path) -> Option<String> {
    let from: Vec<Component> = from_dir.components().collect();
    let to_c: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    for c in &to_c[common..] {
        parts.push(c.as_os_str().to_str()?.to_string());
    }
    Some(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn scan_is_sorted_and_complete() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("b/c")).unwrap();
        fs::write(d.path().join("z.bin"), b"1").unwrap();
        fs::write(d.path().join("b/c/x"), b"22").unwrap();
        fs::write(d.path().join("a"), b"").unwrap();
        symlink("b/c/x", d.path().join("link")).unwrap();
        let t = ModelTree::scan(d.path()).unwrap();
        let rels: Vec<&str> = t.entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["a", "b", "b/c", "b/c/x", "link", "z.bin"]);
        assert_eq!(t.total_size(), 3);
        assert_eq!(
            t.get("link").unwrap().kind,
            EntryKind::Symlink {
                target: "b/c/x".into()
            }
        );
    }

    #[test]
    fn absolute_links_inside_become_relative() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("w.bin"), b"1").unwrap();
        symlink(d.path().join("w.bin"), d.path().join("sub/l")).unwrap();
        let t = ModelTree::scan(d.path()).unwrap();
        assert_eq!(
            t.get("sub/l").unwrap().kind,
            EntryKind::Symlink {
                target: "../w.bin".into()
            }
        );
    }

    #[test]
    fn bad_trees_are_refused_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        assert!(ModelTree::scan(&missing)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let empty = d.path().join("empty");
        fs::create_dir_all(empty.join("sub")).unwrap();
        assert!(ModelTree::scan(&empty)
            .unwrap_err()
            .to_string()
            .contains("holds no files"));
        let outside = d.path().join("out");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("m"), b"1").unwrap();
        symlink("/etc/passwd", outside.join("evil")).unwrap();
        let e = ModelTree::scan(&outside).unwrap_err().to_string();
        assert!(e.contains("evil") && e.contains("outside"), "{e}");
        let dangling = d.path().join("dangling");
        fs::create_dir(&dangling).unwrap();
        fs::write(dangling.join("m"), b"1").unwrap();
        symlink("gone", dangling.join("l")).unwrap();
        assert!(ModelTree::scan(&dangling)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }

    #[test]
    fn a_symlink_loop_is_called_a_loop() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("m"), b"1").unwrap();
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        let e = ModelTree::scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("loop of symlinks"), "{e}");
        assert!(!e.contains("does not exist"), "{e}");
    }

    #[test]
    fn fifos_are_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("m"), b"1").unwrap();
        let fifo = d.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let e = ModelTree::scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("pipe") && e.contains("named pipe"), "{e}");
    }
}
