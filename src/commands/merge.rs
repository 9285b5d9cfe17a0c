//! `boxwalk merge`.

use super::Error;
use crate::cli::MergeArgs;
use crate::error::FileError;
use crate::exit::Exit;

pub fn merge(a: MergeArgs) -> Result<Exit, Error> {
    super::under_policy(a.fail_on, merge_shards(&a))
}

fn merge_shards(a: &MergeArgs) -> Result<Exit, Error> {
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
    let failed: Vec<&str> = r.images.iter().filter(|e| e.error.is_some()).map(|e| e.path.as_str()).collect();
    if !failed.is_empty() {
        let more = if failed.len() > 10 { format!(" and {} more", failed.len() - 10) } else { String::new() };
        eprintln!("boxwalk: failed images (in the report): {}{more}", failed[..failed.len().min(10)].join(", "));
    }
    Ok(Exit::finished(r.counts.failed))
}
