//! What a run leaves behind, side by side: the drawing on each copy ([`annotate`]), atomic file
//! writes ([`files`]), the lock that keeps one run per OUT ([`lock`]), the journal of finished images ([`journal`]), the inputs' hashes by stat
//! ([`hashes`]), the report ([`report`]), the contact sheet ([`sheet`]) and the CSV and COCO
//! exports ([`export`]).

pub mod annotate;
pub mod export;
pub mod files;
pub mod hashes;
pub mod journal;
pub mod lock;
pub mod report;
pub mod sheet;
