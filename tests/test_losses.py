from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from argos_wm.configuration_world_model import ArgosWorldModelConfig
from argos_wm.modeling_world_model import ArgosWorldModel
from argos_wm.schedulers import ShortcutForcingScheduler
from argos_wm.training import DiffusionForcingLoss, ShortcutForcingLoss

TINY_CONFIG = Path(__file__).resolve().parents[1] / "hub_configs" / "argos-wm-tiny"
K_MAX = 8


class AffineModel(nn.Module):
    """A per-frame affine stand-in for the world model: x_hat = a * x_tau + g * tau + h * d (the same for states)."""

    def __init__(self, with_states: bool = True):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.6))
        self.signal_gain = nn.Parameter(torch.tensor(0.3))
        self.step_gain = nn.Parameter(torch.tensor(-0.2))
        self.state_scale = nn.Parameter(torch.tensor(0.8))
        self.with_states = with_states
        self.calls = []

    def forward(self, latents, signal_levels, step_sizes=None, states=None, **conditioning):
        self.calls.append(
            {
                "batch_size": latents.shape[0],
                "grad_enabled": torch.is_grad_enabled(),
                "signal_levels": signal_levels.clone(),
                "step_sizes": step_sizes.clone(),
                "conditioning": conditioning,
            }
        )
        tau, d = signal_levels[..., None], step_sizes[..., None]
        sample = self.scale * latents + self.signal_gain * tau[..., None] + self.step_gain * d[..., None]
        state_sample = None
        if self.with_states and states is not None:
            state_sample = self.state_scale * states + self.signal_gain * tau + self.step_gain * d
        return SimpleNamespace(sample=sample, state_sample=state_sample)


def make_clip(batch_size=2, frames=3, tokens=2, channels=3, state_dim=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(batch_size, frames, tokens, channels, generator=generator),
        "states": torch.randn(batch_size, frames, state_dim, generator=generator),
        "noise": torch.randn(batch_size, frames, tokens, channels, generator=generator),
        "state_noise": torch.randn(batch_size, frames, state_dim, generator=generator),
    }


# sequence 0: flow frames (d = d_min = 1/8) at continuous levels; sequence 1: shortcut frames on their grids, and one
# d_min frame that must stay where it is in the half steps.
SIGNAL_LEVELS = torch.tensor([[0.13, 0.52, 0.91], [0.5, 0.25, 0.8]])
STEP_SIZES = torch.tensor([[0.125, 0.125, 0.125], [0.5, 0.25, 0.125]])


def hand_targets(model, x, eps, tau, d, is_state):
    """Flow / bootstrap x-space targets and the prediction, computed frame by frame from the maths."""
    a = (model.state_scale if is_state else model.scale).item()
    g, h = model.signal_gain.item(), model.step_gain.item()
    predictions, targets = torch.zeros_like(x), torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            level, step = tau[b, t].item(), d[b, t].item()
            noisy = (1 - level) * eps[b, t] + level * x[b, t]
            predictions[b, t] = a * noisy + g * level + h * step
            if step == 1 / K_MAX:
                targets[b, t] = x[b, t]
                continue
            half = step / 2
            first = (a * noisy + g * level + h * half - noisy) / (1 - level)
            moved = noisy + half * first
            second = (a * moved + g * (level + half) + h * half - moved) / (1 - level - half)
            targets[b, t] = noisy + (1 - level) * (first + second) / 2
    return predictions, targets


def hand_frame_losses(model, clip, tau, d):
    weight = 0.9 * tau + 0.1
    prediction, target = hand_targets(model, clip["latents"], clip["noise"], tau, d, is_state=False)
    latent = weight * (prediction - target).pow(2).mean(dim=(2, 3))
    prediction, target = hand_targets(model, clip["states"], clip["state_noise"], tau, d, is_state=True)
    state = weight * (prediction - target).pow(2).mean(dim=2)
    return latent, state


def run_loss(model, clip, state_loss_weight=0.5, normalization="frame", **kwargs):
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=K_MAX)
    loss_fn = ShortcutForcingLoss(scheduler, state_loss_weight=state_loss_weight, normalization=normalization)
    arguments = {"signal_levels": SIGNAL_LEVELS, "step_sizes": STEP_SIZES, **clip, **kwargs}
    return loss_fn(model, **arguments)


