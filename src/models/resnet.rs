//! ResNet building blocks with torchvision's module names, so every variable path *is* the
//! torchvision state-dict key (`layer1.0.conv1.weight`, `layer2.0.downsample.1.running_var`, …).
//!
//! Used twice: the ResNet-18 classifier (BasicBlock, [2,2,2,2]) and the ResNet-50 backbone of the
//! SSD (Bottleneck v1.5, layers 1–3, with layer3's stride removed).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Convolution without bias, as in every torchvision ResNet conv.
pub fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding, bias: false, ..Default::default() };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// BatchNorm2d with PyTorch defaults (eps 1e-5, momentum 0.1, affine).
pub fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// `downsample` = [1×1 conv with the block's stride, BN], present when shape changes.
fn downsample(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Option<nn::SequentialT> {
    (stride != 1 || c_in != c_out)
        .then(|| nn::seq_t().add(conv(&p / "0", c_in, c_out, 1, stride, 0)).add(bn(&p / "1", c_out)))
}

/// The residual branch: `downsample(x)` when the block changes shape, else `x` itself.
fn shortcut(ds: &Option<nn::SequentialT>, xs: &Tensor, train: bool) -> Tensor {
    match ds {
        Some(ds) => xs.apply_t(ds, train),
        None => xs.shallow_clone(),
    }
}

/// Convolution `conv{i}` (no bias) and its BatchNorm `bn{i}`, as every torchvision block names them.
fn conv_bn(p: &nn::Path, i: usize, c_in: i64, c_out: i64, k: i64, stride: i64) -> (nn::Conv2D, nn::BatchNorm) {
    (conv(p / format!("conv{i}"), c_in, c_out, k, stride, k / 2), bn(p / format!("bn{i}"), c_out))
}

/// torchvision `BasicBlock`: 3×3 (stride) → BN → ReLU → 3×3 → BN, + identity, ReLU.
fn basic_block(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::FuncT<'static> {
    let (conv1, bn1) = conv_bn(&p, 1, c_in, c_out, 3, stride);
    let (conv2, bn2) = conv_bn(&p, 2, c_out, c_out, 3, 1);
    let ds = downsample(&p / "downsample", c_in, c_out, stride);
    nn::func_t(move |xs, train| {
        let ys = xs.apply(&conv1).apply_t(&bn1, train).relu().apply(&conv2).apply_t(&bn2, train);
        (ys + shortcut(&ds, xs, train)).relu()
    })
}

/// torchvision `Bottleneck` (v1.5: the stride sits on the 3×3 `conv2`), expansion 4.
/// `mid` is the 3×3 width; the block outputs `4 * mid` channels.
fn bottleneck(p: nn::Path, c_in: i64, mid: i64, stride: i64) -> nn::FuncT<'static> {
    let c_out = 4 * mid;
    let (conv1, bn1) = conv_bn(&p, 1, c_in, mid, 1, 1);
    let (conv2, bn2) = conv_bn(&p, 2, mid, mid, 3, stride);
    let (conv3, bn3) = conv_bn(&p, 3, mid, c_out, 1, 1);
    let ds = downsample(&p / "downsample", c_in, c_out, stride);
    nn::func_t(move |xs, train| {
        let ys = xs
            .apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .apply(&conv2)
            .apply_t(&bn2, train)
            .relu()
            .apply(&conv3)
            .apply_t(&bn3, train);
        (ys + shortcut(&ds, xs, train)).relu()
    })
}

/// Block kind of a ResNet stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Basic,
    Bottleneck,
}

/// One stage (`layerN`): `blocks` blocks, the first with `stride`. Returns the stage and its
/// output channel count.
pub fn stage(p: nn::Path, block: Block, c_in: i64, width: i64, blocks: i64, stride: i64) -> (nn::SequentialT, i64) {
    let mut seq = nn::seq_t();
    let mut c = c_in;
    for i in 0..blocks {
        let s = if i == 0 { stride } else { 1 };
        let bp = &p / i;
        match block {
            Block::Basic => {
                seq = seq.add(basic_block(bp, c, width, s));
                c = width;
            }
            Block::Bottleneck => {
                seq = seq.add(bottleneck(bp, c, width, s));
                c = 4 * width;
            }
        }
    }
    (seq, c)
}

/// The stem: conv1 7×7/2 pad 3 → bn1 → ReLU → maxpool 3×3/2 pad 1.
pub struct Stem {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
}

impl Stem {
    /// `width` output channels (64 in torchvision).
    pub fn new(conv1: nn::Path, bn1: nn::Path, width: i64) -> Self {
        Stem { conv1: conv(conv1, 3, width, 7, 2, 3), bn1: bn(bn1, width) }
    }
}

impl std::fmt::Debug for Stem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stem")
    }
}

impl ModuleT for Stem {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv1).apply_t(&self.bn1, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
    }
}

/// A torchvision ResNet: stem, four stages of `block`s (`blocks` per stage, widths `base`,
/// 2·`base`, 4·`base`, 8·`base`, strides 1, 2, 2, 2), global average pool, `fc`.
fn resnet(p: &nn::Path, block: Block, blocks: [i64; 4], base: i64, num_classes: i64) -> nn::SequentialT {
    let stem = Stem::new(p / "conv1", p / "bn1", base);
    let mut net = nn::seq_t().add(stem);
    let mut c = base;
    for (i, n) in blocks.into_iter().enumerate() {
        let (layer, out) = stage(p / format!("layer{}", i + 1), block, c, base << i, n, if i == 0 { 1 } else { 2 });
        net = net.add(layer);
        c = out;
    }
    let fc = nn::linear(p / "fc", c, num_classes, Default::default());
    net.add_fn(|xs| xs.adaptive_avg_pool2d([1, 1]).flat_view()).add(fc)
}

/// torchvision ResNet-18: layers [2,2,2,2] of BasicBlocks. `base` is the stem/layer1 width (64
/// in torchvision; smaller for the demo model). Input N×3×H×W normalised RGB; output
/// N×`num_classes` logits.
pub fn resnet18(p: &nn::Path, num_classes: i64, base: i64) -> nn::SequentialT {
    resnet(p, Block::Basic, [2, 2, 2, 2], base, num_classes)
}

/// torchvision ResNet-50: layers [3,4,6,3] of Bottlenecks (v1.5), `fc` 2048 → `num_classes`.
/// Used by `boxwalk explain`; the SSD uses its first three stages.
pub fn resnet50(p: &nn::Path, num_classes: i64) -> nn::SequentialT {
    resnet(p, Block::Bottleneck, [3, 4, 6, 3], 64, num_classes)
}
