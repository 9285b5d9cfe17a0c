//! `boxwalk explain`: what the models are made of, shown by the tool itself.
//! - `layers`: the module tree with every weighted layer's shape, and which layers make the
//!   "18" of ResNet-18 (the "50" of ResNet-50; what is left of them in the SSD).
//! - `kernels`: the kernels of the k-th convolution (numbered as `layers` numbers them) as a
//!   tensor file and an image grid.
//! - `batchnorm`: a BatchNorm layer as the per-channel affine map it is, in train mode (this
//!   image's batch statistics) and in eval mode (running statistics), checked against the
//!   layer's real output, and how far the two modes move the classifier's top-5.

use crate::models::{self, resnet, ssd, ModelCard, WeightsError};
use crate::preprocess;
use image::{Rgb, RgbImage};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tch::nn::{self};
use tch::{Device, Kind, Tensor};

const BN_EPS: f64 = 1e-5;

/// Why an explanation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("unknown model `{0}` (resnet18, resnet50 or ssd300)")]
    UnknownModel(String),
    #[error("--layer {layer}: ResNet-18 has convolutions 1 to {count}")]
    NoConvolution { layer: usize, count: usize },
    #[error("--layer {layer}: not a BatchNorm layer of ResNet-18 (these are: {known})")]
    NotBatchNorm { layer: String, known: String },
    #[error("the layer was not reached")]
    NotReached,
}

/// The architectures `explain` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    ResNet18,
    ResNet50,
    Ssd300,
}

impl Arch {
    pub fn parse(s: &str) -> Result<Arch, ExplainError> {
        match s {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet50" => Ok(Arch::ResNet50),
            "ssd300" | "ssd" => Ok(Arch::Ssd300),
            other => Err(ExplainError::UnknownModel(other.into())),
        }
    }
}

/// One row of the layer listing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Layer {
    /// Module path (the state-dict key without `.weight`).
    pub key: String,
    /// `conv`, `linear`, `batchnorm`, or `group` for a container.
    pub kind: String,
    pub shape: Vec<i64>,
    /// Tree depth, for indentation.
    pub depth: usize,
    /// 1-based number among the convolutions (what `explain kernels --layer` takes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv_index: Option<usize>,
    /// 1-based position among the layers that the model's name counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted: Option<usize>,
    pub note: String,
}

/// The listing and the totals it explains.
#[derive(Debug, Serialize)]
pub struct Layers {
    pub model: String,
    pub layers: Vec<Layer>,
    pub counted: usize,
    pub convolutions: usize,
    pub downsample_convolutions: usize,
    pub linear: usize,
    pub summary: String,
}

struct Lister<'a> {
    vars: &'a HashMap<String, Tensor>,
    rows: Vec<Layer>,
    convs: usize,
    counted: usize,
}