def test_shortcut_loss_matches_hand_computation():
    model, clip = AffineModel(), make_clip()
    output = run_loss(model, clip)
    latent, state = hand_frame_losses(model, clip, SIGNAL_LEVELS, STEP_SIZES)
    torch.testing.assert_close(output.latent_loss, latent.mean())
    torch.testing.assert_close(output.state_loss, state.mean())
    torch.testing.assert_close(output.loss, latent.mean() + 0.5 * state.mean())

    frame_loss = latent + 0.5 * state
    is_bootstrap = STEP_SIZES > 1 / K_MAX
    torch.testing.assert_close(output.flow_loss, frame_loss[~is_bootstrap].mean())
    torch.testing.assert_close(output.bootstrap_loss, frame_loss[is_bootstrap].mean())
    # buckets of width 1/4: [0.13], [0.25], [0.52, 0.5], [0.91, 0.8]
    assert output.frames_by_signal_level.tolist() == [1, 1, 2, 2]
    expected_buckets = torch.stack(
        [frame_loss[0, 0], frame_loss[1, 1], (frame_loss[0, 1] + frame_loss[1, 0]) / 2, frame_loss[[0, 1], [2, 2]].mean()]
    )
    torch.testing.assert_close(output.loss_by_signal_level, expected_buckets)


def test_half_steps_run_without_grad_on_bootstrap_sequences_only():
    model, clip = AffineModel(), make_clip(batch_size=3)
    signal_levels = torch.cat([SIGNAL_LEVELS, SIGNAL_LEVELS[:1]])
    step_sizes = torch.cat([STEP_SIZES, STEP_SIZES[:1]])
    actions = torch.arange(9.0).view(3, 3, 1)
    run_loss(model, clip, signal_levels=signal_levels, step_sizes=step_sizes, actions=actions)
    main, first, second = model.calls
    assert main["grad_enabled"] and main["batch_size"] == 3
    assert not first["grad_enabled"] and not second["grad_enabled"]
    assert first["batch_size"] == second["batch_size"] == 1
    torch.testing.assert_close(first["conditioning"]["actions"], actions[1:2])
    torch.testing.assert_close(first["step_sizes"], torch.tensor([[0.25, 0.125, 0.125]]))
    torch.testing.assert_close(second["step_sizes"], torch.tensor([[0.25, 0.125, 0.125]]))
    torch.testing.assert_close(second["signal_levels"], torch.tensor([[0.75, 0.375, 0.8]]))


def test_gradient_does_not_flow_into_bootstrap_target():
    model, clip = AffineModel(), make_clip()
    run_loss(model, clip).loss.backward()
    module_grads = [parameter.grad.clone() for parameter in model.parameters()]

    def hand_loss(detach_target):
        weight = 0.9 * SIGNAL_LEVELS + 0.1
        total = 0.0
        for key, noise_key, scale, coefficient, dims in (
            ("latents", "noise", model.scale, 1.0, (2, 3)),
            ("states", "state_noise", model.state_scale, 0.5, (2,)),
        ):
            x, eps = clip[key], clip[noise_key]
            tau, d = SIGNAL_LEVELS.view(2, 3, *[1] * len(dims)), STEP_SIZES.view(2, 3, *[1] * len(dims))
            noisy = (1 - tau) * eps + tau * x
            prediction = scale * noisy + model.signal_gain * tau + model.step_gain * d
            first = (scale * noisy + model.signal_gain * tau + model.step_gain * d / 2 - noisy) / (1 - tau)
            moved = noisy + d / 2 * first
            second = (scale * moved + model.signal_gain * (tau + d / 2) + model.step_gain * d / 2 - moved) / (
                1 - tau - d / 2
            )
            target = torch.where(d > 1 / K_MAX, noisy + (1 - tau) * (first + second) / 2, x)
            target = target.detach() if detach_target else target
            total = total + coefficient * (weight * (prediction - target).pow(2).mean(dim=dims)).mean()
        return total

    for detach_target, should_match in ((True, True), (False, False)):
        model.zero_grad()
        hand_loss(detach_target).backward()
        matches = all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(model.parameters(), module_grads))
        assert matches == should_match


