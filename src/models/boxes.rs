//! SSD box math, pure and tch-free: NVIDIA's default boxes, the offset decoding, and the
//! per-class greedy NMS of NVIDIA's `Encoder.decode_single` (model-facts, sections B and C).
//!
//! One convention throughout: boxes are normalised `[x1, y1, x2, y2]` (`ltrb`) relative to the
//! 300×300 network input, no `+1` in areas. Scores are compared with `total_cmp`, so a NaN never
//! panics (it sorts above every number and is then dropped by the `> min_score` test).

/// The geometry of an SSD300 default-box set (NVIDIA `dboxes300_coco`).
#[derive(Debug, Clone, PartialEq)]
pub struct SsdConfig {
    /// Input side the boxes are relative to (`fig_size`).
    pub fig_size: f64,
    /// Feature-map sides, one per detection head.
    pub feat_size: [usize; 6],
    /// Strides in input pixels; `fk = fig_size / step` (37.5 for the first map, not 38).
    pub steps: [f64; 6],
    /// Box scales in input pixels; map i uses scales[i] and scales[i+1].
    pub scales: [f64; 7],
    /// Extra aspect ratios per map, each giving a wide then a tall box.
    pub aspect_ratios: [&'static [f64]; 6],
    /// Variances applied to the centre offsets (`scale_xy`) and log-sizes (`scale_wh`).
    pub scale_xy: f32,
    pub scale_wh: f32,
}

impl SsdConfig {
    /// NVIDIA DeepLearningExamples `ssd/utils.py::dboxes300_coco`.
    pub fn ssd300() -> Self {
        SsdConfig {
            fig_size: 300.0,
            feat_size: [38, 19, 10, 5, 3, 1],
            steps: [8.0, 16.0, 32.0, 64.0, 100.0, 300.0],
            scales: [21.0, 45.0, 99.0, 153.0, 207.0, 261.0, 315.0],
            aspect_ratios: [&[2.0], &[2.0, 3.0], &[2.0, 3.0], &[2.0, 3.0], &[2.0], &[2.0]],
            scale_xy: 0.1,
            scale_wh: 0.2,
        }
    }

    /// Default boxes per cell of each map: 2 squares + 2 per aspect ratio ([4,6,6,6,4,4]).
    pub fn num_defaults(&self) -> [usize; 6] {
        let mut n = [0; 6];
        for (i, r) in self.aspect_ratios.iter().enumerate() {
            n[i] = 2 + 2 * r.len();
        }
        n
    }

    /// Total number of default boxes (8732 for SSD300).
    pub fn num_boxes(&self) -> usize {
        self.feat_size.iter().zip(self.num_defaults()).map(|(f, n)| f * f * n).sum()
    }

