# Copyright 2025 The argos_wm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Train an `ArgosWorldModel` with diffusion forcing or shortcut forcing on a mixture of LeRobot datasets.

    accelerate launch examples/train_world_model.py --config examples/configs/pusht_tiny.yaml
    accelerate launch --config_file examples/accelerate_configs/ddp.yaml examples/train_world_model.py --config ...
    python examples/train_world_model.py --config examples/configs/pusht_tiny.yaml --max_train_steps 200 --mixed_precision no

Every setting is a field of `WorldModelTrainingConfig` (argos_wm/training/training_config.py); `--key value`
overrides the YAML file. The run writes `output_dir/checkpoints/checkpoint-*` (resume with
`--resume_from_checkpoint latest`), tracker logs in `output_dir/logs`, sample videos in `output_dir/samples`, and the
EMA model as a `WorldModelPipeline` in `output_dir/pipeline` (pushed with `--push_to_hub --hub_model_id`).
"""

import contextlib
import dataclasses
import inspect
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from huggingface_hub import file_exists
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from argos_wm.configuration_world_model import ArgosWorldModelConfig
from argos_wm.data.token_budget_sampler import TokenBudgetBatchSampler
from argos_wm.data.world_batch import collate_world_clips
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.modeling_rae_decoder import ArgosRAEDecoder
from argos_wm.modeling_world_model import ArgosWorldModel
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.pipelines.input_checks import check_decoder
from argos_wm.schedulers.scheduling_shortcut_forcing import ShortcutForcingScheduler
from argos_wm.training.checkpointing import (
    TrainingProgress,
    check_output_dir,
    check_safetensors_files,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from argos_wm.training.config_loading import load_config
from argos_wm.training.evaluation import evaluate_rollouts, latents_to_pca_images, write_comparison_video
from argos_wm.training.export import export_pipeline, push_pipeline_to_hub
from argos_wm.training.losses import DiffusionForcingLoss, ShortcutForcingLoss
from argos_wm.training.optimization import check_finite_step, create_optimizer
from argos_wm.training.training_config import WorldModelTrainingConfig
from argos_wm.training.world_data import (
    align_encoder_with_caches,
    build_sources,
    build_world_datasets,
    encode_frames,
    held_out_batches,
)


logger = logging.getLogger(__name__)
REPOSITORY = Path(__file__).resolve().parents[1]


def data_feature_dims(datasets: list[dict]) -> dict[str, tuple[int | None, str]]:
    """Per feature (`action_dim`, `state_dim`): the largest size over the configured datasets (k·A for `concat`
    actions), and a description of each dataset's."""
    sources, _ = build_sources(datasets)
    dims = {}
    for feature in ("action_dim", "state_dim"):
        sizes = {name: getattr(source, feature) for name, source in sources.items()}
        described = ", ".join(
            f"{name}: {size}"
            + (f" ({source.action_aggregation}, frameskip {max(round(source.source_fps / source.fps), 1)})"
               if feature == "action_dim" else f" ({source.state_key})")
            for (name, source), size in zip(sources.items(), sizes.values())
            if size is not None
        )  # fmt: skip
        dims[feature] = max((size for size in sizes.values() if size is not None), default=None), described
    return dims


def check_feature_dims(
    model_config: ArgosWorldModelConfig, datasets: list[dict], can_set: set[str]
) -> ArgosWorldModelConfig:
    """
    The model's `action_dim` / `state_dim` must hold the data's actions (k·A with `action_aggregation: concat`) and
    proprio. A new model whose config has fewer takes the data's size (the names in `can_set`: those not given in
    `model_overrides`); otherwise a ValueError says what the data holds and how to fix it. A size of 0 (no actions /
    no state) is kept.
    """
    updates = {}
    for feature, (needed, described) in data_feature_dims(datasets).items():
        have = getattr(model_config, feature)
        if needed is None or have == 0 or have >= needed:
            continue
        if feature not in can_set:
            hint = (
                "; with action_aggregation: concat a model step takes frameskip x A features, or pick an aggregation "
                "that keeps A features" if feature == "action_dim" else ", or choose a smaller state_key"
            )
            raise ValueError(
                f"the model's {feature} is {have} but the datasets have {needed} features ({described}). Train a new "
                f"model with model_overrides {{{feature}: {needed}}} (or leave {feature} out to take the data's){hint}."
            )
        logger.info("%s %d -> %d, the datasets' size (%s)", feature, have, needed, described)
        updates[feature] = needed
    return ArgosWorldModelConfig(**{**model_config.to_dict(), **updates}) if updates else model_config


