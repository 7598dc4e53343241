"""PushT, the embedded default dataset: episodes recorded in gym-pusht and written as LeRobot v3.0.

A noisy scripted pusher walks behind the T block (relative to a target point), pushes it there, and now and then
wanders to random points instead. Its target point is kept for a segment of 10-30 steps (`--pusher segments`, the
default) or drawn anew at every simulator step (`--pusher per_step`), a second data policy whose actions change
within every model step. The summary reports the share of `goal_steps`-long windows (the planning goals' 5 x 5
simulator steps) in which the block must move: displaced > 10 px or turned > 0.15 rad.

Each frame stores the 96×96 image (`observation.image`), the env action (`action`: the absolute 2-D target of the
agent), the agent position (`observation.state`) and the full simulator state (`observation.environment_state`), in
the form `env.reset(options={"reset_to_state": ...})` takes back, so planning can be scored against the simulator.

    python -m argos_wm.data.pusht --episodes 300 --out data/pusht --workers 2
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from .lerobot_writer import LeRobotWriter
from .video import VideoEncodingOptions

logger = logging.getLogger(__name__)

PUSHT_ENV_ID = "gym_pusht/PushT-v0"
PUSHT_FPS = 10
PUSHT_TASK = "Push the T-shaped block onto the T-shaped target."
ENVIRONMENT_STATE_NAMES = ["agent_x", "agent_y", "block_x", "block_y", "block_angle"]
PUSHER_STYLES = ("segments", "per_step")
BLOCK_MOVE_PX, BLOCK_MOVE_RAD = 10.0, 0.15  # a goal needs the block pushed when it moved / turned more than this
BLOCK_CENTER_OF_GRAVITY = np.array([0.0, 45.0])  # of gym-pusht's T block, in the block body's frame (px)


@dataclass
class PushTRecordingConfig:
    """Everything that shapes a generated PushT dataset."""

    episodes: int = field(default=200, metadata={"help": "Number of episodes to record."})
    out: str = field(default="outputs/pusht", metadata={"help": "Output folder of the LeRobot v3.0 dataset."})
    seed: int = field(default=0, metadata={"help": "Episode e is recorded with seed `seed + e`."})
    max_steps: int = field(
        default=150, metadata={"help": "Steps per episode (fewer when the block reaches the goal)."}
    )
    image_size: int = field(default=96, metadata={"help": "Height and width of the rendered frames (even)."})
    workers: int = field(default=2, metadata={"help": "Processes simulating episodes in parallel (1 = in-process)."})
    random_motion_probability: float = field(
        default=0.25, metadata={"help": "Probability that a motion segment goes to a random point instead of pushing."}
    )
    goal_target_probability: float = field(
        default=0.5, metadata={"help": "Probability that a push aims at the goal pose rather than a random point."}
    )
    action_noise_std: float = field(default=6.0, metadata={"help": "Std (pixels) of the Gaussian noise on actions."})
    max_action_step: float = field(
        default=30.0, metadata={"help": "Largest distance (pixels) between the agent and its commanded target."}
    )
    pusher: str = field(
        default="segments",
        metadata={"help": f"Data policy, of {PUSHER_STYLES}: a target point kept 10-30 steps, or a new one every step."},
    )
    goal_steps: int = field(
        default=25, metadata={"help": "Window (simulator steps) of the block-must-move report: horizon x frameskip."}
    )
    codec: str = field(default="libsvtav1", metadata={"help": "Video encoder: libsvtav1 (AV1) or libx264 (H.264)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing dataset at `out`."})

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps < 2:
            raise ValueError(f"max_steps must be >= 2, got {self.max_steps}")
        if self.image_size < 16 or self.image_size % 2:
            raise ValueError(f"image_size must be an even number >= 16, got {self.image_size}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.pusher not in PUSHER_STYLES:
            raise ValueError(f"pusher must be one of {PUSHER_STYLES}, got {self.pusher!r}")
        if self.goal_steps < 1:
            raise ValueError(f"goal_steps must be >= 1, got {self.goal_steps}")
        for name in ("random_motion_probability", "goal_target_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def block_center(env) -> np.ndarray:
    """World position `[2]` of the T block's centre of gravity."""
    block = env.block
    return np.array(block.local_to_world(block.center_of_gravity))


