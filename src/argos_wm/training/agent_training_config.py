"""`AgentTrainingConfig`: every setting of an agent training run (`examples/train_agent.py`, Dreamer 4's phases 2, 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .run_config import TrainingRunConfig

PHASES = ("bc", "rl")
REWARDS = ("goal", "dataset")
IMAGINATION_REWARDS = ("head", "goal")


@dataclass
class AgentTrainingConfig(TrainingRunConfig):
    """
    Settings of `examples/train_agent.py`, filled from a YAML file and `--key value` overrides.

    Model:
        pretrained_pipeline: a trained `WorldModelPipeline` folder or Hub id. Phase `bc` adds agent tokens to its
            world model when it has none (`agent_config`); phase `rl` needs one with agent heads (a `bc` run's
            `output_dir/pipeline`), whose policy is also the frozen prior of PMPO's reverse KL.
        phase: `"bc"` (phase 2: behaviour cloning + reward model on the data) or `"rl"` (phase 3: imagination RL,
            the whole world model frozen but the policy and value heads).
        agent_config: `ArgosWorldModelConfig` agent fields set when agent tokens are added, e.g.
            `{num_agent_tokens: 1, agent_horizon: 8, goal_conditioned: true, policy_action_scale: 3.0}`.
        train_transformer: phase `bc` also fine-tunes the transformer, with the dynamics (shortcut forcing) loss kept
            on; False trains the agent tokens and heads only.
        dynamics_loss_weight: weight of the dynamics loss when `train_transformer`.
        state_loss_weight: weight of the proprio term of the dynamics loss.

    Data (`datasets`, `frames_per_batch`, `sequence_lengths`, ...: [`TrainingRunConfig`]): a dataset without a
    `latent_cache` is encoded with the pipeline's encoder, and the pipeline's normaliser normalises the actions and
    states. A clip's goal is its last frame, so a length of L trains goals 1 ... L - 1 steps ahead (phase `rl`:
    L - context_frames steps after the context).
        reward: `"goal"`, the dense goal reward -(latent mse + goal_state_weight x proprio mse) to the clip's goal
            (`argos_wm.rl.goal_rewards`), or `"dataset"`, the dataset's rewards (`next.reward`).
        goal_state_weight: weight of the proprio distance in the goal reward.
        context_signal_level: signal level the frames the agent reads are re-noised to (as `pipe.act` does); None:
            the pretrained pipeline's scheduler's.

    Phase bc:
        reward_loss_weight: weight of the reward head's loss beside the policy's.

    Phase rl:
        context_frames: real frames of each clip the imagination starts from.
        imagination_horizon: imagined steps per rollout.
        num_inference_steps: K shortcut steps per imagined frame.
        imagination_reward: `"head"` (the reward head's prediction, Dreamer 4) or `"goal"` (the goal reward computed
            on the imagined latents and states).
        gamma, lam: TD(lambda) returns. pmpo_alpha, pmpo_beta: PMPO's positive-set weight and reverse-KL weight.
        value_warmup_steps: first steps that train the value head only (no policy loss). A fresh value starts far
            from the returns (at 0, while goal rewards are all negative); until it has caught up, every advantage has
            the same sign and PMPO, which reads only the sign, pushes every action down.
        centered_advantages: subtract each imagined step's batch-mean advantage before PMPO reads the signs, which
            removes the shift a lagging value gives every advantage (not in Dreamer 4).

    Optimisation, run, export: [`TrainingRunConfig`] (`use_ema`: the EMA weights are exported).
    """

    pretrained_pipeline: str | None = None
    phase: str = "bc"
    agent_config: dict = field(
        default_factory=lambda: {"num_agent_tokens": 1, "agent_horizon": 8, "goal_conditioned": True,
                                 "policy_action_scale": 3.0}
    )  # fmt: skip
    train_transformer: bool = False
    dynamics_loss_weight: float = 1.0
    state_loss_weight: float = 1.0

    sequence_lengths: int | dict = 6
    num_eval_episodes: int = 4
    reward: str = "goal"
    goal_state_weight: float = 10.0
    context_signal_level: float | None = None

    reward_loss_weight: float = 1.0

    context_frames: int = 1
    imagination_horizon: int = 5
    num_inference_steps: int = 1
    imagination_reward: str = "head"
    gamma: float = 0.99
    lam: float = 0.95
    pmpo_alpha: float = 0.5
    pmpo_beta: float = 0.3
    value_warmup_steps: int = 0
    centered_advantages: bool = False

    weight_decay: float = 0.0
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 10
    ema_decay: float = 0.99
    output_dir: str = "outputs/agent"
    max_train_steps: int = 300
    checkpointing_steps: int = 100
    tracker_project_name: str = "argos-agent"
    eval_batch_size: int = 16

    def __post_init__(self):
        super().__post_init__()
        if self.pretrained_pipeline is None:
            raise ValueError("pretrained_pipeline must name a trained WorldModelPipeline folder or Hub id, got None.")
        choices = {
            "phase": PHASES,
            "reward": REWARDS,
            "imagination_reward": IMAGINATION_REWARDS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        for name in ("context_frames", "imagination_horizon", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        lengths = self.sequence_lengths if isinstance(self.sequence_lengths, dict) else {self.sequence_lengths: 1.0}
        shortest = min(int(length) for length in lengths)
        needed = self.context_frames + 1 if self.phase == "rl" else 2
        if shortest < needed:
            raise ValueError(
                f"sequence_lengths must be >= {needed} (phase {self.phase}: the goal is the clip's last frame, after "
                f"{'the context_frames' if self.phase == 'rl' else 'at least one action'}), got {self.sequence_lengths}."
            )
        if self.context_signal_level is not None and not 0.0 < self.context_signal_level <= 1.0:
            raise ValueError(f"context_signal_level must be in (0, 1], got {self.context_signal_level}.")
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0 and 0.0 <= self.pmpo_alpha <= 1.0):
            raise ValueError(f"need 0 < gamma <= 1, 0 <= lam <= 1, 0 <= pmpo_alpha <= 1; got {self.gamma}, "
                             f"{self.lam}, {self.pmpo_alpha}.")  # fmt: skip
        if self.value_warmup_steps < 0:
            raise ValueError(f"value_warmup_steps must be >= 0, got {self.value_warmup_steps}.")
        weights = ("dynamics_loss_weight", "state_loss_weight", "reward_loss_weight", "goal_state_weight", "pmpo_beta")
        for name in weights:  # a negative loss weight climbs its loss
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be >= 0 and finite, got {getattr(self, name)}.")

    RESUME_SETTINGS = TrainingRunConfig.RESUME_SETTINGS + (
        "phase", "train_transformer", "dynamics_loss_weight", "state_loss_weight", "reward", "goal_state_weight",
        "reward_loss_weight", "context_frames", "imagination_horizon", "num_inference_steps", "imagination_reward",
        "gamma", "lam", "pmpo_alpha", "pmpo_beta", "value_warmup_steps", "centered_advantages", "context_signal_level",
    )  # fmt: skip


__all__ = ["IMAGINATION_REWARDS", "PHASES", "REWARDS", "AgentTrainingConfig"]
