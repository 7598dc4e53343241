import math
from pathlib import Path

import pytest
import torch

from argos_wm.schedulers import ShortcutForcingScheduler

HUB_SCHEDULER = Path(__file__).resolve().parents[1] / "hub_configs" / "scheduler"


def public_config(scheduler):
    return {key: value for key, value in scheduler.config.items() if not key.startswith("_")}


def test_config_round_trip(tmp_path):
    scheduler = ShortcutForcingScheduler(
        max_shortcut_steps=16, use_shortcut=False, signal_level_sampler="shift", shift_latent_dim=1024
    )
    scheduler.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    reloaded = ShortcutForcingScheduler.from_pretrained(tmp_path)
    assert public_config(reloaded) == public_config(scheduler)
    assert reloaded.config.shift_latent_dim == 1024 and reloaded.config.use_shortcut is False


def test_hub_config_is_the_default():
    scheduler = ShortcutForcingScheduler.from_pretrained(HUB_SCHEDULER)
    assert public_config(scheduler) == public_config(ShortcutForcingScheduler())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_shortcut_steps": 48}, "max_shortcut_steps"),
        ({"max_shortcut_steps": 0}, "max_shortcut_steps"),
        ({"bootstrap_fraction": 1.5}, "bootstrap_fraction"),
        ({"signal_level_sampler": "cosine"}, "signal_level_sampler"),
        ({"logit_normal_std": 0.0}, "logit_normal_std"),
        ({"shift_latent_dim": 0}, "shift_latent_dim"),
        ({"prediction_type": "epsilon"}, "prediction_type"),
        ({"loss_weight_floor": -0.1}, "loss_weight_floor"),
    ],
)
def test_bad_config_raises(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ShortcutForcingScheduler(**kwargs)


def test_add_noise_latents_and_states():
    scheduler = ShortcutForcingScheduler()
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 3, 4, 5, generator=generator), torch.randn(2, 3, 4, 5, generator=generator)
    signal_levels = torch.tensor([[0.0, 0.25, 1.0], [0.5, 0.75, 0.1]])
    noisy = scheduler.add_noise(latents, noise, signal_levels)
    for b in range(2):
        for t in range(3):
            tau = signal_levels[b, t].item()
            torch.testing.assert_close(noisy[b, t], (1 - tau) * noise[b, t] + tau * latents[b, t])
    torch.testing.assert_close(noisy[0, 0], noise[0, 0])
    torch.testing.assert_close(noisy[0, 2], latents[0, 2])

    states, state_noise = torch.randn(2, 3, 2, generator=generator), torch.randn(2, 3, 2, generator=generator)
    torch.testing.assert_close(scheduler.add_noise(states, state_noise, 0.3), 0.7 * state_noise + 0.3 * states)
    with pytest.raises(ValueError, match="noise"):
        scheduler.add_noise(latents, noise[:, :2], signal_levels)
    with pytest.raises(ValueError, match="shape"):
        scheduler.add_noise(latents, noise, signal_levels[:, :2])


def test_loss_weight_ramp():
    signal_levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(ShortcutForcingScheduler().loss_weight(signal_levels), 0.9 * signal_levels + 0.1)
    flat = ShortcutForcingScheduler(loss_weight_floor=1.0).loss_weight(signal_levels)
    torch.testing.assert_close(flat, torch.ones(4))


@pytest.mark.parametrize("num_inference_steps", [1, 2, 4, 16])
def test_set_timesteps_grid(num_inference_steps):
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16)
    scheduler.set_timesteps(num_inference_steps)
    expected = torch.tensor([k / num_inference_steps for k in range(num_inference_steps)])
    torch.testing.assert_close(scheduler.timesteps, expected)
    assert scheduler.step_size == 1 / num_inference_steps
    assert scheduler.num_inference_steps == num_inference_steps


@pytest.mark.parametrize("use_shortcut", [True, False])
@pytest.mark.parametrize("num_inference_steps", [1, 2, 4, 16])
def test_denoising_steps_are_set_timesteps_without_changing_the_scheduler(num_inference_steps, use_shortcut):
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, use_shortcut=use_shortcut)
    scheduler.set_timesteps(8)
    steps = scheduler.denoising_steps(num_inference_steps)
    assert scheduler.num_inference_steps == 8  # untouched: other callers share this scheduler
    reference = ShortcutForcingScheduler(max_shortcut_steps=16, use_shortcut=use_shortcut)
    reference.set_timesteps(num_inference_steps)
    assert steps.signal_levels == reference.timesteps.tolist()
    assert (steps.step_size, steps.model_step_size) == (reference.step_size, reference.model_step_size)
    with pytest.raises(ValueError, match="power of two"):
        scheduler.denoising_steps(3)


