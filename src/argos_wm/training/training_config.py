"""`WorldModelTrainingConfig`: every setting of a world-model training run (what `examples/configs/*.yaml` hold)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .run_config import TrainingRunConfig


OBJECTIVES = ("shortcut_forcing", "diffusion_forcing")


@dataclass
class WorldModelTrainingConfig(TrainingRunConfig):
    """
    Settings of `examples/train_world_model.py`, filled from a YAML file and `--key value` overrides.

    Model:
        model_config: folder with an `ArgosWorldModelConfig` `config.json` (e.g. `hub_configs/argos-wm-tiny`) for a
            model trained from scratch.
        pretrained_model_name_or_path: a trained world model to fine-tune: a model folder, a `WorldModelPipeline`
            folder (its `world_model/` is used) or a Hub id. Takes precedence over `model_config`.
        model_overrides: config attributes to change, e.g. `{num_hidden_layers: 8}` (from scratch only).
        gradient_checkpointing: recompute activations in the backward pass to save memory.

    Data (and `datasets`, `frames_per_batch`, `sequence_lengths`, `dataloader_num_workers`, `num_eval_episodes`,
    `statistics_episodes`: [`TrainingRunConfig`]):
        encoder: `ArgosDinoEncoder` name or path; encodes frames on the fly when a dataset has no latent cache and is
            exported with the pipeline. None when every dataset has a cache and no encoder should be exported.
            `"auto"` (the default): a fine-tuned pipeline's own encoder (its latent statistics included), otherwise
            this repository's tiny random-init config `hub_configs/argos-dino-encoder-tiny`.
        decoder: `ArgosRAEDecoder` folder or Hub id, for sample videos and export; None for none.
        normalization: `"mean_std"` or `"min_max"` normalisation of actions and states.
        image_size: resize frames to this size before encoding (datasets of mixed resolutions); None keeps them.
            Give the encoder's image size (224 for DINOv2), so frames are resized once, as a latent cache reads them.

    Objective:
        objective: `"shortcut_forcing"` or `"diffusion_forcing"`.
        scheduler_config: folder with a `ShortcutForcingScheduler` config; `max_shortcut_steps`, `use_shortcut` and
            `shift_latent_dim` are set from the model and the objective. None: the pretrained pipeline's scheduler
            when fine-tuning a pipeline, else the scheduler's defaults (those of `hub_configs/scheduler`).
        scheduler: further scheduler settings, e.g. `{bootstrap_fraction: 0.25, signal_level_sampler: logit_normal}`.
        state_loss_weight: weight of the proprio loss.
        loss_normalization: `"frame"` or `"sequence"` averaging of the loss.
        num_signal_level_buckets: buckets of the logged loss-by-signal-level breakdown.

    Optimisation, run, export: [`TrainingRunConfig`].

    Evaluation:
        eval_steps: evaluate every this many steps (and at the end); 0 only at the end.
        eval_context_frames: clean frames given as context to the rollouts.
        eval_horizon: future frames predicted.
        eval_num_inference_steps: shortcut steps K per frame.
        eval_context_signal_level: signal level the context is re-noised to (None: the scheduler's).
        num_sample_videos: held-out clips written as videos when a decoder is configured.
    """

    model_config: str | None = "hub_configs/argos-wm-tiny"
    pretrained_model_name_or_path: str | None = None
    model_overrides: dict = field(default_factory=dict)
    gradient_checkpointing: bool = False

    encoder: str | None = "auto"
    decoder: str | None = None
    normalization: str = "mean_std"
    image_size: int | None = None

    objective: str = "shortcut_forcing"
    scheduler_config: str | None = None
    scheduler: dict = field(default_factory=dict)
    state_loss_weight: float = 1.0
    loss_normalization: str = "frame"
    num_signal_level_buckets: int = 4

    eval_steps: int = 500
    eval_context_frames: int = 4
    eval_horizon: int = 8
    eval_num_inference_steps: int = 4
    eval_context_signal_level: float | None = None
    num_sample_videos: int = 2

    output_dir: str = "outputs/world-model"
    tracker_project_name: str = "argos-world-model"

    def __post_init__(self):
        super().__post_init__()
        if self.model_config is None and self.pretrained_model_name_or_path is None:
            raise ValueError("model_config or pretrained_model_name_or_path must be set, got neither.")
        if self.pretrained_model_name_or_path is not None and self.model_overrides:
            raise ValueError(
                f"model_overrides apply to a model trained from scratch, got {self.model_overrides} with "
                f"pretrained_model_name_or_path={self.pretrained_model_name_or_path!r}."
            )
        choices = {
            "objective": OBJECTIVES,
            "normalization": ("mean_std", "min_max"),
            "loss_normalization": ("frame", "sequence"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be None (keep the frames' size) or >= 1, got {self.image_size}.")
        for name in ("eval_context_frames", "eval_horizon", "eval_num_inference_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("eval_steps", "num_sample_videos"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.eval_context_signal_level is not None and not 0.0 < self.eval_context_signal_level <= 1.0:
            raise ValueError(f"eval_context_signal_level must be in (0, 1], got {self.eval_context_signal_level}.")

    RESUME_SETTINGS = TrainingRunConfig.RESUME_SETTINGS + (
        "objective", "scheduler", "state_loss_weight", "loss_normalization", "normalization", "image_size",
    )  # fmt: skip


__all__ = ["OBJECTIVES", "WorldModelTrainingConfig"]
