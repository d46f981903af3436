//! Temporary files that the next run reclaims when the process writing them dies.
//!
//! Every temporary file modelcar writes (in the store, beside an exported archive, inside an
//! exported layout) is held under an exclusive `flock` for as long as its writer has it open. The
//! kernel drops the lock when the process ends, however it ends (kill -9 included), so a
//! temporary file whose lock can be taken belongs to no live process and can be removed, while
//! one still being written cannot. No process IDs, ages or clocks are involved, so this holds
//! across PID namespaces and for files of any age.
//!
//! Creation takes the lock and then checks that the file at the path is still the one it opened:
//! a reclaimer that took the lock of a file created a moment earlier (and removed it) makes the
//! creator try a new name instead of writing into a removed file. A reclaimer removes a file only
//! while it holds the file's lock and the path still names the file it locked.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use tempfile::NamedTempFile;

/// Ends the name of every temporary file modelcar writes outside its store, so that a later run
/// finds its own leftovers and nothing else.
pub const SUFFIX: &str = ".modelcar-tmp";

/// Attempts at a fresh name when reclaimers keep removing the new file (they only remove it in
/// the instant between its creation and its lock, so a second attempt practically always works).
const CREATE_ATTEMPTS: usize = 8;

/// Temporary files removed by a [`reclaim`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reclaimed {
    /// How many files.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

impl Reclaimed {
    /// Both counts added up.
    pub fn add(&mut self, other: Reclaimed) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Create a temporary file in `dir` named `PREFIX<random>SUFFIX`, readable as files other tools
/// write (0666 less the umask), held locked until it is dropped or persisted and closed.
pub fn create(dir: &Path, prefix: &str, suffix: &str) -> io::Result<NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(prefix)
        .suffix(suffix)
        .permissions(fs::Permissions::from_mode(0o666));
    for _ in 0..CREATE_ATTEMPTS {
        let tmp = builder.tempfile_in(dir)?;
        tmp.as_file().lock()?;
        if same_file(tmp.path(), tmp.as_file()) {
            return Ok(tmp);
        }
        // Removed by a reclaimer before the lock was ours: leave its path alone (it may name
        // another file by now) and try another name.
        let _ = tmp.keep();
    }
    Err(io::Error::other(format!(
        "could not create a temporary file in {} that stayed in place",
        dir.display()
    )))
}

/// Remove the temporary files in `dir` (not below it) whose names `is_temp` accepts and whose
/// writer is gone; files of live writers, directories and anything unreadable stay.
pub fn reclaim(dir: &Path, is_temp: impl Fn(&str) -> bool) -> Reclaimed {
    let mut done = Reclaimed::default();
    let Ok(items) = fs::read_dir(dir) else {
        return done;
    };
    for item in items.flatten() {
        let name = item.file_name();
        if !name.to_str().is_some_and(&is_temp) {
            continue;
        }
        let path = item.path();
        // Never follow a link, and never wait on a FIFO that someone named like a temporary
        // file in a shared directory: the kind is checked on the open file, not before.
        let Ok(file) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        // Taken only when no process holds the file open under its lock.
        if file.try_lock().is_err() || !same_file(&path, &file) {
            continue;
        }
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if fs::remove_file(&path).is_ok() {
            done.files += 1;
            done.bytes += len;
        }
    }
    done
}

/// Whether `path` names the file open as `file`.
fn same_file(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether a name is one [`create`] gives with `SUFFIX` and a leading dot (the names modelcar
/// uses outside its store).
pub fn is_hidden_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_file_being_written_is_never_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let live = create(dir.path(), ".a", SUFFIX).unwrap();
        assert_eq!(reclaim(dir.path(), is_hidden_temp), Reclaimed::default());
        assert!(live.path().exists());
    }

    #[test]
    fn a_temporary_file_nobody_holds_is_reclaimed_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = create(dir.path(), ".a", SUFFIX).unwrap();
        fs::write(tmp.path(), b"12345").unwrap();
        // What a killed writer leaves: the file, with its lock gone with the process.
        let (file, path) = tmp.keep().unwrap();
        drop(file);
        fs::write(dir.path().join("keep-me"), b"x").unwrap();
        let done = reclaim(dir.path(), is_hidden_temp);
        assert_eq!(done, Reclaimed { files: 1, bytes: 5 });
        assert!(!path.exists());
        assert!(dir.path().join("keep-me").exists());
    }

    #[test]
    fn links_fifos_and_directories_named_like_temporary_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"not ours").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(".link.modelcar-tmp")).unwrap();
        fs::create_dir(dir.path().join(".dir.modelcar-tmp")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join(".fifo.modelcar-tmp"))
            .status()
            .unwrap();
        assert!(made.success());
        // Returns (opening the FIFO would block forever without O_NONBLOCK) and removes nothing.
        assert_eq!(reclaim(dir.path(), is_hidden_temp), Reclaimed::default());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
        assert!(target.exists());
    }

    #[test]
    fn a_file_removed_or_replaced_at_its_path_no_longer_counts_as_there() {
        // What `create` checks after taking the lock, and `reclaim` before removing.
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = create(dir.path(), "x", "").unwrap().keep().unwrap();
        assert!(same_file(&path, &file));
        fs::remove_file(&path).unwrap();
        assert!(!same_file(&path, &file));
        fs::write(&path, b"another file").unwrap();
        assert!(!same_file(&path, &file));
    }
}