@pytest.mark.parametrize("num_inference_steps", [0, 3, 6, 32, 2.0])
def test_set_timesteps_bad_k(num_inference_steps):
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(num_inference_steps)


def test_sample_and_velocity_steps_agree():
    generator = torch.Generator().manual_seed(1)
    sample, pred = torch.randn(2, 3, 4, 5, generator=generator), torch.randn(2, 3, 4, 5, generator=generator)
    signal_levels = torch.tensor([[0.0, 0.25, 0.5], [0.75, 0.125, 0.5]])
    step_sizes = torch.tensor([[0.25, 0.5, 0.5], [0.25, 0.125, 0.25]])
    velocity = (pred - sample) / (1 - signal_levels[..., None, None])

    x_scheduler = ShortcutForcingScheduler(prediction_type="sample")
    v_scheduler = ShortcutForcingScheduler(prediction_type="velocity")
    from_sample = x_scheduler.step(pred, signal_levels, sample, step_size=step_sizes)
    from_velocity = v_scheduler.step(velocity, signal_levels, sample, step_size=step_sizes)

    expected = sample + step_sizes[..., None, None] * velocity
    torch.testing.assert_close(from_sample.prev_sample, expected)
    torch.testing.assert_close(from_velocity.prev_sample, expected)
    torch.testing.assert_close(from_sample.pred_original_sample, pred)
    torch.testing.assert_close(from_velocity.pred_original_sample, pred)
    prev, original = x_scheduler.step(pred, signal_levels, sample, step_size=step_sizes, return_dict=False)
    torch.testing.assert_close(prev, expected)
    assert torch.equal(original, pred)
    for scheduler in (x_scheduler, v_scheduler):  # the model's clean prediction, whatever the parametrisation
        torch.testing.assert_close(scheduler.step_from_sample(pred, signal_levels, sample, step_sizes), expected)


def test_step_on_states_with_scalar_level():
    scheduler = ShortcutForcingScheduler()
    scheduler.set_timesteps(4)
    sample, pred = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    prev = scheduler.step(pred, scheduler.timesteps[1], sample).prev_sample
    torch.testing.assert_close(prev, sample + 0.25 * (pred - sample) / 0.75)


@pytest.mark.parametrize("prediction_type", ["sample", "velocity"])
@pytest.mark.parametrize("num_inference_steps", [1, 2, 4, 64])
def test_oracle_prediction_lands_on_data(prediction_type, num_inference_steps):
    generator = torch.Generator().manual_seed(2)
    data, noise = torch.randn(2, 3, 4, 5, generator=generator), torch.randn(2, 3, 4, 5, generator=generator)
    scheduler = ShortcutForcingScheduler(prediction_type=prediction_type)
    scheduler.set_timesteps(num_inference_steps)
    sample = noise
    for signal_level in scheduler.timesteps:
        oracle = data if prediction_type == "sample" else data - noise
        sample = scheduler.step(oracle, signal_level, sample).prev_sample
        # every step stays on the straight path between the noise and the data
        torch.testing.assert_close(sample, scheduler.add_noise(data, noise, signal_level + scheduler.step_size))
    if prediction_type == "sample":
        assert torch.equal(sample, data)
    torch.testing.assert_close(sample, data, atol=1e-5, rtol=0)


def test_step_bad_inputs():
    scheduler = ShortcutForcingScheduler()
    sample = torch.randn(1, 2, 3)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(sample, 0.0, sample)
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match="model_output"):
        scheduler.step(sample[:, :1], 0.0, sample)
    with pytest.raises(ValueError, match="tau \\+ d <= 1"):
        scheduler.step(sample, 0.9, sample)
    with pytest.raises(ValueError, match="shape"):
        scheduler.step(sample, torch.zeros(1, 3), sample)


