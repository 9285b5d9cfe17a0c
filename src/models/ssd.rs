//! NVIDIA SSD300 v1.1 (`ssd/model.py`): a ResNet backbone truncated after layer3 with layer3's
//! stride removed, five additional blocks, and 3×3 loc/conf heads on six maps.
//!
//! Variable paths are the hub checkpoint's keys: `feature_extractor.feature_extractor.6.0.conv2`,
//! `additional_blocks.0.3`, `loc.0`, `conf.5`.

use super::resnet::{self, Block, Stem};
use tch::nn;
use tch::Tensor;

/// Architecture of one SSD variant.
#[derive(Debug, Clone, PartialEq)]
pub struct SsdArch {
    /// Backbone block kind and blocks per stage (layer1..layer3).
    pub block: Block,
    pub layers: [i64; 3],
    /// Stem width and the 3×3 widths of layer1..layer3 (64, [64,128,256] in torchvision).
    pub stem: i64,
    pub widths: [i64; 3],
    /// Channels of the six detection maps (`out_channels`).
    pub out_channels: [i64; 6],
    /// Middle widths of the five additional blocks.
    pub mid_channels: [i64; 5],
    /// Default boxes per cell of each map.
    pub num_defaults: [i64; 6],
    /// Classes including background (81 for COCO).
    pub num_classes: i64,
}

impl SsdArch {
    /// NVIDIA's SSD300 with ResNet-50 (`ResNet('resnet50')`, `SSD300(label_num=81)`).
    pub fn ssd300_resnet50() -> Self {
        SsdArch {
            block: Block::Bottleneck,
            layers: [3, 4, 6],
            stem: 64,
            widths: [64, 128, 256],
            out_channels: [1024, 512, 512, 256, 256, 256],
            mid_channels: [256, 256, 128, 128, 128],
            num_defaults: [4, 6, 6, 6, 4, 4],
            num_classes: 81,
        }
    }

    /// NVIDIA's `ResNet('resnet18')` variant (layer3 of BasicBlocks outputs 256 channels), with
    /// every width divided by `divisor` (1 = NVIDIA's; the demo detector uses 4).
    pub fn ssd300_resnet18(num_classes: i64, divisor: i64) -> Self {
        let d = divisor.max(1);
        SsdArch {
            block: Block::Basic,
            layers: [2, 2, 2],
            stem: 64 / d,
            widths: [64 / d, 128 / d, 256 / d],
            out_channels: [256, 512, 512, 256, 256, 128].map(|c| c / d),
            mid_channels: [256, 256, 128, 128, 128].map(|c| c / d),
            num_defaults: [4, 6, 6, 6, 4, 4],
            num_classes,
        }
    }
}

/// The SSD network. `forward_t` returns `(locs N×4×B, confs N×C×B)` with B = 8732 at 300×300,
/// raw offsets and logits in NVIDIA's plain-reshape layout.
#[derive(Debug)]
pub struct Ssd {
    backbone: nn::SequentialT,
    additional: Vec<nn::SequentialT>,
    loc: Vec<nn::Conv2D>,
    conf: Vec<nn::Conv2D>,
    num_classes: i64,
}

impl Ssd {
    pub fn new(p: &nn::Path, arch: &SsdArch) -> Self {
        let fe = p / "feature_extractor" / "feature_extractor";
        let widths = arch.widths;
        let (l1, c) = resnet::stage(&fe / 4, arch.block, arch.stem, widths[0], arch.layers[0], 1);
        let (l2, c) = resnet::stage(&fe / 5, arch.block, c, widths[1], arch.layers[1], 2);
        // conv4_block1: NVIDIA sets the 3×3 and downsample strides of layer3[0] to 1.
        let (l3, c) = resnet::stage(&fe / 6, arch.block, c, widths[2], arch.layers[2], 1);
        assert_eq!(c, arch.out_channels[0], "backbone output channels");
        let backbone = nn::seq_t().add(Stem::new(&fe / 0, &fe / 1, arch.stem)).add(l1).add(l2).add(l3);

        let ab = p / "additional_blocks";
        let mut additional = Vec::new();
        for (i, &mid) in arch.mid_channels.iter().enumerate() {
            let (c_in, c_out) = (arch.out_channels[i], arch.out_channels[i + 1]);
            let (stride, pad) = if i < 3 { (2, 1) } else { (1, 0) };
            let bp = &ab / i;
            additional.push(
                nn::seq_t()
                    .add(resnet::conv(&bp / 0, c_in, mid, 1, 1, 0))
                    .add(resnet::bn(&bp / 1, mid))
                    .add_fn(|x| x.relu())
                    .add(resnet::conv(&bp / 3, mid, c_out, 3, stride, pad))
                    .add(resnet::bn(&bp / 4, c_out))
                    .add_fn(|x| x.relu()),
            );
        }

        let head = |name: &str, per_box: i64| -> Vec<nn::Conv2D> {
            (0..6)
                .map(|i| {
                    let cfg = nn::ConvConfig { padding: 1, ..Default::default() };
                    nn::conv2d(p / name / i, arch.out_channels[i], arch.num_defaults[i] * per_box, 3, cfg)
                })
                .collect()
        };
        let loc = head("loc", 4);
        let conf = head("conf", arch.num_classes);
        Ssd { backbone, additional, loc, conf, num_classes: arch.num_classes }
    }
}

impl Ssd {
    /// Runs the network on N×3×300×300 normalised RGB.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut x = xs.apply_t(&self.backbone, train);
        let n = x.size()[0];
        let mut locs = Vec::with_capacity(6);
        let mut confs = Vec::with_capacity(6);
        for i in 0..6 {
            if i > 0 {
                x = x.apply_t(&self.additional[i - 1], train);
            }
            // `bbox_view`: plain reshape, no permute (channel k*nd + a is coordinate k of slot a).
            locs.push(x.apply(&self.loc[i]).reshape([n, 4, -1]));
            confs.push(x.apply(&self.conf[i]).reshape([n, self.num_classes, -1]));
        }
        (Tensor::cat(&locs, 2), Tensor::cat(&confs, 2))
    }
}
