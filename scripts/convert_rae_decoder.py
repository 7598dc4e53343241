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
"""Convert a published RAE decoder (`nyu-visionx/RAE-collections`) into an `ArgosRAEDecoder`.

RAE's decoder (`GeneralDecoder`, a ViT-MAE decoder) stores `decoder_embed`, `decoder_pos_embed` (fixed sincos with a
zero CLS row), `trainable_cls_token`, `decoder_layers.N.{attention.attention.{query,key,value}, attention.output.dense,
intermediate.dense, output.dense, layernorm_before, layernorm_after}`, `decoder_norm` and `decoder_pred`. Its latent
statistics file holds `mean` / `var` broadcastable to `[1, C, h, w]`; RAE normalises with `sqrt(var + 1e-5)`.
The architecture (width, depth, MLP size, patch size, token count) is read from the checkpoint's shapes.

    python scripts/convert_rae_decoder.py --output_dir converted/rae-decoder-xl
    python scripts/convert_rae_decoder.py --repo_or_path /data/RAE-collections --output_dir converted/rae-decoder-xl
"""

import argparse
import math
import os
import re

import torch
from einops import rearrange
from huggingface_hub import hf_hub_download

from argos_wm.configuration_rae_decoder import ArgosRAEDecoderConfig
from argos_wm.modeling_rae_decoder import ArgosRAEDecoder, sincos_position_embedding


DEFAULT_REPO = "nyu-visionx/RAE-collections"
DEFAULT_DECODER_FILE = "decoders/dinov2/wReg_base/ViTXL_n08/model.pt"
DEFAULT_STATISTICS_FILE = "stats/dinov2/wReg_base/imagenet1k/stat.pt"
RAE_VARIANCE_EPS = 1e-5

# (RAE key pattern, ArgosRAEDecoder key template), tried in order on every checkpoint key.
KEY_MAPPING = (
    (r"^decoder_embed\.(weight|bias)$", r"latent_proj.\1"),
    (r"^trainable_cls_token$", r"cls_token"),
    (r"^decoder_layers\.(\d+)\.attention\.attention\.query\.(weight|bias)$", r"layers.\1.attention.q_proj.\2"),
    (r"^decoder_layers\.(\d+)\.attention\.attention\.key\.(weight|bias)$", r"layers.\1.attention.k_proj.\2"),
    (r"^decoder_layers\.(\d+)\.attention\.attention\.value\.(weight|bias)$", r"layers.\1.attention.v_proj.\2"),
    (r"^decoder_layers\.(\d+)\.attention\.output\.dense\.(weight|bias)$", r"layers.\1.attention.o_proj.\2"),
    (r"^decoder_layers\.(\d+)\.intermediate\.dense\.(weight|bias)$", r"layers.\1.mlp.fc1.\2"),
    (r"^decoder_layers\.(\d+)\.output\.dense\.(weight|bias)$", r"layers.\1.mlp.fc2.\2"),
    (r"^decoder_layers\.(\d+)\.(layernorm_before|layernorm_after)\.(weight|bias)$", r"layers.\1.\2.\3"),
    (r"^decoder_norm\.(weight|bias)$", r"norm.\1"),
    (r"^decoder_pred\.(weight|bias)$", r"pixel_proj.\1"),
)
# Keys of the published file that are recomputed, not copied.
RECOMPUTED_KEYS = ("decoder_pos_embed",)
# Keys the model may keep at their initial value, as RAE's `load_state_dict(strict=False)` does.
OPTIONAL_KEYS = ("cls_token",)


