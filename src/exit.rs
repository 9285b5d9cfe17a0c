//! Process exit codes, as a type (documented in `--help` and the README).

/// How a boxwalk invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every image was processed.
    Ok = 0,
    /// Bad command line.
    Usage = 1,
    /// The run could not go on (no weights, unwritable output, …).
    Fatal = 2,
    /// The run finished, but some images failed.
    Failures = 3,
    /// No input images were found.
    NoInputs = 4,
    /// Stopped by Ctrl-C after finishing the batch in flight.
    Interrupted = 130,
}

impl Exit {
    /// A run that went to the end: `Failures` when any image failed, else `Ok`.
    pub fn finished(failed: usize) -> Exit {
        if failed > 0 {
            Exit::Failures
        } else {
            Exit::Ok
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
