//! The recording stage: a batch's written copies synced to disk, then its entries told to the
//! observer and appended to the journal, which is the record that they are done.

use super::times::{timed, StageTimes};
use super::{FatalError, Observer};
use crate::config::Config;
use crate::engine::draw;
use crate::error::ImageError;
use crate::outputs::files::{self, FolderId};
use crate::outputs::journal::{self, Journal};
use crate::outputs::report::ImageEntry;

/// Syncs, reports and journals one written batch. A fault of the machine (the disk, or OUT gone)
/// stops the run before the batch is journaled: its images are left for the next run, not
/// recorded as failed.
pub fn record_batch(
    written: &mut [ImageEntry],
    journal: Option<&mut Journal>,
    cfg: &Config,
    out_id: &FolderId,
    observer: &dyn Observer,
    times: &StageTimes,
) -> Result<(), FatalError> {
    // The journal line is the record that an output is done: its data first.
    timed(&times.sync, || sync_outputs(written, cfg))?;
    super::check_out(&cfg.out, out_id, journal.as_deref())?;
    for e in written.iter() {
        observer.finished(e);
    }
    if let Some(j) = journal {
        timed(&times.sync, || j.append(written)).map_err(|e| {
            let path = cfg.out.join(journal::JOURNAL);
            FatalError::of_io(&cfg.out, &e, &path)
                .unwrap_or_else(|| FatalError::Output { path, reason: format!("cannot write the journal: {e}") })
        })?;
    }
    Ok(())
}

/// Syncs a batch's outputs. fsync mostly waits on the disk, so a few short-lived threads overlap
/// the waits (at GPU rates, thousands of serial fsyncs a second would stall the recorder) without
/// taking CPU from the workers.
fn sync_outputs(entries: &mut [ImageEntry], cfg: &Config) -> Result<(), FatalError> {
    const SYNC_THREADS: usize = 8;
    let per_thread = entries.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|s| {
        let syncs: Vec<_> = entries
            .chunks_mut(per_thread)
            .map(|chunk| s.spawn(move || chunk.iter_mut().try_for_each(|e| sync_output(e, cfg))))
            .collect();
        syncs.into_iter().try_for_each(|t| t.join().unwrap_or(Err(FatalError::Recorder)))
    })
}

/// Syncs an entry's written output; a failure turns the entry into a write error, unless it is
/// the machine's.
fn sync_output(entry: &mut ImageEntry, cfg: &Config) -> Result<(), FatalError> {
    let Some(rel) = entry.output.as_deref() else { return Ok(()) };
    let path = cfg.out.join(rel);
    if let Err(source) = files::sync_file(&path) {
        let e = ImageError::Write { path, source };
        match FatalError::of_write(&cfg.out, &e) {
            Some(fault) => return Err(fault),
            None => draw::fail(entry, &e),
        }
    }
    Ok(())
}
