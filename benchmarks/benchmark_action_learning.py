"""Can a recipe learn what an action does? Toy worlds whose next frame the action fully decides, trained for minutes.

    python benchmarks/benchmark_action_learning.py                       # every row of RECIPES, every world
    python benchmarks/benchmark_action_learning.py --worlds relative --steps 1500
    python benchmarks/benchmark_action_learning.py --worlds pusht_agent --recipes 1 5 6 --latent_bound 3

A world model that ignores its actions predicts the average next frame and still lowers its loss, so a falling loss
proves nothing. Here one object sits on a `grid` x `grid` token grid (the "object" latent vector in its cell, the
"empty" one elsewhere) and the action decides where it goes:
- `absolute`: the action is the object's next cell (as PushT's action is the agent's next target);
- `relative`: the action moves it by -1, 0 or +1 cell along each axis from where it was (as a push moves the block),
  so the model must combine the previous frame (temporal attention) with the action (spatial attention);
- `pusht_agent`: PushT's agent drawn where the action says (the block fixed), rendered by the simulator at 96 px and
  encoded by the embedded encoder (`hub_configs/argos-dino-encoder-tiny`, latents normalised per position over the
  frames), the first 80 % of `num_frames` positions for training, the rest held out: the demo's latents, with the
  dynamics taken away, so what remains is drawing the agent at the action's position. `--latent_bound` softly bounds
  those latents as the encoder's `latent_bound` does;
- `pusht_agent_walk`: the same, but each clip is a random walk of the agent (steps of up to `walk_step_px` of the
  512 px world along each axis, a fraction of a 64 px token), as PushT's agent moves from where it was: the action
  still says where the agent is drawn, but copy-last is now close, and the change to predict is small;
- `pusht_agent_lag`: PushT's own dynamics: the action is a target the agent's PD controller pulls it toward for 5
  simulator steps (one model step at the demo's 2 fps), the targets a random walk of steps up to `walk_step_px`; the
  agent lags behind its target, so where it lands depends on where it was and how fast it went (the context frames)
  as well as on the action; `pusht_agent_lag_block`: the same with the block at a random place and angle in each
  clip, never touched (below the agent's reach), which the model must copy from the context;
- `pusht_demo`: no toy: every `frames`-frame window (all actions known) of a PushT latent cache (`--latent_cache`,
  e.g. the demo's), its last 4 episodes held out as the quality benchmark holds them out, the model actions
  standardised over the training windows; what the demo's data gives this benchmark's training loop.
Each recipe (model overrides of a tiny config and scheduler settings) is trained from scratch with the library's
`ShortcutForcingLoss`. On held-out clips it reports the one-step prediction from pure noise after clean context
(`x`-prediction at `d_min`) against copy-last, and the action effect: how far that prediction moves when each clip's
actions are swapped for another clip's, in units of copy-last's error. A recipe that learned the world scores ~0 with
an effect near 1; one that ignores the action predicts the average frame: an error of ~0.5-0.8 and an effect of ~0.
The reference row is no world model: an MLP from what decides the next frame (the action and its sin / cos at 6
octaves; and the last frame in `relative`, the last two in the `pusht_agent_lag` worlds and `pusht_demo`) to the next
frame's latents, trained as long, which says how hard the map itself is.
Prints a table and writes `action_learning.json` to `output_dir`.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import HfArgumentParser

from argos_wm import ArgosDinoEncoder, ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.models.action_modulation import ACTION_FOURIER_OCTAVES, fourier_features
from argos_wm.schedulers import ShortcutForcingScheduler
from argos_wm.training import ShortcutForcingLoss


REPOSITORY = Path(__file__).resolve().parents[1]
WORLDS = ("absolute", "relative", "pusht_agent", "pusht_agent_walk", "pusht_agent_lag", "pusht_agent_lag_block", "pusht_demo")
# (name, model overrides, scheduler settings): the embedded default's recipe and what each change does to it
RECIPES = [
    ("the demo's recipe (gated; 4 layers S T S T; half the sequences teacher-forced; ramp weight)",
     {"prediction_type": "gated"}, {"teacher_forcing_probability": 0.5}),
    ("every sequence teacher-forced", {"prediction_type": "gated"}, {"teacher_forcing_probability": 1.0}),
    ("... + latent position embedding", {"prediction_type": "gated", "latent_position_embedding": True},
     {"teacher_forcing_probability": 1.0}),
    ("... + 6 layers S S T S S T", {"prediction_type": "gated", "latent_position_embedding": True,
                                   "num_hidden_layers": 6, "temporal_attention_interval": 3},
     {"teacher_forcing_probability": 1.0}),
    ("the same with half the sequences diffusion-forced, flat weight",
     {"prediction_type": "gated", "latent_position_embedding": True, "num_hidden_layers": 6,
      "temporal_attention_interval": 3},
     {"teacher_forcing_probability": 0.5, "loss_weight_floor": 1.0}),
    ("every sequence teacher-forced, action modulation (adaLN)", {"prediction_type": "gated", "action_modulation": True},
     {"teacher_forcing_probability": 1.0}),
    ("... + latent position embedding",
     {"prediction_type": "gated", "action_modulation": True, "latent_position_embedding": True},
     {"teacher_forcing_probability": 1.0}),
    ("the demo's recipe + action modulation + latent position embedding",
     {"prediction_type": "gated", "action_modulation": True, "latent_position_embedding": True},
     {"teacher_forcing_probability": 0.5}),
    ("every sequence teacher-forced, action modulation, latent position embedding, no copy gate (sample)",
     {"prediction_type": "sample", "action_modulation": True, "latent_position_embedding": True},
     {"teacher_forcing_probability": 1.0}),
]  # fmt: skip
# context frames the MLP reference reads beside the action: what, with it, decides the next frame
CONTEXT_FRAMES_READ = {"relative": 1, "pusht_agent_lag": 2, "pusht_agent_lag_block": 2, "pusht_demo": 2}
MLP_ROW = "reference: an MLP from what decides the next frame (the action's Fourier features; + the last frame(s))"


@dataclass
class ActionLearningConfig:
    """What to train and score."""

    worlds: list[str] = field(
        default_factory=lambda: [world for world in WORLDS if world != "pusht_demo"],
        metadata={"help": f"Some of {WORLDS} (`pusht_demo` needs a cache)."},
    )
    recipes: list[int] = field(
        default_factory=lambda: list(range(len(RECIPES))), metadata={"help": "Rows of RECIPES to train, by position."}
    )
    reference: bool = field(default=True, metadata={"help": "Also train the MLP reference row."})
    steps: int = field(default=1000, metadata={"help": "Training steps per recipe."})
    batch_size: int = field(default=16, metadata={"help": "Clips per step."})
    frames: int = field(default=4, metadata={"help": "Frames per clip."})
    grid: int = field(default=4, metadata={"help": "Side of the token grid."})
    channels: int = field(default=16, metadata={"help": "Latent channels."})
    num_frames: int = field(default=4000, metadata={"help": "PushT frames rendered for the `pusht_agent` worlds."})
    walk_step_px: float = field(
        default=48.0,
        metadata={"help": "`pusht_agent_walk` / `_lag`: the largest step along each axis, in world px (of 512)."},
    )
    encoder: str = field(
        default=str(REPOSITORY / "hub_configs" / "argos-dino-encoder-tiny"), metadata={"help": "Encoder of `pusht_agent`."}
    )
    latent_bound: float | None = field(
        default=None, metadata={"help": "The encoder's soft bound of the normalised latents of `pusht_agent`."}
    )
    latent_cache: str = field(
        default="outputs/demo/pusht_latents", metadata={"help": "`pusht_demo`: the PushT latent cache to read."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    model_config: str = field(
        default=str(REPOSITORY / "hub_configs" / "argos-wm-tiny"), metadata={"help": "The model config to start from."}
    )
    output_dir: str = field(default="outputs/action_learning", metadata={"help": "Where action_learning.json goes."})
    seed: int = field(default=0, metadata={"help": "Seed of the worlds, the initialisation and the noise."})


def grid_world(world: str, batch: int, frames: int, grid: int, pattern: torch.Tensor, generator: torch.Generator):
    """
    Clips of the `absolute` or `relative` token-grid world. `pattern` `[2, C]` holds the object and the empty vector.

    Returns latents `[B, T, grid², C]` and actions `[B, T, 2]` (`actions[:, t]` led to frame t, in [-1, 1]).
    """
    if world == "absolute":
        cells = torch.randint(0, grid, (batch, frames, 2), generator=generator)
        actions = cells.float() / (grid - 1) * 2 - 1
    elif world == "relative":
        moves = torch.randint(-1, 2, (batch, frames, 2), generator=generator)
        start = torch.randint(0, grid, (batch, 2), generator=generator)
        cells = [start]
        for t in range(1, frames):
            cells.append((cells[-1] + moves[:, t]).clamp(0, grid - 1))
        cells, actions = torch.stack(cells, dim=1), moves.float()
    else:
        raise ValueError(f"world must be 'absolute' or 'relative', got {world!r}.")
    occupied = torch.nn.functional.one_hot(cells[..., 0] * grid + cells[..., 1], grid * grid).bool()[..., None]
    return torch.where(occupied, pattern[0], pattern[1]), actions


def agent_positions(num_frames: int, rng: np.random.Generator, walk_frames: int | None, walk_step_px: float):
    """`[M, 2]` agent positions in the 512 px world, never touching the block at (256, 400): independent ones, or
    `M / walk_frames` random walks of `walk_frames` positions each, one after another."""
    if walk_frames is None:
        positions = rng.uniform(60.0, 452.0, size=(3 * num_frames, 2))
        return positions[np.linalg.norm(positions - np.array([256.0, 400.0]), axis=1) > 110.0][:num_frames]
    low, high = np.array([60.0, 60.0]), np.array([452.0, 280.0])  # y <= 280: 120 px above the block's centre
    starts = rng.uniform(low, high, size=(num_frames // walk_frames, 1, 2))
    steps = rng.uniform(-walk_step_px, walk_step_px, size=(len(starts), walk_frames - 1, 2))
    walks = np.concatenate([starts, steps], axis=1).cumsum(axis=1)
    return np.clip(walks, low, high).reshape(-1, 2)


def pusht_agent_frames(
    encoder: ArgosDinoEncoder, num_frames: int, seed: int, walk_frames: int | None = None, walk_step_px: float = 48.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """PushT frames with the agent away from a fixed block (see `agent_positions`): latents `[M, N, C]` normalised per
    position over the frames, and the agent positions `[M, 2]` scaled from [0, 512] px to [-1, 1]."""
    from argos_wm.data.pusht import make_pusht_env

    env = make_pusht_env(96)
    block = np.array([256.0, 400.0])
    positions = agent_positions(num_frames, np.random.default_rng(seed), walk_frames, walk_step_px)
    frames = [env.reset(options={"reset_to_state": [*p, *block, 0.5]})[0]["pixels"] for p in positions]
    encoder.compute_latent_statistics([np.stack(frames)], show_progress=False)
    latents = encoder.encode(np.stack(frames), batch_size=128)
    return latents, torch.from_numpy(positions).float() / 256.0 - 1.0


def pusht_agent_lag_frames(
    encoder: ArgosDinoEncoder,
    num_frames: int,
    seed: int,
    walk_frames: int,
    walk_step_px: float,
    random_block: bool = False,
    frameskip: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_frames / walk_frames` clips of PushT's simulated agent chasing a random walk of targets (each held for
    `frameskip` simulator steps) above the block: the block fixed, or with `random_block` at a random place and angle
    per clip (a clip in which the agent touched it is drawn again). Returns latents `[M, N, C]` normalised per position
    over the frames, and the targets `[M, 2]` in [-1, 1] that led to each frame (a clip's first: where the agent starts)."""
    from argos_wm.data.pusht import make_pusht_env

    env = make_pusht_env(96)
    rng = np.random.default_rng(seed)
    low, high = np.array([60.0, 60.0]), np.array([452.0, 240.0 if random_block else 280.0])
    frames, targets = [], []
    while len(frames) < num_frames // walk_frames * walk_frames:
        target = rng.uniform(low, high)
        block = [256.0, 400.0, 0.5]
        if random_block:
            block = [rng.uniform(160.0, 352.0), rng.uniform(330.0, 400.0), rng.uniform(0.0, 2 * np.pi)]
        observation, _ = env.reset(options={"reset_to_state": [*target, *block]})
        start = np.array([*env.unwrapped.block.position, env.unwrapped.block.angle])
        clip_frames, clip_targets = [observation["pixels"]], [target]
        for _ in range(walk_frames - 1):
            target = np.clip(target + rng.uniform(-walk_step_px, walk_step_px, size=2), low, high)
            for _ in range(frameskip):
                observation, *_ = env.step(target)
            clip_frames.append(observation["pixels"])
            clip_targets.append(target)
        end = np.array([*env.unwrapped.block.position, env.unwrapped.block.angle])
        if not random_block or np.abs(end - start).max() < 0.1:
            frames += clip_frames
            targets += clip_targets
    encoder.compute_latent_statistics([np.stack(frames)], show_progress=False)
    latents = encoder.encode(np.stack(frames), batch_size=128)
    return latents, torch.from_numpy(np.stack(targets)).float() / 256.0 - 1.0


