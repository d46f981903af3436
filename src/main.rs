//! The `modelcar` command line: a thin layer over the library that parses arguments, prints
//! results and turns errors into a one-line reason, its causes and a hint.
//!
//! Exit codes: 0 on success (also when standard output is closed early, as by `| head`); 1 on
//! an error; for `verify`, 1 when the image fails a check and 2 when it could not be judged;
//! 2 for a command line that does not parse. With `--json`, an error is also a JSON object on
//! standard output: `{"error": ..., "hint": ..., "exit_code": ...}`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    let verify = matches!(args.command, cli::Command::Verify(_));
    let json = args.command.json();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = cli::exit_code(&err, verify);
            cli::report(&err, json, code);
            ExitCode::from(code)
        }
    }
}
