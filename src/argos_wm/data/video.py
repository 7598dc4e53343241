"""Video decoding and encoding with PyAV for LeRobot v3 datasets.

In LeRobot v3 many episodes share one mp4 file; an episode occupies the time range
`[from_timestamp, to_timestamp)` of it. `decode_video_frames` seeks to the keyframe before the first
requested timestamp, decodes forward and keeps, for every requested timestamp, the nearest decoded frame.
`VideoWriter` appends frames (episode after episode) to one mp4, AV1 (libsvtav1) when available and H.264
(libx264) otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SUPPORTED_ENCODERS = ("libsvtav1", "libx264")
# Frames whose every pixel stays at or below this value recorded nothing (BridgeV2 stores a missing camera as black
# frames; compression leaves a few grey levels of noise).
BLANK_PIXEL_MAX = 8


def is_blank(frames: np.ndarray) -> bool:
    """Whether uint8 frames `[T, H, W, 3]` are black throughout (every pixel ≤ `BLANK_PIXEL_MAX`)."""
    return int(frames.max()) <= BLANK_PIXEL_MAX


def decode_video_frames(
    video_path: str | Path,
    timestamps: np.ndarray | list[float],
    tolerance_s: float | None = None,
) -> np.ndarray:
    """Decodes the frames of `video_path` nearest to `timestamps` (seconds from the start of the file).

    Only the range `[min(timestamps), max(timestamps)]` is decoded: the container seeks to the keyframe before
    it and decodes forward. AV1 and H.264 both decode (any codec FFmpeg bundled with PyAV reads).

    Args:
        video_path: path of the mp4 file.
        timestamps: `[T]` times in seconds, in any order.
        tolerance_s: largest accepted distance between a requested timestamp and the decoded frame's time;
            defaults to half a frame period of the stream.

    Returns:
        uint8 array `[T, H, W, 3]` (RGB).
    """
    video_path = Path(video_path)
    if not video_path.is_file():
        existing = sorted(p.name for p in video_path.parent.glob("*")) if video_path.parent.is_dir() else []
        raise FileNotFoundError(f"video_path {video_path} does not exist; files in its folder: {existing}")
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1 or timestamps.size == 0:
        raise ValueError(f"timestamps must be a non-empty 1-D array, got shape {timestamps.shape}")

    try:
        with av.open(str(video_path)) as container:
            if not container.streams.video:
                raise ValueError(f"video_path {video_path} has no video stream")
            stream = container.streams.video[0]
            if tolerance_s is None:
                rate = stream.average_rate or stream.guessed_rate
                tolerance_s = 0.5 / float(rate) if rate else 1e-3
            first, last = float(timestamps.min()), float(timestamps.max())
            container.seek(int(first / stream.time_base), stream=stream, backward=True, any_frame=False)

            times, decoded = [], []
            for frame in container.decode(stream):
                if frame.time is None or frame.time < first - tolerance_s:
                    continue
                if frame.time > last + tolerance_s:
                    break
                times.append(frame.time)
                decoded.append(frame)
            if not decoded:
                raise ValueError(
                    f"no frame of {video_path} lies in [{first:.4f}, {last:.4f}] s (tolerance {tolerance_s} s)"
                )
            times = np.asarray(times)
            nearest = np.abs(times[None, :] - timestamps[:, None]).argmin(axis=1)  # [T]
            errors = np.abs(times[nearest] - timestamps)
            if errors.max() > tolerance_s:
                worst = int(errors.argmax())
                raise ValueError(
                    f"timestamp {timestamps[worst]:.4f} s of {video_path} has no frame within tolerance_s={tolerance_s}; "
                    f"nearest decoded frame is at {times[nearest[worst]]:.4f} s"
                )
            # only the frames asked for become RGB arrays: a 15 fps video read at 5 fps converts a third of its frames
            images = {i: decoded[i].to_ndarray(format="rgb24") for i in np.unique(nearest)}
    except av.error.FFmpegError as error:  # e.g. InvalidDataError from avcodec_send_packet() on a damaged file
        raise ValueError(
            f"video_path {video_path} is damaged or truncated: FFmpeg failed with {type(error).__name__}: {error}"
        ) from error
    return np.stack([images[i] for i in nearest])


@dataclass
class VideoEncodingOptions:
    """How `VideoWriter` encodes frames.

    Args:
        codec: FFmpeg encoder, `"libsvtav1"` (AV1, what current LeRobot writes) or `"libx264"` (H.264). When the
            codec is not available in PyAV's FFmpeg, `fallback_codec` is used.
        fallback_codec: encoder used when `codec` is missing.
        crf: constant rate factor (lower is better quality, larger files).
        gop_size: distance between keyframes; small values make seeking into a shared file cheap.
        pix_fmt: pixel format of the stream.
        preset: encoder speed preset (`"11"` is libsvtav1's fastest; libx264 takes names such as `"veryfast"`).
            None uses a fast default for the chosen codec.
        extra_options: further FFmpeg encoder options, e.g. `{"tune": "zerolatency"}`.
    """

    codec: str = "libsvtav1"
    fallback_codec: str = "libx264"
    crf: int = 30
    gop_size: int = 2
    pix_fmt: str = "yuv420p"
    preset: str | None = None
    extra_options: dict[str, str] = field(default_factory=dict)

    def resolve_codec(self) -> str:
        """Returns the encoder that will be used: `codec`, or `fallback_codec` when `codec` is missing."""
        for name in (self.codec, self.fallback_codec):
            if name not in SUPPORTED_ENCODERS:
                raise ValueError(f"codec must be one of {SUPPORTED_ENCODERS}, got {name!r}")
            if name in av.codecs_available:
                return name
        raise ValueError(
            f"neither codec {self.codec!r} nor fallback_codec {self.fallback_codec!r} is in PyAV's FFmpeg"
        )


_DEFAULT_PRESETS = {"libsvtav1": "11", "libx264": "veryfast"}


class VideoWriter:
    """Appends RGB frames to one mp4 file; several episodes may be written one after the other.

    Frame `k` of the file has the time `k / fps`, so an episode written when `num_frames == n` starts at
    `from_timestamp = n / fps`.

    Example:
        >>> with VideoWriter("file-000.mp4", fps=10) as writer:
        ...     start = writer.timestamp
        ...     writer.write(frames)  # uint8 [T, H, W, 3]
    """

    def __init__(self, path: str | Path, fps: int, options: VideoEncodingOptions | None = None):
        if fps <= 0 or int(fps) != fps:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        self.path = Path(path)
        self.fps = int(fps)
        self.options = options or VideoEncodingOptions()
        self.codec = self.options.resolve_codec()
        self.num_frames = 0
        self._container = None
        self._stream = None

    @property
    def timestamp(self) -> float:
        """Time in seconds of the next frame to be written."""
        return self.num_frames / self.fps

    def _open(self, height: int, width: int) -> None:
        if height % 2 or width % 2:
            raise ValueError(
                f"frames must have an even height and width for {self.options.pix_fmt}, got {height}x{width}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration banner to stderr otherwise
        self._container = av.open(str(self.path), mode="w")
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, self.options.pix_fmt
        stream.time_base = Fraction(1, self.fps)
        stream.codec_context.gop_size = self.options.gop_size
        preset = self.options.preset or _DEFAULT_PRESETS[self.codec]
        stream.options = {"crf": str(self.options.crf), "preset": preset, **self.options.extra_options}
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Encodes uint8 frames `[T, H, W, 3]` at the end of the file."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        if self._stream is None:
            self._open(frames.shape[1], frames.shape[2])
        elif (frames.shape[1], frames.shape[2]) != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frames must be {self._stream.height}x{self._stream.width} like the file's earlier frames, "
                f"got {frames.shape[1]}x{frames.shape[2]}"
            )
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = self.num_frames
            self._container.mux(self._stream.encode(frame))
            self.num_frames += 1

    def close(self) -> None:
        """Flushes the encoder and closes the file."""
        if self._container is not None:
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
