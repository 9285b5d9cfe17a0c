//! Inference-only copies of the two networks, built once from loaded weights.
//!
//! The `nn` modules in `resnet.rs` and `ssd.rs` are what training uses and what defines the key
//! names. For inference they are rebuilt here in a cheaper form that computes the same function:
//! - every BatchNorm is folded into the convolution before it (eval mode is an affine map per
//!   channel, so `bn(conv(x, W)) = conv(x, W·s) + (β − μ·s)` with `s = γ / √(σ² + ε)`);
//! - weights and activations use the channels-last (NHWC) memory layout, which libtorch's CPU
//!   convolutions run markedly faster (see `bench/`), and which fp16 on CUDA prefers too;
//! - ReLUs and residual additions run in place.
//!
//! Folding happens in fp32; for `--half` the folded weights are then cast to fp16.

use super::resnet::Block;
use super::ssd::SsdArch;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// The model's variables by state-dict key.
pub type Vars = HashMap<String, Tensor>;

/// BatchNorm's epsilon (PyTorch's default, used by every BN in both models).
const BN_EPS: f64 = 1e-5;

/// Returns `t` (N×C×H×W) with channels-last strides, same shape and values.
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() == 4 {
        t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    } else {
        t.shallow_clone()
    }
}

/// Where folded weights live and in which precision.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub device: Device,
    pub kind: Kind,
}

impl Target {
    fn place(&self, t: Tensor) -> Tensor {
        channels_last(&t.to_device(self.device).to_kind(self.kind))
    }
}

/// A convolution with its BatchNorm folded in (or with its own bias).
#[derive(Debug)]
pub struct Conv {
    w: Tensor,
    b: Option<Tensor>,
    stride: i64,
    pad: i64,
}

fn var<'a>(vars: &'a Vars, key: &str) -> &'a Tensor {
    // Callers build from a store that `load_strict` has already checked key by key.
    vars.get(key).unwrap_or_else(|| panic!("variable `{key}` missing from a strictly loaded model"))
}

// SAFETY: a Conv's tensors are written only while it is built (`fold`). Afterwards `run` only
// passes them to libtorch as the read-only inputs of a convolution, and `tensors` lends them only
// to read (whether any requires grad); the fields are private, so nothing else can reach them.
// Concurrent forward passes (a CPU run's inference lanes) therefore only read them, as libtorch
// allows.
unsafe impl Sync for Conv {}

impl Conv {
    /// Conv `conv` (its `.weight`, and `.bias` if it has one), followed by BatchNorm `bn` if given.
    pub fn fold(vars: &Vars, conv: &str, bn: Option<&str>, stride: i64, pad: i64, at: Target) -> Conv {
        let w = var(vars, &format!("{conv}.weight")).to_kind(Kind::Float);
        let bias = vars.get(&format!("{conv}.bias")).map(|b| b.to_kind(Kind::Float));
        let (w, b) = match bn {
            None => (w, bias),
            Some(bn) => {
                let f = |s: &str| var(vars, &format!("{bn}.{s}")).to_kind(Kind::Float);
                let scale = f("weight") / (f("running_var") + BN_EPS).sqrt();
                let shift = f("bias") - f("running_mean") * &scale;
                let b = match bias {
                    Some(b) => b * &scale + shift,
                    None => shift,
                };
                (w * scale.view([-1, 1, 1, 1]), Some(b))
            }
        };
        Conv { w: at.place(w), b: b.map(|b| b.to_device(at.device).to_kind(at.kind)), stride, pad }
    }

    pub fn run(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.w, self.b.as_ref(), [self.stride], [self.pad], [1], 1)
    }

    fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        std::iter::once(&self.w).chain(self.b.as_ref())
    }
}

/// A residual block: its convolutions in order (ReLU between them) and the optional downsample.
#[derive(Debug)]
struct Residual {
    convs: Vec<Conv>,
    downsample: Option<Conv>,
}

impl Residual {
    fn run(&self, x: &Tensor) -> Tensor {
        let mut y = x.shallow_clone();
        for (i, c) in self.convs.iter().enumerate() {
            y = c.run(&y);
            if i + 1 < self.convs.len() {
                y = y.relu_();
            }
        }
        let short = match &self.downsample {
            Some(d) => d.run(x),
            None => x.shallow_clone(),
        };
        if y.device() == Device::Cpu {
            // One pass into the convolution's own output instead of a new sum and a second pass
            // (the same values: adding and clamping are exact). libtorch has it on the CPU only.
            y.internal_add_relu_(&short)
        } else {
            (y + short).relu_()
        }
    }
}

/// The stem and residual stages of a ResNet, as in `resnet::Stem` and `resnet::stage`.
#[derive(Debug)]
pub struct Backbone {
    stem: Conv,
    blocks: Vec<Residual>,
}

