//! The explainers' numbers, checked against the model definitions and direct computation.

mod common;

use boxwalk::explain::{self, Arch};
use tch::{Device, Kind, Tensor};

#[test]
fn layers_count_18_and_50_from_the_model_definitions() {
    for (arch, name_count, convs, downsample) in [(Arch::ResNet18, 18, 20, 3), (Arch::ResNet50, 50, 53, 4)] {
        let l = explain::layers(arch);
        assert_eq!(l.counted, name_count, "{}", l.summary);
        assert_eq!(l.convolutions, convs);
        assert_eq!(l.downsample_convolutions, downsample);
        assert_eq!(l.linear, 1);
        // Every 4-D weight of the model definition is listed once, with its shape.
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let _m = match arch {
            Arch::ResNet18 => boxwalk::models::resnet::resnet18(&vs.root(), 1000, 64),
            _ => boxwalk::models::resnet::resnet50(&vs.root(), 1000),
        };
        let vars = vs.variables();
        let defined = vars.iter().filter(|(k, t)| k.ends_with(".weight") && t.dim() == 4).count();
        assert_eq!(defined, convs);
        for r in l.layers.iter().filter(|r| r.kind == "conv" || r.kind == "linear") {
            assert_eq!(vars[&format!("{}.weight", r.key)].size(), r.shape, "{}", r.key);
            assert_eq!(r.counted.is_none(), r.key.contains("downsample"), "{} counted wrongly", r.key);
        }
        // Numbering: conv #1 is the stem, and the counted layers are numbered 1..=N in order.
        assert_eq!(l.layers.iter().find(|r| r.conv_index == Some(1)).map(|r| r.key.as_str()), Some("conv1"));
        let counted: Vec<usize> = l.layers.iter().filter_map(|r| r.counted).collect();
        assert_eq!(counted, (1..=name_count).collect::<Vec<_>>());
    }
    let ssd = explain::layers(Arch::Ssd300);
    assert_eq!(ssd.counted, 40 + 10, "{}", ssd.summary);
    // 40 on the backbone's path, 3 downsamples (layer1..3), 10 in the extra blocks, 12 heads.
    assert_eq!(ssd.downsample_convolutions, 3);
    assert_eq!(ssd.convolutions, 40 + 3 + 10 + 12);
}

#[test]
fn kernels_are_the_layers_weights_as_a_file_and_a_normalised_grid() {
    let t = tempfile::tempdir().expect("tempdir");
    let weights = common::repo().join("models/demo/classifier.safetensors");
    let (png, tensor) = (t.path().join("k.png"), t.path().join("k.safetensors"));
    let o = common::boxwalk()
        .args(["explain", "kernels", "--layer", "7", "--zoom", "4", "--weights"])
        .arg(&weights)
        .arg("--out")
        .arg(&png)
        .arg("--tensor")
        .arg(&tensor)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = explain::conv_key(7).expect("conv 7");
    assert_eq!(key, "layer2.0.conv2", "conv #7: the stem, 4 in layer1, layer2.0.conv1, then this");
    let saved = Tensor::read_safetensors(&tensor).expect("tensor file");
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].0, format!("{key}.weight"));
    let official: Vec<(String, Tensor)> = Tensor::read_safetensors(&weights).expect("weights");
    let w = &official.iter().find(|(k, _)| *k == saved[0].0).expect("in the weight file").1;
    assert!(saved[0].1.equal(w), "the kernels are the layer's weights");
    // Grid: one row per output channel, one column per input channel, 3×3 tiles at zoom 4.
    let (out_c, in_c) = (w.size()[0] as u32, w.size()[1] as u32);
    let grid = image::open(&png).expect("png").to_rgb8();
    assert_eq!(grid.dimensions(), (in_c * (3 * 4 + 2) + 2, out_c * (3 * 4 + 2) + 2));
    // Per-kernel normalisation: each output channel's tiles reach both 0 and 255.
    let row = |r: u32| -> Vec<u8> {
        let y0 = 2 + r * 14;
        (y0..y0 + 12)
            .flat_map(|y| (0..grid.width()).map(move |x| (x, y)))
            .map(|(x, y)| grid.get_pixel(x, y)[0])
            .collect()
    };
    for r in [0, out_c - 1] {
        let px = row(r);
        assert!(px.contains(&0) && px.contains(&255), "row {r} not min-max normalised");
    }
    // The stem's 3-channel kernels are drawn in colour.
    let stem = explain::kernel_grid(&Tensor::randn([4, 3, 7, 7], (Kind::Float, Device::Cpu)), 2);
    assert!(stem.pixels().any(|p| p[0] != p[1] || p[1] != p[2]));
}