def block_must_move(start_state: np.ndarray, goal_state: np.ndarray) -> bool:
    """Whether the block moved more than `BLOCK_MOVE_PX` or turned more than `BLOCK_MOVE_RAD` between two simulator
    states `[5]` ([`environment_state`]): a goal the agent cannot reach alone."""
    turn = float(np.abs(goal_state[4] - start_state[4]) % (2 * np.pi))
    turn = min(turn, 2 * np.pi - turn)
    return bool(np.linalg.norm(goal_state[2:4] - start_state[2:4]) > BLOCK_MOVE_PX or turn > BLOCK_MOVE_RAD)


def block_moving_windows(env_states: np.ndarray, steps: int) -> tuple[int, int]:
    """Of the windows `[t, t + steps]` of an episode's states `[T, 5]`, how many need the block moved, and how many
    there are."""
    windows = [block_must_move(env_states[t], env_states[t + steps]) for t in range(len(env_states) - steps)]
    return int(np.sum(windows)), len(windows)


def environment_state(env) -> np.ndarray:
    """Simulator state `[5]` (agent x, y, block x, y, angle) that `reset(options={"reset_to_state": ...})` restores.

    gym-pusht sets the block position first and then its angle, which turns the block about its centre of gravity;
    the stored block position is therefore the centre of gravity minus its local offset, which that reset maps back
    onto the same pose.
    """
    block = env.block
    position = block_center(env) - np.array(block.center_of_gravity)
    return np.array([*env.agent.position, *position, block.angle % (2 * np.pi)], dtype=np.float64)


def gym_pusht_state(states: np.ndarray) -> np.ndarray:
    """States `[..., 5]` as [`environment_state`] stores them -> gym-pusht's own state `[..., 5]` (agent x, y, the
    block body's position x, y, angle), what its observation and DINO-WM's success test use.

    The stored block position is the centre of gravity minus its unrotated offset `c`; the body's position is the
    centre of gravity minus the rotated one, so it is the stored one + `c - R(angle) c`.
    """
    states = np.asarray(states, dtype=np.float64)
    cos, sin = np.cos(states[..., 4]), np.sin(states[..., 4])
    (c_x, c_y) = BLOCK_CENTER_OF_GRAVITY
    rotated = np.stack([cos * c_x - sin * c_y, sin * c_x + cos * c_y], axis=-1)  # R(angle) c
    converted = states.copy()
    converted[..., 2:4] += BLOCK_CENTER_OF_GRAVITY - rotated
    return converted


