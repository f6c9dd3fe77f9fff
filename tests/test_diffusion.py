"""Fast-DDPM pieces: the non-uniform DDIM scheduler, the prepare-batch, the seeded sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misr_monai.engines.diffusion import FastDDPMPrepareBatch
from misr_monai.inferers import FastDDPMSampler, SliceTarget
from misr_monai.networks.schedulers import FAST_DDPM_TIMESTEPS, FastDDIMScheduler
from misr_monai.predictors.sampling import SamplingPredictor


def _scheduler(timesteps=FAST_DDPM_TIMESTEPS, prediction="epsilon"):
    return FastDDIMScheduler(timesteps, schedule="linear_beta", beta_start=1e-4, beta_end=0.02,
                             prediction_type=prediction)


def test_timesteps_are_the_official_set_without_repeats():
    s = _scheduler()
    assert s.timesteps.tolist() == [999, 949, 899, 849, 799, 699, 599, 399, 199, 0]
    assert [s.previous_timestep(t) for t in s.timesteps.tolist()] == [949, 899, 849, 799, 699, 599, 399, 199, 0, -1]
    assert _scheduler(10).timesteps.tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]  # uniform option
    with pytest.raises(ValueError, match="distinct"):
        _scheduler([0, 699, 699, 999])


def test_step_matches_a_hand_written_ddim_update():
    s = _scheduler()
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alphas_cumprod = np.cumprod(1 - betas)
    x_t, eps = 0.7, -0.3  # fixed numbers
    for t, prev in [(999, 949), (699, 599), (199, 0)]:
        a_t, a_prev = alphas_cumprod[t], alphas_cumprod[prev]
        x0 = (x_t - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        expected = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
        got, got_x0 = s.step(torch.tensor([eps]), t, torch.tensor([x_t]))
        assert float(got_x0) == pytest.approx(x0, rel=1e-5)
        assert float(got) == pytest.approx(expected, rel=1e-5)
    got, got_x0 = s.step(torch.tensor([eps]), 0, torch.tensor([x_t]))  # the last step returns x0 itself
    torch.testing.assert_close(got, got_x0)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_oracle_recovers_x0_without_clamping(prediction):
    s = _scheduler(prediction=prediction)
    x0 = torch.randn(2, 1, 6, 6) * 3  # outside [-1, 1]: no clamp may touch it
    x = torch.randn_like(x0)
    for t in s.timesteps.tolist():
        a = s.alphas_cumprod[t]
        eps = (x - a**0.5 * x0) / (1 - a) ** 0.5
        x, _ = s.step(eps if prediction == "epsilon" else a**0.5 * eps - (1 - a) ** 0.5 * x0, t, x)
    torch.testing.assert_close(x, x0, atol=1e-4, rtol=1e-4)


def test_prepare_batch_draws_only_the_set_and_encodes_the_residual():
    prepare = FastDDPMPrepareBatch(target=SliceTarget("mean", scale=10.0))
    torch.manual_seed(0)
    neighbours, label = torch.rand(512, 2, 4, 4), torch.rand(512, 1, 4, 4)
    x0, target, args, kwargs = prepare({"image": neighbours, "label": label})
    assert set(kwargs["timesteps"].tolist()) == set(FAST_DDPM_TIMESTEPS)  # all 10 drawn, nothing else
    torch.testing.assert_close(x0, (label - neighbours.mean(1, keepdim=True)) * 10)
    assert target is kwargs["noise"] and kwargs["mode"] == "concat" and kwargs["condition"] is neighbours
    v_prepare = FastDDPMPrepareBatch(scheduler=_scheduler(prediction="v_prediction"))
    v_x0, v, _, v_kwargs = v_prepare({"image": neighbours, "label": label})
    a = v_prepare.scheduler.alphas_cumprod[v_kwargs["timesteps"]].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(v, a**0.5 * v_kwargs["noise"] - (1 - a) ** 0.5 * v_x0)
    target = SliceTarget("mean", 10.0)
    torch.testing.assert_close(target.decode(x0, target.condition(neighbours)[1]), label)
    torch.testing.assert_close(SliceTarget("none", 2.0).encode(torch.ones(1, 1, 2, 2), 0.5), torch.ones(1, 1, 2, 2))


class _Base(torch.nn.Module):
    """A stand-in base network: the neighbours' mean plus 0.1."""

    def forward(self, x):
        return x.mean(1, keepdim=True) + 0.1


def test_base_target_diffuses_the_residual_over_the_frozen_base_and_conditions_on_it():
    base = torch.nn.Sequential(torch.nn.Conv2d(2, 1, 3, padding=1))
    target = SliceTarget("base", scale=16.0, base=base)
    assert not base.training and not any(p.requires_grad for p in base.parameters())  # frozen
    prepare = FastDDPMPrepareBatch(target=target, scheduler=_scheduler(prediction="sample"))
    neighbours, label = torch.rand(4, 2, 8, 8), torch.rand(4, 1, 8, 8)
    x0, loss_target, _, kwargs = prepare({"image": neighbours, "label": label})
    with torch.no_grad():
        expected = base(neighbours)
    torch.testing.assert_close(kwargs["condition"], torch.cat([neighbours, expected], 1))  # 3 condition channels
    torch.testing.assert_close(x0, (label - expected) * 16)
    assert loss_target is x0  # x0 ("sample") prediction: the loss target is the diffused value itself
    with pytest.raises(ValueError, match="base network"):
        SliceTarget("base")
    with pytest.raises(ValueError, match="skip"):
        SliceTarget("linear")


