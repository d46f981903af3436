//! The `modelcar` command line: a thin layer over the library that parses arguments, prints
//! results and turns errors into a one-line reason, its causes and a hint.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            cli::report(&err);
            ExitCode::FAILURE
        }
    }
}
