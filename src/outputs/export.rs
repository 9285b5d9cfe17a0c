//! Exports of a report for other tools: `--csv` (one row per detection and per failed image) and
//! `--coco-json` (COCO detection results, for pycocotools' `COCO.loadRes` / `COCOeval`).

use super::files;
use super::report::{Detection, ImageEntry, Report};
use crate::error::FileError;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `--csv`: `path,root,output,class,class_index,score,x1,y1,x2,y2,error_kind,error_message`.
/// A detection row leaves the error columns empty; a failed image's row leaves the detection
/// columns empty. Images that were processed and have no detection have no row.
pub fn write_csv(file: &Path, report: &Report) -> std::io::Result<()> {
    files::write_atomic(file, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record([
            "path",
            "root",
            "output",
            "class",
            "class_index",
            "score",
            "x1",
            "y1",
            "x2",
            "y2",
            "error_kind",
            "error_message",
            "warning",
        ])?;
        for e in &report.images {
            let output = e.output.clone().unwrap_or_default();
            let warning = e.warning.clone().unwrap_or_default();
            if let Some(err) = &e.error {
                let mut row = vec![e.path.clone(), e.root.clone(), output.clone()];
                row.extend(std::iter::repeat_n(String::new(), 7));
                row.extend([err.kind.clone(), err.message.clone(), warning.clone()]);
                csv.write_record(&row)?;
            } else if e.warning.is_some() && e.detections.as_ref().is_none_or(Vec::is_empty) {
                // The warning needs a row even where there is no detection to carry it.
                let mut row = vec![e.path.clone(), e.root.clone(), output.clone()];
                row.extend(std::iter::repeat_n(String::new(), 9));
                row.push(warning.clone());
                csv.write_record(&row)?;
            }
            for d in e.detections.iter().flatten() {
                let mut row = vec![e.path.clone(), e.root.clone(), output.clone(), d.label.clone()];
                row.push(d.class_index.to_string());
                row.push(format!("{:.4}", d.score));
                row.extend(d.bbox.iter().map(|v| format!("{v:.2}")));
                row.extend([String::new(), String::new(), warning.clone()]);
                csv.write_record(&row)?;
            }
        }
        csv.flush()
    })
}

/// One COCO result.
#[derive(Debug, Serialize, PartialEq)]
pub struct CocoResult {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f32; 4],
    pub score: f32,
}

/// Where the COCO results go and which image ids they use.
#[derive(Debug, Clone)]
pub struct CocoExport {
    pub results: PathBuf,
    /// An annotations file whose `images` give the ids (matched by `file_name`: the image's path
    /// relative to its input, else its bare file name when that is unique in the file).
    pub images_from: Option<PathBuf>,
}

/// What `--coco-images` provides: file_name → id, and the first category id.
struct GivenImages {
    ids: HashMap<String, u64>,
    by_base: HashMap<String, u64>,
    first_category: Option<u64>,
}

fn read_image_ids(file: &Path) -> Result<GivenImages, FileError> {
    #[derive(serde::Deserialize)]
    struct Img {
        id: u64,
        file_name: String,
    }
    #[derive(serde::Deserialize)]
    struct Cat {
        id: u64,
    }
    #[derive(serde::Deserialize)]
    struct Ann {
        images: Vec<Img>,
        #[serde(default)]
        categories: Vec<Cat>,
    }
    let ann: Ann = FileError::read_json(file, "not a COCO annotations file with `images`")?;
    // Exact `file_name`s first; then bare file names, where they are unique in the file.
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut bare: HashMap<String, Option<u64>> = HashMap::new();
    for i in &ann.images {
        let base = i.file_name.rsplit('/').next().unwrap_or(&i.file_name).to_string();
        bare.entry(base).and_modify(|v| *v = None).or_insert(Some(i.id));
        ids.insert(i.file_name.clone(), i.id);
    }
    let by_base: HashMap<String, u64> = bare.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    Ok(GivenImages { ids, by_base, first_category: ann.categories.iter().map(|c| c.id).min() })
}

