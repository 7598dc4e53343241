"""`WorldModelTrainingConfig`: every setting of a world-model training run (what `examples/configs/*.yaml` hold)."""

from __future__ import annotations

from dataclasses import dataclass, field


OBJECTIVES = ("shortcut_forcing", "diffusion_forcing")
MIXED_PRECISIONS = ("no", "fp16", "bf16")


@dataclass
class WorldModelTrainingConfig:
    """
    Settings of `examples/train_world_model.py`, filled from a YAML file and `--key value` overrides.

    Model:
        model_config: folder with an `ArgosWorldModelConfig` `config.json` (e.g. `hub_configs/argos-wm-tiny`) for a
            model trained from scratch.
        pretrained_model_name_or_path: a trained world model to fine-tune: a model folder, a `WorldModelPipeline`
            folder (its `world_model/` is used) or a Hub id. Takes precedence over `model_config`.
        model_overrides: config attributes to change, e.g. `{num_hidden_layers: 8}` (from scratch only).
        gradient_checkpointing: recompute activations in the backward pass to save memory.

    Data:
        datasets: the mixture; each entry has `root` (LeRobot v3 folder or Hub repo id) and optionally `name`,
            `weight`, `latent_cache` (a finished cache; a missing one is an error), `fps`, `camera_keys`,
            `camera_weights`, `action_key`, `state_key`, `action_aggregation`, `use_action_probability`,
            `independent_frames_probability`.
        encoder: `ArgosDinoEncoder` name or path; encodes frames on the fly when a dataset has no latent cache and is
            exported with the pipeline. None when every dataset has a cache and no encoder should be exported.
        decoder: `ArgosRAEDecoder` folder or Hub id, for sample videos and export; None for none.
        frames_per_batch: frames per batch on each process (batch size x sequence length).
        sequence_lengths: clip length, or `{length: probability}` to mix short and long clips.
        dataloader_num_workers: DataLoader worker processes.
        normalization: `"mean_std"` or `"min_max"` normalisation of actions and states.
        image_size: resize frames to this size before encoding (datasets of mixed resolutions); None keeps them.
        num_eval_episodes: last episodes of each dataset held out from training for evaluation.
        statistics_episodes: episodes read to compute action / state statistics when a dataset has none.

    Objective:
        objective: `"shortcut_forcing"` or `"diffusion_forcing"`.
        scheduler_config: folder with a `ShortcutForcingScheduler` config; `max_shortcut_steps`, `use_shortcut` and
            `shift_latent_dim` are set from the model and the objective.
        scheduler: further scheduler settings, e.g. `{bootstrap_fraction: 0.25, signal_level_sampler: logit_normal}`.
        state_loss_weight: weight of the proprio loss.
        loss_normalization: `"frame"` or `"sequence"` averaging of the loss.
        num_signal_level_buckets: buckets of the logged loss-by-signal-level breakdown.

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

    Evaluation:
        eval_steps: evaluate every this many steps (and at the end); 0 only at the end.
        eval_context_frames: clean frames given as context to the rollouts.
        eval_horizon: future frames predicted.
        eval_num_inference_steps: shortcut steps K per frame.
        eval_context_signal_level: signal level the context is re-noised to.
        eval_batch_size: clips per rollout batch.
        num_sample_videos: held-out clips written as videos when a decoder is configured.

    Export:
        push_to_hub: push the exported pipeline to `hub_model_id`.
        hub_model_id: Hub repo id; defaults to the output folder's name.
        hub_private: create the Hub repo as private.
    """

    model_config: str | None = "hub_configs/argos-wm-tiny"
    pretrained_model_name_or_path: str | None = None
    model_overrides: dict = field(default_factory=dict)
    gradient_checkpointing: bool = False

    datasets: list = field(default_factory=list)
    encoder: str | None = "hub_configs/argos-dino-encoder-tiny"
    decoder: str | None = None
    frames_per_batch: int = 64
    sequence_lengths: int | dict = 16
    dataloader_num_workers: int = 0
    normalization: str = "mean_std"
    image_size: int | None = None
    num_eval_episodes: int = 2
    statistics_episodes: int = 200

    objective: str = "shortcut_forcing"
    scheduler_config: str | None = "hub_configs/scheduler"
    scheduler: dict = field(default_factory=dict)
    state_loss_weight: float = 1.0
    loss_normalization: str = "frame"
    num_signal_level_buckets: int = 4

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

    output_dir: str = "outputs/world-model"
    seed: int = 0
    max_train_steps: int = 1000
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None
    logging_steps: int = 10
    report_to: str = "tensorboard"
    tracker_project_name: str = "argos-world-model"

    eval_steps: int = 500
    eval_context_frames: int = 4
    eval_horizon: int = 8
    eval_num_inference_steps: int = 4
    eval_context_signal_level: float = 0.9
    eval_batch_size: int = 8
    num_sample_videos: int = 2

    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def __post_init__(self):
        if not self.datasets:
            raise ValueError("datasets must list at least one {root: ...} entry, got [].")
        for position, entry in enumerate(self.datasets):
            if not isinstance(entry, dict) or "root" not in entry:
                raise ValueError(f"datasets[{position}] must be a mapping with a `root`, got {entry!r}.")
        if self.model_config is None and self.pretrained_model_name_or_path is None:
            raise ValueError("model_config or pretrained_model_name_or_path must be set, got neither.")
        if self.pretrained_model_name_or_path is not None and self.model_overrides:
            raise ValueError(
                f"model_overrides apply to a model trained from scratch, got {self.model_overrides} with "
                f"pretrained_model_name_or_path={self.pretrained_model_name_or_path!r}."
            )
        choices = {
            "objective": OBJECTIVES,
            "mixed_precision": MIXED_PRECISIONS,
            "normalization": ("mean_std", "min_max"),
            "loss_normalization": ("frame", "sequence"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        positive = (
            "frames_per_batch", "max_train_steps", "checkpointing_steps", "logging_steps", "gradient_accumulation_steps",
            "eval_context_frames", "eval_horizon", "eval_num_inference_steps", "eval_batch_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("num_eval_episodes", "eval_steps", "lr_warmup_steps", "num_sample_videos", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0.0 < self.eval_context_signal_level <= 1.0:
            raise ValueError(f"eval_context_signal_level must be in (0, 1], got {self.eval_context_signal_level}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        if self.lr_scheduler == "piecewise_constant" and not self.lr_step_rules:
            raise ValueError("lr_step_rules must be set for lr_scheduler='piecewise_constant', got None.")


__all__ = ["OBJECTIVES", "WorldModelTrainingConfig"]
