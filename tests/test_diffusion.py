"""Fast-DDPM pieces: the non-uniform DDIM scheduler, the prepare-batch, the seeded sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misr_monai.diffusion import (
    FAST_DDPM_TIMESTEPS,
    FastDDIMScheduler,
    FastDDPMPrepareBatch,
    FastDDPMSampler,
    SamplingPredictor,
    SliceTarget,
)


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
    prepare = FastDDPMPrepareBatch(target=SliceTarget(residual=True, scale=10.0))
    torch.manual_seed(0)
    neighbours, label = torch.rand(512, 2, 4, 4), torch.rand(512, 1, 4, 4)
    x0, target, args, kwargs = prepare({"image": neighbours, "label": label})
    assert set(kwargs["timesteps"].tolist()) == set(FAST_DDPM_TIMESTEPS)  # all 10 drawn, nothing else
    torch.testing.assert_close(x0, (label - neighbours.mean(1, keepdim=True)) * 10)
    assert target is kwargs["noise"] and kwargs["mode"] == "concat" and kwargs["condition"] is not None
    v_prepare = FastDDPMPrepareBatch(scheduler=_scheduler(prediction="v_prediction"))
    v_x0, v, _, v_kwargs = v_prepare({"image": neighbours, "label": label})
    a = v_prepare.scheduler.alphas_cumprod[v_kwargs["timesteps"]].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(v, a**0.5 * v_kwargs["noise"] - (1 - a) ** 0.5 * v_x0)
    torch.testing.assert_close(SliceTarget(True, 10.0).decode(x0, neighbours), label)
    torch.testing.assert_close(SliceTarget(False, 2.0).encode(torch.ones(1, 1, 2, 2), neighbours[:1]),
                               torch.ones(1, 1, 2, 2))


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
    sampler = FastDDPMSampler(_scheduler(), SliceTarget(residual=True, scale=10.0), num_samples=3, seed=5)
    pairs = torch.rand(2, 2, 13, 11)  # not a multiple of 8: padded, then cropped
    mean, std = sampler.sample_stats(pairs, net)
    assert net.seen == [999, 949, 899, 849, 799, 699, 599, 399, 199, 0]  # t itself, not the step index
    assert mean.shape == std.shape == (2, 1, 13, 11) and float(std.min()) > 0
    sampler.reset()
    mean2, std2 = sampler.sample_stats(pairs, net)
    assert torch.equal(mean, mean2) and torch.equal(std, std2)


def test_sampling_predictor_gives_mean_and_std_in_volume_units():
    sampler = FastDDPMSampler(_scheduler(), SliceTarget(residual=True, scale=10.0), num_samples=2, seed=0)
    predictor = SamplingPredictor(_TimeRecorder(), sampler, batch_size=2)
    slices = np.random.default_rng(0).random((4, 9, 9)).astype(np.float32) * 300
    mean, std = predictor.predict_with_std(slices)
    assert mean.shape == std.shape == (3, 9, 9)
    np.testing.assert_array_equal(predictor(slices), mean)  # re-seeded per volume: the same draw