def test_uniform_and_logit_normal_samplers():
    generator = torch.Generator().manual_seed(3)
    uniform = ShortcutForcingScheduler().sample_signal_levels((200, 50), generator=generator)
    assert uniform.shape == (200, 50) and uniform.min() >= 0 and uniform.max() < 1
    assert abs(uniform.mean().item() - 0.5) < 0.02
    assert abs((uniform < 0.25).float().mean().item() - 0.25) < 0.02

    logit_normal = ShortcutForcingScheduler(signal_level_sampler="logit_normal", logit_normal_mean=1.0)
    levels = logit_normal.sample_signal_levels((200, 50), generator=generator)
    assert levels.min() > 0 and levels.max() < 1
    assert abs(levels.median().item() - 1 / (1 + math.exp(-1.0))) < 0.02
    logits = torch.log(levels / (1 - levels))
    assert abs(logits.std().item() - 1.0) < 0.03


def test_resolution_shift():
    scheduler = ShortcutForcingScheduler(signal_level_sampler="shift", shift_base_dim=4096, shift_latent_dim=256 * 768)
    alpha = math.sqrt(4096 / (256 * 768))
    assert scheduler.shift_alpha == pytest.approx(alpha)
    levels = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    shifted = scheduler.shift_signal_levels(levels)
    # the amplitude signal-to-noise ratio tau / (1 - tau) is scaled by alpha
    torch.testing.assert_close(shifted / (1 - shifted), alpha * levels / (1 - levels))
    assert torch.all(shifted < levels) and torch.all(shifted.diff() > 0)
    torch.testing.assert_close(scheduler.shift_signal_levels(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))

    sampled = scheduler.sample_signal_levels((1000,), generator=torch.Generator().manual_seed(4))
    uniform = ShortcutForcingScheduler().sample_signal_levels((1000,), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(sampled, scheduler.shift_signal_levels(uniform))
    assert sampled.median() < 0.2  # alpha ~ 0.14 moves the median level 0.5 to ~ 0.13


def test_training_levels_shortcut_grid():
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, bootstrap_fraction=1.0)
    signal_levels, step_sizes = scheduler.sample_training_levels(500, 4, generator=torch.Generator().manual_seed(5))
    assert signal_levels.shape == step_sizes.shape == (500, 4)
    sizes = {round(value, 6) for value in step_sizes.unique().tolist()}
    assert sizes == {1.0, 0.5, 0.25, 0.125}  # uniformly over the log2 grid above d_min = 1/16
    for size in sizes:
        share = (step_sizes == size).float().mean().item()
        assert abs(share - 0.25) < 0.04
    positions = signal_levels / step_sizes
    torch.testing.assert_close(positions, positions.round())  # tau on d's grid {0, d, ..., 1 - d}
    assert torch.all(signal_levels + step_sizes <= 1)
    assert torch.all(signal_levels[step_sizes == 1.0] == 0)
    assert len(signal_levels[step_sizes == 0.125].unique()) == 8


@pytest.mark.parametrize("fraction, expected", [(0.25, 0.25), (None, 4 / 5)])
def test_training_levels_bootstrap_share_and_flow_frames(fraction, expected):
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, bootstrap_fraction=fraction)
    signal_levels, step_sizes = scheduler.sample_training_levels(4000, 3, generator=torch.Generator().manual_seed(6))
    is_bootstrap = step_sizes > 1 / 16
    assert abs(is_bootstrap.float().mean().item() - expected) < 0.03  # None: Dreamer 4, d uniform over 5 sizes
    # drawn per frame: sequences mix d_min frames and shortcut frames, in every order, as rollouts feed the model
    mixed = is_bootstrap.any(dim=1) & ~is_bootstrap.all(dim=1)
    assert abs(mixed.float().mean().item() - (1 - expected**3 - (1 - expected) ** 3)) < 0.04
    assert (~is_bootstrap[:, :-1] & is_bootstrap[:, 1:]).any()  # a shortcut frame after a d_min frame
    flow_levels = signal_levels[~is_bootstrap]
    assert len(flow_levels.unique()) > 1000  # continuous sampler, not a grid


@pytest.mark.parametrize("kwargs", [{"use_shortcut": False}, {"bootstrap_fraction": 0.0}, {"max_shortcut_steps": 1}])
def test_training_levels_plain_diffusion_forcing(kwargs):
    scheduler = ShortcutForcingScheduler(**{"bootstrap_fraction": 1.0, **kwargs})
    signal_levels, step_sizes = scheduler.sample_training_levels(64, 4, generator=torch.Generator().manual_seed(7))
    assert torch.all(step_sizes == scheduler.min_step_size)
    assert len(signal_levels.unique()) == 256


