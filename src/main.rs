//! `boxwalk`: parse the command line, run, print an error once, map the outcome to an exit code.

use boxwalk::cli::Cli;
use boxwalk::exit::Exit;
use clap::Parser;

fn main() -> std::process::ExitCode {
    match Cli::try_parse() {
        Ok(cli) => match boxwalk::commands::run(cli.command) {
            Ok(exit) => exit.into(),
            Err(e) => {
                eprintln!("boxwalk: {e}");
                e.exit().into()
            }
        },
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { Exit::Usage } else { Exit::Ok }.into()
        }
    }
}
