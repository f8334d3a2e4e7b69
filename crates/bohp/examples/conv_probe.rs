use bohp::device::{Backend, Precision, init_device};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};

#[derive(Module, Debug)]
struct Net {
    c: Vec<Conv2d>,
}

fn main() {
    let device = init_device(Backend::Flex, Precision::F32)
        .unwrap()
        .autodiff();
    let mut net = Net {
        c: (0..4)
            .map(|k| {
                Conv2dConfig::new([if k == 0 { 1 } else { 64 }, 64], [3, 3])
                    .with_stride([2, 2])
                    .init(&device)
            })
            .collect(),
    };
    let mut opt = AdamConfig::new().init();
    for batch in [96usize, 192, 384] {
        let t = std::time::Instant::now();
        for _ in 0..5 {
            let x: Tensor<4> =
                Tensor::random([batch, 1, 31, 31], Distribution::Uniform(0.0, 1.0), &device);
            let mut h = x;
            for c in &net.c {
                h = c.forward(h).tanh();
            }
            let loss = h.reshape([batch, 64]).powf_scalar(2.0).mean();
            let g = GradientsParams::from_grads(loss.backward(), &net);
            net = opt.step(1e-3, net, g);
        }
        println!(
            "{batch} images: {:.1} ms per update",
            t.elapsed().as_secs_f64() * 200.0
        );
    }
}