class ScriptedPusher:
    """A noisy scripted PushT policy: get behind the block relative to a target point, then push through it.

    The episode is a sequence of motion segments. A push segment picks a target (the goal pose or a random
    point), moves the agent to the side of the block opposite the target (around the block when needed) and
    pushes through the block's centre. With `random_motion_probability` a segment instead wanders to a random
    point. Actions are absolute targets `[2]`, at most `max_action_step` away from the agent, plus noise.
    """

    # geometry of a push, in pixels of the 512×512 PushT world
    approach_distance = 80.0  # distance behind the block's centre where a push starts
    push_depth = 40.0  # the push aims this far beyond the block's centre
    in_position_radius = 25.0  # the agent is in position when this close to the approach point or on the push line
    block_clearance = 75.0  # lateral distance kept when going around the block
    target_radius = 10.0  # the block's centre is at the target when this close
    segment_steps = (10, 30)  # range of steps per motion segment

    def __init__(self, config: PushTRecordingConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self.steps_left = 0
        self.target = None
        self.random_motion = False

    def _new_segment(self, env) -> None:
        per_step = self.config.pusher == "per_step"
        self.steps_left = 1 if per_step else int(self.rng.integers(*self.segment_steps))
        self.random_motion = bool(self.rng.random() < self.config.random_motion_probability)
        if self.random_motion or self.rng.random() >= self.config.goal_target_probability:
            self.target = self.rng.uniform(80.0, 432.0, size=2)
        else:
            self.target = np.array(env.goal_pose[:2], dtype=np.float64)

    def __call__(self, env) -> np.ndarray:
        if self.steps_left <= 0:
            self._new_segment(env)
        self.steps_left -= 1
        agent = np.array(env.agent.position)
        waypoint = self.target if self.random_motion else self._push_waypoint(agent, block_center(env))
        offset = waypoint - agent
        distance = np.linalg.norm(offset)
        if distance > self.config.max_action_step:
            offset *= self.config.max_action_step / distance
        action = agent + offset + self.rng.normal(0.0, self.config.action_noise_std, size=2)
        return np.clip(action, 0.0, 512.0).astype(np.float32)

    def _push_waypoint(self, agent: np.ndarray, center: np.ndarray) -> np.ndarray:
        to_target = self.target - center
        if np.linalg.norm(to_target) < self.target_radius:  # target reached: start another segment next step
            self.steps_left = 0
            return agent
        direction = to_target / np.linalg.norm(to_target)
        along = np.dot(agent - center, direction)  # < 0 behind the block
        lateral = agent - center - along * direction
        distance_to_line = np.linalg.norm(lateral)
        behind = along < -self.approach_distance / 2
        if behind and distance_to_line < self.in_position_radius:
            return center + self.push_depth * direction  # in position: push through the block's centre
        if not behind and distance_to_line < self.block_clearance:  # the block is in the way: go around it
            side = lateral / distance_to_line if distance_to_line > 1e-6 else np.array([-direction[1], direction[0]])
            return center + self.block_clearance * side - self.approach_distance / 2 * direction
        return center - self.approach_distance * direction


_WORKER_ENV = None


def make_pusht_env(image_size: int = 96):
    """gym-pusht's `PushT-v0` with `pixels_agent_pos` observations of `image_size`×`image_size` pixels."""
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    return gym.make(
        PUSHT_ENV_ID, obs_type="pixels_agent_pos", observation_width=image_size, observation_height=image_size
    )


def _init_worker(image_size: int) -> None:
    global _WORKER_ENV
    _WORKER_ENV = make_pusht_env(image_size)


def record_episode(config: PushTRecordingConfig, seed: int, env=None) -> dict[str, np.ndarray]:
    """Simulates one episode with `ScriptedPusher`.

    Frame t is the observation before action t (LeRobot's convention). Returns `frames` uint8 `[T, H, W, 3]`,
    `action` float32 `[T, 2]`, `observation.state` `[T, 2]`, `observation.environment_state` `[T, 5]`,
    `next.reward` `[T]`, `next.success` bool `[T]`, `block_displacement`, the distance (pixels) between the
    block's first and last centre, and `block_moving_windows` ([`block_moving_windows`] over `config.goal_steps`).
    """
    env = env if env is not None else _WORKER_ENV if _WORKER_ENV is not None else make_pusht_env(config.image_size)
    observation, _ = env.reset(seed=seed)
    simulator = env.unwrapped
    policy = ScriptedPusher(config, np.random.default_rng(seed))
    start_center = block_center(simulator)
    frames, actions, states, env_states, rewards, successes = [], [], [], [], [], []
    for _ in range(config.max_steps):
        frames.append(observation["pixels"])
        states.append(observation["agent_pos"])
        env_states.append(environment_state(simulator))
        action = policy(simulator)
        observation, reward, terminated, _, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        successes.append(info["is_success"])
        if terminated:
            break
    return {
        "frames": np.stack(frames).astype(np.uint8),
        "action": np.stack(actions).astype(np.float32),
        "observation.state": np.stack(states).astype(np.float32),
        "observation.environment_state": np.stack(env_states).astype(np.float32),
        "next.reward": np.asarray(rewards, dtype=np.float32),
        "next.success": np.asarray(successes, dtype=bool),
        "block_displacement": float(np.linalg.norm(block_center(simulator) - start_center)),
        "block_moving_windows": block_moving_windows(np.stack(env_states), config.goal_steps),
    }


def _record_in_worker(arguments: tuple[PushTRecordingConfig, int]) -> dict[str, np.ndarray]:
    return record_episode(*arguments)


def generate_pusht_dataset(config: PushTRecordingConfig) -> dict[str, float]:
    """Records `config.episodes` episodes and writes them to `config.out` as a LeRobot v3.0 dataset.

    Returns a summary: `episodes`, `frames`, `seconds`, `episodes_per_second`, `mean_block_displacement` (pixels),
    `success_rate`, `pusher` and `block_moving_goal_share`: of all `goal_steps`-long windows (the goals a planner is
    given), the share in which the block must move (`num_goal_windows` of them in all).
    """
    begin = time.perf_counter()
    jobs = [(config, config.seed + episode) for episode in range(config.episodes)]
    displacements, successes, frames, moving_windows = [], [], 0, np.zeros(2, dtype=np.int64)
    writer = LeRobotWriter(
        Path(config.out),
        fps=PUSHT_FPS,
        robot_type="pusht",
        video_options=VideoEncodingOptions(codec=config.codec),
        feature_names={
            "action": ["x", "y"],
            "observation.state": ["x", "y"],
            "observation.environment_state": ENVIRONMENT_STATE_NAMES,
        },
        overwrite=config.overwrite,
    )
    if config.workers == 1:
        env = make_pusht_env(config.image_size)
        episodes = (record_episode(config, seed, env) for _, seed in jobs)
        pool = None
    else:
        # fork reuses the parent's imports (a spawned worker would re-import torch and transformers first)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        pool = context.Pool(config.workers, initializer=_init_worker, initargs=(config.image_size,))
        episodes = pool.imap(_record_in_worker, jobs)
    try:
        with writer:
            for episode in tqdm(episodes, total=config.episodes, desc="Recording PushT", unit="episode"):
                images = episode.pop("frames")
                displacements.append(episode.pop("block_displacement"))
                moving_windows += episode.pop("block_moving_windows")
                successes.append(bool(episode["next.success"].any()))
                frames += len(images)
                writer.add_episode({"observation.image": images}, episode, task=PUSHT_TASK)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - begin
    return {
        "episodes": config.episodes,
        "frames": frames,
        "seconds": seconds,
        "episodes_per_second": config.episodes / seconds,
        "mean_block_displacement": float(np.mean(displacements)),
        "success_rate": float(np.mean(successes)),
        "pusher": config.pusher,
        "block_moving_goal_share": float(moving_windows[0] / max(moving_windows[1], 1)),
        "num_goal_windows": int(moving_windows[1]),
    }


def main(args: list[str] | None = None) -> dict[str, float]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (config,) = HfArgumentParser(PushTRecordingConfig).parse_args_into_dataclasses(args=args)
    summary = generate_pusht_dataset(config)
    logger.info(
        "Wrote %d episodes (%d frames, %s pusher) to %s in %.1f s: %.2f episodes/s, mean block displacement %.1f px, "
        "success rate %.2f; the block must move in %.0f%% of the %d windows of %d steps (the planning goals)",
        summary["episodes"],
        summary["frames"],
        config.pusher,
        config.out,
        summary["seconds"],
        summary["episodes_per_second"],
        summary["mean_block_displacement"],
        summary["success_rate"],
        100 * summary["block_moving_goal_share"],
        summary["num_goal_windows"],
        config.goal_steps,
    )
    return summary


if __name__ == "__main__":
    main()
