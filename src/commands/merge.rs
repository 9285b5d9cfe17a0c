//! `boxwalk merge`.

use super::Error;
use crate::cli::MergeArgs;
use crate::error::FileError;
use crate::exit::Exit;

pub fn merge(a: MergeArgs) -> Result<Exit, Error> {
    let r = crate::merge::merge(&a.shards, &a.out)?;
    // The merged folder gets its own contact sheet (thumbnails made from the copies).
    let page = a.out.join("index.html");
    crate::outputs::sheet::write_index(&a.out, &r).map_err(FileError::io(&page))?;
    println!(
        "boxwalk: merged {} shards: {} images ({} ok, {} failed) into {}",
        a.shards.len(),
        r.counts.images,
        r.counts.ok,
        r.counts.failed,
        a.out.join("report.json").display()
    );
    Ok(Exit::finished(r.counts.failed))
}
