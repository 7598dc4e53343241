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
"""Train an `ArgosRAEDecoder` on the frames of a mixture of LeRobot datasets, with a frozen `ArgosDinoEncoder`.

The RAE stage-1 recipe: L1 + LPIPS (when its weights are on disk) + an optional hinge GAN loss with VQGAN's adaptive
weight and a delayed start, noise augmentation of the latents (sigma ~ U(0, tau)) during training only, EMA weights,
PSNR / SSIM on held-out episodes with reconstruction grids, checkpoints every `checkpointing_steps` and exact resume.

    accelerate launch examples/train_rae_decoder.py --config examples/configs/rae_decoder_pusht.yaml
    python examples/train_rae_decoder.py --config examples/configs/rae_decoder_pusht.yaml --max_train_steps 200
"""

import dataclasses
import logging
import os
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoConfig

from argos_wm.data import LeRobotSource
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder, resize_images, to_float_images
from argos_wm.modeling_rae_decoder import ArgosRAEDecoder
from argos_wm.training.adversarial import PatchDiscriminator
from argos_wm.training.checkpointing import check_output_dir, load_checkpoint, resolve_checkpoint, save_checkpoint
from argos_wm.training.config_loading import load_config
from argos_wm.training.decoder_losses import RAEDecoderLoss
from argos_wm.training.image_metrics import psnr, ssim
from argos_wm.training.latent_noise import LatentNoiseAugmentation
from argos_wm.training.lpips import LPIPS


logger = logging.getLogger(__name__)


@dataclass
class TrainRAEDecoderConfig:
    """Every setting of a decoder training run; the YAML file and `--key value` flags fill it."""

    datasets: list[dict] = field(default_factory=list)  # [{root, camera_keys, fps, weight}], LeRobotSource arguments
    encoder: str = "hub_configs/argos-dino-encoder-tiny"  # ArgosDinoEncoder name or path
    decoder_config: str = "hub_configs/argos-rae-decoder-tiny"  # decoder config folder, or a trained decoder to tune
    output_dir: str = "outputs/rae-decoder"
    seed: int = 0
    max_episodes_per_dataset: int = 100  # episodes held in memory per dataset
    num_eval_episodes: int = 1  # last episodes of each dataset held out for PSNR / SSIM
    num_eval_frames: int = 64
    statistics_frames: int = 2048  # frames for the encoder's latent statistics when it has none
    batch_size: int = 16
    max_train_steps: int = 2000
    learning_rate: float = 2e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"  # any diffusers.optimization.get_scheduler name
    lr_warmup_steps: int = 100
    max_grad_norm: float = 1.0
    noise_tau: float = 0.8  # RAE noise augmentation: sigma ~ U(0, noise_tau)
    lpips_weight: float = 1.0
    lpips_vgg_path: str | None = None  # torchvision vgg16-397923af.pth
    lpips_linear_path: str | None = None  # lpips weights/v0.1/vgg.pth
    gan_weight: float = 0.0  # 0 disables the GAN loss
    gan_start_step: int = 1000
    discriminator_learning_rate: float = 2e-4
    max_adaptive_weight: float = 1e4
    ema_decay: float = 0.999
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    eval_steps: int = 250
    num_grid_images: int = 8
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    report_to: str = "tensorboard"


def parse_config() -> TrainRAEDecoderConfig:
    """`--config file.yaml` then `--key value` overrides, checked against `TrainRAEDecoderConfig`."""
    config = load_config(TrainRAEDecoderConfig)
    if not config.datasets:
        raise ValueError("datasets must list at least one {root, camera_keys, fps, weight} entry, got [].")
    return config


def load_frames(config: TrainRAEDecoderConfig) -> tuple[list[list[torch.Tensor]], list[float], list[torch.Tensor]]:
    """Decode the frames of every dataset: per dataset a list of uint8 `[T, H, W, 3]` episodes (one per episode and
    camera), the dataset weights, and the held-out episodes."""
    train_pools, weights, eval_episodes = [], [], []
    for spec in tqdm(config.datasets, desc="Reading datasets"):
        spec = dict(spec)
        weight = float(spec.pop("weight", 1.0))
        source = LeRobotSource(spec.pop("root"), **spec)
        num_episodes = min(len(source), config.max_episodes_per_dataset)
        num_eval = config.num_eval_episodes if num_episodes > config.num_eval_episodes else 0
        pool = []
        for index in range(num_episodes):
            for camera in source.camera_keys:
                frames = source.read_episode(index, camera=camera).frames
                (eval_episodes if index >= num_episodes - num_eval else pool).append(frames)
        train_pools.append(pool)
        weights.append(weight)
    if not eval_episodes:
        logger.warning("No dataset has more than num_eval_episodes episodes: evaluating on training frames.")
        eval_episodes = [episode for pool in train_pools for episode in pool]
    return train_pools, weights, eval_episodes