def is_pipeline(path: str) -> bool:
    """Whether `pretrained_model_name_or_path` (a local folder or a Hub id) is a `WorldModelPipeline`."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "model_index.json"))
    try:
        return file_exists(path, "model_index.json")
    except (HfHubHTTPError, HFValidationError, OfflineModeIsEnabled) as error:
        raise FileNotFoundError(
            f"pretrained_model_name_or_path {path!r} is not a local folder and the Hub cannot be reached: {error}"
        ) from error


def load_encoder(config: WorldModelTrainingConfig, pretrained_is_pipeline: bool) -> ArgosDinoEncoder | None:
    """The encoder `config.encoder` names; `"auto"`: the fine-tuned pipeline's own (which normalises latents as the
    model was trained), otherwise the tiny random-init config of this repository, wherever the script runs from."""
    if config.encoder != "auto":
        return ArgosDinoEncoder.from_name_or_path(config.encoder) if config.encoder else None
    pretrained = config.pretrained_model_name_or_path
    if pretrained_is_pipeline:
        logger.info("The encoder of the pretrained pipeline %s", pretrained)
        if os.path.isdir(pretrained):  # a pipeline exported without an encoder gives none
            folder = os.path.join(pretrained, "encoder")
            return ArgosDinoEncoder.from_name_or_path(folder) if os.path.isdir(folder) else None
        return ArgosDinoEncoder.from_pretrained(pretrained, subfolder="encoder")
    return ArgosDinoEncoder.from_name_or_path(REPOSITORY / "hub_configs" / "argos-dino-encoder-tiny")


def load_world_model(config: WorldModelTrainingConfig, pretrained_is_pipeline: bool) -> ArgosWorldModel:
    """A pretrained model to fine-tune (model or pipeline folder, or Hub id), or a new one from `model_config`; its
    `action_dim` / `state_dim` are checked against (or, for a new model, set from) the datasets' actions and proprio."""
    if config.pretrained_model_name_or_path is not None:
        path = config.pretrained_model_name_or_path
        model = ArgosWorldModel.from_pretrained(path, subfolder="world_model" if pretrained_is_pipeline else "")
        check_feature_dims(model.config, config.datasets, can_set=set())
        return model
    if not os.path.isfile(os.path.join(config.model_config, "config.json")):
        raise FileNotFoundError(f"model_config must be a folder with a config.json, got {config.model_config!r}.")
    model_config = ArgosWorldModelConfig.from_pretrained(config.model_config)
    unknown = sorted(set(config.model_overrides) - set(model_config.to_dict()))
    if unknown:
        raise ValueError(f"model_overrides has unknown keys {unknown}; ArgosWorldModelConfig has {sorted(model_config.to_dict())}.")
    model_config = ArgosWorldModelConfig(**{**model_config.to_dict(), **config.model_overrides})
    model_config = check_feature_dims(
        model_config, config.datasets, can_set={"action_dim", "state_dim"} - set(config.model_overrides)
    )
    return ArgosWorldModel(model_config)


