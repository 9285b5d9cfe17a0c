//! `boxwalk serve`.

use super::Error;
use crate::cli::ServeArgs;
use crate::config::parse_device;
use crate::decode::Limits;
use crate::engine::Models;
use crate::exit::Exit;
use crate::models::Placement;
use crate::serve::ServeOptions;
use crate::weights::{resolve, Role};

pub fn serve(a: ServeArgs) -> Result<Exit, Error> {
    let device = parse_device(&a.device.device)?;
    let det = resolve(Role::Detector, a.weights.detector_weights);
    let cls = resolve(Role::Classifier, a.weights.classifier_weights);
    let place = Placement { device, half: false };
    let models = Models::open(Some(&det.file), Some(&cls.file), place, None)?;
    // A demo model given by path is still a demo model: its card says so.
    let cards = [models.detector.as_ref().map(|d| &d.card), models.classifier.as_ref().map(|c| &c.card)];
    let demo = det.demo || cls.demo || cards.iter().flatten().any(|c| c.as_ref().is_some_and(|c| c.demo));
    let opts = ServeOptions {
        host: a.host,
        port: a.port,
        allow_hosts: a.allow_hosts,
        max_upload: a.max_upload,
        limits: Limits { max_file_size: a.max_upload, max_pixels: a.max_pixels, allow_truncated: false },
        device,
        workers: a.workers.unwrap_or_else(crate::sys::available_threads),
        demo,
    };
    crate::serve::serve(opts, models)?;
    Ok(Exit::Ok)
}
