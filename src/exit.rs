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
    /// Stopped by SIGHUP after the batch in flight (128 + 1).
    HungUp = 129,
    /// Stopped by Ctrl-C (SIGINT) after the batch in flight (128 + 2).
    Interrupted = 130,
    /// Stopped by SIGTERM (a scheduler's preemption or time limit, an eviction, a service stop)
    /// after the batch in flight (128 + 15).
    Terminated = 143,
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

impl Exit {
    /// How a run stopped by `signal` (SIGHUP, SIGINT or SIGTERM) ends.
    pub fn stopped_by(signal: i32) -> Exit {
        match signal {
            libc::SIGHUP => Exit::HungUp,
            libc::SIGTERM => Exit::Terminated,
            _ => Exit::Interrupted,
        }
    }
}

/// `--fail-on`: which outcomes make the exit code non-zero, for a scheduler that takes any
/// non-zero code as a failed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 0 unless the command line is wrong or a signal stopped the run: a fatal error is
    /// still printed.
    None,
    /// Failed images (3), no images (4) and fatal errors (2) give their codes.
    #[default]
    Images,
    /// Only fatal errors (2) fail: failed images and an empty input or shard exit 0.
    Fatal,
}

impl FailOn {
    /// The exit code under this policy for what would otherwise be `exit`.
    pub fn apply(self, exit: Exit) -> Exit {
        match (self, exit) {
            (FailOn::Images, e) | (_, e @ (Exit::Usage | Exit::HungUp | Exit::Interrupted | Exit::Terminated)) => e,
            (FailOn::Fatal, Exit::Fatal) => Exit::Fatal,
            _ => Exit::Ok,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_keeps_usage_and_signals_and_drops_what_it_is_asked_to() {
        let all =
            [Exit::Ok, Exit::Usage, Exit::Fatal, Exit::Failures, Exit::NoInputs, Exit::Interrupted, Exit::Terminated];
        let under = |p: FailOn| all.map(|e| p.apply(e) as u8);
        assert_eq!(under(FailOn::Images), [0, 1, 2, 3, 4, 130, 143]);
        assert_eq!(under(FailOn::Fatal), [0, 1, 2, 0, 0, 130, 143]);
        assert_eq!(under(FailOn::None), [0, 1, 0, 0, 0, 130, 143]);
        assert_eq!(Exit::stopped_by(libc::SIGTERM), Exit::Terminated);
        assert_eq!(Exit::stopped_by(libc::SIGHUP) as u8, 129);
    }
}