impl Lister<'_> {
    fn shape(&self, key: &str) -> Vec<i64> {
        self.vars.get(&format!("{key}.weight")).map(Tensor::size).unwrap_or_default()
    }

    fn group(&mut self, key: &str, depth: usize, note: &str) {
        let row = Layer {
            key: key.into(),
            kind: "group".into(),
            shape: vec![],
            depth,
            conv_index: None,
            counted: None,
            note: note.into(),
        };
        self.rows.push(row);
    }

    /// A weighted layer; `counts` says whether the model's name counts it.
    fn weighted(&mut self, key: &str, depth: usize, counts: bool, note: &str) {
        let shape = self.shape(key);
        let kind = if shape.len() == 4 { "conv" } else { "linear" };
        let conv_index = (kind == "conv").then(|| {
            self.convs += 1;
            self.convs
        });
        let counted = counts.then(|| {
            self.counted += 1;
            self.counted
        });
        let row = Layer { key: key.into(), kind: kind.into(), shape, depth, conv_index, counted, note: note.into() };
        self.rows.push(row);
    }

    fn bn(&mut self, key: &str, depth: usize) {
        let shape = self.shape(key);
        let note = "not counted: a per-channel scale and shift".to_string();
        let row =
            Layer { key: key.into(), kind: "batchnorm".into(), shape, depth, conv_index: None, counted: None, note };
        self.rows.push(row);
    }

    fn stem(&mut self, conv: &str, bn: &str) {
        self.weighted(conv, 1, true, "7×7 stride 2");
        self.bn(bn, 1);
        self.group("relu, maxpool 3×3/2", 1, "not counted: no weights");
    }

    fn stage(&mut self, prefix: &str, block: resnet::Block, blocks: usize) {
        self.group(prefix, 1, "");
        let convs = if block == resnet::Block::Basic { 2 } else { 3 };
        for b in 0..blocks {
            let p = format!("{prefix}.{b}");
            self.group(&p, 2, if convs == 2 { "BasicBlock" } else { "Bottleneck" });
            for k in 1..=convs {
                self.weighted(&format!("{p}.conv{k}"), 3, true, "");
                self.bn(&format!("{p}.bn{k}"), 3);
            }
            if self.vars.contains_key(&format!("{p}.downsample.0.weight")) {
                self.weighted(
                    &format!("{p}.downsample.0"),
                    3,
                    false,
                    "not counted: 1×1 projection on the shortcut, parallel to the block, adds no depth",
                );
                self.bn(&format!("{p}.downsample.1"), 3);
            }
        }
    }
}

/// The weighted layers of `arch`, in forward order, from the model definition itself.
pub fn layers(arch: Arch) -> Layers {
    let vs = nn::VarStore::new(Device::Cpu);
    let (name, block, stages): (&str, resnet::Block, Vec<(String, usize)>) = match arch {
        Arch::ResNet18 => {
            let _m = resnet::resnet18(&vs.root(), 1000, 64);
            ("resnet18", resnet::Block::Basic, (1..=4).map(|i| (format!("layer{i}"), 2)).collect())
        }
        Arch::ResNet50 => {
            let _m = resnet::resnet50(&vs.root(), 1000);
            let n = [3, 4, 6, 3];
            ("resnet50", resnet::Block::Bottleneck, (1..=4).map(|i| (format!("layer{i}"), n[i - 1])).collect())
        }
        Arch::Ssd300 => {
            let _m = ssd::Ssd::new(&vs.root(), &ssd::SsdArch::ssd300_resnet50());
            let fe = "feature_extractor.feature_extractor";
            let n = [3, 4, 6];
            ("ssd300", resnet::Block::Bottleneck, (4..=6).map(|i| (format!("{fe}.{i}"), n[i - 4])).collect())
        }
    };
    let vars = vs.variables();
    let mut l = Lister { vars: &vars, rows: vec![], convs: 0, counted: 0 };
    l.group(name, 0, "");
    if arch == Arch::Ssd300 {
        let fe = "feature_extractor.feature_extractor";
        l.group(fe, 0, "ResNet-50 up to layer3 (layer3's stride set to 1); layer4, avgpool and fc removed");
        l.stem(&format!("{fe}.0"), &format!("{fe}.1"));
    } else {
        l.stem("conv1", "bn1");
    }
    for (p, n) in &stages {
        l.stage(p, block, *n);
    }
    let backbone_counted = l.counted;
    if arch == Arch::Ssd300 {
        l.group("additional_blocks", 0, "five extra blocks, each 1×1 then 3×3, making the 19², 10², 5², 3², 1² maps");
        for i in 0..5 {
            l.weighted(&format!("additional_blocks.{i}.0"), 1, true, "");
            l.bn(&format!("additional_blocks.{i}.1"), 1);
            l.weighted(&format!("additional_blocks.{i}.3"), 1, true, "");
            l.bn(&format!("additional_blocks.{i}.4"), 1);
        }
        for head in ["loc", "conf"] {
            l.group(head, 0, "3×3 heads on the six maps: side outputs, not on the path, not counted");
            for i in 0..6 {
                l.weighted(&format!("{head}.{i}"), 1, false, "");
            }
        }
    } else {
        l.group("avgpool", 0, "not counted: no weights");
        l.weighted("fc", 0, true, "the classifier layer");
    }
    let convolutions = l.rows.iter().filter(|r| r.kind == "conv").count();
    let downsample = l.rows.iter().filter(|r| r.key.contains("downsample") && r.kind == "conv").count();
    let linear = l.rows.iter().filter(|r| r.kind == "linear").count();
    let counted = l.counted;
    let summary = match arch {
        Arch::Ssd300 => format!(
            "SSD300 keeps {backbone_counted} of ResNet-50's 50 counted layers (layer4's 9 convolutions and fc are \
             gone), adds {} convolutions in the extra blocks ({counted} on the deepest path) and 12 head \
             convolutions; {downsample} downsample convolutions are not counted",
            counted - backbone_counted
        ),
        _ => format!(
            "{name}: {counted} = {} convolutions + {linear} fully-connected on the main path; the {downsample} \
             downsample 1×1 convolutions sit on shortcuts, and BatchNorm, ReLU and pooling layers are not counted",
            counted - linear
        ),
    };
    Layers {
        model: name.into(),
        counted,
        convolutions,
        downsample_convolutions: downsample,
        linear,
        summary,
        layers: l.rows,
    }
}

