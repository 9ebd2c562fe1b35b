//! The `conveyor` binary: parses the command line, sets up logging, and hands
//! over to a subcommand. Everything else lives in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.downcast_ref::<cli::NothingMatched>().is_some() => {
            eprintln!("{error}");
            ExitCode::from(1)
        }
        Err(error) => {
            log::error!(target: "conveyor", "{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