def pusht_demo_windows(latent_cache: str, frames: int, held_out_episodes: int = 4):
    """Every `frames`-frame window of the cache's episodes whose actions are all known: latents `[W, T, N, C]`, model
    actions `[W, T, A]` standardised over the training windows, and how many of the windows (the first) are training
    ones: the last `held_out_episodes` episodes are held out."""
    from argos_wm.data.latent_cache_source import LatentCacheSource

    if not (Path(latent_cache) / "index.json").is_file():
        raise FileNotFoundError(f"`--latent_cache` {latent_cache} is no latent cache; `make demo` builds the demo's.")
    source = LatentCacheSource(latent_cache)
    latents, actions, split = [], [], 0
    for i in range(len(source)):
        episode = source.read_episode(i)
        for start in range(len(episode) - frames + 1):
            if episode.action_mask[start : start + frames].all():
                latents.append(episode.latents[start : start + frames])
                actions.append(episode.actions[start : start + frames])
        if i == len(source) - held_out_episodes - 1:
            split = len(latents)
    latents, actions = torch.stack(latents), torch.stack(actions).float()
    training = actions[:split].flatten(0, 1)
    return latents, (actions - training.mean(0)) / training.std(0), split


class ToyWorld:
    """Draws training or held-out clips `(latents [B, T, N, C], actions [B, T, 2])` of one world."""

    def __init__(self, world: str, config: "ActionLearningConfig"):
        self.world, self.config = world, config
        if world.startswith("pusht_agent"):
            encoder = ArgosDinoEncoder.from_name_or_path(config.encoder, latent_bound=config.latent_bound)
            walk_frames = None if world == "pusht_agent" else config.frames
            if world.startswith("pusht_agent_lag"):
                self.latents, self.positions = pusht_agent_lag_frames(
                    encoder, config.num_frames, config.seed, walk_frames, config.walk_step_px, world.endswith("block")
                )
            else:
                self.latents, self.positions = pusht_agent_frames(
                    encoder, config.num_frames, config.seed, walk_frames, config.walk_step_px
                )
            if walk_frames is not None:  # [M, ...] -> [walks, frames, ...]: a clip is one walk
                self.latents = self.latents.unflatten(0, (-1, walk_frames))
                self.positions = self.positions.unflatten(0, (-1, walk_frames))
            self.split = int(0.8 * len(self.latents))
        elif world == "pusht_demo":
            self.latents, self.positions, self.split = pusht_demo_windows(config.latent_cache, config.frames)
        elif world in ("absolute", "relative"):
            self.pattern = torch.randn(2, config.channels, generator=torch.Generator().manual_seed(config.seed))
        else:
            raise ValueError(f"world must be one of {WORLDS}, got {world!r}.")

    @property
    def tokens_and_channels(self) -> tuple[int, int]:
        if self.world.startswith("pusht"):
            return tuple(self.latents.shape[-2:])
        return self.config.grid**2, self.config.channels

    @property
    def action_dim(self) -> int:
        """2 (a cell or a position), but in `pusht_demo` its cache's (PushT summed over a model step: 2; `concat`: 10)."""
        return self.positions.shape[-1] if self.world.startswith("pusht") else 2

    def clips(self, batch: int, generator: torch.Generator, held_out: bool = False):
        if not self.world.startswith("pusht"):
            return grid_world(self.world, batch, self.config.frames, self.config.grid, self.pattern, generator)
        low, high = (self.split, len(self.latents)) if held_out else (0, self.split)
        if self.world != "pusht_agent":  # a clip is one walk
            index = torch.randint(low, high, (batch,), generator=generator)
            return self.latents[index], self.positions[index]
        index = torch.randint(low, high, (batch, self.config.frames), generator=generator)
        return self.latents[index], self.positions[index]


