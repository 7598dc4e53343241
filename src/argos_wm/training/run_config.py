"""`TrainingRunConfig`: the settings every training script shares (data loading, optimisation, the run, export)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from diffusers.optimization import SchedulerType


MIXED_PRECISIONS = ("no", "fp16", "bf16")


@dataclass
class TrainingRunConfig:
    """
    The settings shared by [`WorldModelTrainingConfig`] and [`AgentTrainingConfig`]; each redeclares the fields whose
    defaults differ.

    Data:
        datasets: the mixture; each entry has `root` (LeRobot v3 folder or Hub repo id) and optionally `name`,
            `weight`, `latent_cache` (a finished cache; a missing one is an error), `fps`, `camera_keys`,
            `camera_weights`, `action_key`, `state_key`, `action_aggregation`, `use_action_probability`,
            `independent_frames_probability`.
        frames_per_batch: frames per batch on each process (batch size x sequence length).
        sequence_lengths: clip length, or `{length: probability}` to mix short and long clips.
        dataloader_num_workers: DataLoader worker processes.
        num_eval_episodes: last episodes of each dataset held out from training for evaluation.
        statistics_episodes: episodes read to compute action / state statistics when a dataset has none.

    Optimisation:
        learning_rate, adam_beta1, adam_beta2, adam_epsilon, weight_decay: AdamW; no decay on norms, biases and
            embeddings.
        lr_scheduler: a `diffusers.optimization.get_scheduler` name (`cosine`, `constant_with_warmup`,
            `piecewise_constant`, ...).
        lr_warmup_steps: linear warm-up steps.
        lr_step_rules: rules of `piecewise_constant`, e.g. `"1:1000,0.1:2000,0.01"`.
        max_grad_norm: gradient clipping norm.
        gradient_accumulation_steps: micro-batches per optimizer step.
        mixed_precision: `"no"`, `"fp16"` or `"bf16"` autocast.
        use_ema, ema_decay, ema_power: EMA of the weights (diffusers `EMAModel` with warm-up
            `1 - (1 + step) ** -ema_power`, capped at `ema_decay`); it is evaluated and exported.

    Run:
        output_dir: checkpoints, logs, samples and the exported pipeline.
        seed: seeds the model initialisation, the data order and the noise.
        max_train_steps: optimizer steps.
        checkpointing_steps: save a checkpoint every this many steps (and at the end).
        checkpoints_total_limit: checkpoints kept; None keeps all.
        resume_from_checkpoint: `"latest"` or a checkpoint folder.
        logging_steps: log to the trackers every this many steps.
        report_to: accelerate tracker (`tensorboard`, `wandb`, `trackio`, `all`, or `none`).
        tracker_project_name: project name given to the trackers.
        eval_batch_size: clips per held-out evaluation batch.

    Export:
        push_to_hub: push the exported pipeline to `hub_model_id`.
        hub_model_id: Hub repo id; defaults to the output folder's name.
        hub_private: create the Hub repo as private.
    """

    datasets: list = field(default_factory=list)
    frames_per_batch: int = 64
    sequence_lengths: int | dict = 16
    dataloader_num_workers: int = 0
    num_eval_episodes: int = 2
    statistics_episodes: int = 200

    learning_rate: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.05
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 100
    lr_step_rules: str | None = None
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    use_ema: bool = True
    ema_decay: float = 0.999
    ema_power: float = 2 / 3

    output_dir: str = "outputs/run"
    seed: int = 0
    max_train_steps: int = 1000
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None
    logging_steps: int = 10
    report_to: str = "tensorboard"
    tracker_project_name: str = "argos"
    eval_batch_size: int = 8

    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def __post_init__(self):
        if not self.datasets:
            raise ValueError("datasets must list at least one {root: ...} entry, got [].")
        for position, entry in enumerate(self.datasets):
            if not isinstance(entry, dict) or "root" not in entry:
                raise ValueError(f"datasets[{position}] must be a mapping with a `root`, got {entry!r}.")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}.")
        positive = (
            "frames_per_batch", "max_train_steps", "checkpointing_steps", "logging_steps", "gradient_accumulation_steps",
            "eval_batch_size", "statistics_episodes",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("num_eval_episodes", "lr_warmup_steps", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"checkpoints_total_limit must be >= 1 or None (keep all), got {self.checkpoints_total_limit}.")
        for name in ("max_grad_norm", "ema_power", "learning_rate"):  # 0 or less zeroes or flips what they scale
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be > 0 and finite, got {getattr(self, name)}.")
        if not (0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0):
            raise ValueError(
                f"adam_beta1 and adam_beta2 must be in [0, 1), got {self.adam_beta1} and {self.adam_beta2}."
            )
        if not self.adam_epsilon > 0:
            raise ValueError(f"adam_epsilon must be > 0, got {self.adam_epsilon}.")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}.")
        schedulers = [kind.value for kind in SchedulerType]
        if self.lr_scheduler not in schedulers:
            raise ValueError(f"lr_scheduler must be one of {schedulers}, got {self.lr_scheduler!r}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        if self.lr_scheduler == "piecewise_constant" and not self.lr_step_rules:
            raise ValueError("lr_step_rules must be set for lr_scheduler='piecewise_constant', got None.")

    # settings a resumed run must share with the checkpoint's run (`resume_settings`); subclasses add their own
    RESUME_SETTINGS = (
        "frames_per_batch", "sequence_lengths", "seed", "learning_rate", "adam_beta1", "adam_beta2", "adam_epsilon",
        "weight_decay", "lr_scheduler", "lr_warmup_steps", "lr_step_rules", "max_grad_norm", "use_ema", "ema_decay",
        "ema_power",
    )  # fmt: skip

    def resume_settings(self, num_processes: int) -> dict:
        """What a checkpoint records of this run, and a resumed run must match (`TrainingProgress`): the batches per
        optimizer step (processes x gradient_accumulation_steps), the data mixture (without its paths, which may
        move), and the `RESUME_SETTINGS`."""
        moved = ("root", "latent_cache")
        return {
            "batches_per_optimizer_step": num_processes * self.gradient_accumulation_steps,
            "datasets": [{key: value for key, value in entry.items() if key not in moved} for entry in self.datasets],
            **{name: getattr(self, name) for name in self.RESUME_SETTINGS},
        }


__all__ = ["MIXED_PRECISIONS", "TrainingRunConfig"]