def test_training_levels_reproducible():
    scheduler = ShortcutForcingScheduler(bootstrap_fraction=0.5)
    first = scheduler.sample_training_levels(8, 4, generator=torch.Generator().manual_seed(8))
    second = scheduler.sample_training_levels(8, 4, generator=torch.Generator().manual_seed(8))
    third = scheduler.sample_training_levels(8, 4, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], third[0])
    with pytest.raises(ValueError, match="batch_size"):
        scheduler.sample_training_levels(0, 4)


def test_model_step_size_follows_training_mode():
    shortcut = ShortcutForcingScheduler(max_shortcut_steps=16)
    with pytest.raises(ValueError, match="set_timesteps"):
        shortcut.model_step_size
    shortcut.set_timesteps(4)
    assert shortcut.model_step_size == 0.25
    plain = ShortcutForcingScheduler(max_shortcut_steps=16, use_shortcut=False)
    plain.set_timesteps(4)
    assert plain.model_step_size == 1 / 16 and plain.step_size == 0.25


@pytest.mark.parametrize("num_frames", [2, 3, 8])
def test_training_levels_clean_context(num_frames):
    """`clean_context_probability`: that share of sequences has nearly clean `d_min` frames before a cut in
    {1, ..., T - 1}, the frames from the cut on drawn as usual; 0 leaves the draws untouched."""
    # context levels in [0.99, 1): an ordinary draw lands there with probability < 1 %, so prefixes are the cuts
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, clean_context_probability=0.5, context_signal_level=0.99)
    levels, steps = scheduler.sample_training_levels(4000, num_frames, generator=torch.Generator().manual_seed(0))
    context = (levels >= 0.99) & (steps == scheduler.min_step_size)
    cut = context.int().cumprod(dim=1).sum(dim=1)  # length of each sequence's clean prefix
    chosen = cut > 0
    assert 0.47 < chosen.float().mean() < 0.54
    assert (cut < num_frames).float().mean() > 0.98  # a prefix, not the whole sequence: the last frame is a target
    prefixes = cut[chosen & (cut < num_frames)]
    assert set(prefixes.tolist()) == set(range(1, num_frames))  # every cut occurs
    assert (levels[:, -1] < 0.99).float().mean() > 0.98  # the last frame keeps the ordinary draw

    plain, with_zero = ShortcutForcingScheduler(max_shortcut_steps=16), ShortcutForcingScheduler(max_shortcut_steps=16)
    with_zero.register_to_config(clean_context_probability=0.0)
    a = plain.sample_training_levels(8, num_frames, generator=torch.Generator().manual_seed(1))
    b = with_zero.sample_training_levels(8, num_frames, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_clean_context_bad_config():
    with pytest.raises(ValueError, match="clean_context_probability"):
        ShortcutForcingScheduler(clean_context_probability=1.5)
    with pytest.raises(ValueError, match="context_signal_level"):
        ShortcutForcingScheduler(context_signal_level=-0.1)


def test_training_levels_teacher_forcing():
    """Teacher-forced sequences: clean context and the last real frame from pure noise, at d_min, whatever the
    bootstrap settings; without a frame mask the last frame is the noised one. A share of them mixes with the rest."""
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, teacher_forcing_probability=1.0)
    levels, steps = scheduler.sample_training_levels(3, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(levels, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]] * 3))
    assert torch.all(steps == 1 / 16)
    frame_mask = torch.tensor([[True] * 5, [True, True, True, False, False], [True, False, False, False, False]])
    levels, _ = scheduler.sample_training_levels(3, 5, frame_mask=frame_mask)
    assert levels.eq(0).sum(dim=1).tolist() == [1, 1, 1]
    assert levels.argmin(dim=1).tolist() == [4, 2, 0]

    mixed = ShortcutForcingScheduler(max_shortcut_steps=16, teacher_forcing_probability=0.5)
    levels, steps = mixed.sample_training_levels(4000, 4, generator=torch.Generator().manual_seed(1))
    forced = (levels[:, :3] == 1).all(dim=1) & (levels[:, 3] == 0)
    assert 0.45 < forced.float().mean() < 0.55
    assert torch.all(steps[forced] == 1 / 16) and (steps[~forced] > 1 / 16).any()  # the others keep their shortcuts
    with pytest.raises(ValueError, match="teacher_forcing_probability"):
        ShortcutForcingScheduler(teacher_forcing_probability=1.5)
    with pytest.raises(ValueError, match=r"`frame_mask` must have shape \[B, T\] = \[3, 5\], got \[4, 5\]"):
        scheduler.sample_training_levels(3, 5, frame_mask=torch.ones(4, 5, dtype=torch.bool))
