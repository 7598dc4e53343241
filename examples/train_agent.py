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
"""Train Dreamer 4's agent inside a trained world model: phase 2 (behaviour cloning + reward model) and phase 3
(imagination RL), each a run of this script.

    python examples/train_agent.py --config examples/configs/agent_pusht_bc.yaml
    python examples/train_agent.py --config examples/configs/agent_pusht_rl.yaml
    accelerate launch examples/train_agent.py --config ... --max_train_steps 500

- `phase: bc` adds agent tokens and heads to the pipeline's world model (when it has none) and trains them on dataset
  clips: the policy's likelihood of the next `agent_horizon` actions and the reward head's two-hot loss, the agent
  reading the frames re-noised to `context_signal_level` as `pipe.act` does. A goal-conditioned agent gets each clip's
  last frame as its goal (hindsight relabelling), with the goal reward -(latent + proprio distance to it). With
  `train_transformer: true` the transformer fine-tunes too, with the dynamics (shortcut forcing) loss kept on.
- `phase: rl` freezes the world model and the reward head; from the first `context_frames` of dataset clips the policy
  acts in imagination (`argos_wm.rl.imagine`: KV cache, K shortcut steps per frame, the whole batch at once) for
  `imagination_horizon` steps; the value head learns TD(lambda) returns and the policy PMPO with a reverse KL to the
  frozen behaviour-cloning policy (the pretrained pipeline's). Logs the imagined return, entropy, KL and value error.

Every setting is a field of `AgentTrainingConfig` (argos_wm/training/agent_training_config.py); `--key value`
overrides the YAML file. The run writes `output_dir/checkpoints/checkpoint-*` (resume with `--resume_from_checkpoint
latest`), tracker logs in `output_dir/logs`, the EMA model as a `WorldModelPipeline` in `output_dir/pipeline` (the
pretrained pipeline's encoder, decoder, normaliser and scheduler with the agent's world model) and
`output_dir/training_summary.json`.
"""