def test_untrained_refiner_returns_the_base_exactly():
    """x0 prediction with DiffusionModelUNet's zero-initialised output convolution starts where the base is."""
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    unet = DiffusionModelUNet(spatial_dims=2, in_channels=4, out_channels=1, channels=(8, 16, 16, 16),
                              attention_levels=(False, False, False, True), num_res_blocks=1,
                              num_head_channels=(0, 0, 0, 8), norm_num_groups=8).eval()
    pairs = torch.rand(2, 2, 13, 11)
    for k in (1, 3):
        sampler = FastDDPMSampler(_scheduler(prediction="sample"), SliceTarget("base", 16.0, _Base()), num_samples=k)
        mean, std = sampler.sample_stats(pairs, unet)
        if k == 1:  # one sample: bit for bit
            assert torch.equal(mean, pairs.mean(1, keepdim=True) + 0.1)
        else:  # the mean of K equal samples, to float rounding; no spread
            torch.testing.assert_close(mean, pairs.mean(1, keepdim=True) + 0.1)
            assert float(std.max()) == 0.0


def test_warm_start_puts_a_two_slice_refiners_kernels_where_its_images_now_are():
    """A refiner over a 2-slice base (noisy, i-1, i+1, base) loaded into one over a context base (noisy, i-2, i-1, i+1,
    i+2, spline, base) gives the same output whatever the new channels hold."""
    from monai.networks.nets import DiffusionModelUNet

    from misr_monai.weights import warm_start_refiner

    def unet(channels):
        return DiffusionModelUNet(spatial_dims=2, in_channels=channels, out_channels=1, channels=(8, 16, 16, 16),
                                  attention_levels=(False, False, False, True), num_res_blocks=1,
                                  num_head_channels=(0, 0, 0, 8), norm_num_groups=8).eval()

    torch.manual_seed(0)
    old = unet(4)
    torch.nn.init.normal_(old.out[-1].conv.weight, std=0.05)
    new = warm_start_refiner(unet(7), old.state_dict())
    x, t = torch.rand(2, 7, 16, 16), torch.tensor([999, 199])
    with torch.no_grad():
        torch.testing.assert_close(new(x, t), old(x[:, [0, 2, 3, 6]], t))
    with pytest.raises(RuntimeError):
        warm_start_refiner(unet(6), old.state_dict())  # not 2K + 3 channels: loaded strictly, and refused


def test_eta_draws_fresh_noise_from_the_samplers_seeded_generator():
    """DDIM eta > 0 adds noise at each step, drawn from the sampler's generator: a reset gives the same samples."""
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    unet = DiffusionModelUNet(spatial_dims=2, in_channels=4, out_channels=1, channels=(8, 16, 16, 16),
                              attention_levels=(False, False, False, True), num_res_blocks=1,
                              num_head_channels=(0, 0, 0, 8), norm_num_groups=8).eval()
    torch.nn.init.normal_(unet.out[-1].conv.weight, std=0.05)
    pairs = torch.rand(2, 2, 8, 8)
    draws = {}
    for eta in (0.0, 1.0):
        scheduler = _scheduler(prediction="sample")
        scheduler.eta = eta
        sampler = FastDDPMSampler(scheduler, SliceTarget("base", 16.0, _Base()))
        with torch.no_grad():
            draws[eta] = sampler(pairs, unet)
            sampler.reset()
            torch.manual_seed(123)  # the global generator does not matter
            assert torch.equal(sampler(pairs, unet), draws[eta])
    assert not torch.equal(draws[0.0], draws[1.0])


class _TimeRecorder(torch.nn.Module):
    """A stand-in network that records the timesteps it is given and predicts zero noise."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, timesteps, context=None):
        self.seen.append(float(timesteps.reshape(-1)[0]))
        return torch.zeros_like(x[:, :1])


def test_sampler_feeds_t_to_the_network_pads_and_reproduces():
    net = _TimeRecorder()
    sampler = FastDDPMSampler(_scheduler(), SliceTarget("mean", scale=10.0), num_samples=3, seed=5)
    pairs = torch.rand(2, 2, 13, 11)  # not a multiple of 8: padded, then cropped
    mean, std = sampler.sample_stats(pairs, net)
    assert net.seen == [999, 949, 899, 849, 799, 699, 599, 399, 199, 0]  # t itself, not the step index
    assert mean.shape == std.shape == (2, 1, 13, 11) and float(std.min()) > 0
    sampler.reset()
    mean2, std2 = sampler.sample_stats(pairs, net)
    assert torch.equal(mean, mean2) and torch.equal(std, std2)


def test_sampling_predictor_gives_mean_and_std_in_volume_units():
    sampler = FastDDPMSampler(_scheduler(), SliceTarget("mean", scale=10.0), num_samples=2, seed=0)
    predictor = SamplingPredictor(_TimeRecorder(), sampler, batch_size=2)
    slices = np.random.default_rng(0).random((4, 9, 9)).astype(np.float32) * 300
    mean, std = predictor.predict_with_std(slices)
    assert mean.shape == std.shape == (3, 9, 9)
    np.testing.assert_array_equal(predictor(slices), mean)  # re-seeded per volume: the same draw
    # in volume units: the network works on slices scaled by their percentile, so a volume twice as bright (the same
    # scaled slices, the same noise) gives a mean and a spread twice as large; scaled units would stay the same
    mean2, std2 = predictor.predict_with_std(2 * slices)
    assert float(std.mean()) > 0
    np.testing.assert_allclose(mean2, 2 * mean, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(std2, 2 * std, rtol=1e-5, atol=1e-3)