/// Text rendering of the listing.
pub fn layers_text(l: &Layers) -> String {
    let mut s = format!("{}\n\n", l.summary);
    for r in &l.layers {
        let indent = "  ".repeat(r.depth);
        let conv = r.conv_index.map(|c| format!("conv #{c}")).unwrap_or_default();
        let counted = r.counted.map(|k| format!("counted {k}")).unwrap_or_default();
        let num = format!("{conv:<9} {counted:<11}");
        let shape = if r.shape.is_empty() { String::new() } else { format!("{:?}", r.shape) };
        let line = format!("{num}  {indent}{:<40} {:<9} {:<18} {}", r.key, r.kind, shape, r.note);
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// A ResNet-18's variables as loaded from `file` (architecture width from its model card).
pub fn load_resnet18(file: &Path) -> Result<nn::VarStore, WeightsError> {
    let classes = models::fc_classes(file)?;
    let card: Option<ModelCard> = models::card_for(file, "classifier")?;
    let base = 64 / card.map_or(1, |c| c.width_divisor.max(1));
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _m = resnet::resnet18(&vs.root(), classes, base);
    models::load_strict(&mut vs, file, "ResNet-18 classifier")?;
    vs.freeze();
    Ok(vs)
}

/// The k-th convolution (1-based, as `layers` numbers them) of ResNet-18.
pub fn conv_key(k: usize) -> Result<String, ExplainError> {
    let l = layers(Arch::ResNet18);
    l.layers
        .iter()
        .find(|r| r.conv_index == Some(k))
        .map(|r| r.key.clone())
        .ok_or(ExplainError::NoConvolution { layer: k, count: l.convolutions })
}

/// Per-kernel min–max normalised grid: RGB tiles for 3-input-channel kernels, else one grey tile
/// per (output, input) channel pair (rows: outputs, at most 64; columns: inputs, at most 64).
pub fn kernel_grid(w: &Tensor, tile: u32) -> RgbImage {
    let size = w.size();
    let (o, i, kh, kw) = (size[0] as usize, size[1] as usize, size[2] as usize, size[3] as usize);
    let data = Vec::<f32>::try_from(w.to_kind(Kind::Float).contiguous().view([-1])).unwrap_or_default();
    let at = |a: usize, b: usize, y: usize, x: usize| data[((a * i + b) * kh + y) * kw + x];
    let gap = 2u32;
    let (cell_w, cell_h) = (kw as u32 * tile + gap, kh as u32 * tile + gap);
    let rgb = i == 3;
    let (rows, cols) = if rgb {
        let cols = (o as f64).sqrt().ceil() as usize;
        (o.div_ceil(cols), cols)
    } else {
        (o.min(64), i.min(64))
    };
    let mut img = RgbImage::from_pixel(cols as u32 * cell_w + gap, rows as u32 * cell_h + gap, Rgb([40, 40, 40]));
    let shown = if rgb { o } else { rows };
    for a in 0..shown {
        let vals = &data[a * i * kh * kw..(a + 1) * i * kh * kw];
        let (lo, hi) = vals.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let norm = |v: f32| if hi > lo { ((v - lo) / (hi - lo) * 255.0).round() as u8 } else { 128 };
        let tiles: Vec<(usize, usize, Option<usize>)> =
            if rgb { vec![(a / cols, a % cols, None)] } else { (0..cols).map(|b| (a, b, Some(b))).collect() };
        for (row, col, channel) in tiles {
            for y in 0..kh {
                for x in 0..kw {
                    let px = match channel {
                        None => Rgb([norm(at(a, 0, y, x)), norm(at(a, 1, y, x)), norm(at(a, 2, y, x))]),
                        Some(b) => {
                            let g = norm(at(a, b, y, x));
                            Rgb([g, g, g])
                        }
                    };
                    for dy in 0..tile {
                        for dx in 0..tile {
                            let px_x = gap + col as u32 * cell_w + x as u32 * tile + dx;
                            let px_y = gap + row as u32 * cell_h + y as u32 * tile + dy;
                            img.put_pixel(px_x, px_y, px);
                        }
                    }
                }
            }
        }
    }
    img
}

/// The BatchNorm layer's numbers for one image.
#[derive(Debug, Serialize)]
pub struct BnChannel {
    pub channel: usize,
    pub train_slope: f64,
    pub train_intercept: f64,
    pub eval_slope: f64,
    pub eval_intercept: f64,
}

#[derive(Debug, Serialize)]
pub struct BnReport {
    pub layer: String,
    pub eps: f64,
    pub channels: Vec<BnChannel>,
    /// max |slope·x + intercept − y| over every element, against the layer's real output.
    pub max_error_train: f64,
    pub max_error_eval: f64,
    /// The classifier's top-5 with every BatchNorm in eval mode and in train mode (statistics of
    /// this one image), as (label index, probability).
    pub top5_eval: Vec<(i64, f64)>,
    pub top5_train: Vec<(i64, f64)>,
    /// Largest change of any class probability between the modes.
    pub max_prob_change: f64,
    #[serde(skip)]
    pub input: Tensor,
    #[serde(skip)]
    pub output_train: Tensor,
    #[serde(skip)]
    pub output_eval: Tensor,
}

/// ResNet-18's forward written out op by op over its variables, with every BatchNorm in train or
/// eval mode, capturing the input of the BatchNorm `capture`.
fn traced_forward(v: &HashMap<String, Tensor>, x: &Tensor, train: bool, capture: &str) -> (Tensor, Option<Tensor>) {
    let mut captured = None;
    let mut bn = |key: &str, x: &Tensor| -> Tensor {
        if key == capture {
            captured = Some(x.shallow_clone());
        }
        batch_norm(v, key, x, train)
    };
    let conv = |key: &str, x: &Tensor, stride: i64, pad: i64| {
        x.conv2d(&v[&format!("{key}.weight")], None::<&Tensor>, [stride], [pad], [1], 1)
    };
    let mut y = bn("bn1", &conv("conv1", x, 2, 3)).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
    for stage in 1..=4 {
        for b in 0..2 {
            let p = format!("layer{stage}.{b}");
            let s = if stage > 1 && b == 0 { 2 } else { 1 };
            let h = bn(&format!("{p}.bn1"), &conv(&format!("{p}.conv1"), &y, s, 1)).relu();
            let h = bn(&format!("{p}.bn2"), &conv(&format!("{p}.conv2"), &h, 1, 1));
            let short = if v.contains_key(&format!("{p}.downsample.0.weight")) {
                bn(&format!("{p}.downsample.1"), &conv(&format!("{p}.downsample.0"), &y, s, 0))
            } else {
                y.shallow_clone()
            };
            y = (h + short).relu();
        }
    }
    let logits = y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).linear(&v["fc.weight"], Some(&v["fc.bias"]));
    (logits, captured)
}

/// torch's batch_norm on copies of the running statistics (train mode would update them).
fn batch_norm(v: &HashMap<String, Tensor>, key: &str, x: &Tensor, train: bool) -> Tensor {
    let t = |s: &str| v[&format!("{key}.{s}")].copy();
    x.batch_norm(
        Some(&t("weight")),
        Some(&t("bias")),
        Some(&t("running_mean")),
        Some(&t("running_var")),
        train,
        0.1,
        BN_EPS,
        false,
    )
}

fn top5(logits: &Tensor) -> (Vec<(i64, f64)>, Tensor) {
    let p = logits.softmax(1, Kind::Float).get(0);
    let (vals, idx) = p.topk(5, 0, true, true);
    let vals = Vec::<f64>::try_from(vals.to_kind(Kind::Double)).unwrap_or_default();
    let idx = Vec::<i64>::try_from(idx).unwrap_or_default();
    (idx.into_iter().zip(vals).collect(), p)
}

/// Explains the BatchNorm `layer` of the ResNet-18 in `vs` on `image` (decoded RGB).
pub fn batchnorm(vs: &nn::VarStore, image: &RgbImage, layer: &str) -> Result<BnReport, ExplainError> {
    let v = vs.variables();
    if !v.contains_key(&format!("{layer}.running_mean")) {
        let mut names: Vec<&str> = v.keys().filter_map(|k| k.strip_suffix(".running_mean")).collect();
        names.sort();
        return Err(ExplainError::NotBatchNorm { layer: layer.into(), known: names.join(", ") });
    }
    let _guard = tch::no_grad_guard();
    let x = preprocess::classifier_input(&preprocess::upload(image, Device::Cpu));
    let (logits_eval, input) = traced_forward(&v, &x, false, layer);
    let (logits_train, _) = traced_forward(&v, &x, true, layer);
    let input = input.ok_or(ExplainError::NotReached)?;
    let f = |s: &str| v[&format!("{layer}.{s}")].to_kind(Kind::Double);
    let xd = input.to_kind(Kind::Double);
    let mean = xd.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double);
    let var = xd.var_correction([0i64, 2, 3].as_slice(), tch::Scalar::int(0), false);
    let train_slope = f("weight") / (var + BN_EPS).sqrt();
    let train_intercept = f("bias") - &mean * &train_slope;
    let eval_slope = f("weight") / (f("running_var") + BN_EPS).sqrt();
    let eval_intercept = f("bias") - f("running_mean") * &eval_slope;
    let output_train = batch_norm(&v, layer, &input, true);
    let output_eval = batch_norm(&v, layer, &input, false);
    let err = |slope: &Tensor, icpt: &Tensor, y: &Tensor| {
        let pred = &xd * slope.view([1, -1, 1, 1]) + icpt.view([1, -1, 1, 1]);
        (pred - y.to_kind(Kind::Double)).abs().max().double_value(&[])
    };
    let max_error_train = err(&train_slope, &train_intercept, &output_train);
    let max_error_eval = err(&eval_slope, &eval_intercept, &output_eval);
    let list = |t: &Tensor| Vec::<f64>::try_from(t).unwrap_or_default();
    let (ts, ti, es, ei) = (list(&train_slope), list(&train_intercept), list(&eval_slope), list(&eval_intercept));
    let channels = (0..ts.len())
        .map(|c| BnChannel {
            channel: c,
            train_slope: ts[c],
            train_intercept: ti[c],
            eval_slope: es[c],
            eval_intercept: ei[c],
        })
        .collect();
    let (top5_eval, pe) = top5(&logits_eval);
    let (top5_train, pt) = top5(&logits_train);
    let max_prob_change = (pe - pt).abs().max().double_value(&[]);
    Ok(BnReport {
        layer: layer.into(),
        eps: BN_EPS,
        channels,
        max_error_train,
        max_error_eval,
        top5_eval,
        top5_train,
        max_prob_change,
        input,
        output_train,
        output_eval,
    })
}

