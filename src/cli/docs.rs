//! `modelcar completions SHELL` and the hidden `modelcar man DIR`: shell completions and man
//! pages generated from the same argument definitions the program parses with, so they never
//! drift from it. `make install` writes both.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write modelcar.1 and modelcar-SUBCOMMAND.1 into (created if missing).
    pub dir: PathBuf,
}

/// Print the completion script for a shell on standard output.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "modelcar", &mut script);
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(&script)
        .map_err(super::output::StdoutError)?;
    Ok(())
}

/// Write one man page for modelcar and one per visible subcommand (`modelcar-build.1`, as git
/// and podman name theirs).
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let cmd = super::Cli::command();
    let mut written = vec![write_page(&args.dir, "modelcar", cmd.clone())?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("modelcar-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(name.replace("-", " "));
        written.push(write_page(&args.dir, &name, sub)?);
    }
    for path in written {
        outln!("{}", modelcar::text::Escaped(&path.display().to_string()));
    }
    Ok(())
}

fn write_page(dir: &std::path::Path, name: &str, cmd: clap::Command) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .with_context(|| format!("rendering the man page {name}"))?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
