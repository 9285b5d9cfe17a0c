//! The two models boxwalk runs, each owning its `VarStore`: the SSD300 [`Detector`] and the
//! ResNet-18 [`Classifier`]. Both load weights strictly from `.safetensors` files keyed by the
//! official state-dict names, always run in eval mode under a no-grad guard, and hide the
//! train flag from every caller.

pub mod boxes;
pub mod card;
pub mod frozen;
pub mod labels;
pub mod resnet;
pub mod ssd;
mod strict;

pub use card::{ClassInfo, ModelCard};
pub use strict::{load_strict, WeightsError};

use boxes::{DecodeParams, RawDetection, SsdConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Where a model runs and in which precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub device: Device,
    /// fp16 compute (CUDA only): BatchNorm folded in fp32, then every weight cast to fp16.
    /// Without it a GPU computes in IEEE fp32 ([`crate::sys::tf32`]).
    pub half: bool,
}

impl Placement {
    /// Float kind of the network input.
    pub fn input_kind(&self) -> Kind {
        if self.half {
            Kind::Half
        } else {
            Kind::Float
        }
    }
}

/// Switches TF32 off for the process ([`crate::sys::tf32`]), once; warns once if this libtorch lacks
/// the switches.
fn gpu_fp32_is_ieee() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        if !crate::sys::tf32::ieee_fp32() {
            eprintln!("boxwalk: warning: cannot switch TF32 off in this libtorch: fp32 on the GPU may round like TF32");
        }
    });
}