#[test]
fn batchnorm_slopes_match_a_direct_computation_and_the_layer_itself() {
    let weights = common::repo().join("models/demo/classifier.safetensors");
    let vs = explain::load_resnet18(&weights).expect("load");
    let img = image::open(common::repo().join("samples/photos/chelsea.jpg")).expect("sample").to_rgb8();
    for layer in ["bn1", "layer2.0.bn2", "layer3.0.downsample.1"] {
        let r = explain::batchnorm(&vs, &img, layer).expect("explain");
        assert!(
            r.max_error_train < 1e-4 && r.max_error_eval < 1e-4,
            "{layer}: {} {}",
            r.max_error_train,
            r.max_error_eval
        );
        // Direct: batch mean and biased variance of the captured input, per channel.
        let x = r.input.to_kind(Kind::Double);
        let c = x.size()[1];
        let flat = x.transpose(0, 1).reshape([c, -1]);
        let mean = flat.mean_dim(1, false, Kind::Double);
        let var = (&flat - mean.unsqueeze(1)).square().mean_dim(1, false, Kind::Double);
        let vars = vs.variables();
        let g = vars[&format!("{layer}.weight")].to_kind(Kind::Double);
        let b = vars[&format!("{layer}.bias")].to_kind(Kind::Double);
        let rm = vars[&format!("{layer}.running_mean")].to_kind(Kind::Double);
        let rv = vars[&format!("{layer}.running_var")].to_kind(Kind::Double);
        for ch in [0, (c / 2) as usize, c as usize - 1] {
            let k = ch as i64;
            let slope = g.double_value(&[k]) / (var.double_value(&[k]) + 1e-5).sqrt();
            let icpt = b.double_value(&[k]) - mean.double_value(&[k]) * slope;
            let e_slope = g.double_value(&[k]) / (rv.double_value(&[k]) + 1e-5).sqrt();
            let e_icpt = b.double_value(&[k]) - rm.double_value(&[k]) * e_slope;
            let got = &r.channels[ch];
            assert!((got.train_slope - slope).abs() < 1e-6 * slope.abs().max(1.0), "{layer}[{ch}] train slope");
            assert!((got.train_intercept - icpt).abs() < 1e-6 * icpt.abs().max(1.0), "{layer}[{ch}] train icpt");
            assert!((got.eval_slope - e_slope).abs() < 1e-9 * e_slope.abs().max(1.0), "{layer}[{ch}] eval slope");
            assert!((got.eval_intercept - e_icpt).abs() < 1e-9 * e_icpt.abs().max(1.0), "{layer}[{ch}] eval icpt");
        }
        // The traced eval-mode forward is the classifier boxwalk runs.
        let cls = boxwalk::models::Classifier::open(
            &weights,
            boxwalk::models::Placement { device: Device::Cpu, half: false },
        )
        .expect("classifier");
        let x = boxwalk::preprocess::classifier_input(&boxwalk::preprocess::upload(&img, Device::Cpu));
        let top = &cls.top_k(&x, 5)[0];
        assert_eq!(
            top.iter().map(|p| p.index as i64).collect::<Vec<_>>(),
            r.top5_eval.iter().map(|p| p.0).collect::<Vec<_>>()
        );
        assert!((f64::from(top[0].prob) - r.top5_eval[0].1).abs() < 1e-4);
        assert!(r.max_prob_change > 0.0, "one image's statistics differ from the running ones");
    }
    assert!(explain::batchnorm(&vs, &img, "layer1.0.conv1").is_err(), "not a BatchNorm");

    let t = tempfile::tempdir().expect("tempdir");
    let plot = t.path().join("bn.png");
    let o = common::boxwalk()
        .args(["explain", "batchnorm"])
        .arg(common::repo().join("samples/photos/coffee.jpg"))
        .args(["--layer", "layer1.0.bn1", "--plot"])
        .arg(&plot)
        .arg("--weights")
        .arg(&weights)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("train slope") && stdout.contains("top-5, train mode"), "{stdout}");
    let p = image::open(&plot).expect("plot").to_rgb8();
    assert!(p.width() > 400 && p.pixels().filter(|px| px[0] != px[1]).count() > 100, "coloured points drawn");
}
