"""Start clips of the Space: sample episodes of a LeRobot dataset, PushT episodes recorded at start-up, uploads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from argos_wm.data import LeRobotSource
from argos_wm.modeling_dino_encoder import resize_images, to_float_images

logger = logging.getLogger(__name__)

MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 4096
MAX_VIDEO_SECONDS = 120.0
MAX_CLIP_FRAMES = 48  # frames kept of a start clip, sample or upload: the context, then goal frames to plan toward


@dataclass
class StartClip:
    """
    One episode to start a rollout from: its first frames are the context, its later frames are goals to plan to.

    Attributes:
        name: label shown in the UI.
        frames: uint8 `[T, H, W, 3]`, square, at the Space's frame size.
        actions: float32 `[T, A]` model actions (aggregated over the skipped frames like the model's training data),
            `actions[t]` led from frame t-1 to frame t; None for uploads.
        action_mask: bool `[T]`, False where `actions[t]` is unknown.
        states: float32 `[T, S]` proprio; None when unknown.
        fps: frame rate of `frames`, None when unknown (a single image).
    """

    name: str
    frames: np.ndarray
    actions: np.ndarray | None = None
    action_mask: np.ndarray | None = None
    states: np.ndarray | None = None
    fps: float | None = None

    def __len__(self) -> int:
        return len(self.frames)


def square_frames(frames: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """Frames uint8 `[T, H, W, 3]` -> uint8 `[T, size, size, 3]`, centre-cropped like the encoder crops them."""
    images = resize_images(to_float_images(torch.tensor(np.asarray(frames))), size)  # [T, 3, size, size]
    return (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def load_sample_clips(
    root_or_repo_id: str | Path,
    frame_size: int,
    num_clips: int = 4,
    max_frames: int = MAX_CLIP_FRAMES,
    fps: float | None = None,
    name: str | None = None,
    frameskip: int = 1,
    action_aggregation: str | None = None,
) -> list[StartClip]:
    """
    The last `num_clips` episodes (at most `max_frames` frames each) of a LeRobot v3.0 dataset as start clips named
    "`name` episode i" — the episodes `train_world_model.py` holds out (its last `num_eval_episodes`), so a rollout
    starts from frames the model never trained on — (`name` defaults to the dataset's), resampled like the model's training data: to `fps`
    (default: the dataset's fps / `frameskip`), the actions of skipped frames combined by `action_aggregation`
    (default "sum", `LeRobotSource`'s).
    """
    if fps is None:
        fps = LeRobotSource(root_or_repo_id, name=name).source_fps / frameskip
    source = LeRobotSource(root_or_repo_id, fps=fps, name=name, action_aggregation=action_aggregation or "sum")
    if not source.camera_keys:
        raise ValueError(f"`root_or_repo_id` {str(root_or_repo_id)!r} must have a video feature, got none.")
    clips = []
    for i in range(max(len(source) - num_clips, 0), len(source)):
        episode = source.read_episode(i, stop=min(source.episode_length(i), max_frames), camera=source.camera_keys[0])
        clips.append(
            StartClip(
                name=f"{source.name} episode {episode.episode_index}",
                frames=square_frames(episode.frames, frame_size),
                actions=None if episode.actions is None else episode.actions.numpy(),
                action_mask=episode.action_mask.numpy(),
                states=None if episode.states is None else episode.states.numpy(),
                fps=source.fps,
            )
        )
    return clips


def generate_pusht_samples(out: str | Path, num_episodes: int = 4, max_steps: int = 48) -> Path:
    """Records `num_episodes` PushT episodes into the LeRobot dataset `out` (kept when it already exists)."""
    from argos_wm.data.pusht import PushTRecordingConfig, generate_pusht_dataset

    out = Path(out)
    if not (out / "meta" / "info.json").is_file():
        logger.info("Recording %d PushT sample episodes into %s", num_episodes, out)
        config = PushTRecordingConfig(
            episodes=num_episodes, out=str(out), max_steps=max_steps, workers=1, codec="libx264", overwrite=True
        )
        generate_pusht_dataset(config)
    return out


def clip_from_image(path: str | Path, frame_size: int) -> StartClip:
    """An uploaded image as a one-frame start clip; ValueError when it is not a readable image of a sensible size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`image` {str(path)!r} does not exist.")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")  # a phone photo as viewers show it
    except (UnidentifiedImageError, OSError) as error:
        reason = str(error).replace(str(path), path.name)  # the upload's name, not the server's temp path
        raise ValueError(f"`image` must be a PNG, JPEG or WebP image, got {path.name!r} ({reason}).") from error
    _check_size("image", image.width, image.height)
    return StartClip(name=f"upload {path.name}", frames=square_frames(np.asarray(image)[None], frame_size))


def clip_from_video(path: str | Path, frame_size: int, fps: float, max_frames: int) -> StartClip:
    """The first `max_frames` frames of an uploaded video, resampled to `fps`, as a start clip."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`video` {str(path)!r} does not exist.")
    frames, next_time = [], 0.0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"`video` must hold a video stream, got {path.name!r} with none.")
            stream = container.streams.video[0]
            _check_size("video", stream.codec_context.width, stream.codec_context.height)
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else len(frames) / fps
                if time > MAX_VIDEO_SECONDS or len(frames) == max_frames:
                    break
                if time + 1e-6 >= next_time:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    next_time += 1.0 / fps
    except (av.FFmpegError, UnicodeDecodeError) as error:
        reason = str(error).replace(str(path), path.name)  # the upload's name, not the server's temp path
        raise ValueError(f"`video` must be an MP4, WebM or MOV video, got {path.name!r} ({reason}).") from error
    if not frames:
        raise ValueError(f"`video` must hold at least 1 frame, got 0 in {path.name!r}.")
    return StartClip(name=f"upload {path.name}", frames=square_frames(np.stack(frames), frame_size), fps=fps)


def _check_size(argument: str, width: int, height: int) -> None:
    if min(width, height) < MIN_IMAGE_SIDE or max(width, height) > MAX_IMAGE_SIDE:
        raise ValueError(
            f"`{argument}` sides must be between {MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE} px, got {width}x{height}."
        )