def sample_frames(
    pools: list[list[torch.Tensor]], weights: list[float], batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Draw `batch_size` frames `[H, W, 3]`: a dataset by weight, then an episode and a frame uniformly."""
    datasets = torch.multinomial(torch.tensor(weights), batch_size, replacement=True, generator=generator)
    frames = []
    for dataset in datasets.tolist():
        episode = pools[dataset][int(torch.randint(len(pools[dataset]), (1,), generator=generator))]
        frames.append(episode[int(torch.randint(len(episode), (1,), generator=generator))])
    return frames


def encode_batch(
    frames: list[torch.Tensor], encoder: ArgosDinoEncoder, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames `[H, W, 3]` -> raw latents `[B, N, C]` and target images `[B, 3, S, S]` in [0, 1] with the
    encoder's crop."""
    device = encoder.latent_mean.device
    pixel_values = torch.cat([encoder.preprocess(frame[None]) for frame in frames])  # [B, 3, 224, 224]
    with torch.no_grad():
        latents = encoder(pixel_values, normalize=False).latents
    targets = torch.cat(
        [
            resize_images(to_float_images(frame[None]), image_size, encoder.config.do_center_crop, "bilinear")
            for frame in frames
        ]
    ).to(device)
    return latents, targets


def save_image_grid(targets: torch.Tensor, images: torch.Tensor, path: str) -> None:
    """Targets over reconstructions, `[B, 3, H, W]` each in [0, 1] -> a 2-row PNG."""
    grid = torch.cat([torch.cat(list(targets), dim=2), torch.cat(list(images), dim=2)], dim=1)  # [3, 2H, B*W]
    array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array).save(path)


@torch.no_grad()
def evaluate(
    decoder: ArgosRAEDecoder,
    encoder: ArgosDinoEncoder,
    eval_frames: list[torch.Tensor],
    config: TrainRAEDecoderConfig,
    step: int,
) -> dict[str, float]:
    """PSNR / SSIM of `decoder` on the held-out frames; writes a reconstruction grid."""
    decoder.eval()
    scores = {"psnr": [], "ssim": []}
    for start in range(0, len(eval_frames), config.batch_size):
        latents, targets = encode_batch(eval_frames[start : start + config.batch_size], encoder, decoder.config.image_size)
        if decoder.config.latents_normalized:
            latents = encoder.normalize(latents)
        images = decoder(latents).sample
        scores["psnr"].append(psnr(images, targets))
        scores["ssim"].append(ssim(images, targets))
        if start == 0:
            count = config.num_grid_images
            os.makedirs(os.path.join(config.output_dir, "samples"), exist_ok=True)
            save_image_grid(targets[:count], images[:count], os.path.join(config.output_dir, "samples", f"step-{step:07d}.png"))
    decoder.train()
    return {name: torch.cat(values).mean().item() for name, values in scores.items()}


def load_decoder(name_or_path: str) -> ArgosRAEDecoder:
    """A trained decoder (folder or Hub id with weights) to fine-tune, or a fresh one from a config-only folder."""
    if os.path.isdir(name_or_path) and not any(name.endswith(".safetensors") for name in os.listdir(name_or_path)):
        return ArgosRAEDecoder(AutoConfig.from_pretrained(name_or_path))
    return ArgosRAEDecoder.from_pretrained(name_or_path)


