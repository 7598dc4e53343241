"""Rollout evaluation: causality of the autoregressive rollout, teacher forcing, scheduler parametrisations, metrics."""

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.data.world_batch import WorldBatch
from argos_wm.schedulers import ShortcutForcingScheduler
from argos_wm.training.evaluation import evaluate_rollouts, rollout_latents
from conftest import TINY_WORLD_MODEL as TINY
from conftest import randomize_outputs


BATCH, FRAMES, CONTEXT = 2, 5, 2


@pytest.fixture(scope="module")
def model() -> ArgosWorldModel:
    torch.manual_seed(0)
    return randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig(**TINY)))


@pytest.fixture(scope="module")
def clip() -> dict:
    generator = torch.Generator().manual_seed(1)
    return {
        "latents": torch.randn(BATCH, FRAMES, TINY["latent_tokens"], TINY["latent_channels"], generator=generator),
        "actions": torch.randn(BATCH, FRAMES, TINY["action_dim"], generator=generator),
        "states": torch.randn(BATCH, FRAMES, TINY["state_dim"], generator=generator),
    }


def rollout(model, clip, prediction_type="sample", teacher_forcing=False, **changes):
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, prediction_type=prediction_type)
    inputs = {**clip, **changes}
    return rollout_latents(
        model, scheduler, inputs["latents"], CONTEXT, actions=inputs["actions"], states=inputs["states"],
        num_inference_steps=2, teacher_forcing=teacher_forcing, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def test_shapes_and_reproducibility(model, clip):
    latents, states = rollout(model, clip)
    assert latents.shape == (BATCH, FRAMES - CONTEXT, TINY["latent_tokens"], TINY["latent_channels"])
    assert states.shape == (BATCH, FRAMES - CONTEXT, TINY["state_dim"])
    again, _ = rollout(model, clip)
    assert torch.equal(latents, again)


def test_autoregressive_rollout_never_reads_the_future_frames(model, clip):
    latents, states = rollout(model, clip)
    future_changed = clip["latents"].clone()
    future_changed[:, CONTEXT:] += 10.0
    states_changed = clip["states"].clone()
    states_changed[:, CONTEXT:] += 10.0
    other_latents, other_states = rollout(model, clip, latents=future_changed, states=states_changed)
    torch.testing.assert_close(other_latents, latents)
    torch.testing.assert_close(other_states, states)


def test_teacher_forcing_reads_the_real_frames_only_after_predicting_them(model, clip):
    autoregressive, _ = rollout(model, clip)
    teacher_forced, _ = rollout(model, clip, teacher_forcing=True)
    torch.testing.assert_close(teacher_forced[:, 0], autoregressive[:, 0])  # same context, same noise
    assert not torch.allclose(teacher_forced[:, 1:], autoregressive[:, 1:], atol=1e-3)

    changed = clip["latents"].clone()
    changed[:, CONTEXT + 1] += 10.0  # the real second future frame: read for the third prediction, not before
    forced_changed, _ = rollout(model, clip, teacher_forcing=True, latents=changed)
    torch.testing.assert_close(forced_changed[:, :2], teacher_forced[:, :2])
    assert not torch.allclose(forced_changed[:, 2], teacher_forced[:, 2], atol=1e-3)


def test_velocity_scheduler_gives_the_same_rollout(model, clip):
    """The model always returns a clean sample; a scheduler parametrised by velocity must be fed the conversion."""
    sample_latents, sample_states = rollout(model, clip, prediction_type="sample")
    velocity_latents, velocity_states = rollout(model, clip, prediction_type="velocity")
    torch.testing.assert_close(velocity_latents, sample_latents, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(velocity_states, sample_states, atol=1e-5, rtol=1e-5)


def test_evaluate_rollouts_reports_every_metric_per_future_frame(model, clip):
    batch = WorldBatch(
        latents=clip["latents"],
        actions=clip["actions"],
        action_mask=torch.ones(BATCH, FRAMES, dtype=torch.bool),
        states=clip["states"],
        state_mask=torch.ones(BATCH, FRAMES, dtype=torch.bool),
    )
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16)
    evaluation = evaluate_rollouts(model, scheduler, [(clip["latents"], batch)], CONTEXT, num_inference_steps=2)
    names = {f"{mode}/{metric}" for mode in ("teacher_forced", "autoregressive")
             for metric in ("latent_mse", "latent_cosine", "state_mse")}  # fmt: skip
    names |= {"teacher_forced/copy_last_mse", "teacher_forced/action_effect"}
    assert set(evaluation.metrics) == names
    assert all(len(values) == FRAMES - CONTEXT for values in evaluation.metrics.values())
    predicted, _ = rollout(model, clip)
    expected = (predicted - clip["latents"][:, CONTEXT:]).pow(2).mean(dim=(0, 2, 3))
    torch.testing.assert_close(torch.tensor(evaluation.metrics["autoregressive/latent_mse"]), expected)
    assert evaluation.predicted_latents.shape == predicted.shape
    change = (clip["latents"][:, CONTEXT:] - clip["latents"][:, CONTEXT - 1 : -1]).pow(2).mean(dim=(0, 2, 3))
    torch.testing.assert_close(torch.tensor(evaluation.metrics["teacher_forced/copy_last_mse"]), change)
    # the action effect: the teacher-forced rollout again, each clip's future actions the other clip's
    swapped_actions = torch.cat([clip["actions"][:, :CONTEXT], clip["actions"][:, CONTEXT:].flip(0)], dim=1)
    forced, _ = rollout(model, clip, teacher_forcing=True)
    swapped, _ = rollout(model, clip, teacher_forcing=True, actions=swapped_actions)
    effect = (swapped - forced).pow(2).mean(dim=(0, 2, 3))
    torch.testing.assert_close(torch.tensor(evaluation.metrics["teacher_forced/action_effect"]), effect)
    assert effect.min() > 0


def test_action_effect_is_zero_for_a_model_that_ignores_its_actions(clip):
    torch.manual_seed(0)
    deaf = randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig(**TINY)))
    with torch.no_grad():
        deaf.embeddings.action_proj.weight.zero_()
        deaf.embeddings.action_proj.bias.zero_()
    batch = WorldBatch(latents=clip["latents"], actions=clip["actions"], states=clip["states"])
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16)
    metrics = evaluate_rollouts(deaf, scheduler, [(clip["latents"], batch)], CONTEXT, num_inference_steps=2).metrics
    assert metrics["teacher_forced/action_effect"] == [0.0] * (FRAMES - CONTEXT)
    assert min(metrics["teacher_forced/copy_last_mse"]) > 0


def test_metrics_skipped_by_a_batch_average_over_the_batches_that_have_them(model, clip):
    """A batch of one clip has no other clip's actions to swap in: the action effect is the other batch's alone."""
    pair = WorldBatch(latents=clip["latents"], actions=clip["actions"], states=clip["states"])
    single = WorldBatch(latents=clip["latents"][:1], actions=clip["actions"][:1], states=clip["states"][:1])
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16)
    both = evaluate_rollouts(model, scheduler, [(clip["latents"], pair), (clip["latents"][:1], single)], CONTEXT, 2)
    alone = evaluate_rollouts(model, scheduler, [(clip["latents"], pair)], CONTEXT, 2)
    key = "teacher_forced/action_effect"
    torch.testing.assert_close(torch.tensor(both.metrics[key]), torch.tensor(alone.metrics[key]))
