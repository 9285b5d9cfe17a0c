//! The subcommands, one file each: each takes its parsed arguments, runs, prints its results and
//! returns how it ended. Errors come back as [`Error`]; `main` prints them once and maps them to
//! the exit code ([`Error::exit`]).

mod detect;
mod eval;
mod explain;
mod merge;
mod models;
mod render;
mod serve;
mod synth;
mod train;

use crate::cli::{Command, ModelsCommand, TrainCommand};
use crate::config::UsageError;
use crate::engine::LoadError;
use crate::error::FileError;
use crate::exit::Exit;
use crate::models::WeightsError;
use crate::run::FatalError;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag or value (exit 1).
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Run(#[from] FatalError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Load(#[from] crate::engine::LoadError),
    #[error(transparent)]
    Store(#[from] crate::weights::Error),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error(transparent)]
    Image(#[from] crate::error::ImageError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(transparent)]
    Explain(#[from] crate::explain::ExplainError),
    #[error("{path}: {source}")]
    Torch { path: std::path::PathBuf, source: tch::TchError },
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot catch signals: {0}")]
    Signals(std::io::Error),
    /// Several independent failures (one per model of `models fetch`).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\nboxwalk: "))]
    Several(Vec<Error>),
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage(_) | Error::Run(FatalError::Usage(_)) | Error::Load(LoadError::UnknownClass(_)) => Exit::Usage,
            _ => Exit::Fatal,
        }
    }
}

/// `result` under `--fail-on policy`: its exit code mapped, and an error the policy lets pass
/// printed, not returned.
fn under_policy(policy: crate::exit::FailOn, result: Result<Exit, Error>) -> Result<Exit, Error> {
    match result {
        Ok(exit) => Ok(policy.apply(exit)),
        Err(e) if policy.apply(e.exit()) == Exit::Ok => {
            eprintln!("boxwalk: {e}");
            eprintln!("boxwalk: --fail-on none: exiting 0");
            Ok(Exit::Ok)
        }
        Err(e) => Err(e),
    }
}

/// Runs one parsed command line.
pub fn run(cmd: Command) -> Result<Exit, Error> {
    match cmd {
        Command::Detect(a) => detect::detect(a),
        Command::Synth(a) => synth::synth(a),
        Command::Train(TrainCommand::Classifier(a)) => train::classifier(a),
        Command::Train(TrainCommand::Detector(a)) => train::detector(a),
        Command::Eval(a) => eval::eval(a),
        Command::Merge(a) => merge::merge(a),
        Command::Render(a) => render::render(a),
        Command::Serve(a) => serve::serve(a),
        Command::Explain(e) => explain::explain(e),
        Command::Models(ModelsCommand::Import { file, role }) => models::import(&file, role.as_deref()),
        Command::Models(ModelsCommand::List { json }) => models::list(json),
        Command::Models(ModelsCommand::Fetch { detector, classifier }) => models::fetch(detector, classifier),
    }
}

/// Pretty JSON for stdout; a value that cannot be serialised is an error, never an empty line.
fn json_pretty(value: &impl serde::Serialize) -> Result<String, Error> {
    Ok(serde_json::to_string_pretty(value)?)
}