/// One stage's blocks under `prefix` (`layer2`, `feature_extractor.feature_extractor.5`), the
/// first with `stride` (on conv1 of a BasicBlock, conv2 of a Bottleneck, and the downsample).
fn stage(vars: &Vars, prefix: &str, block: Block, n: i64, stride: i64, at: Target) -> Vec<Residual> {
    (0..n)
        .map(|i| {
            let p = format!("{prefix}.{i}");
            let s = if i == 0 { stride } else { 1 };
            let c = |k: usize, stride: i64, pad: i64| {
                Conv::fold(vars, &format!("{p}.conv{k}"), Some(&format!("{p}.bn{k}")), stride, pad, at)
            };
            let convs = match block {
                Block::Basic => vec![c(1, s, 1), c(2, 1, 1)],
                Block::Bottleneck => vec![c(1, 1, 0), c(2, s, 1), c(3, 1, 0)],
            };
            let ds = format!("{p}.downsample");
            let downsample = vars
                .contains_key(&format!("{ds}.0.weight"))
                .then(|| Conv::fold(vars, &format!("{ds}.0"), Some(&format!("{ds}.1")), s, 0, at));
            Residual { convs, downsample }
        })
        .collect()
}

impl Backbone {
    /// `stem` = (conv key, bn key); `stages` = (prefix, blocks, stride) in order.
    fn new(vars: &Vars, stem: (&str, &str), block: Block, stages: &[(String, i64, i64)], at: Target) -> Self {
        let stem = Conv::fold(vars, stem.0, Some(stem.1), 2, 3, at);
        let blocks = stages.iter().flat_map(|(p, n, s)| stage(vars, p, block, *n, *s, at)).collect();
        Backbone { stem, blocks }
    }

    fn run(&self, x: &Tensor) -> Tensor {
        let mut y = self.stem.run(x).relu_().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for b in &self.blocks {
            y = b.run(&y);
        }
        y
    }

    fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.stem
            .tensors()
            .chain(self.blocks.iter().flat_map(|b| b.convs.iter().chain(&b.downsample)).flat_map(Conv::tensors))
    }
}

/// SSD300 for inference: same outputs as `ssd::Ssd::forward_t(x, false)`.
#[derive(Debug)]
pub struct Ssd {
    backbone: Backbone,
    additional: Vec<[Conv; 2]>,
    loc: Vec<Conv>,
    conf: Vec<Conv>,
    num_classes: i64,
}

impl Ssd {
    pub fn new(vars: &Vars, arch: &SsdArch, at: Target) -> Self {
        let fe = "feature_extractor.feature_extractor";
        let stages = [
            (format!("{fe}.4"), arch.layers[0], 1),
            (format!("{fe}.5"), arch.layers[1], 2),
            (format!("{fe}.6"), arch.layers[2], 1),
        ];
        let backbone = Backbone::new(vars, (&format!("{fe}.0"), &format!("{fe}.1")), arch.block, &stages, at);
        let additional = (0..5)
            .map(|i| {
                let (stride, pad) = if i < 3 { (2, 1) } else { (1, 0) };
                let p = format!("additional_blocks.{i}");
                [
                    Conv::fold(vars, &format!("{p}.0"), Some(&format!("{p}.1")), 1, 0, at),
                    Conv::fold(vars, &format!("{p}.3"), Some(&format!("{p}.4")), stride, pad, at),
                ]
            })
            .collect();
        let head = |name: &str| (0..6).map(|i| Conv::fold(vars, &format!("{name}.{i}"), None, 1, 1, at)).collect();
        Ssd { backbone, additional, loc: head("loc"), conf: head("conf"), num_classes: arch.num_classes }
    }

    /// `(locs N×4×B, confs N×C×B)` for N×3×300×300 input in the target's kind.
    pub fn run(&self, x: &Tensor) -> (Tensor, Tensor) {
        let mut x = self.backbone.run(&channels_last(x));
        let n = x.size()[0];
        let mut locs = Vec::with_capacity(6);
        let mut confs = Vec::with_capacity(6);
        for i in 0..6 {
            if i > 0 {
                let [a, b] = &self.additional[i - 1];
                x = b.run(&a.run(&x).relu_()).relu_();
            }
            // `reshape` follows the logical NCHW order whatever the memory layout, as `bbox_view` does.
            locs.push(self.loc[i].run(&x).reshape([n, 4, -1]));
            confs.push(self.conf[i].run(&x).reshape([n, self.num_classes, -1]));
        }
        (Tensor::cat(&locs, 2), Tensor::cat(&confs, 2))
    }

    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.backbone
            .tensors()
            .chain(self.additional.iter().flatten().chain(&self.loc).chain(&self.conf).flat_map(Conv::tensors))
    }
}

