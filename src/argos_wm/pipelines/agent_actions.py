"""`WorldModelPipeline.act`: the agent's action for the current observation, from the policy head on the agent tokens
(Dreamer 4), in one forward through the world model's cache: no search, no imagined frames."""

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput

from ..models.world_model_cache import WorldModelCache


@dataclass
class ActOutput(BaseOutput):
    """
    Output of [`WorldModelPipeline.act`].

    Args:
        actions (`torch.Tensor` `[B, A]`): the action to take next, in raw units (a one-hot vector for a categorical
            policy).
        values (`torch.Tensor` `[B]`): the value head's estimate for the observation.
        cache (`WorldModelCache`): the cache with the observation's frames appended; pass it back with the next
            observation frame (and the action that led to it) to act step by step.
    """

    actions: torch.Tensor
    values: torch.Tensor | None = None
    cache: WorldModelCache | None = None


class AgentActionsMixin:
    """Adds `act` to [`WorldModelPipeline`] for world models with agent tokens."""

    @torch.no_grad()
    def act(
        self,
        observation=None,
        observation_latents: torch.Tensor | None = None,
        observation_states=None,
        observation_actions=None,
        goal=None,
        goal_latents: torch.Tensor | None = None,
        goal_states=None,
        cache: WorldModelCache | None = None,
        deterministic: bool = True,
        context_signal_level: float | None = None,
        generator: torch.Generator | None = None,
    ) -> ActOutput:
        r"""
        Args:
            observation: images `[B, T, H, W, 3]` (or `[B, H, W, 3]`, one frame) of the recent past, the last one
                current; or `observation_latents` `[B, T, N, C]`.
            observation_states: raw proprio `[B, T, S]`; observation_actions: raw actions `[B, T, A]` that led to
                those frames (NaN rows: unknown).
            goal, goal_latents, goal_states: the goal of a goal-conditioned agent, as in [`~WorldModelPipeline.plan`].
            cache: a cache returned by an earlier `act`; the observation frames follow its frames in time.
            deterministic: the policy's mode (True) or a sample (with `generator`).
            context_signal_level: signal level the observation is re-noised to, as in rollouts (by default the
                scheduler's).
        """
        model = self.world_model
        if model.agent_heads is None:
            raise ValueError("act needs a world model with agent tokens (config.num_agent_tokens > 0).")
        latents = self._context_latents(observation, observation_latents, "observation")
        batch = latents.shape[0]
        level = self.scheduler.resolve_context_signal_level(context_signal_level)
        inputs = self._prepare_context(
            latents, observation_states, observation_actions, level, generator, prefix="observation"
        )
        goal_inputs = {}
        if model.config.goal_conditioned:
            goal_latents, goal_states = self._goal(goal, goal_latents, goal_states, batch)
            goal_inputs = {"goal_latents": goal_latents, "goal_states": goal_states}
        elif goal is not None or goal_latents is not None or goal_states is not None:
            raise ValueError("a goal was given but the world model's agent is not goal-conditioned.")
        output = model(**inputs, **goal_inputs, cache=cache, use_cache=True)
        heads = model.agent_heads
        policy = heads.policy_distribution(output.agent.policy_parameters[:, -1, 0])  # [B, P]: the next action
        actions = policy.mode if deterministic else policy.sample(generator)
        if model.config.policy_distribution == "tanh_normal":
            actions = self._denormalize("action", actions)
        return ActOutput(actions=actions, values=heads.decode(output.agent.value_logits[:, -1]), cache=output.cache)