/// Scatter plots of output against input for the first `n` channels: train mode on the left,
/// eval mode on the right, each channel in its class colour with its affine line drawn over.
pub fn batchnorm_plot(r: &BnReport, n: usize) -> RgbImage {
    let (pw, ph, m) = (420u32, 320u32, 30u32);
    let mut img = RgbImage::from_pixel(2 * pw, ph, Rgb([255, 255, 255]));
    let n = n.min(r.channels.len());
    let take = |t: &Tensor, c: usize| -> Vec<f64> {
        let v = Vec::<f64>::try_from(t.select(1, c as i64).to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default();
        let step = (v.len() / 400).max(1);
        v.into_iter().step_by(step).collect()
    };
    for (panel, out) in [(0u32, &r.output_train), (1u32, &r.output_eval)] {
        let pts: Vec<(usize, Vec<f64>, Vec<f64>)> = (0..n).map(|c| (c, take(&r.input, c), take(out, c))).collect();
        let all_x = pts.iter().flat_map(|p| p.1.iter().copied());
        let all_y = pts.iter().flat_map(|p| p.2.iter().copied());
        let bounds = |it: &mut dyn Iterator<Item = f64>| {
            it.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)))
        };
        let (x0, x1) = bounds(&mut all_x.into_iter());
        let (y0, y1) = bounds(&mut all_y.into_iter());
        let sx = |x: f64| panel * pw + m + ((x - x0) / (x1 - x0).max(1e-9) * f64::from(pw - 2 * m)) as u32;
        let sy = |y: f64| ph - m - ((y - y0) / (y1 - y0).max(1e-9) * f64::from(ph - 2 * m)) as u32;
        let axis = Rgb([120, 120, 120]);
        for x in panel * pw + m..(panel + 1) * pw - m {
            img.put_pixel(x, ph - m, axis);
        }
        for y in m..ph - m {
            img.put_pixel(panel * pw + m, y, axis);
        }
        for (c, xs, ys) in &pts {
            let colour = crate::outputs::annotate::class_colour(c + 1);
            for (&x, &y) in xs.iter().zip(ys) {
                let (px, py) = (sx(x), sy(y));
                if px + 1 < img.width() && py + 1 < img.height() {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        img.put_pixel(px + dx, py + dy, colour);
                    }
                }
            }
            let ch = &r.channels[*c];
            let (a, b) =
                if panel == 0 { (ch.train_slope, ch.train_intercept) } else { (ch.eval_slope, ch.eval_intercept) };
            for i in 0..200 {
                let x = x0 + (x1 - x0) * f64::from(i) / 199.0;
                let y = a * x + b;
                if (y0..=y1).contains(&y) {
                    img.put_pixel(sx(x).min(img.width() - 1), sy(y).min(ph - 1), Rgb([0, 0, 0]));
                }
            }
        }
        let font = crate::outputs::annotate::font();
        let title = if panel == 0 { "train mode (this image's statistics)" } else { "eval mode (running statistics)" };
        imageproc::drawing::draw_text_mut(&mut img, Rgb([0, 0, 0]), (panel * pw + m) as i32, 6, 15.0, font, title);
        let axes = "x: BatchNorm input, y: output; lines: slope·x + intercept";
        imageproc::drawing::draw_text_mut(
            &mut img,
            axis,
            (panel * pw + m) as i32,
            (ph - m + 8) as i32,
            12.0,
            font,
            axes,
        );
    }
    img
}