/// Builds a model in a fresh CPU `VarStore`, loads `file` strictly, freezes it, and turns the
/// variables into the inference form `freeze` makes (on the placement's device and kind).
fn build<M, F>(
    file: &Path,
    model: &str,
    place: Placement,
    make: impl FnOnce(&nn::Path) -> M,
    freeze: impl FnOnce(&frozen::Vars, frozen::Target) -> F,
) -> Result<F, WeightsError> {
    if place.device != Device::Cpu {
        gpu_fp32_is_ieee();
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = make(&vs.root());
    load_strict(&mut vs, file, model)?;
    vs.freeze();
    let _guard = tch::no_grad_guard();
    Ok(freeze(&vs.variables(), frozen::Target { device: place.device, kind: place.input_kind() }))
}

/// Raw SSD outputs on the CPU, f32: `locs` N×4×B offsets and `confs` N×C×B logits.
pub struct RawSsd {
    pub locs: Tensor,
    pub confs: Tensor,
}

/// NVIDIA SSD300 with its default boxes and decoder.
pub struct Detector {
    net: frozen::Ssd,
    pub arch: ssd::SsdArch,
    /// Label L (1-based) is `classes[L-1]`.
    pub classes: Vec<ClassInfo>,
    pub card: Option<ModelCard>,
    pub config: SsdConfig,
    decoder: BoxDecoder,
    pub place: Placement,
    pub file: PathBuf,
}

/// The card beside `file`, checked to be for `role`.
pub(crate) fn card_for(file: &Path, role: &str) -> Result<Option<ModelCard>, WeightsError> {
    let card = ModelCard::for_weights(file)?;
    match card {
        Some(c) if c.role != role => Err(WeightsError::Other {
            file: file.to_path_buf(),
            reason: format!("its model card says it is a {}, not a {role}", c.role),
        }),
        c => Ok(c),
    }
}

impl Detector {
    /// Opens SSD300 weights (hub keys) with the architecture and classes of their model card;
    /// without a card, NVIDIA's SSD300-ResNet50 on the 80 COCO classes.
    pub fn open(file: &Path, place: Placement) -> Result<Self, WeightsError> {
        let card = card_for(file, "detector")?;
        let (arch, classes) = match &card {
            None => (ssd::SsdArch::ssd300_resnet50(), ModelCard::coco_classes()),
            Some(c) => {
                let n = c.classes.len() as i64 + 1;
                let arch = match c.arch.as_str() {
                    "ssd300_resnet50" if c.width_divisor == 1 => {
                        ssd::SsdArch { num_classes: n, ..ssd::SsdArch::ssd300_resnet50() }
                    }
                    "ssd300_resnet18" => ssd::SsdArch::ssd300_resnet18(n, c.width_divisor),
                    other => {
                        return Err(WeightsError::Other {
                            file: file.to_path_buf(),
                            reason: format!(
                                "unknown detector architecture `{other}` (width divisor {})",
                                c.width_divisor
                            ),
                        })
                    }
                };
                (arch, c.classes.clone())
            }
        };
        Self::load(file, arch, classes, card, place)
    }

    /// Loads SSD weights for an explicit architecture.
    pub fn load(
        file: &Path,
        arch: ssd::SsdArch,
        classes: Vec<ClassInfo>,
        card: Option<ModelCard>,
        place: Placement,
    ) -> Result<Self, WeightsError> {
        let net =
            build(file, "SSD300 detector", place, |p| ssd::Ssd::new(p, &arch), |v, at| frozen::Ssd::new(v, &arch, at))?;
        let config = SsdConfig::ssd300();
        let decoder = BoxDecoder {
            dboxes: Arc::new(config.default_boxes_xywh()),
            scale_xy: config.scale_xy,
            scale_wh: config.scale_wh,
        };
        Ok(Detector { net, arch, classes, card, config, decoder, place, file: file.to_path_buf() })
    }

    /// Forward pass in eval mode without autograd; outputs stay on the device, in fp32.
    fn forward(&self, input: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let x = input.to_device(self.place.device).to_kind(self.place.input_kind());
        let (locs, confs) = self.net.run(&x);
        (locs.to_kind(Kind::Float), confs.to_kind(Kind::Float))
    }

    /// Raw outputs for N×3×300×300 normalised input (any device/kind; moved as needed).
    pub fn raw(&self, input: &Tensor) -> RawSsd {
        let (locs, confs) = self.forward(input);
        RawSsd { locs: locs.to_device(Device::Cpu), confs: confs.to_device(Device::Cpu) }
    }

    /// Forward + NVIDIA decoding: per image, detections in descending score order with boxes
    /// normalised to the input.
    pub fn detect(&self, input: &Tensor, params: &DecodeParams) -> Vec<Vec<RawDetection>> {
        let out = self.outputs(input, params);
        (0..out.images).map(|i| self.decoder.decode(&out, i, params)).collect()
    }

    /// Forward and softmax, brought to the CPU for [`BoxDecoder::decode`]. On a CPU every score;
    /// on other devices each class's `per_class_top` best, which is all that decoding reads:
    /// 12 MB instead of 180 MB to copy back for a batch of 64.
    pub fn outputs(&self, input: &Tensor, params: &DecodeParams) -> DetectorOutput {
        let top = (self.place.device != Device::Cpu).then_some(params.per_class_top);
        self.outputs_with(input, top)
    }

    /// [`Detector::outputs`] keeping every score (`None`) or each class's `Some(k)` best.
    pub fn outputs_with(&self, input: &Tensor, top: Option<usize>) -> DetectorOutput {
        let (locs, confs) = self.forward(input);
        // Softmax over all classes, background included, on the device.
        let scores = confs.softmax(1, Kind::Float);
        let size = scores.size();
        let (images, classes, boxes) = (size[0] as usize, size[1] as usize, size[2] as usize);
        // Made contiguous before the copy: on a GPU the transposition of the offsets runs there,
        // and the copy back is one block instead of a strided gather on the CPU.
        let cpu = |t: &Tensor| t.contiguous().to_device(Device::Cpu).view([-1]);
        let scores = match top {
            None => Scores::All(Vec::<f32>::try_from(cpu(&scores)).unwrap_or_default()),
            Some(k) => {
                let k = k.min(boxes);
                let (values, index) = scores.topk(k as i64, 2, true, true);
                Scores::Top {
                    k,
                    values: Vec::<f32>::try_from(cpu(&values)).unwrap_or_default(),
                    index: Vec::<i64>::try_from(cpu(&index)).unwrap_or_default(),
                }
            }
        };
        let locs = Vec::<f32>::try_from(cpu(&locs.permute([0, 2, 1]))).unwrap_or_default();
        DetectorOutput { images, classes, boxes, locs, scores }
    }

    /// The box decoder, for decoding [`Detector::outputs`] on other threads.
    pub fn decoder(&self) -> BoxDecoder {
        self.decoder.clone()
    }

    /// Whether any weight would record gradients (it never should: the store is frozen).
    pub fn has_trainable_weights(&self) -> bool {
        self.net.tensors().any(Tensor::requires_grad)
    }
}

/// A batch's detector outputs on the CPU: offsets N×B×4 (box-major) and softmax scores. Equal
/// when every float is.
#[derive(PartialEq)]
pub struct DetectorOutput {
    pub images: usize,
    pub classes: usize,
    pub boxes: usize,
    locs: Vec<f32>,
    scores: Scores,
}

#[derive(PartialEq)]
enum Scores {
    /// N×C×B (class-major, the network's layout).
    All(Vec<f32>),
    /// Each class's `k` best, N×C×k scores and their box indices.
    Top { k: usize, values: Vec<f32>, index: Vec<i64> },
}

/// NVIDIA's decoding of one image's outputs: default boxes plus offsets, then per-class NMS. Plain
/// data, so the write stage's workers decode while the inference thread runs the next batch.
#[derive(Clone)]
pub struct BoxDecoder {
    dboxes: Arc<Vec<[f32; 4]>>,
    scale_xy: f32,
    scale_wh: f32,
}

impl DetectorOutput {
    /// How many of image `i`'s class-`c` scores exceed `min_score` (among those kept).
    pub fn candidates(&self, i: usize, c: usize, min_score: f32) -> usize {
        let (at, n, values) = match &self.scores {
            Scores::All(v) => ((i * self.classes + c) * self.boxes, self.boxes, v),
            Scores::Top { k, values, .. } => ((i * self.classes + c) * k, *k, values),
        };
        values[at..at + n].iter().filter(|&&s| s > min_score).count()
    }
}

impl BoxDecoder {
    /// Detections of image `i` of `out`, descending by score, boxes normalised to the input.
    pub fn decode(&self, out: &DetectorOutput, i: usize, params: &DecodeParams) -> Vec<RawDetection> {
        let (nb, nc) = (out.boxes, out.classes);
        let l = &out.locs[i * nb * 4..(i + 1) * nb * 4];
        let boxes: Vec<[f32; 4]> = self
            .dboxes
            .iter()
            .enumerate()
            .map(|(b, d)| {
                let o = [l[b * 4], l[b * 4 + 1], l[b * 4 + 2], l[b * 4 + 3]];
                boxes::decode_box(o, d, self.scale_xy, self.scale_wh)
            })
            .collect();
        match &out.scores {
            Scores::All(scores) => boxes::decode_single(&boxes, &scores[i * nb * nc..(i + 1) * nb * nc], nc, params),
            Scores::Top { k, values, index } => boxes::decode_candidates(&boxes, nc, params, |label| {
                let at = (i * nc + label) * k;
                values[at..at + k].iter().copied().zip(index[at..at + k].iter().map(|&b| b as usize)).collect()
            }),
        }
    }
}

/// One class of a classifier's top-k.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassProb {
    pub index: usize,
    pub prob: f32,
}

