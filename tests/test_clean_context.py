"""Teacher forcing every frame in one pass (`context_latents`, the scheduler's `teacher_forced_frames="all"`).

The stacked forward must give, for every frame t, exactly what the model gives when it runs the clean frames before t
followed by the noised frame t: a property over windows x clip lengths x model variants, with independent frames and
missing actions. The loss built on it scores every real frame after the first from pure noise, and it trains.
"""

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.schedulers import ShortcutForcingScheduler
from argos_wm.training import ShortcutForcingLoss
from conftest import randomize_outputs
from test_kv_cache import VARIANTS, make_inputs, make_model


WINDOWS = (2, 3, 5, 8)
LENGTHS = (1, 2, 4, 9)
ATOL = 1e-4

pytestmark = pytest.mark.usefixtures("single_thread")


def clean_copies(inputs: dict, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(inputs["latents"].shape, generator=generator)
    states = torch.randn(inputs["states"].shape, generator=generator) if "states" in inputs else None
    return latents, states


def one_frame_at_a_time(model, inputs: dict, clean: torch.Tensor, clean_states: torch.Tensor | None, frame: int):
    """The model on `[clean frames 0..frame-1 (tau 1, d_min), noised frame]`: the output of that last frame."""
    prefix = {name: value[:, : frame + 1].clone() for name, value in inputs.items()}
    prefix["latents"][:, :frame] = clean[:, :frame]
    if clean_states is not None:
        prefix["states"][:, :frame] = clean_states[:, :frame]
    prefix["signal_levels"][:, :frame] = 1.0
    if "step_sizes" in prefix:
        prefix["step_sizes"][:, :frame] = 1.0 / model.config.max_shortcut_steps
    output = model(**prefix)
    return output.sample[:, -1], None if output.state_sample is None else output.state_sample[:, -1]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_frame_sees_the_clean_frames_before_it(variant):
    for window in WINDOWS:
        model = make_model(window, **VARIANTS[variant])
        for frames in LENGTHS:
            inputs = make_inputs(model.config, batch=2, frames=frames, seed=frames)
            clean, clean_states = clean_copies(inputs)
            with torch.no_grad():
                output = model(**inputs, context_latents=clean, context_states=clean_states)
                for frame in range(frames):
                    sample, state_sample = one_frame_at_a_time(model, inputs, clean, clean_states, frame)
                    where = f"{variant}, window {window}, {frames} frames, frame {frame}"
                    torch.testing.assert_close(output.sample[:, frame], sample, atol=ATOL, rtol=0, msg=where)
                    if state_sample is not None:
                        torch.testing.assert_close(
                            output.state_sample[:, frame], state_sample, atol=ATOL, rtol=0, msg=where
                        )


@pytest.mark.parametrize("prediction_type", ["sample", "residual", "gated", "velocity"])
def test_unknown_states_in_the_clean_context_layout(prediction_type):
    """A `state_mask` (training passes one whenever a batch has states) goes with its frames through the stacked
    layout, for every prediction type (velocity read the stacked [B, 2T] mask against [B, T] states)."""
    model = randomize_outputs(make_model(4, prediction_type=prediction_type))
    inputs = make_inputs(model.config, batch=2, frames=4, seed=2)
    inputs["state_mask"] = torch.tensor([[True, False, True, True], [False, True, True, False]])
    clean, clean_states = clean_copies(inputs)
    with torch.no_grad():
        output = model(**inputs, context_latents=clean, context_states=clean_states)
        assert output.state_sample.shape == inputs["states"].shape
        for frame in range(4):
            sample, state_sample = one_frame_at_a_time(model, inputs, clean, clean_states, frame)
            torch.testing.assert_close(output.sample[:, frame], sample, atol=ATOL, rtol=0)
            torch.testing.assert_close(output.state_sample[:, frame], state_sample, atol=ATOL, rtol=0)


def test_independent_frames_and_missing_actions():
    model = make_model(4, prediction_type="gated", action_modulation=True)
    inputs = make_inputs(model.config, batch=2, frames=5, seed=3)
    inputs["independent_frames"] = torch.tensor([[False, False, True, False, False], [True] * 5])
    inputs["action_mask"] = torch.tensor([[True, False, True, True, False], [False, True, True, True, True]])
    clean, clean_states = clean_copies(inputs)
    with torch.no_grad():
        output = model(**inputs, context_latents=clean, context_states=clean_states)
        for frame in range(5):
            sample, state_sample = one_frame_at_a_time(model, inputs, clean, clean_states, frame)
            torch.testing.assert_close(output.sample[:, frame], sample, atol=ATOL, rtol=0)
            torch.testing.assert_close(output.state_sample[:, frame], state_sample, atol=ATOL, rtol=0)
        # an independent frame reads nothing of the clean clip
        changed = model(**inputs, context_latents=clean + 3.0, context_states=clean_states - 3.0)
    independent = inputs["independent_frames"]
    torch.testing.assert_close(changed.sample[independent], output.sample[independent])
    assert not torch.allclose(changed.sample[~independent], output.sample[~independent])


def test_clean_context_errors_name_the_argument():
    model = make_model(4)
    inputs = make_inputs(model.config, batch=2, frames=3)
    clean, clean_states = clean_copies(inputs)
    with pytest.raises(ValueError, match="context_latents must have shape of latents"):
        model(**inputs, context_latents=clean[:, :2], context_states=clean_states)
    with pytest.raises(ValueError, match="context_states must be given exactly when states are"):
        model(**inputs, context_latents=clean)
    with pytest.raises(ValueError, match="context_states must have shape of states"):
        model(**inputs, context_latents=clean, context_states=clean_states[..., :1])
    with pytest.raises(ValueError, match="use_cache=False"):
        model(**inputs, context_latents=clean, context_states=clean_states, use_cache=True)
    agent = ArgosWorldModel(ArgosWorldModelConfig(**{**model.config.to_dict(), "num_agent_tokens": 1}))
    with pytest.raises(ValueError, match="agent tokens"):
        agent(**inputs, context_latents=clean, context_states=clean_states)


def test_scheduler_draws_every_real_frame_after_the_first():
    scheduler = ShortcutForcingScheduler(
        max_shortcut_steps=8, teacher_forcing_probability=1.0, teacher_forced_frames="all"
    )
    frame_mask = torch.tensor([[True, True, True, True], [True, True, False, False], [True, False, False, False]])
    levels, steps = scheduler.sample_training_levels(3, 4, frame_mask=frame_mask)
    expected = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(levels, expected)
    assert torch.all(steps == 1 / 8)
    with pytest.raises(ValueError, match="teacher_forcing_probability=1.0"):
        ShortcutForcingScheduler(teacher_forcing_probability=0.5, teacher_forced_frames="all")
    with pytest.raises(ValueError, match="teacher_forced_frames"):
        ShortcutForcingScheduler(teacher_forced_frames="first")
    reloaded = ShortcutForcingScheduler.from_config(scheduler.config)
    assert reloaded.config.teacher_forced_frames == "all"


def clip_with_noise(config) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 5-frame clips (latents, states, actions), their latent and state noise, and a frame mask that pads the
    second after 3 frames."""
    generator = torch.Generator().manual_seed(0)
    clip = make_inputs(config, batch=2, frames=5)
    clip.pop("signal_levels"), clip.pop("step_sizes")
    noise = torch.randn(clip["latents"].shape, generator=generator)
    state_noise = torch.randn(clip["states"].shape, generator=generator)
    frame_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return clip, noise, state_noise, frame_mask


def test_loss_scores_each_frame_from_the_clean_frames_before_it():
    model = make_model(8, prediction_type="gated")
    scheduler = ShortcutForcingScheduler(
        max_shortcut_steps=4, teacher_forcing_probability=1.0, teacher_forced_frames="all", loss_weight_floor=1.0
    )
    clip, noise, state_noise, frame_mask = clip_with_noise(model.config)
    output = ShortcutForcingLoss(scheduler)(
        model, **clip, noise=noise, state_noise=state_noise, frame_mask=frame_mask
    )
    latent_errors, state_errors = [], []
    with torch.no_grad():
        for row, length in enumerate((5, 3)):
            for frame in range(1, length):
                prefix = {name: value[row : row + 1, : frame + 1].clone() for name, value in clip.items()}
                prefix["latents"][:, -1], prefix["states"][:, -1] = noise[row, frame], state_noise[row, frame]
                levels = torch.ones(1, frame + 1)
                levels[:, -1] = 0.0
                predicted = model(**prefix, signal_levels=levels)
                latent_errors.append((predicted.sample[0, -1] - clip["latents"][row, frame]).pow(2).mean())
                state_errors.append((predicted.state_sample[0, -1] - clip["states"][row, frame]).pow(2).mean())
    torch.testing.assert_close(output.latent_loss, torch.stack(latent_errors).mean())
    torch.testing.assert_close(output.state_loss, torch.stack(state_errors).mean())


def test_teacher_forcing_every_frame_trains():
    torch.manual_seed(0)
    model = make_model(8, prediction_type="gated").train()
    scheduler = ShortcutForcingScheduler(
        max_shortcut_steps=4, teacher_forcing_probability=1.0, teacher_forced_frames="all"
    )
    loss_fn = ShortcutForcingLoss(scheduler)
    generator = torch.Generator().manual_seed(0)
    walk = torch.randn(1, 1, 4, 8, generator=generator) + 0.3 * torch.randn(1, 6, 1, 8, generator=generator).cumsum(1)
    clip = {"latents": walk, "states": walk[:, :, 0, :2], "actions": walk[:, :, 1, :2]}

    def held_out_loss():
        with torch.no_grad():
            return loss_fn(model, **clip, generator=torch.Generator().manual_seed(1)).loss.item()

    initial = held_out_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        output = loss_fn(model, **clip, generator=generator)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert held_out_loss() < 0.5 * initial
    assert output.frames_by_signal_level.sum() == 5  # every frame after the first


def test_randomised_outputs_make_the_check_meaningful():
    """Guard: the equivalence test would pass trivially if the outputs ignored the clean clip."""
    model = randomize_outputs(make_model(4))
    inputs = make_inputs(model.config, batch=1, frames=3)
    clean, clean_states = clean_copies(inputs)
    with torch.no_grad():
        first = model(**inputs, context_latents=clean, context_states=clean_states).sample
        second = model(**inputs, context_latents=clean + 1.0, context_states=clean_states).sample
    torch.testing.assert_close(first[:, 0], second[:, 0])  # frame 0 has no clean frame before it
    assert not torch.allclose(first[:, 1:], second[:, 1:])


PREDICTED_CONTEXT_SETTINGS = dict(
    max_shortcut_steps=4, teacher_forcing_probability=1.0, teacher_forced_frames="all", loss_weight_floor=1.0
)


def predicted_context_loss(model, arguments, depth):
    scheduler = ShortcutForcingScheduler(
        **PREDICTED_CONTEXT_SETTINGS, predicted_context_probability=1.0, predicted_context_depth=depth
    )
    return ShortcutForcingLoss(scheduler)(model, **arguments).latent_loss


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_predicted_context_replaces_frames_by_the_models_own_predictions(depth):
    """With `predicted_context_probability: 1.0` every context frame but the first is the model's prediction of it,
    made `depth` times, each from the context the previous one left; the targets stay the real frames."""
    model = randomize_outputs(make_model(8, prediction_type="gated"))
    clip, noise, state_noise, frame_mask = clip_with_noise(model.config)
    arguments = dict(**clip, noise=noise, state_noise=state_noise, frame_mask=frame_mask)
    loss = predicted_context_loss(model, arguments, depth)

    levels = torch.tensor([[1.0, 0, 0, 0, 0], [1.0, 0, 0, 1, 1]])
    noised = {"latents": levels[..., None, None] * clip["latents"] + (1 - levels[..., None, None]) * noise}
    noised["states"] = levels[..., None] * clip["states"] + (1 - levels[..., None]) * state_noise
    replaced = (levels < 1)[..., None]
    with torch.no_grad():
        common = dict(signal_levels=levels, actions=clip["actions"], **noised)
        context, context_states = clip["latents"], clip["states"]
        for _ in range(depth + 1):  # `depth` predictions of the context, then the one that is scored
            output = model(**common, context_latents=context, context_states=context_states)
            context = torch.where(replaced[..., None], output.sample, clip["latents"])
            context_states = torch.where(replaced, output.state_sample, clip["states"])
    expected = (output.sample - clip["latents"]).pow(2).mean(dim=(2, 3))[levels < 1].mean()
    torch.testing.assert_close(loss, expected)
    plain = ShortcutForcingLoss(ShortcutForcingScheduler(**PREDICTED_CONTEXT_SETTINGS))(model, **arguments)
    assert not torch.allclose(plain.latent_loss, loss)


def test_predicted_context_depth_reaches_the_open_loop_rollout():
    """Context frame k is the open-loop rollout's from the first frame after k predictions (each depends only on the
    frames before it), and the last scored frame of 5 reads context frames up to the 4th (k = 3): from depth 3 on,
    more depth changes nothing; less does."""
    model = randomize_outputs(make_model(8, prediction_type="gated"))
    clip, noise, state_noise, frame_mask = clip_with_noise(model.config)  # 5 frames
    arguments = dict(**clip, noise=noise, state_noise=state_noise, frame_mask=frame_mask)
    converged = predicted_context_loss(model, arguments, 3)
    torch.testing.assert_close(predicted_context_loss(model, arguments, 5), converged)
    assert not torch.allclose(predicted_context_loss(model, arguments, 2), converged)


def test_predicted_context_settings_are_checked():
    with pytest.raises(ValueError, match="teacher_forced_frames='all'"):
        ShortcutForcingScheduler(predicted_context_probability=0.5)
    with pytest.raises(ValueError, match=r"predicted_context_probability` must be in \[0, 1\]"):
        ShortcutForcingScheduler(**PREDICTED_CONTEXT_SETTINGS, predicted_context_probability=1.5)
    with pytest.raises(ValueError, match="`predicted_context_depth` must be >= 1, got 0"):
        ShortcutForcingScheduler(**PREDICTED_CONTEXT_SETTINGS, predicted_context_depth=0)
