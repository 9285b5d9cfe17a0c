//! `boxwalk`: parse the command line, run, map the outcome to an exit code.

use boxwalk::cli::{Cli, Command};
use boxwalk::config::Config;
use boxwalk::exit::Exit;
use boxwalk::pipeline;
use clap::Parser;

fn detect(args: boxwalk::cli::DetectArgs) -> Exit {
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("boxwalk: {e}");
            return Exit::Usage;
        }
    };
    let quiet = cfg.quiet;
    let on_error = |e: &boxwalk::report::ImageEntry| {
        if let Some(err) = &e.error {
            eprintln!("boxwalk: error [{}] {}", err.kind, err.message);
        }
    };
    match pipeline::run(&cfg, &on_error) {
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
        Ok(s) => {
            let c = &s.report.counts;
            if !quiet {
                println!(
                    "boxwalk: {} images ({} ok, {} failed) in {:.1} s on {}; annotated copies in {}, report: {}",
                    c.images,
                    c.ok,
                    c.failed,
                    s.report.timing.total_s,
                    s.report.device,
                    cfg.out.display(),
                    s.report_path.display()
                );
            }
            if c.images == 0 {
                eprintln!("boxwalk: no images found in the inputs");
                Exit::NoInputs
            } else if c.failed > 0 {
                Exit::Failures
            } else {
                Exit::Ok
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Exit::Usage } else { Exit::Ok }.into();
        }
    };
    match cli.command {
        Command::Detect(args) => detect(args).into(),
    }
}