fn coco_box(d: &Detection) -> [f32; 4] {
    let [x1, y1, x2, y2] = d.bbox;
    [x1, y1, x2 - x1, y2 - y1]
}

/// COCO category of a detection: its COCO id for COCO detectors, else the class index.
fn category(d: &Detection) -> u64 {
    d.coco_id.map_or(d.class_index as u64, u64::from)
}

/// The detections a COCO export uses: every decoded one (down to the decoder's 0.05) when the
/// run kept them, else those above the run's threshold.
pub fn scored(e: &ImageEntry) -> &[Detection] {
    e.all_detections.as_deref().or(e.detections.as_deref()).unwrap_or_default()
}

/// Writes the results list; without `images_from`, also `<results stem>.images.json`, a COCO
/// file with the generated `images` (id, file_name, width, height), the `categories` seen, and
/// no annotations. Returns a warning for images that `images_from` does not list.
pub fn write_coco(export: &CocoExport, report: &Report) -> Result<Option<String>, FileError> {
    let ok: Vec<&ImageEntry> = report.images.iter().filter(|e| e.error.is_none() && e.width.is_some()).collect();
    let given = export.images_from.as_deref().map(read_image_ids).transpose()?;
    let ids: Vec<Option<u64>> = match &given {
        Some(g) => ok
            .iter()
            .map(|e| {
                let base = e.path.rsplit('/').next().unwrap_or(&e.path);
                g.ids.get(&e.path).or_else(|| g.by_base.get(base)).copied()
            })
            .collect(),
        None => (1..=ok.len() as u64).map(Some).collect(),
    };
    let mut results = Vec::new();
    for (e, id) in ok.iter().zip(&ids) {
        let Some(image_id) = *id else { continue };
        results.extend(scored(e).iter().map(|d| CocoResult {
            image_id,
            category_id: category(d),
            bbox: coco_box(d),
            score: d.score,
        }));
    }
    // pycocotools' `loadRes` cannot read an empty list (it looks at `anns[0]`). With no
    // detection at all, the file holds one placeholder instead: zero area, score 0, on the first
    // image. It matches no ground truth and ranks last, so it changes no COCOeval metric.
    if results.is_empty() {
        if let Some(image_id) = ids.iter().flatten().next() {
            let category_id = given.as_ref().and_then(|g| g.first_category).unwrap_or(1);
            results.push(CocoResult { image_id: *image_id, category_id, bbox: [0.0; 4], score: 0.0 });
        }
    }
    files::write_atomic(&export.results, |w| serde_json::to_writer(w, &results).map_err(std::io::Error::other))
        .map_err(FileError::io(&export.results))?;
    let unmatched: Vec<&str> =
        ok.iter().zip(&ids).filter(|(_, id)| id.is_none()).map(|(e, _)| e.path.as_str()).collect();
    if export.images_from.is_none() {
        let images: Vec<_> = ok
            .iter()
            .zip(&ids)
            .map(|(e, id)| serde_json::json!({"id": id, "file_name": e.path, "width": e.width, "height": e.height}))
            .collect();
        let mut cats: Vec<(u64, String)> = ok
            .iter()
            .flat_map(|e| scored(e).iter().map(|d| (category(d), d.label.clone())))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        cats.sort();
        let categories: Vec<_> =
            cats.into_iter().map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect();
        let doc = serde_json::json!({"images": images, "categories": categories, "annotations": []});
        let path = images_file(&export.results);
        files::write_atomic(&path, |w| serde_json::to_writer(w, &doc).map_err(std::io::Error::other))
            .map_err(FileError::io(&path))?;
    }
    Ok((!unmatched.is_empty()).then(|| {
        format!(
            "{} image(s) are not in {} and were left out of {} (first: {})",
            unmatched.len(),
            export.images_from.as_deref().unwrap_or(Path::new("")).display(),
            export.results.display(),
            unmatched[0]
        )
    }))
}

/// `results.json` → `results.images.json`.
pub fn images_file(results: &Path) -> PathBuf {
    let stem = results.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "coco".into());
    results.with_file_name(format!("{stem}.images.json"))
}