def test_padding_frames_carry_no_loss():
    model, clip = AffineModel(), make_clip()
    frame_mask = torch.tensor([[True, True, False], [True, False, False]])
    output = run_loss(model, clip, frame_mask=frame_mask)
    latent, state = hand_frame_losses(model, clip, SIGNAL_LEVELS, STEP_SIZES)
    torch.testing.assert_close(output.latent_loss, latent[frame_mask].mean())
    torch.testing.assert_close(output.state_loss, state[frame_mask].mean())
    assert output.frames_by_signal_level.sum().item() == 3

    padded = {key: value.clone() for key, value in clip.items()}
    padded["latents"][~frame_mask] += 10.0
    padded["states"][~frame_mask] -= 10.0
    torch.testing.assert_close(run_loss(model, padded, frame_mask=frame_mask).loss, output.loss)
    padded["latents"][0, 0] += 1.0
    assert not torch.allclose(run_loss(model, padded, frame_mask=frame_mask).loss, output.loss)


def test_sequence_normalization_weights_sequences_equally():
    model, clip = AffineModel(), make_clip()
    frame_mask = torch.tensor([[True, True, True], [True, False, False]])
    output = run_loss(model, clip, frame_mask=frame_mask, normalization="sequence")
    latent, _ = hand_frame_losses(model, clip, SIGNAL_LEVELS, STEP_SIZES)
    torch.testing.assert_close(output.latent_loss, (latent[0].mean() + latent[1, 0]) / 2)
    frame_output = run_loss(model, clip, frame_mask=frame_mask, normalization="frame")
    torch.testing.assert_close(frame_output.latent_loss, latent[frame_mask].mean())


def test_state_mask_limits_the_state_loss():
    model, clip = AffineModel(), make_clip()
    state_mask = torch.tensor([[True, False, True], [False, False, True]])
    output = run_loss(model, clip, state_mask=state_mask)
    latent, state = hand_frame_losses(model, clip, SIGNAL_LEVELS, STEP_SIZES)
    torch.testing.assert_close(output.state_loss, state[state_mask].mean())
    torch.testing.assert_close(output.latent_loss, latent.mean())

    unknown = {key: value.clone() for key, value in clip.items()}
    unknown["states"][~state_mask] = float("nan")
    torch.testing.assert_close(run_loss(model, unknown, state_mask=state_mask).loss, output.loss)
    unknown["states"][0, 0] += 1.0
    assert not torch.allclose(run_loss(model, unknown, state_mask=state_mask).loss, output.loss)


def test_diffusion_forcing_loss_is_the_flow_loss():
    model, clip = AffineModel(), make_clip()
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=K_MAX)
    output = DiffusionForcingLoss(scheduler, state_loss_weight=2.0)(model, signal_levels=SIGNAL_LEVELS, **clip)
    d_min = torch.full_like(SIGNAL_LEVELS, 1 / K_MAX)
    latent, state = hand_frame_losses(model, clip, SIGNAL_LEVELS, d_min)
    torch.testing.assert_close(output.loss, latent.mean() + 2.0 * state.mean())
    assert len(model.calls) == 1 and torch.all(output.step_sizes == 1 / K_MAX)
    assert torch.isnan(output.bootstrap_loss)


def test_sampled_levels_are_reproducible():
    clip = make_clip(batch_size=4)
    del clip["noise"], clip["state_noise"]
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=K_MAX, bootstrap_fraction=0.5)
    loss_fn = ShortcutForcingLoss(scheduler)
    first = loss_fn(AffineModel(), **clip, generator=torch.Generator().manual_seed(0))
    second = loss_fn(AffineModel(), **clip, generator=torch.Generator().manual_seed(0))
    other = loss_fn(AffineModel(), **clip, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.loss, second.loss) and torch.equal(first.signal_levels, second.signal_levels)
    assert not torch.equal(first.loss, other.loss)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"latents": torch.zeros(2, 3, 6)}, "latents"),
        ({"latents": torch.full((2, 3, 2, 3), float("nan"))}, "latents"),
        ({"signal_levels": torch.zeros(2, 2)}, "signal_levels"),
        ({"signal_levels": SIGNAL_LEVELS + 1}, "signal_levels"),
        ({"step_sizes": torch.full((2, 3), 1 / 16)}, "step_sizes"),
        ({"step_sizes": torch.tensor([[0.125, 0.125, 0.125], [1.0, 0.25, 0.125]])}, "step_sizes"),
        ({"states": torch.zeros(2, 2, 2)}, "states"),
        ({"frame_mask": torch.ones(3, 2, dtype=torch.bool)}, "frame_mask"),
        ({"noise": torch.zeros(2, 3, 2, 2)}, "noise"),
    ],
)
def test_bad_inputs_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        run_loss(AffineModel(), make_clip(), **overrides)