def build_scheduler(
    config: WorldModelTrainingConfig, model_config: ArgosWorldModelConfig, pretrained_is_pipeline: bool
) -> ShortcutForcingScheduler:
    """
    The scheduler of `scheduler_config` + `scheduler`, matched to the model and the objective. Without a
    `scheduler_config`, a fine-tuned pipeline keeps the scheduler it was trained with; a new model starts from the
    scheduler's defaults, but for one teacher-forced on every sequence with no `context_signal_level` given, which
    reads its context clean (1.0), as it was trained.
    """
    pretrained = config.pretrained_model_name_or_path
    if config.scheduler_config is not None:
        settings = dict(ShortcutForcingScheduler.load_config(config.scheduler_config))
    elif pretrained_is_pipeline:
        settings = dict(ShortcutForcingScheduler.load_config(pretrained, subfolder="scheduler"))
        logger.info("Scheduler settings from the pretrained pipeline %s", pretrained)
    else:
        settings = {}
    settings = {key: value for key, value in settings.items() if not key.startswith("_")}
    allowed = sorted(set(inspect.signature(ShortcutForcingScheduler.__init__).parameters) - {"self"})
    unknown = sorted(set(config.scheduler) - set(allowed))
    if unknown:
        raise ValueError(f"scheduler has unknown keys {unknown}; ShortcutForcingScheduler takes {allowed}.")
    given = set(settings) | set(config.scheduler)
    settings.update(config.scheduler)
    if settings.get("teacher_forcing_probability") == 1.0 and "context_signal_level" not in given:
        # every context this model trains on is clean: rollouts, plans and the agent then read a clean one too
        settings["context_signal_level"] = 1.0
        logger.info("teacher_forcing_probability 1.0 without a context_signal_level: the pipeline reads a clean context")
    settings.update(
        max_shortcut_steps=model_config.max_shortcut_steps,
        use_shortcut=config.objective == "shortcut_forcing",
        shift_latent_dim=model_config.latent_tokens * model_config.latent_channels,
    )
    scheduler = ShortcutForcingScheduler(**settings)
    try:  # the evaluations sample with it: a bad value would stop the run at its first evaluation, or before export
        scheduler.set_timesteps(config.eval_num_inference_steps)
    except ValueError as error:
        raise ValueError(f"eval_num_inference_steps={config.eval_num_inference_steps} does not suit the model: {error}") from error
    return scheduler


def model_inputs(batch, model_config: ArgosWorldModelConfig) -> dict:
    """The conditioning of a `WorldBatch` that the model takes (no actions / states when it has none)."""
    inputs = {"independent_frames": batch.independent_frames, "frame_mask": batch.frame_mask}
    if model_config.action_dim > 0 and batch.actions is not None:
        inputs.update(actions=batch.actions, action_mask=batch.action_mask)
    if model_config.state_dim > 0 and batch.states is not None:
        inputs.update(states=batch.states, state_mask=batch.state_mask)
    return inputs


def step_generator(seed: int, batch_index: int) -> torch.Generator:
    """
    The noise generator of one micro-batch, a function of the sampler batch it trains on (its index in the whole run,
    over all processes): P processes then draw the noise of one process accumulating the same P batches, and a resumed
    run draws the noise of the uninterrupted one.
    """
    state = np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def make_accelerator(config, output_dir: Path) -> Accelerator:
    """The run's `Accelerator` from a training config's `gradient_accumulation_steps`, `mixed_precision` and
    `report_to`, logging under `output_dir/logs` (shared by the training scripts)."""
    return Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )


