//! `boxwalk`: parse the command line, run, map the outcome to an exit code.

use boxwalk::cli::Cli;
use boxwalk::exit::Exit;
use clap::Parser;

fn main() -> std::process::ExitCode {
    match Cli::try_parse() {
        Ok(cli) => boxwalk::commands::run(cli.command).into(),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { Exit::Usage } else { Exit::Ok }.into()
        }
    }
}