def test_bad_options_and_model_mismatch_raise():
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=K_MAX)
    with pytest.raises(ValueError, match="normalization"):
        ShortcutForcingLoss(scheduler, normalization="token")
    with pytest.raises(ValueError, match="state_loss_weight"):
        ShortcutForcingLoss(scheduler, state_loss_weight=-1.0)
    with pytest.raises(ValueError, match="state_sample"):
        run_loss(AffineModel(with_states=False), make_clip())
    model = AffineModel()
    model.config = SimpleNamespace(max_shortcut_steps=16)
    with pytest.raises(ValueError, match="max_shortcut_steps"):
        run_loss(model, make_clip())


@pytest.fixture
def one_thread():
    """The tiny model is overhead-bound: one thread avoids oversubscribing a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_world_model_overfits_a_clip(one_thread):
    torch.manual_seed(0)
    config = ArgosWorldModelConfig.from_pretrained(
        TINY_CONFIG,
        latent_tokens=16,
        latent_channels=16,
        latent_bottleneck_dim=None,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_hidden_layers=2,
    )
    model = ArgosWorldModel(config)
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=config.max_shortcut_steps, bootstrap_fraction=0.5)
    loss_fn = ShortcutForcingLoss(scheduler)
    generator = torch.Generator().manual_seed(0)
    clip = {
        "latents": torch.randn(1, 3, config.latent_tokens, config.latent_channels, generator=generator),
        "states": torch.randn(1, 3, config.state_dim, generator=generator),
        "actions": torch.randn(1, 3, config.action_dim, generator=generator),
    }

    def batch(size):
        return {key: value.expand(size, *value.shape[1:]) for key, value in clip.items()}

    def held_out_loss():
        with torch.no_grad():
            return loss_fn(model, **batch(32), generator=torch.Generator().manual_seed(1)).loss.item()

    initial = held_out_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        output = loss_fn(model, **batch(4), generator=generator)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert held_out_loss() < 0.5 * initial


@pytest.mark.parametrize("loss_class", [ShortcutForcingLoss, DiffusionForcingLoss])
def test_teacher_forcing_scores_the_last_real_frame_only(loss_class):
    """DINO-WM's objective: the context is clean and carries no loss; each sequence's last real frame (before its
    padding) starts from pure noise and carries all of it, at d_min, with no bootstrap call."""
    model, clip = AffineModel(), make_clip(frames=4)
    shortcuts = loss_class is ShortcutForcingLoss
    scheduler = ShortcutForcingScheduler(
        max_shortcut_steps=K_MAX, use_shortcut=shortcuts, teacher_forcing_probability=1.0
    )
    frame_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    output = loss_class(scheduler)(model, frame_mask=frame_mask, **clip)
    expected_levels = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(output.signal_levels, expected_levels)
    assert len(model.calls) == 1 and torch.all(output.step_sizes == 1 / K_MAX)
    latent, state = hand_frame_losses(model, clip, expected_levels, output.step_sizes)
    scored = torch.tensor([[False, False, False, True], [False, True, False, False]])
    torch.testing.assert_close(output.loss, latent[scored].mean() + state[scored].mean())
    changed = {key: value.clone() for key, value in clip.items()}
    changed["latents"][0, :3] += 5.0  # the context frames (the stand-in model predicts each frame from itself)
    changed["states"][1, 0] -= 5.0
    assert latent[~scored].gt(0).all()  # they would carry loss if they were counted
    torch.testing.assert_close(loss_class(scheduler)(model, frame_mask=frame_mask, **changed).loss, output.loss)


def test_diffusion_forcing_loss_needs_a_scheduler_without_shortcuts():
    model, clip = AffineModel(), make_clip()
    with pytest.raises(ValueError, match="use_shortcut=False"):
        DiffusionForcingLoss(ShortcutForcingScheduler(max_shortcut_steps=K_MAX))(model, **clip)
    plain = ShortcutForcingScheduler(max_shortcut_steps=K_MAX, use_shortcut=False)
    output = DiffusionForcingLoss(plain)(model, generator=torch.Generator().manual_seed(0), **clip)
    assert torch.all(output.step_sizes == 1 / K_MAX) and output.signal_levels.lt(1).all()
