//! The recording stage: a batch's written copies synced to disk, then its entries told to the
//! observer and appended to the journal, which is the record that they are done.

use super::times::{timed, StageTimes};
use super::{FatalError, Observer};
use crate::config::Config;
use crate::engine::draw;
use crate::error::ImageError;
use crate::outputs::files;
use crate::outputs::journal::{self, Journal};
use crate::outputs::report::ImageEntry;

/// Syncs, reports and journals one written batch.
pub fn record_batch(
    written: &mut [ImageEntry],
    journal: Option<&mut Journal>,
    cfg: &Config,
    observer: &dyn Observer,
    times: &StageTimes,
) -> Result<(), FatalError> {
    // The journal line is the record that an output is done: its data first.
    timed(&times.sync, || sync_outputs(written, cfg));
    for e in written.iter() {
        observer.finished(e);
    }
    if let Some(j) = journal {
        timed(&times.sync, || j.append(written))
            .map_err(|e| FatalError::Output { path: cfg.out.join(journal::JOURNAL), reason: e.to_string() })?;
    }
    Ok(())
}

/// Syncs a batch's outputs. fsync mostly waits on the disk, so a few short-lived threads overlap
/// the waits (at GPU rates, thousands of serial fsyncs a second would stall the recorder) without
/// taking CPU from the workers.
fn sync_outputs(entries: &mut [ImageEntry], cfg: &Config) {
    const SYNC_THREADS: usize = 8;
    let per_thread = entries.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|s| {
        for chunk in entries.chunks_mut(per_thread) {
            s.spawn(move || chunk.iter_mut().for_each(|e| sync_output(e, cfg)));
        }
    });
}

/// Syncs an entry's written output; a failure turns the entry into a write error.
fn sync_output(entry: &mut ImageEntry, cfg: &Config) {
    let Some(rel) = entry.output.as_deref() else { return };
    let path = cfg.out.join(rel);
    if let Err(e) = files::sync_file(&path) {
        draw::fail(entry, &ImageError::Write { path, reason: e.to_string() });
    }
}
