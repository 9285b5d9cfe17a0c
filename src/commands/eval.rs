//! `boxwalk eval`.

use super::Error;
use crate::cli::EvalArgs;
use crate::config::UsageError;
use crate::exit::Exit;
use crate::models::{Classifier, Detector, Placement};
use tch::Device;

pub fn eval(a: EvalArgs) -> Result<Exit, Error> {
    let place = Placement { device: Device::Cpu, half: false };
    let (json, text) = if let Some(w) = &a.weights.detector_weights {
        let det = Detector::open(w, place)?;
        let ds = crate::coco::Dataset::read(&a.data.join("annotations.json"))?;
        let r = crate::eval::eval_detector(&det, &ds, &a.data, a.batch_size)?;
        let text = format!(
            "mAP@0.5 {:.4}, mAP@[.5:.95] {:.4} over {} images, {} boxes",
            r.map50, r.map50_95, r.images, r.truths
        );
        (serde_json::to_string(&r), text)
    } else if let Some(w) = &a.weights.classifier_weights {
        let cls = Classifier::open(w, place)?;
        let names: Vec<String> = cls.classes.iter().map(|c| c.name.clone()).collect();
        let items = crate::eval::image_folder(&a.data, Some(&names))?.items;
        let r = crate::eval::eval_classifier(&cls, &items, a.batch_size)?;
        let text = format!("top-1 {:.4}, top-5 {:.4} over {} images", r.top1, r.top5, r.images);
        (serde_json::to_string(&r), text)
    } else {
        return Err(UsageError("pass --detector-weights or --classifier-weights".into()).into());
    };
    if a.json {
        println!("{}", json?);
    } else {
        println!("{text}");
    }
    Ok(Exit::Ok)
}