def fit(parameters, batch_loss, config: "ActionLearningConfig") -> float:
    """`config.steps` AdamW steps on `batch_loss(generator)`, the batches and noise drawn from one seeded generator;
    returns the seconds taken."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate)
    start = time.perf_counter()
    for _ in range(config.steps):
        loss = batch_loss(generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def score(world: ToyWorld, predict, seed: int) -> dict:
    """One-step error and action effect of `predict(latents, actions) -> [B, N, C]` on 256 held-out clips, in units of
    copy-last's error; `predict` sees the clips' last frame as pure noise."""
    generator = torch.Generator().manual_seed(seed + 1)
    latents, actions = world.clips(256, generator, held_out=True)
    inputs = latents.clone()
    inputs[:, -1] = torch.randn(inputs[:, -1].shape, generator=generator)
    with torch.no_grad():
        predicted = predict(inputs, actions)
        swapped = predict(inputs, actions.roll(1, dims=0))
    copy_last = (latents[:, -2] - latents[:, -1]).square().mean().item()
    return {
        "error_vs_copy_last": (predicted - latents[:, -1]).square().mean().item() / copy_last,
        "action_effect_vs_copy_last": (swapped - predicted).square().mean().item() / copy_last,
    }


def train_and_score(world: ToyWorld, model_overrides: dict, scheduler_settings: dict, config: "ActionLearningConfig") -> dict:
    """Trains a fresh world model on `world` with the recipe and scores its x-prediction after clean context."""
    torch.manual_seed(config.seed)
    tokens, channels = world.tokens_and_channels
    model_config = ArgosWorldModelConfig.from_pretrained(
        config.model_config, latent_tokens=tokens, latent_channels=channels, action_dim=world.action_dim, state_dim=0,
        **model_overrides,
    )  # fmt: skip
    model = ArgosWorldModel(model_config)
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=model_config.max_shortcut_steps, **scheduler_settings)
    loss_fn = ShortcutForcingLoss(scheduler)

    def batch_loss(generator):
        latents, actions = world.clips(config.batch_size, generator)
        return loss_fn(model, latents=latents, actions=actions, generator=generator).loss

    seconds = fit(model.parameters(), batch_loss, config)
    model.eval()

    def predict(inputs, actions):
        levels = torch.ones(inputs.shape[:2])
        levels[:, -1] = 0.0  # clean context, the last frame from pure noise
        step_sizes = torch.full_like(levels, scheduler.min_step_size)
        return model(inputs, levels, step_sizes, actions=actions).sample[:, -1]

    return {**score(world, predict, config.seed), "train_seconds": seconds}


def train_and_score_mlp(world: ToyWorld, config: "ActionLearningConfig", hidden_size: int = 512) -> dict:
    """The reference: an MLP from the action's Fourier features (and the last frame in `relative`, the last two in
    the `pusht_agent_lag` worlds and `pusht_demo`) to the next frame's latents."""
    torch.manual_seed(config.seed)
    tokens, channels = world.tokens_and_channels
    context = CONTEXT_FRAMES_READ.get(world.world, 0)
    mlp = nn.Sequential(
        nn.Linear(world.action_dim * (1 + 2 * ACTION_FOURIER_OCTAVES) + context * tokens * channels, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size), nn.GELU(),
        nn.Linear(hidden_size, tokens * channels),
    )  # fmt: skip

    def predict(latents, actions):  # [B, T, N, C], [B, T, 2] -> [B, N, C]
        inputs = [fourier_features(actions[:, -1])] + [latents[:, -2 - k].flatten(1) for k in range(context)]
        return mlp(torch.cat(inputs, dim=1)).view(-1, tokens, channels)

    def batch_loss(generator):
        latents, actions = world.clips(config.batch_size * config.frames, generator)
        return (predict(latents, actions) - latents[:, -1]).square().mean()

    seconds = fit(mlp.parameters(), batch_loss, config)
    return {**score(world, predict, config.seed), "train_seconds": seconds}