/// torchvision ResNet-18 with `num_classes` outputs.
pub struct Classifier {
    net: frozen::ResNet18,
    pub num_classes: i64,
    /// Output i is `classes[i]`.
    pub classes: Vec<ClassInfo>,
    pub card: Option<ModelCard>,
    pub place: Placement,
    pub file: PathBuf,
}

impl Classifier {
    /// Loads ResNet-18 weights (torchvision keys). The class count is read from `fc.bias`; names
    /// and width come from the model card, else ImageNet names for 1000 outputs.
    pub fn open(file: &Path, place: Placement) -> Result<Self, WeightsError> {
        let num_classes = fc_classes(file)?;
        let card = card_for(file, "classifier")?;
        let divisor = card.as_ref().map_or(1, |c| c.width_divisor.max(1));
        let classes = match &card {
            Some(c) if c.classes.len() as i64 == num_classes => c.classes.clone(),
            Some(c) => {
                return Err(WeightsError::Other {
                    file: file.to_path_buf(),
                    reason: format!("model card lists {} classes, the weights have {num_classes}", c.classes.len()),
                })
            }
            None if num_classes == 1000 => ModelCard::imagenet_classes(),
            None => (0..num_classes).map(|i| ClassInfo { name: format!("class {i}"), coco_id: None }).collect(),
        };
        let net = build(
            file,
            "ResNet-18 classifier",
            place,
            |p| resnet::resnet18(p, num_classes, 64 / divisor),
            frozen::ResNet18::new,
        )?;
        Ok(Classifier { net, num_classes, classes, card, place, file: file.to_path_buf() })
    }