def load_checkpoint(repo_or_path: str, filename: str) -> dict:
    """`torch.load(weights_only=True)` of `filename` inside a local folder, or downloaded from the Hub repo."""
    if os.path.isdir(repo_or_path):
        path = os.path.join(repo_or_path, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{filename!r} not found in the local folder repo_or_path={repo_or_path!r}.")
    else:
        path = hf_hub_download(repo_id=repo_or_path, filename=filename)
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The decoder's own state dict from a bare one, a training checkpoint (`ema` / `model` / `state_dict`), or one
    with `module.` / `decoder.` prefixes."""
    for key in ("ema", "model", "state_dict"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    for prefix in ("module.", "decoder."):
        if checkpoint and all(key.startswith(prefix) for key in checkpoint):
            checkpoint = {key[len(prefix) :]: value for key, value in checkpoint.items()}
    return checkpoint


def rename_keys(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map RAE keys to ArgosRAEDecoder keys; returns the renamed state dict and the keys no rule knows."""
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        for pattern, template in KEY_MAPPING:
            if re.match(pattern, key):
                renamed[re.sub(pattern, template, key)] = value
                break
        else:
            if key not in RECOMPUTED_KEYS:
                unknown.append(key)
    return renamed, unknown


def config_from_state_dict(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int, latents_normalized: bool
) -> ArgosRAEDecoderConfig:
    """Read the architecture off the checkpoint's shapes (the head count is not stored and must be given)."""
    hidden_size, latent_channels = state_dict["decoder_embed.weight"].shape
    num_layers = 1 + max(int(key.split(".")[1]) for key in state_dict if key.startswith("decoder_layers."))
    patch_pixels = state_dict["decoder_pred.weight"].shape[0] // 3
    return ArgosRAEDecoderConfig(
        latent_channels=latent_channels,
        latent_tokens=state_dict["decoder_pos_embed"].shape[1] - 1,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=state_dict["decoder_layers.0.intermediate.dense.weight"].shape[0],
        decoder_patch_size=math.isqrt(patch_pixels),
        latents_normalized=latents_normalized,
        architectures=["ArgosRAEDecoder"],
    )


def statistics_to_tokens(statistic: torch.Tensor, num_tokens: int, channels: int, name: str) -> torch.Tensor:
    """An RAE statistic (`[1, C, h, w]`, `[C, h, w]`, `[C]` or `[N, C]`) -> per-token `[N, C]`."""
    statistic = statistic.float()
    if statistic.ndim == 4 and statistic.shape[0] == 1:
        statistic = statistic[0]
    if statistic.ndim == 3:
        statistic = rearrange(statistic, "c h w -> (h w) c")
    if statistic.ndim == 1:
        statistic = statistic.expand(num_tokens, channels)
    if tuple(statistic.shape) != (num_tokens, channels):
        raise ValueError(f"latent statistic {name!r} must broadcast to [N={num_tokens}, C={channels}], got {list(statistic.shape)}.")
    return statistic


def convert_rae_decoder(
    checkpoint: dict,
    statistics: dict | None = None,
    num_attention_heads: int = 16,
) -> tuple[ArgosRAEDecoder, dict[str, list[str]]]:
    """
    Build an `ArgosRAEDecoder` from an RAE decoder checkpoint and, optionally, its latent statistics (`mean`, `var`).
    With statistics the decoder takes normalised latents. Returns the decoder and a report with the `unknown`
    (checkpoint keys no rule maps), `unexpected` (mapped to no parameter) and `missing` (left at init) keys.
    Raises ValueError when a required weight is missing.
    """
    state_dict = unwrap_state_dict(checkpoint)
    for key in ("decoder_embed.weight", "decoder_pred.weight", "decoder_pos_embed"):
        if key not in state_dict:
            raise ValueError(f"checkpoint must be an RAE decoder state dict with {key!r}, got keys {sorted(state_dict)[:8]}...")
    config = config_from_state_dict(state_dict, num_attention_heads, latents_normalized=statistics is not None)
    decoder = ArgosRAEDecoder(config).eval()

    renamed, unknown = rename_keys(state_dict)
    result = decoder.load_state_dict(renamed, strict=False)
    missing = [key for key in result.missing_keys if key not in ("latent_mean", "latent_std")]
    if any(key not in OPTIONAL_KEYS for key in missing):
        raise ValueError(f"checkpoint is missing decoder weights {missing}.")

    expected_positions = sincos_position_embedding(config.grid_size, config.grid_size, config.hidden_size, config.grid_size)
    stored_positions = state_dict["decoder_pos_embed"][0, 1:].float()
    if not torch.allclose(stored_positions, expected_positions, atol=1e-4):
        unknown.append("decoder_pos_embed (differs from the fixed 2-D sincos embedding; not used)")

    if statistics is not None:
        if "mean" not in statistics or "var" not in statistics:
            raise ValueError(f"statistics must hold 'mean' and 'var', got keys {sorted(statistics)}.")
        shape = (config.latent_tokens, config.latent_channels)
        mean = statistics_to_tokens(statistics["mean"], *shape, name="mean")
        std = (statistics_to_tokens(statistics["var"], *shape, name="var") + RAE_VARIANCE_EPS).sqrt()
        decoder.set_latent_statistics(mean, std)
    return decoder, {"unknown": unknown, "unexpected": list(result.unexpected_keys), "missing": missing}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo_or_path", default=DEFAULT_REPO, help="Hub repo id or a local copy of it.")
    parser.add_argument("--decoder_file", default=DEFAULT_DECODER_FILE, help="Decoder checkpoint inside the repo.")
    parser.add_argument(
        "--statistics_file",
        default=DEFAULT_STATISTICS_FILE,
        help="Latent statistics inside the repo; an empty string converts a decoder of raw latents.",
    )
    parser.add_argument("--num_attention_heads", type=int, default=16, help="Heads of the decoder (ViT-XL/L: 16, B: 12).")
    parser.add_argument("--output_dir", required=True, help="Where to save_pretrained the converted decoder.")
    parser.add_argument("--push_to_hub", default=None, help="Also push the converted decoder to this Hub repo id.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    checkpoint = load_checkpoint(args.repo_or_path, args.decoder_file)
    statistics = load_checkpoint(args.repo_or_path, args.statistics_file) if args.statistics_file else None
    decoder, report = convert_rae_decoder(checkpoint, statistics, args.num_attention_heads)
    for kind, keys in report.items():
        print(f"{kind} keys ({len(keys)}): {keys}")
    decoder.save_pretrained(args.output_dir)
    num_parameters = sum(parameter.numel() for parameter in decoder.parameters())
    print(f"Saved a {num_parameters / 1e6:.1f}M-parameter ArgosRAEDecoder to {args.output_dir}")
    if args.push_to_hub:
        decoder.push_to_hub(args.push_to_hub)


if __name__ == "__main__":
    main()