def main(args: list[str] | None = None) -> dict:
    (config,) = HfArgumentParser(ActionLearningConfig).parse_args_into_dataclasses(args=args)
    unknown = sorted(set(config.worlds) - set(WORLDS))
    if unknown:
        raise ValueError(f"--worlds must be some of {WORLDS}, got {unknown}.")
    if not all(0 <= index < len(RECIPES) for index in config.recipes):
        raise ValueError(f"--recipes must be positions in RECIPES (0 to {len(RECIPES) - 1}), got {config.recipes}.")
    worlds = {name: ToyWorld(name, config) for name in config.worlds}
    header = " | ".join(f"{name}: error / effect" for name in worlds)
    print(f"one-step x-prediction after clean context, held out, in units of copy-last's error ({config.steps} steps)")
    print(f"| recipe | {header} | train s |\n|---|{'---|' * len(worlds)}---|")
    results = []
    rows = [RECIPES[index] for index in config.recipes] + ([(MLP_ROW, None, None)] if config.reference else [])
    for name, overrides, settings in rows:
        row = {"recipe": name, "model_overrides": overrides, "scheduler": settings}
        for world_name, world in worlds.items():
            if overrides is None:
                row[world_name] = train_and_score_mlp(world, config)
            else:
                row[world_name] = train_and_score(world, overrides, settings, config)
        results.append(row)
        cells = " | ".join(
            f"{row[w]['error_vs_copy_last']:.2f} / {row[w]['action_effect_vs_copy_last']:.2f}" for w in worlds
        )
        print(f"| {name} | {cells} | {sum(row[w]['train_seconds'] for w in worlds):.0f} |", flush=True)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report = {"settings": asdict(config), "results": results}
    (output / "action_learning.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