def check_processes(accelerator: Accelerator) -> None:
    """Refuses launches that would train wrongly: processes that do not know of each other, FSDP and DeepSpeed (not
    yet)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes == 1:
        raise ValueError(
            f"launched as {launched} processes (WORLD_SIZE) but accelerate set up 1: each would train alone on the "
            "same batches. On a machine without GPUs, set ACCELERATE_USE_CPU=1 (the processes then use gloo)."
        )
    if accelerator.distributed_type == DistributedType.FSDP:
        raise ValueError(
            "distributed_type FSDP is not supported by this script yet: its EMA checkpoints, evaluation and export "
            "handle unsharded weights on the main process only, load_checkpoint refuses FSDP checkpoints, and "
            "accelerate's FSDP2 preparation calls ArgosWorldModel.get_input_embeddings, which it lacks. Use DDP "
            "(examples/accelerate_configs/ddp.yaml), with gradient_checkpointing for the large models."
        )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ValueError(
            "distributed_type DEEPSPEED is not supported by this script yet: accelerate's clip_grad_norm_ returns no "
            "norm under DeepSpeed (the script logs it), and load_checkpoint refuses DeepSpeed checkpoints, so such a run "
            "could never resume. Use DDP (examples/accelerate_configs/ddp.yaml)."
        )


def build_pipeline(model, scheduler, encoder, decoder, dataset) -> WorldModelPipeline:
    """The inference pipeline of the trained model, carrying the normaliser that training used: the pipeline's raw
    action units (and how actions were aggregated over skipped frames) are those of the first dataset with actions,
    its proprio units those of the first with a state (a video-only dataset listed first has neither)."""
    config = model.config

    def first_with(kind: str) -> str | None:
        return next((name for name, statistics in dataset.statistics.items() if kind in statistics), None)

    action_source = first_with("actions") if config.action_dim else None
    state_source = first_with("states") if config.state_dim else None
    normalizer = dataset.normalizers[action_source or state_source or next(iter(dataset.sources))]
    two_sources = None not in (action_source, state_source) and action_source != state_source
    dims = (config.action_dim, config.state_dim)
    if two_sources or (normalizer.config.action_dim, normalizer.config.state_dim) != dims:
        # actions and states from two datasets, or the model takes fewer features than the data has
        normalizer = ActionStateNormalizer.from_statistics(
            dataset.statistics[action_source]["actions"] if action_source else None,
            dataset.statistics[state_source]["states"] if state_source else None,
            action_dim=config.action_dim, state_dim=config.state_dim,
            **{key: normalizer.config[key] for key in ("normalization_mode", "eps", "action_aggregation", "frameskip")},
        )  # fmt: skip
    return WorldModelPipeline(world_model=model, scheduler=scheduler, encoder=encoder, decoder=decoder, normalizer=normalizer)


def write_sample_videos(evaluation, decoder, config: WorldModelTrainingConfig, step: int, fps: float) -> list[Path]:
    """Real vs predicted videos of the first held-out clips: decoded to pixels, or as PCA images without a decoder."""
    real, predicted = evaluation.real_latents, evaluation.predicted_latents
    context = real.shape[1] - predicted.shape[1]
    paths = []
    for clip in range(min(config.num_sample_videos, real.shape[0])):
        full_prediction = torch.cat([real[clip, :context], predicted[clip]])  # [T, N, C]
        if decoder is not None:
            device = next(decoder.parameters()).device
            with torch.no_grad():
                images = [decoder.decode(x.to(device, torch.float32)).cpu() for x in (real[clip], full_prediction)]
            real_images, predicted_images = ((x.permute(0, 2, 3, 1) * 255).round().byte().numpy() for x in images)
        else:
            real_images = latents_to_pca_images(real[clip], reference=real[clip])
            predicted_images = latents_to_pca_images(full_prediction, reference=real[clip])
        path = Path(config.output_dir) / "samples" / f"step-{step:07d}-clip-{clip}.mp4"
        paths.append(write_comparison_video(real_images, predicted_images, path, context, fps=max(1, round(fps))))
    return paths


def main(argv: list[str] | None = None) -> dict:
    config = load_config(WorldModelTrainingConfig, argv)
    output_dir = check_output_dir(config.output_dir)
    accelerator = make_accelerator(config, output_dir)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    check_processes(accelerator)
    set_seed(config.seed)

    # Model, objective and data; every input problem surfaces here, before any step.
    for argument in ("pretrained_model_name_or_path", "encoder", "decoder"):
        if getattr(config, argument) and os.path.isdir(getattr(config, argument)):
            check_safetensors_files(getattr(config, argument), argument)
    pretrained = config.pretrained_model_name_or_path
    pretrained_is_pipeline = pretrained is not None and is_pipeline(pretrained)  # asked once: a Hub request for an id
    model = load_world_model(config, pretrained_is_pipeline)
    model_config = model.config
    scheduler = build_scheduler(config, model_config, pretrained_is_pipeline)
    loss_class = ShortcutForcingLoss if config.objective == "shortcut_forcing" else DiffusionForcingLoss
    criterion = loss_class(
        scheduler,
        state_loss_weight=config.state_loss_weight,
        normalization=config.loss_normalization,
        num_signal_level_buckets=config.num_signal_level_buckets,
    )
    train_dataset, eval_dataset = build_world_datasets(
        config.datasets,
        config.num_eval_episodes,
        action_dim=model_config.action_dim or None,
        state_dim=model_config.state_dim or None,
        normalization=config.normalization,
        image_size=config.image_size,
        statistics_episodes=config.statistics_episodes,
    )
    encoder = load_encoder(config, pretrained_is_pipeline)
    encoder = encoder.to(accelerator.device) if encoder is not None else None
    if train_dataset.video_key == "frames" and encoder is None:
        raise ValueError("datasets have no finished latent cache, so `encoder` must be set to encode frames; got None.")
    if encoder is not None:
        encoder_shape = (encoder.config.num_latent_tokens, encoder.config.latent_dim)
        if encoder_shape != (model_config.latent_tokens, model_config.latent_channels):
            raise ValueError(
                f"the encoder gives latents [N, C] = {list(encoder_shape)} but the model takes "
                f"{[model_config.latent_tokens, model_config.latent_channels]}; pick a matching encoder / model_config."
            )
        if train_dataset.video_key == "frames" and encoder.config.num_statistics_frames == 0:
            logger.warning("The encoder has no latent statistics: training on un-normalised latents.")
        align_encoder_with_caches(encoder, train_dataset)
    decoder = ArgosRAEDecoder.from_pretrained(config.decoder).to(accelerator.device).eval() if config.decoder else None
    if decoder is not None:  # the exported pipeline refuses a decoder that cannot read its latents: stop now, not then
        check_decoder(decoder, encoder, model_config.latent_channels)
    eval_batches = []
    if eval_dataset is not None:
        clip_length = config.eval_context_frames + config.eval_horizon
        eval_batches = held_out_batches(eval_dataset, clip_length, config.eval_batch_size)

    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = create_optimizer(
        model, config.learning_rate, config.weight_decay, (config.adam_beta1, config.adam_beta2), config.adam_epsilon
    )
    # The LR schedule counts optimizer steps, whatever the number of processes: the loop steps it after each optimizer
    # step and checkpoints save it as JSON. (accelerate's prepared scheduler steps once per process, so a run resumed on
    # another number of processes would jump along its schedule.)
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        step_rules=config.lr_step_rules,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_train_steps,
    )
    # One sampler epoch covers the whole run: batch b is a function of (seed, b), so resuming = skipping batches.
    # accelerate shards it with `BatchSamplerShard`: process p trains on batches p, p + P, p + 2P, ... of the run.
    sampler = TokenBudgetBatchSampler(
        train_dataset,
        frames_per_batch=config.frames_per_batch,
        sequence_lengths=config.sequence_lengths,
        num_batches=config.max_train_steps * config.gradient_accumulation_steps * accelerator.num_processes,
        seed=config.seed,
    )
    train_dataloader = DataLoader(
        train_dataset, batch_sampler=sampler, collate_fn=collate_world_clips, num_workers=config.dataloader_num_workers
    )
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    unwrapped = accelerator.unwrap_model(model)

    ema = None
    if config.use_ema:
        ema = EMAModel(
            unwrapped.parameters(),
            decay=config.ema_decay,
            use_ema_warmup=True,
            power=config.ema_power,
            model_cls=ArgosWorldModel,
            model_config=model_config,
        )
        ema.to(accelerator.device)
    progress = TrainingProgress(
        settings=config.resume_settings(accelerator.num_processes), max_steps=config.max_train_steps
    )
    # saved as JSON + safetensors beside accelerate's model and optimizer files
    checkpoint_state = {"progress": progress, "lr_scheduler": lr_scheduler, **({"ema": ema} if ema is not None else {})}

    checkpoint = resolve_checkpoint(output_dir, config.resume_from_checkpoint)
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, checkpoint_state)
        if ema is not None:
            ema.to(accelerator.device)
        logger.info("Resumed from %s at step %d", checkpoint, progress.step)
    first_step = progress.step
    # Resuming skips the batches already trained on: exact, as P x gradient_accumulation_steps is that of the saved
    # run (e.g. 2 processes resumed as 1 process accumulating 2 batches, or the other way round; another product is
    # refused when the checkpoint is loaded, with the run's other recorded settings).
    micro_step = first_micro_step = first_step * config.gradient_accumulation_steps
    # `load_state` restores accelerate's micro-batch counter as the saved run counted it; its phase decides which
    # micro-batch closes an accumulation, so it counts this run's micro-batches (a checkpoint of 2 processes resumed by
    # 1 process accumulating 2 batches would otherwise step the optimizer one batch early).
    accelerator.step = micro_step
    if micro_step:
        train_dataloader = accelerator.skip_first_batches(train_dataloader, micro_step)

    if accelerator.is_main_process:
        tracker_config = {key: json.dumps(value) if isinstance(value, (dict, list)) else value
                          for key, value in dataclasses.asdict(config).items()}
        accelerator.init_trackers(config.tracker_project_name, config={k: v for k, v in tracker_config.items() if v is not None})
    logger.info(
        "Training %s (%.1fM parameters) on %r for %d steps, %d frames per batch x %d processes x %d accumulation",
        type(unwrapped).__name__, unwrapped.num_parameters() / 1e6, train_dataset, config.max_train_steps,
        config.frames_per_batch, accelerator.num_processes, config.gradient_accumulation_steps,
    )

    def evaluate(step: int) -> dict[str, list[float]]:
        """Rollout metrics of the EMA weights on the held-out clips (and sample videos)."""
        if not eval_batches or not accelerator.is_main_process:
            return {}
        if ema is not None:
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        batches = []
        for batch in eval_batches:
            batch = batch.to(accelerator.device)
            batches.append((encode_frames(batch, encoder), batch))
        with accelerator.autocast():
            evaluation = evaluate_rollouts(
                unwrapped, scheduler, batches, config.eval_context_frames, config.eval_num_inference_steps,
                scheduler.resolve_context_signal_level(config.eval_context_signal_level), seed=config.seed,
            )
        unwrapped.train()
        if ema is not None:
            ema.restore(unwrapped.parameters())
        logs = {f"eval/{name}/t+{k + 1}": value for name, values in evaluation.metrics.items() for k, value in enumerate(values)}
        logs.update({f"eval/{name}/mean": float(np.mean(values)) for name, values in evaluation.metrics.items()})
        accelerator.log(logs, step=step)
        if config.num_sample_videos and evaluation.real_latents is not None:
            write_sample_videos(evaluation, decoder, config, step, fps=eval_dataset.sources[next(iter(eval_dataset.sources))].fps)
        summary = ", ".join(f"{name} {np.mean(values):.4f}" for name, values in evaluation.metrics.items())
        logger.info("step %d evaluation (EMA weights, mean over %d future frames): %s", step, config.eval_horizon, summary)
        return evaluation.metrics

    tokens_per_frame = model_config.tokens_per_frame
    num_buckets = config.num_signal_level_buckets
    losses, metrics = [], {}
    window = {"loss": 0.0, "micro": 0, "frames": 0, "buckets": torch.zeros(num_buckets), "counts": torch.zeros(num_buckets)}
    window_start = time.perf_counter()
    progress_bar = tqdm(
        total=config.max_train_steps, initial=first_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    for batch in train_dataloader:
        if progress.step >= config.max_train_steps:
            break
        with accelerator.accumulate(model):
            latents = encode_frames(batch, encoder)
            batch_index = micro_step * accelerator.num_processes + accelerator.process_index  # this batch in the run
            generator = step_generator(config.seed, batch_index)
            # the model checks input values on this run's first batch only: each check waits for the device
            checks = unwrapped.trusted_inputs() if micro_step > first_micro_step else contextlib.nullcontext()
            with accelerator.autocast(), checks:
                output = criterion(model, latents, generator=generator, **model_inputs(batch, model_config))
            accelerator.backward(output.loss)
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        micro_step += 1
        window["loss"] += accelerator.gather(output.loss.detach()).mean().item()
        window["micro"] += 1
        window["frames"] += int(batch.frame_mask.sum()) * accelerator.num_processes
        counts = output.frames_by_signal_level.float().cpu()
        window["buckets"] += torch.nan_to_num(output.loss_by_signal_level.float().cpu()) * counts
        window["counts"] += counts
        if not accelerator.sync_gradients:
            continue

        progress.step += 1
        if ema is not None:
            ema.step(unwrapped.parameters())
        step_loss = window["loss"] / window["micro"]
        check_finite_step(progress.step, step_loss, grad_norm, lr_scheduler.get_last_lr()[0])
        losses.append(step_loss)
        progress_bar.update(1)
        progress_bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")
        if progress.step % config.logging_steps == 0 or progress.step == config.max_train_steps:
            seconds = time.perf_counter() - window_start
            frames_per_second = window["frames"] / seconds
            logs = {
                "train/loss": float(np.mean(losses[-config.logging_steps:])),
                "train/grad_norm": float(grad_norm),
                "train/lr": lr_scheduler.get_last_lr()[0],
                "train/frames_per_second": frames_per_second,
                "train/tokens_per_second": frames_per_second * tokens_per_frame,
            }
            edges = torch.linspace(0, 1, num_buckets + 1)
            for bucket in range(num_buckets):
                if window["counts"][bucket] > 0:
                    name = f"train/loss_by_signal_level/{edges[bucket]:.2f}-{edges[bucket + 1]:.2f}"
                    logs[name] = float(window["buckets"][bucket] / window["counts"][bucket])
            accelerator.log(logs, step=progress.step)
            metrics["frames_per_second"], metrics["tokens_per_second"] = frames_per_second, frames_per_second * tokens_per_frame
            window.update(frames=0, buckets=torch.zeros(num_buckets), counts=torch.zeros(num_buckets))
            window_start = time.perf_counter()
        window.update(loss=0.0, micro=0)

        if progress.step % config.checkpointing_steps == 0 or progress.step == config.max_train_steps:
            save_checkpoint(accelerator, output_dir, progress.step, config.checkpoints_total_limit, checkpoint_state)
        if config.eval_steps and progress.step % config.eval_steps == 0 and progress.step != config.max_train_steps:
            evaluate(progress.step)
    progress_bar.close()

    accelerator.wait_for_everyone()
    eval_metrics = evaluate(progress.step)
    summary = {
        "train_steps": progress.step,
        "final_loss": losses[-1] if losses else None,
        "losses": losses,
        "rollout_metrics": eval_metrics,
        "throughput": metrics,
    }
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        pipeline = build_pipeline(unwrapped, scheduler, encoder, decoder, train_dataset)
        repo_id = config.hub_model_id or output_dir.name
        pipeline_dir = export_pipeline(
            pipeline, output_dir / "pipeline", repo_id, dataclasses.asdict(config), eval_metrics, progress.step
        )
        summary["pipeline"] = str(pipeline_dir)
        if config.push_to_hub:
            summary["hub_url"] = push_pipeline_to_hub(pipeline_dir, repo_id, private=config.hub_private)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=1))
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main()
