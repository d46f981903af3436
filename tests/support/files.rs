//! Files for and from the tests: temporary directories, pseudo-random data, JSON documents,
//! digests, owners and modes, and a directory walk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A temporary directory for one test (removed when dropped).
pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("modelcar-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Owner, group and permission bits of a path (not following symlinks).
pub fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// A JSON file, parsed.
#[track_caller]
pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Write `size` pseudo-random (incompressible) bytes from `seed` to `path` (xorshift64*): the
/// same bytes on every run.
pub fn write_random(path: &Path, size: u64, seed: u64) {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display())),
    );
    let mut state = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write random data");
        left -= n as u64;
    }
    f.flush().expect("flush random data");
}

/// Visit everything below `dir`, parents before children, without following symlinks. For a
/// directory, `visit` answers whether to go into it (its answer is ignored for anything else).
/// What cannot be read is passed over.
pub fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &fs::Metadata) -> bool) {
    let Ok(items) = fs::read_dir(dir) else { return };
    for item in items.flatten() {
        let path = item.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if visit(&path, &meta) && meta.is_dir() {
            walk(&path, visit);
        }
    }
}
