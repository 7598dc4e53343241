"""Imagination RL in a toy world, end to end in seconds: a point on [-1, 1] must reach x = 0.6.

The world model learns the dynamics from random-action episodes (phase 1, shortcut forcing); agent tokens are added
and the policy and reward heads learn behaviour cloning and the reward from the same data, with the transformer frozen
(phase 2); then, with the whole world model frozen, the policy learns PMPO and the value TD(lambda) on imagined
rollouts from the KV cache (phase 3). The imagined return and the return in the real toy world both rise well above
the behaviour-cloning policy's (which clones random actions).
"""

import copy
import math

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, ShortcutForcingLoss, ShortcutForcingScheduler
from argos_wm.rl import behavior_cloning_loss, imagination_loss, imagine


pytestmark = pytest.mark.usefixtures("single_thread")

GOAL, STEP, FRAMES, HORIZON = 0.6, 0.5, 6, 5
WORLD = dict(
    latent_channels=4, latent_tokens=2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, intermediate_size=64, latent_bottleneck_dim=None, num_register_tokens=1, action_dim=1,
    state_dim=1, max_shortcut_steps=1, temporal_attention_interval=2, temporal_context_length=8, signal_embedding_dim=16,
)
AGENT = dict(num_agent_tokens=1, agent_horizon=2, two_hot_bins=65, agent_head_hidden_size=64)


def observe(x: torch.Tensor) -> torch.Tensor:
    """Positions `[...]` -> latents `[..., 2, 4]`."""
    features = torch.stack([x, torch.sin(math.pi * x), torch.cos(math.pi * x), x * x], -1)
    return torch.stack([features, -features], -2)


def step(x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = (x + STEP * action).clamp(-1, 1)
    return x, -(x - GOAL).abs()


def random_episodes(batch: int, generator: torch.Generator) -> dict:
    """Clips of random actions: latents, states, actions (`actions[:, t]` led to frame t), rewards and masks."""
    x = torch.rand(batch, generator=generator) * 2 - 1
    positions, actions, rewards = [x], [torch.zeros(batch)], [torch.zeros(batch)]
    for _ in range(FRAMES - 1):
        action = torch.rand(batch, generator=generator) * 2 - 1
        x, reward = step(x, action)
        positions.append(x), actions.append(action), rewards.append(reward)
    positions = torch.stack(positions, 1)
    known = torch.ones(batch, FRAMES, dtype=torch.bool)
    known[:, 0] = False
    return {
        "latents": observe(positions), "states": positions[..., None], "actions": torch.stack(actions, 1)[..., None],
        "rewards": torch.stack(rewards, 1), "mask": known,
    }


def real_return(model, scheduler, episodes: int = 256, seed: int = 5) -> float:
    """The policy acting in the real toy world for HORIZON steps, one cached forward per step."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(episodes, generator=generator) * 2 - 1
    cache, total = None, torch.zeros(episodes)
    action, known = torch.zeros(episodes, 1, 1), torch.zeros(episodes, 1, dtype=torch.bool)
    level = torch.full((episodes, 1), 0.9)
    with torch.no_grad():
        for _ in range(HORIZON):
            latents, states = observe(x)[:, None], x[:, None, None]
            output = model(
                scheduler.add_noise(latents, torch.randn(latents.shape, generator=generator), level), level,
                actions=action, action_mask=known,
                states=scheduler.add_noise(states, torch.randn(states.shape, generator=generator), level),
                cache=cache, use_cache=True,
            )
            cache = output.cache
            policy = model.agent_heads.policy_distribution(output.agent.policy_parameters[:, -1, 0])
            action, known = policy.sample(generator)[:, None], torch.ones(episodes, 1, dtype=torch.bool)
            x, reward = step(x, action[:, 0, 0])
            total += reward
    return total.mean().item()


def imagined_return(model, scheduler, seed: int = 7) -> float:
    generator = torch.Generator().manual_seed(seed)
    start = random_episodes(256, generator)
    trajectory = imagine(model, scheduler, start["latents"][:, :1], HORIZON, context_states=start["states"][:, :1],
                         generator=generator)
    return trajectory.rewards.sum(1).mean().item()


def test_imagination_rl_beats_behaviour_cloning_in_imagination_and_in_the_real_world():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=1)

    # phase 1: the dynamics, from random-action episodes
    world = ArgosWorldModel(ArgosWorldModelConfig(**WORLD))
    dynamics_loss = ShortcutForcingLoss(scheduler)
    optimizer = torch.optim.AdamW(world.parameters(), lr=3e-3)
    for _ in range(120):
        clip = random_episodes(64, generator)
        loss = dynamics_loss(world, clip["latents"], states=clip["states"], actions=clip["actions"],
                             action_mask=clip["mask"], generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # phase 2: agent tokens on the pretrained world model; behaviour cloning and the reward model
    model = ArgosWorldModel(ArgosWorldModelConfig(**WORLD, **AGENT))
    model.load_state_dict(world.state_dict(), strict=False)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("agent_"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    level = torch.full((64, FRAMES), 0.9)
    for _ in range(50):
        clip = random_episodes(64, generator)
        output = model(
            scheduler.add_noise(clip["latents"], torch.randn(clip["latents"].shape, generator=generator), level),
            level, actions=clip["actions"], action_mask=clip["mask"],
            states=scheduler.add_noise(clip["states"], torch.randn(clip["states"].shape, generator=generator), level),
        )
        loss = behavior_cloning_loss(output.agent, model.agent_heads, clip["actions"], clip["mask"], clip["rewards"],
                                     clip["mask"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    bc_imagined, bc_real = imagined_return(model, scheduler), real_return(model, scheduler)

    # phase 3: imagination RL with the world model frozen; only the policy and value heads learn
    heads = model.agent_heads
    prior = copy.deepcopy(heads.policy).requires_grad_(False)
    frozen = {name: param.detach().clone() for name, param in model.named_parameters()
              if not name.startswith(("agent_heads.policy", "agent_heads.value"))}
    model.requires_grad_(False)
    trainable = [*heads.policy.parameters(), *heads.value.parameters()]
    for param in trainable:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    for _ in range(50):
        start = random_episodes(128, generator)
        trajectory = imagine(model, scheduler, start["latents"][:, :1], HORIZON,
                             context_states=start["states"][:, :1], generator=generator)
        assert trajectory.actions.shape == (128, HORIZON, 1) and trajectory.rewards.shape == (128, HORIZON)
        assert trajectory.agent_states.shape == (128, HORIZON + 1, 1, 32)
        loss = imagination_loss(heads, prior, trajectory, gamma=0.9).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rl_imagined, rl_real = imagined_return(model, scheduler), real_return(model, scheduler)

    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"{name} changed during imagination training"
    # measured: BC imagined -3.30, real -3.81 (random actions: -3.7); RL imagined -1.92, real -1.72 (other seeds of the
    # same recipe: RL real -1.8 to -1.9 from BC -3.7)
    assert rl_imagined > bc_imagined + 0.5, (bc_imagined, rl_imagined)
    assert rl_real > bc_real + 1.0, (bc_real, rl_real)