def main() -> None:
    config = parse_config()
    check_output_dir(config.output_dir)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "logs")),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    set_seed(config.seed)

    train_pools, weights, eval_episodes = load_frames(config)
    eval_generator = torch.Generator().manual_seed(config.seed)
    eval_frames = sample_frames([eval_episodes], [1.0], config.num_eval_frames, eval_generator)

    encoder = ArgosDinoEncoder.from_name_or_path(config.encoder).to(accelerator.device).eval()
    if encoder.config.num_statistics_frames == 0:
        logger.warning("The encoder has no latent statistics: computing them on the training frames.")
        encoder.compute_latent_statistics(
            (episode for pool in train_pools for episode in pool), max_frames=config.statistics_frames
        )
        if accelerator.is_main_process:
            encoder.save_pretrained(os.path.join(config.output_dir, "encoder"))

    decoder = load_decoder(config.decoder_config)
    expected = (encoder.config.num_latent_tokens, encoder.config.latent_dim)
    if (decoder.config.latent_tokens, decoder.config.latent_channels) != expected:
        raise ValueError(
            f"decoder_config must take the encoder's latents [N, C]={list(expected)}, got "
            f"{[decoder.config.latent_tokens, decoder.config.latent_channels]}."
        )
    if decoder.config.latents_normalized:
        decoder.set_latent_statistics(encoder.latent_mean.cpu(), encoder.latent_std.cpu(), encoder.config.latent_bound)
    if config.gradient_checkpointing:
        decoder.activation_checkpointing_enable()
    decoder.train()
    ema = EMAModel(decoder.parameters(), decay=config.ema_decay, model_cls=ArgosRAEDecoder, model_config=decoder.config)
    noise_augmentation = LatentNoiseAugmentation(config.noise_tau).train()

    lpips = None
    if config.lpips_weight > 0:
        paths = (config.lpips_vgg_path, config.lpips_linear_path)
        if all(path is not None and os.path.isfile(path) for path in paths):
            lpips = LPIPS.from_local_weights(*paths).to(accelerator.device)
        else:
            logger.warning(f"LPIPS weights not found locally (lpips_vgg_path, lpips_linear_path = {paths}): training without LPIPS.")
    discriminator = PatchDiscriminator() if config.gan_weight > 0 else None
    criterion = RAEDecoderLoss(
        lpips=lpips,
        lpips_weight=config.lpips_weight,
        discriminator=discriminator,
        gan_weight=config.gan_weight,
        gan_start_step=config.gan_start_step,
        max_adaptive_weight=config.max_adaptive_weight,
    )

    optimizer = torch.optim.AdamW(
        decoder.parameters(), lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.weight_decay
    )
    lr_scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps, num_training_steps=config.max_train_steps
    )
    decoder, optimizer, lr_scheduler = accelerator.prepare(decoder, optimizer, lr_scheduler)
    if discriminator is not None:
        discriminator_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=config.discriminator_learning_rate, betas=(config.adam_beta1, config.adam_beta2)
        )
        criterion.discriminator, discriminator_optimizer = accelerator.prepare(discriminator, discriminator_optimizer)
    ema.to(accelerator.device)

    step = 0
    checkpoint = resolve_checkpoint(config.output_dir, config.resume_from_checkpoint)
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, extra_state={"ema": ema})  # the EMA as JSON + safetensors
        ema.to(accelerator.device)
        step = int(checkpoint.name.split("-")[-1])
    if accelerator.is_main_process:
        accelerator.init_trackers("train_rae_decoder", config={k: str(v) for k, v in dataclasses.asdict(config).items()})

    unwrapped = accelerator.unwrap_model(decoder)
    progress = tqdm(range(step, config.max_train_steps), initial=step, total=config.max_train_steps, desc="Training", disable=not accelerator.is_local_main_process)
    for step in progress:
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * accelerator.num_processes + accelerator.process_index)
        latents, targets = encode_batch(sample_frames(train_pools, weights, config.batch_size, generator), encoder, unwrapped.config.image_size)
        latents = noise_augmentation(latents, generator=generator)  # RAE: noise on the raw latents
        if unwrapped.config.latents_normalized:
            latents = encoder.normalize(latents)

        with accelerator.autocast():
            images = decoder(latents, clamp=False).sample
            losses = criterion(images.float(), targets, unwrapped.pixel_proj.weight, step)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(losses.loss)
        accelerator.clip_grad_norm_(decoder.parameters(), config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        ema.step(unwrapped.parameters())
        logs = {"loss": losses.loss.item(), "l1": losses.l1_loss.item(), "lr": lr_scheduler.get_last_lr()[0]}
        if losses.lpips_loss is not None:
            logs["lpips"] = losses.lpips_loss.item()

        if criterion.gan_active(step):
            discriminator_optimizer.zero_grad(set_to_none=True)
            discriminator_loss = criterion.discriminator_loss(images.float(), targets)
            accelerator.backward(discriminator_loss)
            discriminator_optimizer.step()
            logs.update(gan=losses.gan_loss.item(), gan_weight=losses.gan_weight.item(), discriminator=discriminator_loss.item())

        completed = step + 1
        progress.set_postfix(loss=f"{logs['loss']:.4f}")
        if completed % config.checkpointing_steps == 0 or completed == config.max_train_steps:
            save_checkpoint(accelerator, config.output_dir, completed, config.checkpoints_total_limit, {"ema": ema})
        if accelerator.is_main_process and (completed % config.eval_steps == 0 or completed == config.max_train_steps):
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
            metrics = evaluate(unwrapped, encoder, eval_frames, config, completed)
            ema.restore(unwrapped.parameters())
            logs.update({f"eval/{name}": value for name, value in metrics.items()})
            logger.info(f"step {completed}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} (EMA weights)")
        accelerator.log(logs, step=completed)

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema.copy_to(unwrapped.parameters())
        unwrapped.save_pretrained(os.path.join(config.output_dir, "decoder"))
        logger.info(f"Saved the EMA decoder to {os.path.join(config.output_dir, 'decoder')}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