import copy
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from argos_wm.configuration_world_model import ArgosWorldModelConfig
from argos_wm.data.token_budget_sampler import TokenBudgetBatchSampler
from argos_wm.data.world_batch import collate_world_clips
from argos_wm.modeling_world_model import ArgosWorldModel
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.rl import behavior_cloning_loss, goal_rewards, imagination_loss, imagine, last_frame_goals
from argos_wm.training.agent_training_config import AgentTrainingConfig
from argos_wm.training.checkpointing import (
    TrainingProgress,
    check_output_dir,
    check_safetensors_files,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from argos_wm.training.config_loading import load_config
from argos_wm.training.export import push_pipeline_to_hub
from argos_wm.training.losses import ShortcutForcingLoss
from argos_wm.training.optimization import check_finite_step, create_optimizer
from argos_wm.training.world_data import build_world_datasets, encode_frames, held_out_batches


sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_world_model import check_processes, make_accelerator, model_inputs, step_generator  # noqa: E402


logger = logging.getLogger(__name__)


def load_agent_model(pipe: WorldModelPipeline, config: AgentTrainingConfig) -> ArgosWorldModel:
    """The pipeline's world model with agent tokens: as it is when it has them, with `agent_config`'s added (at zero
    output, the world model's weights kept) when it has none (phase bc only)."""
    model = pipe.world_model
    if model.agent_heads is not None:
        return model
    if config.phase == "rl":
        raise ValueError(
            f"phase rl needs a pipeline whose world model has agent heads; {config.pretrained_pipeline!r} has none "
            "(num_agent_tokens 0). Train phase bc first and pass its output_dir/pipeline."
        )
    fields = model.config.to_dict()
    unknown = sorted(set(config.agent_config) - set(fields))
    if unknown:
        raise ValueError(f"agent_config has unknown keys {unknown}; ArgosWorldModelConfig has {sorted(fields)}.")
    if int(config.agent_config.get("num_agent_tokens", 0)) < 1:
        raise ValueError(f"agent_config must set num_agent_tokens >= 1, got {config.agent_config}.")
    agent = ArgosWorldModel(ArgosWorldModelConfig(**{**fields, **config.agent_config}))
    missing, unexpected = agent.load_state_dict(model.state_dict(), strict=False)
    stray = [name for name in missing if not name.startswith("agent_")] + list(unexpected)
    if stray:
        raise ValueError(f"the world model's weights do not fit the agent model: {stray}.")
    return agent


def use_pipeline_normalizer(datasets, pipe: WorldModelPipeline) -> None:
    """Actions and states are normalised by the pipeline's normaliser, the one its world model was trained with."""
    normalizer = pipe.normalizer
    if normalizer is None:
        return
    for dataset in datasets:
        for name in dataset.sources:
            given = (dataset.action_dim, dataset.state_dim)
            expected = (normalizer.config.action_dim or None, normalizer.config.state_dim or None)
            if given != expected:
                raise ValueError(
                    f"dataset {name!r} has (action_dim, state_dim) = {given} but the pipeline's normaliser holds "
                    f"{expected}; train the agent on the data the world model was trained on."
                )
            dataset.normalizers[name] = normalizer


def noised(scheduler, values: torch.Tensor, level: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(values.shape, generator=generator, dtype=values.dtype).to(values.device)
    return scheduler.add_noise(values, noise, level)


def agent_goals(batch, latents: torch.Tensor, goal_conditioned: bool) -> dict:
    """The clip's last valid frame as its goal (clean latents and states) for a goal-conditioned agent, else none."""
    if not goal_conditioned:
        return {}
    goal_latents, goal_states = last_frame_goals(latents, batch.states, batch.frame_mask)
    return {"goal_latents": goal_latents, "goal_states": goal_states}


def clip_rewards(batch, latents: torch.Tensor, goal: dict, config: AgentTrainingConfig):
    """Rewards `[B, T]` and their mask: the goal reward to the clip's goal, or the dataset's (None: it has none)."""
    if config.reward == "dataset":
        return batch.rewards, batch.reward_mask
    if not goal:
        raise ValueError("reward 'goal' needs a goal-conditioned agent (agent_config goal_conditioned: true).")
    rewards = goal_rewards(latents, goal["goal_latents"], batch.states, goal["goal_states"], config.goal_state_weight)
    return rewards, batch.frame_mask


def behavior_cloning_step(model, agent_model, scheduler, criterion, batch, latents, config, generator) -> tuple:
    """Phase 2's loss on one batch (+ the dynamics loss when the transformer trains): (loss, terms). `model` may be
    wrapped (DDP); `agent_model` is the `ArgosWorldModel` itself."""
    model_config = agent_model.config
    goal = agent_goals(batch, latents, model_config.goal_conditioned)
    level = torch.full(
        latents.shape[:2], scheduler.resolve_context_signal_level(config.context_signal_level), device=latents.device
    )
    output = model(
        latents=noised(scheduler, latents, level, generator),
        signal_levels=level,
        step_sizes=torch.full_like(level, scheduler.min_step_size),
        actions=batch.actions,
        action_mask=batch.action_mask,
        states=None if batch.states is None else noised(scheduler, batch.states, level, generator),
        state_mask=batch.state_mask,
        independent_frames=batch.independent_frames,
        **goal,
    )
    rewards, reward_mask = clip_rewards(batch, latents, goal, config)
    agent_loss = behavior_cloning_loss(
        output.agent, agent_model.agent_heads, batch.actions, batch.action_mask, rewards, reward_mask, batch.frame_mask,
        config.reward_loss_weight,
    )  # fmt: skip
    loss, terms = agent_loss.loss, dict(agent_loss.terms)
    if config.train_transformer:
        dynamics = criterion(model, latents, generator=generator, **model_inputs(batch, model_config))
        loss = loss + config.dynamics_loss_weight * dynamics.loss
        terms["dynamics_loss"] = dynamics.loss.detach()
    return loss, terms


def imagination_step(
    model, scheduler, prior, batch, latents, config, generator, deterministic=False, train_policy=True
):
    """Phase 3's loss on imagined rollouts from the batch's first `context_frames` frames: (loss, terms); without
    `train_policy` only the value learns (its warm-up)."""
    frames = config.context_frames
    goal = agent_goals(batch, latents, model.config.goal_conditioned)
    action_fn = None
    if deterministic:
        def action_fn(parameters):
            return model.agent_heads.policy_distribution(parameters).mode

    trajectory = imagine(
        model, scheduler, latents[:, :frames], config.imagination_horizon,
        context_states=None if batch.states is None else batch.states[:, :frames],
        context_actions=None if batch.actions is None else batch.actions[:, :frames],
        context_action_mask=None if batch.actions is None else batch.action_mask[:, :frames],
        num_inference_steps=config.num_inference_steps, context_signal_level=config.context_signal_level,
        generator=generator, action_fn=action_fn, **goal,
    )  # fmt: skip
    if config.imagination_reward == "goal":
        if not goal:
            raise ValueError("imagination_reward 'goal' needs a goal-conditioned agent.")
        rewards = goal_rewards(trajectory.latents, goal["goal_latents"], trajectory.states, goal["goal_states"],
                               config.goal_state_weight)  # fmt: skip
        trajectory = dataclasses.replace(trajectory, rewards=rewards)
    output = imagination_loss(
        model.agent_heads, prior, trajectory, gamma=config.gamma, lam=config.lam, alpha=config.pmpo_alpha,
        beta=config.pmpo_beta, policy_weight=1.0 if train_policy else 0.0,
        centered_advantages=config.centered_advantages,
    )  # fmt: skip
    return output.loss, output.terms


def freeze_for_phase(model: ArgosWorldModel, config: AgentTrainingConfig) -> None:
    """bc: the agent tokens, the policy and reward heads train (and the transformer with `train_transformer`), not the
    value head, which only phase rl's loss reaches (a parameter no loss reaches stops DDP); rl: the policy and value
    heads only."""
    for name, param in model.named_parameters():
        if config.phase == "rl":
            trains = name.startswith(("agent_heads.policy.", "agent_heads.value."))
        else:
            trains = not name.startswith("agent_heads.value.") and (
                config.train_transformer or name.startswith(("agent_tokens.", "agent_heads."))
            )
        param.requires_grad_(trains)


class TrainedWeights:
    """The trained parameters of a model that accelerate does not hold (phase rl), saved with each checkpoint as
    `trained_weights.json` + `.safetensors`."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: param.detach() for name, param in self.model.named_parameters() if param.requires_grad}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                parameters[name].copy_(value)


def main(argv: list[str] | None = None) -> dict:
    config = load_config(AgentTrainingConfig, argv)
    output_dir = check_output_dir(config.output_dir)
    accelerator = make_accelerator(config, output_dir)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    check_processes(accelerator)
    set_seed(config.seed)

    # Model, data and objective; every input problem surfaces here, before any step.
    if os.path.isdir(config.pretrained_pipeline):
        check_safetensors_files(config.pretrained_pipeline, "pretrained_pipeline")
    pipe = WorldModelPipeline.from_pretrained(config.pretrained_pipeline)
    model = load_agent_model(pipe, config)
    model_config = model.config
    if config.reward == "goal" or config.imagination_reward == "goal":
        if not model_config.goal_conditioned:
            raise ValueError("reward / imagination_reward 'goal' need a goal-conditioned agent (goal_conditioned).")
    scheduler = pipe.scheduler
    encoder = pipe.encoder.to(accelerator.device) if pipe.encoder is not None else None
    criterion = ShortcutForcingLoss(scheduler, state_loss_weight=config.state_loss_weight)
    train_dataset, eval_dataset = build_world_datasets(
        config.datasets,
        config.num_eval_episodes,
        action_dim=model_config.action_dim or None,
        state_dim=model_config.state_dim or None,
        normalization=pipe.normalizer.config.normalization_mode if pipe.normalizer is not None else "mean_std",
        statistics_episodes=config.statistics_episodes,
    )
    use_pipeline_normalizer([d for d in (train_dataset, eval_dataset) if d is not None], pipe)
    if train_dataset.video_key == "frames" and encoder is None:
        raise ValueError("datasets have no latent cache and the pipeline has no encoder to encode their frames.")
    lengths = config.sequence_lengths if isinstance(config.sequence_lengths, dict) else {config.sequence_lengths: 1}
    eval_batches = []
    if eval_dataset is not None:
        eval_batches = held_out_batches(eval_dataset, max(int(length) for length in lengths), config.eval_batch_size)

    prior = copy.deepcopy(model.agent_heads.policy).requires_grad_(False) if config.phase == "rl" else None
    freeze_for_phase(model, config)
    model.train()
    optimizer = create_optimizer(
        model, config.learning_rate, config.weight_decay, (config.adam_beta1, config.adam_beta2), config.adam_epsilon
    )
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        step_rules=config.lr_step_rules,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_train_steps,
    )
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
    if config.phase == "bc":
        model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    else:  # the heads train on detached imagined states: no DDP wrapper; gradients are averaged by hand
        model = model.to(accelerator.device)
        prior = prior.to(accelerator.device)
        optimizer, train_dataloader = accelerator.prepare(optimizer, train_dataloader)
    unwrapped = accelerator.unwrap_model(model)
    trainable = [param for param in unwrapped.parameters() if param.requires_grad]

    ema = None
    if config.use_ema:
        ema = EMAModel(
            unwrapped.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=config.ema_power,
            model_cls=ArgosWorldModel, model_config=model_config,
        )  # fmt: skip
        ema.to(accelerator.device)
    progress = TrainingProgress(
        settings=config.resume_settings(accelerator.num_processes), max_steps=config.max_train_steps
    )
    checkpoint_state = {"progress": progress, "lr_scheduler": lr_scheduler, **({"ema": ema} if ema is not None else {})}
    if config.phase == "rl":
        checkpoint_state["trained_weights"] = TrainedWeights(unwrapped)
    checkpoint = resolve_checkpoint(output_dir, config.resume_from_checkpoint)
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, checkpoint_state)
        if ema is not None:
            ema.to(accelerator.device)
        logger.info("Resumed from %s at step %d", checkpoint, progress.step)
    first_step = progress.step
    micro_step = first_step * config.gradient_accumulation_steps
    accelerator.step = micro_step
    if micro_step:
        train_dataloader = accelerator.skip_first_batches(train_dataloader, micro_step)

    if accelerator.is_main_process:
        tracker_config = {key: json.dumps(value) if isinstance(value, (dict, list)) else value
                          for key, value in dataclasses.asdict(config).items()}  # fmt: skip
        accelerator.init_trackers(config.tracker_project_name, config={k: v for k, v in tracker_config.items() if v is not None})
    logger.info(
        "Phase %s: training %d of %d parameters (%.2fM) of %s on %r for %d steps", config.phase,
        len(trainable), len(list(unwrapped.parameters())), sum(p.numel() for p in trainable) / 1e6,
        config.pretrained_pipeline, train_dataset, config.max_train_steps,
    )  # fmt: skip

    def step_loss(batch, generator, deterministic=False):
        latents = encode_frames(batch, encoder)
        if config.phase == "bc":
            return behavior_cloning_step(model, unwrapped, scheduler, criterion, batch, latents, config, generator)
        train_policy = progress.step >= config.value_warmup_steps
        return imagination_step(
            unwrapped, scheduler, prior, batch, latents, config, generator, deterministic, train_policy
        )

    def evaluate(step: int) -> dict[str, float]:
        """The phase's loss terms on the held-out clips with the EMA weights (rl: mode actions, fixed noise)."""
        if not eval_batches or not accelerator.is_main_process:
            return {}
        if ema is not None:
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        totals: dict[str, float] = {}
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad(), accelerator.autocast():
            for batch in eval_batches:
                batch = batch.to(accelerator.device)
                if config.phase == "bc":
                    latents = encode_frames(batch, encoder)
                    _, terms = behavior_cloning_step(
                        unwrapped, unwrapped, scheduler, criterion, batch, latents, config, generator
                    )
                else:
                    _, terms = step_loss(batch, generator, deterministic=True)
                for name, value in terms.items():
                    totals[name] = totals.get(name, 0.0) + float(value) / len(eval_batches)
        unwrapped.train()
        if ema is not None:
            ema.restore(unwrapped.parameters())
        accelerator.log({f"eval/{name}": value for name, value in totals.items()}, step=step)
        logger.info("step %d held-out (EMA weights): %s", step, ", ".join(f"{k} {v:.4f}" for k, v in totals.items()))
        return totals

    initial_eval = evaluate(first_step) if first_step == 0 else {}
    losses, window, window_start = [], {}, time.perf_counter()
    progress_bar = tqdm(
        total=config.max_train_steps, initial=first_step, desc=f"Steps ({config.phase})",
        disable=not accelerator.is_local_main_process,
    )  # fmt: skip
    for batch in train_dataloader:
        if progress.step >= config.max_train_steps:
            break
        with accelerator.accumulate(model):
            generator = step_generator(config.seed, micro_step * accelerator.num_processes + accelerator.process_index)
            with accelerator.autocast():
                loss, terms = step_loss(batch, generator)
            accelerator.backward(loss)
            if config.phase == "rl" and accelerator.num_processes > 1 and accelerator.sync_gradients:
                for param in trainable:
                    param.grad = accelerator.reduce(param.grad, reduction="mean")
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        micro_step += 1
        for name, value in {"loss": loss.detach(), **terms}.items():
            window[name] = window.get(name, 0.0) + accelerator.gather(value.detach().float()).mean().item()
        window["micro"] = window.get("micro", 0) + 1
        if not accelerator.sync_gradients:
            continue

        progress.step += 1
        if ema is not None:
            ema.step(unwrapped.parameters())
        micro = window.pop("micro")
        means = {name: value / micro for name, value in window.items()}
        check_finite_step(progress.step, means["loss"], grad_norm, lr_scheduler.get_last_lr()[0])
        losses.append(means["loss"])
        progress_bar.update(1)
        progress_bar.set_postfix(loss=f"{means['loss']:.4f}")
        if progress.step % config.logging_steps == 0 or progress.step == config.max_train_steps:
            logs = {f"train/{name}": value for name, value in means.items()}
            logs.update({"train/grad_norm": float(grad_norm), "train/lr": lr_scheduler.get_last_lr()[0],
                         "train/steps_per_second": 1 / max(time.perf_counter() - window_start, 1e-9)})  # fmt: skip
            accelerator.log(logs, step=progress.step)
            logger.info("step %d: %s", progress.step, ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        window, window_start = {}, time.perf_counter()
        if progress.step % config.checkpointing_steps == 0 or progress.step == config.max_train_steps:
            save_checkpoint(accelerator, output_dir, progress.step, config.checkpoints_total_limit, checkpoint_state)
    progress_bar.close()

    accelerator.wait_for_everyone()
    final_eval = evaluate(progress.step)
    summary = {"phase": config.phase, "train_steps": progress.step, "final_loss": losses[-1] if losses else None,
               "losses": losses, "initial_eval": initial_eval, "final_eval": final_eval}  # fmt: skip
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(unwrapped.parameters())
        unwrapped.eval().requires_grad_(False)
        trained = WorldModelPipeline(
            world_model=unwrapped, scheduler=scheduler, encoder=pipe.encoder, image_processor=pipe.image_processor,
            decoder=pipe.decoder, normalizer=pipe.normalizer,
        )  # fmt: skip
        trained.save_pretrained(output_dir / "pipeline", safe_serialization=True)
        summary["pipeline"] = str(output_dir / "pipeline")
        if config.push_to_hub:
            summary["hub_url"] = push_pipeline_to_hub(output_dir / "pipeline", config.hub_model_id or output_dir.name,
                                                      private=config.hub_private)  # fmt: skip
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=1))
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main()
