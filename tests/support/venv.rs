//! Python reference tools from PyPI (model-signing, modelpack-client, ...) in venvs that the
//! tests make once and keep under `~/.cache/modelcar-tests`.

use std::fs;
use std::path::{Path, PathBuf};

use super::cmd::tool_ok;
use super::files::sha256;
use super::fixtures::repo_root;

/// The venv `NAME-<hash>` of `requirements` (a file of the repository, every dependency pinned,
/// installed with `--no-deps`), made once per version of that file and of the interpreter under
/// a lock (test processes run in parallel); it replaces the venvs of other versions. `check`
/// (a program of the venv's `bin/` and its arguments) must succeed before the venv counts as
/// made. Fails, never skips, when it cannot be made (PyPI must be reachable the first time).
/// Returns the venv's `bin/` directory.
pub fn venv_bin(name: &str, requirements: &str, check: &[&str]) -> PathBuf {
    let requirements = repo_root().join(requirements);
    let python = tool_ok(
        "python3",
        ["-c", "import sys; print(sys.version, sys.executable)"],
    );
    let mut key = fs::read(&requirements).expect("the requirements file");
    key.extend(python.bytes());
    let home = std::env::var_os("HOME").expect("HOME");
    let cache = Path::new(&home).join(".cache/modelcar-tests");
    fs::create_dir_all(&cache).unwrap();
    let venv = cache.join(format!("{name}-{}", &sha256(&key)[7..23]));
    let bin = venv.join("bin");
    let done = venv.join(".complete");
    if !done.exists() {
        let lock = fs::File::create(cache.join(format!("{name}.lock"))).unwrap();
        lock.lock().expect("lock the venv");
        if !done.exists() {
            // Venvs of other versions of the requirements go.
            let prefix = format!("{name}-");
            for old in fs::read_dir(&cache).unwrap().flatten() {
                let n = old.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) && !n.ends_with(".lock") {
                    let _ = fs::remove_dir_all(old.path());
                }
            }
            tool_ok(
                "python3",
                ["-m".as_ref(), "venv".as_ref(), venv.as_os_str()],
            );
            tool_ok(
                bin.join("pip").to_str().unwrap(),
                [
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "-r",
                    requirements.to_str().unwrap(),
                ],
            );
            tool_ok(bin.join(check[0]).to_str().unwrap(), &check[1..]);
            fs::write(&done, b"").unwrap();
        }
    }
    bin
}