    /// Logits N×classes (CPU, f32) for N×3×224×224 normalised input.
    pub fn logits(&self, input: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let x = input.to_device(self.place.device).to_kind(self.place.input_kind());
        self.net.run(&x).to_kind(Kind::Float).to_device(Device::Cpu)
    }

    /// Whether any weight would record gradients (it never should: the store is frozen).
    pub fn has_trainable_weights(&self) -> bool {
        self.net.tensors().any(Tensor::requires_grad)
    }

    /// Softmax top-k per image, highest first.
    pub fn top_k(&self, input: &Tensor, k: usize) -> Vec<Vec<ClassProb>> {
        let probs = self.logits(input).softmax(1, Kind::Float);
        let n = probs.size()[0];
        let k = k.min(self.num_classes as usize) as i64;
        let (vals, idx) = probs.topk(k, 1, true, true);
        (0..n)
            .map(|i| {
                let v = Vec::<f32>::try_from(vals.get(i)).unwrap_or_default();
                let ix = Vec::<i64>::try_from(idx.get(i)).unwrap_or_default();
                ix.into_iter().zip(v).map(|(index, prob)| ClassProb { index: index as usize, prob }).collect()
            })
            .collect()
    }
}

/// Number of classifier outputs, from the shape of `fc.bias` in the file's safetensors header
/// (the header alone is read: an 8-byte little-endian length, then JSON).
pub(crate) fn fc_classes(file: &Path) -> Result<i64, WeightsError> {
    use std::io::Read;
    let err = |reason: String| WeightsError::Read { file: file.to_path_buf(), reason };
    let mut f = std::fs::File::open(file).map_err(|e| err(e.to_string()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| err(format!("no safetensors header: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(err(format!("safetensors header of {len} bytes is implausible")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| err(format!("truncated safetensors header: {e}")))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| err(format!("bad safetensors header: {e}")))?;
    let Some(shape) = header.get("fc.bias").and_then(|t| t.get("shape")) else {
        return Err(WeightsError::Missing {
            file: file.to_path_buf(),
            key: "fc.bias".into(),
            model: "ResNet-18 classifier".into(),
            more: String::new(),
        });
    };
    match shape.as_array().map(|a| a.iter().filter_map(|v| v.as_i64()).collect::<Vec<_>>()).as_deref() {
        Some(&[n]) if n > 0 => Ok(n),
        _ => Err(WeightsError::Other {
            file: file.to_path_buf(),
            reason: format!("`fc.bias` has shape {shape}, expected [classes]"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: Placement = Placement { device: Device::Cpu, half: false };

    /// A ResNet-18 with `classes` outputs, saved as safetensors plus `extra` tensors and without
    /// the `drop`ped key.
    fn resnet_file(dir: &Path, classes: i64, drop: &str, extra: &[(&str, Tensor)]) -> PathBuf {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = resnet::resnet18(&vs.root(), classes, 64);
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(k, _)| k != drop).collect();
        named.extend(extra.iter().map(|(k, t)| (k.to_string(), t.shallow_clone())));
        let path = dir.join(format!("r{}-{drop}-{}.safetensors", classes, extra.len()));
        Tensor::write_safetensors(&named, &path).expect("write");
        path
    }

    #[test]
    fn strict_loading_accepts_official_buffers_and_names_bad_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nbt = Tensor::from(7i64);
        let ok = resnet_file(dir.path(), 10, "", &[("layer1.0.bn1.num_batches_tracked", nbt.shallow_clone())]);
        let c = Classifier::open(&ok, CPU).expect("a complete file loads");
        assert_eq!(c.num_classes, 10);
        assert!(!c.has_trainable_weights());

        let missing = resnet_file(dir.path(), 10, "layer2.1.bn2.running_var", &[]);
        let e = Classifier::open(&missing, CPU).err().expect("missing key");
        assert!(matches!(e, WeightsError::Missing { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("layer2.1.bn2.running_var") && msg.contains(&missing.display().to_string()), "{msg}");

        let unused =
            resnet_file(dir.path(), 10, "", &[("head.weight", Tensor::zeros([2], (Kind::Float, Device::Cpu)))]);
        let e = Classifier::open(&unused, CPU).err().expect("unused key");
        assert!(matches!(e, WeightsError::Unused { .. }) && e.to_string().contains("head.weight"), "{e}");

        // A num_batches_tracked without a BatchNorm is unused too.
        let stray = resnet_file(dir.path(), 10, "", &[("fc.num_batches_tracked", nbt)]);
        assert!(matches!(Classifier::open(&stray, CPU), Err(WeightsError::Unused { .. })));

        let bad_shape = resnet_file(
            dir.path(),
            10,
            "conv1.weight",
            &[("conv1.weight", Tensor::zeros([64, 3, 5, 5], (Kind::Float, Device::Cpu)))],
        );
        let e = Classifier::open(&bad_shape, CPU).err().expect("wrong shape");
        assert!(matches!(e, WeightsError::Shape { .. }), "{e}");
        assert!(e.to_string().contains("conv1.weight") && e.to_string().contains("[64, 3, 7, 7]"), "{e}");

        let not_weights = dir.path().join("junk.safetensors");
        std::fs::write(&not_weights, b"definitely not safetensors").expect("write");
        let e = Classifier::open(&not_weights, CPU).err().expect("junk");
        assert!(e.to_string().contains("junk.safetensors"), "{e}");
    }

    #[test]
    fn detector_has_the_official_key_set() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ssd = ssd::Ssd::new(&vs.root(), &ssd::SsdArch::ssd300_resnet50());
        let vars = vs.variables();
        // model-facts: 289 entries without num_batches_tracked, 22,894,902 parameters
        // (running statistics are buffers, not parameters).
        assert_eq!(vars.len(), 289);
        let params: i64 = vars
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        assert_eq!(params, 22_894_902);
        for (key, shape) in [
            ("feature_extractor.feature_extractor.0.weight", vec![64, 3, 7, 7]),
            ("feature_extractor.feature_extractor.6.0.conv2.weight", vec![256, 256, 3, 3]),
            ("feature_extractor.feature_extractor.6.0.downsample.0.weight", vec![1024, 512, 1, 1]),
            ("additional_blocks.0.0.weight", vec![256, 1024, 1, 1]),
            ("additional_blocks.0.3.weight", vec![512, 256, 3, 3]),
            ("loc.0.weight", vec![16, 1024, 3, 3]),
            ("conf.0.weight", vec![324, 1024, 3, 3]),
            ("conf.1.weight", vec![486, 512, 3, 3]),
            ("conf.5.bias", vec![324]),
        ] {
            assert_eq!(vars.get(key).map(Tensor::size), Some(shape), "{key}");
        }
    }

    #[test]
    fn resnet18_has_torchvision_keys_and_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = resnet::resnet18(&vs.root(), 1000, 64);
        let vars = vs.variables();
        assert_eq!(vars.len(), 122 - 20, "torchvision's 122 entries less 20 num_batches_tracked");
        let params: i64 = vars
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        assert_eq!(params, 11_689_512);
        assert!(vars.contains_key("layer4.0.downsample.1.running_var") && vars.contains_key("fc.bias"));
    }

    #[test]
    fn ssd_output_shapes_at_300() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ssd::Ssd::new(&vs.root(), &ssd::SsdArch::ssd300_resnet18(81, 1));
        let _guard = tch::no_grad_guard();
        let (locs, confs) = net.forward_t(&Tensor::zeros([2, 3, 300, 300], (Kind::Float, Device::Cpu)), false);
        assert_eq!(locs.size(), vec![2, 4, 8732]);
        assert_eq!(confs.size(), vec![2, 81, 8732]);
    }
}