/// ResNet-18 for inference: same logits as `resnet::resnet18(..).forward_t(x, false)`.
#[derive(Debug)]
pub struct ResNet18 {
    backbone: Backbone,
    fc_w: Tensor,
    fc_b: Tensor,
}

// SAFETY: as for `Conv`: the classifier's own tensors (the final layer's) are written only in
// `new`, and `run` only reads them.
unsafe impl Sync for ResNet18 {}

impl ResNet18 {
    pub fn new(vars: &Vars, at: Target) -> Self {
        let stages: Vec<(String, i64, i64)> =
            (1..=4).map(|i| (format!("layer{i}"), 2, if i == 1 { 1 } else { 2 })).collect();
        let backbone = Backbone::new(vars, ("conv1", "bn1"), Block::Basic, &stages, at);
        let fc = |s: &str| var(vars, &format!("fc.{s}")).to_device(at.device).to_kind(at.kind);
        ResNet18 { backbone, fc_w: fc("weight"), fc_b: fc("bias") }
    }

    /// Logits N×classes for N×3×H×W input in the target's kind.
    pub fn run(&self, x: &Tensor) -> Tensor {
        let y = self.backbone.run(&channels_last(x)).adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        y.linear(&self.fc_w, Some(&self.fc_b))
    }

    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.backbone.tensors().chain([&self.fc_w, &self.fc_b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{resnet, ssd};
    use tch::nn::{self, ModuleT};

    const CPU: Target = Target { device: Device::Cpu, kind: Kind::Float };

    /// Gives every BatchNorm non-trivial statistics and affine parameters, so that folding has
    /// something to get wrong (fresh BNs are the identity).
    fn randomise_batchnorms(vs: &nn::VarStore) {
        tch::manual_seed(11);
        let vars = vs.variables();
        let _guard = tch::no_grad_guard();
        for key in vars.keys() {
            let Some(p) = key.strip_suffix(".running_mean") else { continue };
            let set = |s: &str, t: Tensor| vars[&format!("{p}.{s}")].shallow_clone().copy_(&t);
            let like = &vars[key];
            set("running_mean", like.randn_like() * 0.2);
            set("running_var", like.rand_like() * 1.5 + 0.5);
            set("weight", like.rand_like() + 0.5);
            set("bias", like.randn_like() * 0.1);
        }
    }

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        (a - b).abs().max().double_value(&[]) / scale
    }

    #[test]
    fn folded_ssd_computes_what_the_module_computes_in_eval_mode() {
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = ssd::SsdArch::ssd300_resnet18(6, 4);
        let module = ssd::Ssd::new(&vs.root(), &arch);
        randomise_batchnorms(&vs);
        let _guard = tch::no_grad_guard();
        let folded = Ssd::new(&vs.variables(), &arch, CPU);
        let x = Tensor::randn([2, 3, 300, 300], (Kind::Float, Device::Cpu));
        let (l0, c0) = module.forward_t(&x, false);
        let (l1, c1) = folded.run(&x);
        assert_eq!((l1.size(), c1.size()), (vec![2, 4, 8732], vec![2, 6, 8732]));
        assert!(max_rel_diff(&l1, &l0) < 1e-5, "locs differ by {}", max_rel_diff(&l1, &l0));
        assert!(max_rel_diff(&c1, &c0) < 1e-5, "confs differ by {}", max_rel_diff(&c1, &c0));
        // The outputs are plain NCHW-order tensors whatever layout ran inside.
        assert!(l1.is_contiguous() && c1.is_contiguous());
    }

    #[test]
    fn folded_resnet18_computes_what_the_module_computes_in_eval_mode() {
        let vs = nn::VarStore::new(Device::Cpu);
        let module = resnet::resnet18(&vs.root(), 7, 16);
        randomise_batchnorms(&vs);
        let _guard = tch::no_grad_guard();
        let folded = ResNet18::new(&vs.variables(), CPU);
        let x = Tensor::randn([3, 3, 224, 224], (Kind::Float, Device::Cpu));
        let (a, b) = (folded.run(&x), module.forward_t(&x, false));
        assert_eq!(a.size(), vec![3, 7]);
        assert!(max_rel_diff(&a, &b) < 1e-5, "logits differ by {}", max_rel_diff(&a, &b));
        // And differ from train mode, so the comparison would catch a fold of the wrong statistics.
        assert!(max_rel_diff(&a, &module.forward_t(&x, true)) > 1e-3);
    }

    #[test]
    fn channels_last_keeps_shape_and_values() {
        let x = Tensor::randn([2, 3, 5, 7], (Kind::Float, Device::Cpu));
        let y = channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![105, 1, 21, 3]);
        assert!(y.equal(&x));
    }
}
