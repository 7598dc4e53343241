"""Imagination rollouts of the policy inside the frozen world model, through its KV cache (Dreamer 4, phase 3).

From a context of real frames the policy acts on its own predictions: the agent tokens of the last frame give the
policy's next action; the world model denoises the next frame with that action in K shortcut steps against the cache
(without growing it); the finished frame is appended to the cache once, re-noised to the context signal level like
the pipeline's rollouts, and that same call gives the new frame's agent tokens: its reward (the reward head's first
step), its value and the next action. So each imagined step costs K + 1 one-frame forwards.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models.world_model_cache import WorldModelCache


@dataclass
class ImaginedTrajectory:
    """
    Args:
        agent_states: `[B, H + 1, G, width]` agent token states of the last context frame (index 0) and of each
            imagined frame (detached: the transformer is frozen; the policy and value heads run on them with grad).
        actions: `[B, H, A]`, `actions[:, h]` led to imagined frame h + 1 (normalised model units).
        rewards: `[B, H]`, the reward head's prediction on entering imagined frame h + 1.
        latents: `[B, H, N, C]` imagined clean latents; `states`: `[B, H, S]` imagined normalised states or None.
    """

    agent_states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    latents: torch.Tensor
    states: torch.Tensor | None


def _noised(scheduler, values: torch.Tensor, level: float, generator) -> torch.Tensor:
    noise = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    return scheduler.add_noise(values, noise, level)


@torch.no_grad()
def imagine(
    model,
    scheduler,
    context_latents: torch.Tensor,
    horizon: int,
    context_states: torch.Tensor | None = None,
    context_actions: torch.Tensor | None = None,
    context_action_mask: torch.Tensor | None = None,
    num_inference_steps: int = 1,
    context_signal_level: float | None = None,
    goal_latents: torch.Tensor | None = None,
    goal_states: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    action_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ImaginedTrajectory:
    """Rolls the policy out for `horizon` steps in the world model.

    Args:
        model: an `ArgosWorldModel` with agent tokens (`config.num_agent_tokens > 0`).
        scheduler: its `ShortcutForcingScheduler`.
        context_latents: `[B, T, N, C]` clean normalised latents of the real context frames.
        context_states: `[B, T, S]` clean normalised states (None: unknown).
        context_actions: `[B, T, A]` normalised actions that led to the context frames (None: unknown).
        context_action_mask: `[B, T]` bool, False where a context action is unknown (None: all known).
        num_inference_steps: K shortcut steps per imagined frame.
        context_signal_level: signal level the context and every finished frame are re-noised to in the cache (None:
            the scheduler's).
        goal_latents, goal_states: the goal of a goal-conditioned agent.
        action_fn: maps policy parameters `[B, P]` (first step of the multi-token prediction) to actions `[B, A]`;
            default: a sample of the policy head's distribution (with `generator`).
    """
    if model.agent_heads is None:
        raise ValueError("imagine needs a world model with agent tokens (config.num_agent_tokens > 0).")
    config = model.config
    batch, frames = context_latents.shape[:2]
    device = context_latents.device
    goal = {"goal_latents": goal_latents, "goal_states": goal_states}
    if action_fn is None:
        def action_fn(parameters):
            return model.agent_heads.policy_distribution(parameters).sample(generator)

    def inputs(latents, states, actions, level, step_size, known=True):
        count = latents.shape[1]
        mask = torch.full((batch, count), known, dtype=torch.bool, device=device)
        return {
            "latents": latents,
            "signal_levels": torch.full((batch, count), level, device=device),
            "step_sizes": torch.full((batch, count), step_size, device=device),
            "actions": actions,
            "action_mask": None if actions is None else mask,
            "states": states,
            "state_mask": None if states is None else mask,
        }

    level = scheduler.resolve_context_signal_level(context_signal_level)
    context = inputs(
        _noised(scheduler, context_latents, level, generator),
        None if context_states is None else _noised(scheduler, context_states, level, generator),
        context_actions,
        level,
        scheduler.min_step_size,
    )
    if config.state_dim > 0 and context_states is None:
        context["states"] = torch.zeros(batch, frames, config.state_dim, device=device)
        context["state_mask"] = torch.zeros(batch, frames, dtype=torch.bool, device=device)
    if context_actions is not None and context_action_mask is not None:
        context["action_mask"] = context_action_mask.to(device, torch.bool)
    if context_actions is None:
        context["actions"] = torch.zeros(batch, frames, config.action_dim, device=device)
        context["action_mask"] = torch.zeros(batch, frames, dtype=torch.bool, device=device)
    output = model(**context, **goal, use_cache=True)
    cache: WorldModelCache = output.cache
    agent_states = [output.agent.agent_states[:, -1]]
    policy = output.agent.policy_parameters[:, -1, 0]  # [B, P]: the next action

    scheduler.set_timesteps(num_inference_steps, device=device)
    latent_shape = (batch, 1, config.latent_tokens, config.latent_channels)
    actions, rewards, imagined_latents, imagined_states = [], [], [], []
    for _ in range(horizon):
        action = action_fn(policy).to(context_latents.dtype)[:, None]  # [B, 1, A]
        latents = torch.randn(latent_shape, generator=generator, device=device, dtype=context_latents.dtype)
        states = None
        if config.state_dim > 0:
            states = torch.randn((batch, 1, config.state_dim), generator=generator, device=device)
        for signal_level in scheduler.timesteps.tolist():
            # a goal-conditioned model takes its goal in every call (the agent stream of these calls is unused)
            frame = model(**inputs(latents, states, action, signal_level, scheduler.model_step_size), **goal, cache=cache)
            latents = scheduler.step_from_sample(frame.sample, signal_level, latents)
            if states is not None:
                states = scheduler.step_from_sample(frame.state_sample, signal_level, states)
        finished = inputs(
            _noised(scheduler, latents, level, generator),
            None if states is None else _noised(scheduler, states, level, generator),
            action,
            level,
            scheduler.min_step_size,
        )
        output = model(**finished, **goal, cache=cache, use_cache=True)
        agent = output.agent
        agent_states.append(agent.agent_states[:, -1])
        rewards.append(model.agent_heads.decode(agent.reward_logits[:, -1, 0]))
        policy = agent.policy_parameters[:, -1, 0]
        actions.append(action[:, 0])
        imagined_latents.append(latents[:, 0])
        imagined_states.append(None if states is None else states[:, 0])
    return ImaginedTrajectory(
        agent_states=torch.stack(agent_states, dim=1),
        actions=torch.stack(actions, dim=1),
        rewards=torch.stack(rewards, dim=1),
        latents=torch.stack(imagined_latents, dim=1),
        states=None if config.state_dim == 0 else torch.stack(imagined_states, dim=1),
    )