    /// Default boxes as clamped `[cx, cy, w, h]`, in NVIDIA's order: map → size → row → column.
    ///
    /// Sizes are computed in f64 (Python floats) and stored as f32 before the in-place clamp to
    /// [0, 1] of all four columns, exactly as `DefaultBoxes.__init__` does.
    pub fn default_boxes_xywh(&self) -> Vec<[f32; 4]> {
        let mut out = Vec::with_capacity(self.num_boxes());
        for (idx, &sfeat) in self.feat_size.iter().enumerate() {
            let sk1 = self.scales[idx] / self.fig_size;
            let sk2 = self.scales[idx + 1] / self.fig_size;
            let sk3 = (sk1 * sk2).sqrt();
            let mut sizes = vec![(sk1, sk1), (sk3, sk3)];
            for &alpha in self.aspect_ratios[idx] {
                let (w, h) = (sk1 * alpha.sqrt(), sk1 / alpha.sqrt());
                sizes.push((w, h));
                sizes.push((h, w));
            }
            let fk = self.fig_size / self.steps[idx];
            for &(w, h) in &sizes {
                for i in 0..sfeat {
                    for j in 0..sfeat {
                        let cx = (j as f64 + 0.5) / fk;
                        let cy = (i as f64 + 0.5) / fk;
                        out.push([cx as f32, cy as f32, w as f32, h as f32].map(|v| v.clamp(0.0, 1.0)));
                    }
                }
            }
        }
        out
    }
}

/// Intersection over union of two `ltrb` boxes; 0 when the union is empty.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Decodes one box's raw offsets `[tx, ty, tw, th]` against its clamped xywh default box into
/// `ltrb` (`scale_back_batch`); not clipped to [0, 1], as in the reference.
pub fn decode_box(offsets: [f32; 4], dbox: &[f32; 4], scale_xy: f32, scale_wh: f32) -> [f32; 4] {
    let cx = scale_xy * offsets[0] * dbox[2] + dbox[0];
    let cy = scale_xy * offsets[1] * dbox[3] + dbox[1];
    let w = (scale_wh * offsets[2]).exp() * dbox[2];
    let h = (scale_wh * offsets[3]).exp() * dbox[3];
    [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
}

/// One decoded detection, normalised to the network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    /// Class index 1..=80 (0 is background and never returned).
    pub label: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// Parameters of `decode_single`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeParams {
    /// Scores must be strictly greater than this (0.05).
    pub min_score: f32,
    /// Candidates kept per class before NMS (200).
    pub per_class_top: usize,
    /// IoU at or above which a box is suppressed (0.5 in every NVIDIA caller).
    pub nms_iou: f32,
    /// Detections kept overall (the highest scores).
    pub max_output: usize,
}

impl Default for DecodeParams {
    fn default() -> Self {
        DecodeParams { min_score: 0.05, per_class_top: 200, nms_iou: 0.5, max_output: 200 }
    }
}

/// Greedy NMS over candidates already sorted by descending score: keeps the first, drops the
/// others with IoU ≥ `iou_threshold`, repeats. Returns kept indices in descending score order.
pub fn nms(boxes: &[[f32; 4]], iou_threshold: f32) -> Vec<usize> {
    // A box is dropped by the first kept box it overlaps enough; marking it instead of rebuilding
    // the list of survivors after every kept box gives the same set without the allocations.
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for best in 0..boxes.len() {
        if suppressed[best] {
            continue;
        }
        keep.push(best);
        for (i, s) in suppressed.iter_mut().enumerate().skip(best + 1) {
            if !*s && iou(&boxes[best], &boxes[i]) >= iou_threshold {
                *s = true;
            }
        }
    }
    keep
}

/// NVIDIA `decode_single` for one image: per class 1..C, scores > min_score, top `per_class_top`,
/// greedy NMS, then the overall top `max_output`, returned in **descending** score order (the
/// reference returns ascending; the set is the same).
///
/// `boxes` are decoded `ltrb` boxes, `scores[c * boxes.len() + b]` the softmax probabilities:
/// class-major, the network's own C×B layout, so that each class's pass reads contiguous memory
/// (box-major, the 80 passes over an image's 2.8 MB of scores were strided and memory-bound).
pub fn decode_single(boxes: &[[f32; 4]], scores: &[f32], num_classes: usize, p: &DecodeParams) -> Vec<RawDetection> {
    let nb = boxes.len();
    decode_candidates(boxes, num_classes, p, |label| {
        scores[label * nb..(label + 1) * nb].iter().copied().zip(0..nb).collect()
    })
}

/// [`decode_single`] from each class's candidate (score, box index) pairs, in any order: all of
/// the class's boxes, or only its `per_class_top` best (what a GPU run copies back), which gives
/// the same detections.
pub fn decode_candidates(
    boxes: &[[f32; 4]],
    num_classes: usize,
    p: &DecodeParams,
    mut candidates: impl FnMut(usize) -> Vec<(f32, usize)>,
) -> Vec<RawDetection> {
    let mut out = Vec::new();
    for label in 1..num_classes {
        let mut cand = candidates(label);
        cand.retain(|(s, _)| *s > p.min_score);
        cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        cand.truncate(p.per_class_top);
        let cand_boxes: Vec<[f32; 4]> = cand.iter().map(|&(_, b)| boxes[b]).collect();
        for k in nms(&cand_boxes, p.nms_iou) {
            out.push(RawDetection { label, score: cand[k].0, bbox: cand_boxes[k] });
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.label.cmp(&b.label)));
    out.truncate(p.max_output);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: [f32; 4], b: [f32; 4], tol: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn ssd300_has_8732_boxes_with_the_documented_spot_values() {
        let cfg = SsdConfig::ssd300();
        let d = cfg.default_boxes_xywh();
        assert_eq!(d.len(), 8732);
        assert_eq!(cfg.num_defaults(), [4, 6, 6, 6, 4, 4]);
        let t = 1e-5;
        assert!(close(d[0], [0.013333, 0.013333, 0.07, 0.07], t), "{:?}", d[0]);
        assert!((d[1][0] - 0.04).abs() < t && (d[1][1] - 0.013333).abs() < t);
        assert!((d[37][0] - 1.0).abs() < t, "cx of #37 is clamped: {:?}", d[37]);
        assert!((d[38][0] - 0.013333).abs() < t && (d[38][1] - 0.04).abs() < t);
        assert!(close(d[1444], [0.013333, 0.013333, 0.10247, 0.10247], t), "{:?}", d[1444]);
        assert!(close(d[5776], [0.026667, 0.026667, 0.15, 0.15], t), "{:?}", d[5776]);
        assert!(close(d[8731], [0.5, 0.5, 0.615183, 1.0], t), "{:?}", d[8731]);
        assert!(d.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn map_start_columns_match_the_head_layout() {
        let cfg = SsdConfig::ssd300();
        let mut start = 0;
        let mut starts = vec![];
        for (f, n) in cfg.feat_size.iter().zip(cfg.num_defaults()) {
            starts.push(start);
            start += f * f * n;
        }
        assert_eq!(starts, vec![0, 5776, 7942, 8542, 8692, 8728]);
    }

    #[test]
    fn decode_formula_by_hand() {
        let dbox = [0.5, 0.4, 0.2, 0.1];
        // tx=1 moves cx by 0.1*1*0.2 = 0.02; tw = ln(2)/0.2 doubles w.
        let b = decode_box([1.0, -2.0, 2f32.ln() / 0.2, 0.0], &dbox, 0.1, 0.2);
        let (cx, cy, w, h) = (0.52, 0.4 - 0.02, 0.4, 0.1);
        assert!(close(b, [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], 1e-6), "{b:?}");
    }

    #[test]
    fn iou_by_hand() {
        let a = [0.0, 0.0, 2.0, 2.0];
        let b = [1.0, 1.0, 3.0, 3.0];
        assert!((iou(&a, &b) - 1.0 / 7.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[5.0, 5.0, 6.0, 6.0]), 0.0);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn nms_suppresses_at_and_above_the_threshold() {
        // b overlaps a with IoU exactly 0.5 (suppressed: >= criteria); c with 1/3 (kept).
        let a = [0.0, 0.0, 3.0, 1.0];
        let b = [1.0, 0.0, 4.0, 1.0]; // inter 2, union 4 -> 0.5
        let c = [1.5, 0.0, 4.5, 1.0]; // with a: inter 1.5, union 4.5 -> 1/3
        assert!((iou(&a, &b) - 0.5).abs() < 1e-7);
        assert_eq!(nms(&[a, b], 0.5), vec![0]);
        assert_eq!(nms(&[a, c], 0.5), vec![0, 1]);
        // c is kept after a even though b (suppressed) overlaps it more.
        assert_eq!(nms(&[a, b, c], 0.5), vec![0, 2]);
        assert!(nms(&[], 0.5).is_empty());
    }

    #[test]
    fn decode_single_is_per_class_thresholded_and_descending() {
        let boxes = vec![[0.0, 0.0, 0.5, 0.5], [0.01, 0.0, 0.51, 0.5], [0.6, 0.6, 0.9, 0.9]];
        // 3 classes, class-major: box 0 is A 0.8; box 1 A 0.7 (suppressed by box 0) and B 0.1;
        // box 2 A exactly 0.05 (dropped: strict) and B 0.45.
        let scores = vec![
            0.1, 0.2, 0.5, // background
            0.8, 0.7, 0.05, // A
            0.1, 0.1, 0.45, // B
        ];
        let d = decode_single(&boxes, &scores, 3, &DecodeParams::default());
        let got: Vec<(usize, f32)> = d.iter().map(|d| (d.label, d.score)).collect();
        assert_eq!(got, vec![(1, 0.8), (2, 0.45), (2, 0.1)]);
        let top1 = decode_single(&boxes, &scores, 3, &DecodeParams { max_output: 1, ..Default::default() });
        assert_eq!(top1.len(), 1);
        assert_eq!(top1[0].label, 1);
    }

    #[test]
    fn nan_scores_never_panic_and_are_dropped() {
        let boxes = vec![[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]];
        let scores = vec![0.0, 0.0, f32::NAN, 0.9]; // class-major: background, then A
        let d = decode_single(&boxes, &scores, 2, &DecodeParams::default());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].score, 0.9);
    }

    fn arb_box() -> impl Strategy<Value = [f32; 4]> {
        (0f32..1.0, 0f32..1.0, 0.001f32..0.5, 0.001f32..0.5).prop_map(|(x, y, w, h)| [x, y, x + w, y + h])
    }

    proptest! {
        #[test]
        fn iou_is_symmetric_and_bounded(a in arb_box(), b in arb_box()) {
            let (ab, ba) = (iou(&a, &b), iou(&b, &a));
            prop_assert!((ab - ba).abs() < 1e-6);
            prop_assert!((0.0..=1.0 + 1e-6).contains(&ab));
        }

        #[test]
        fn nms_is_idempotent_and_leaves_no_overlap(boxes in prop::collection::vec(arb_box(), 0..40)) {
            let keep = nms(&boxes, 0.5);
            let kept: Vec<[f32; 4]> = keep.iter().map(|&i| boxes[i]).collect();
            prop_assert_eq!(nms(&kept, 0.5), (0..kept.len()).collect::<Vec<_>>());
            for i in 0..kept.len() {
                for j in i + 1..kept.len() {
                    prop_assert!(iou(&kept[i], &kept[j]) < 0.5);
                }
            }
            prop_assert!(keep.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

/// Converts centre form `[cx, cy, w, h]` to `[x1, y1, x2, y2]`.
pub fn xywh_to_ltrb(b: &[f32; 4]) -> [f32; 4] {
    [b[0] - 0.5 * b[2], b[1] - 0.5 * b[3], b[0] + 0.5 * b[2], b[1] + 0.5 * b[3]]
}

/// NVIDIA `Encoder.encode` + the target transform of its `Loss`: matches default boxes to
/// ground truth and returns, per default box, the regression target `[tx, ty, tw, th]` and the
/// label (0 = background).
///
/// Each default box takes the ground-truth box it overlaps most if that IoU exceeds `criteria`
/// (0.5); each ground-truth box is additionally forced onto its best default box. Unmatched boxes
/// regress to themselves (zero targets), as in the reference.
pub fn encode_targets(
    gt: &[[f32; 4]],
    labels: &[i64],
    dboxes_xywh: &[[f32; 4]],
    cfg: &SsdConfig,
    criteria: f32,
) -> (Vec<[f32; 4]>, Vec<i64>) {
    let nb = dboxes_xywh.len();
    let dltrb: Vec<[f32; 4]> = dboxes_xywh.iter().map(xywh_to_ltrb).collect();
    let mut best_iou = vec![0f32; nb];
    let mut best_gt = vec![0usize; nb];
    let mut forced = vec![false; nb];
    let mut best_of_gt = Vec::with_capacity(gt.len());
    for (g, gb) in gt.iter().enumerate() {
        let mut best = (f32::MIN, 0usize);
        for (d, db) in dltrb.iter().enumerate() {
            let v = iou(gb, db);
            if v > best_iou[d] {
                best_iou[d] = v;
                best_gt[d] = g;
            }
            if v > best.0 {
                best = (v, d);
            }
        }
        best_of_gt.push(best.1);
    }
    // Forced matches override the per-box maximum; a later ground truth wins a contested default
    // box, as `best_dbox_idx[best_bbox_idx[idx]] = idx` does.
    for (g, &d) in best_of_gt.iter().enumerate() {
        forced[d] = true;
        best_gt[d] = g;
    }
    let mut loc = vec![[0f32; 4]; nb];
    let mut lab = vec![0i64; nb];
    for d in 0..nb {
        if !(forced[d] || best_iou[d] > criteria) || gt.is_empty() {
            continue;
        }
        let g = gt[best_gt[d]];
        let (gcx, gcy, gw, gh) = ((g[0] + g[2]) / 2.0, (g[1] + g[3]) / 2.0, g[2] - g[0], g[3] - g[1]);
        let db = &dboxes_xywh[d];
        lab[d] = labels[best_gt[d]];
        loc[d] = [
            (gcx - db[0]) / db[2] / cfg.scale_xy,
            (gcy - db[1]) / db[3] / cfg.scale_xy,
            (gw.max(1e-6) / db[2]).ln() / cfg.scale_wh,
            (gh.max(1e-6) / db[3]).ln() / cfg.scale_wh,
        ];
    }
    (loc, lab)
}

#[cfg(test)]
mod encode_tests {
    use super::*;

    #[test]
    fn encoding_inverts_decoding_and_forces_a_match_per_box() {
        let cfg = SsdConfig::ssd300();
        let d = cfg.default_boxes_xywh();
        // One box equal to default box #5776 (19-map, 0.15 square at (0.0267, 0.0267)) and one
        // tiny box that overlaps nothing above 0.5 but must still be matched somewhere.
        let big = xywh_to_ltrb(&[0.5, 0.5, 0.4, 0.3]);
        let tiny = [0.9, 0.9, 0.905, 0.905];
        let (loc, lab) = encode_targets(&[big, tiny], &[3, 7], &d, &cfg, 0.5);
        assert!(lab.iter().filter(|&&l| l == 3).count() >= 2, "the big box matches several default boxes");
        assert_eq!(lab.iter().filter(|&&l| l == 7).count(), 1, "the tiny box is forced onto its best default box");
        for (i, &l) in lab.iter().enumerate() {
            if l == 0 {
                assert_eq!(loc[i], [0.0; 4]);
                continue;
            }
            let back = decode_box(loc[i], &d[i], cfg.scale_xy, cfg.scale_wh);
            let want = if l == 3 { big } else { tiny };
            assert!(back.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4), "{back:?} vs {want:?}");
        }
        let (_, none) = encode_targets(&[], &[], &d, &cfg, 0.5);
        assert!(none.iter().all(|&l| l == 0));
    }
}
