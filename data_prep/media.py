"""Video files for people to watch: H.264 + AAC mp4 through PyAV (its bundled FFmpeg has libx264 and aac)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mp4(path, frames, audio=None, fps: int = 25, sample_rate: int = 16000, crf: int = 23) -> Path:
    """frames: (T, H, W, 3) uint8 (H, W even) or an iterable of such chunks; audio: (N,) float in [-1, 1]."""
    import av  # imported here: only the video writer needs it

    path = Path(path)
    with av.open(str(path), "w") as box:
        video = None
        chunks = [frames] if isinstance(frames, np.ndarray) else frames
        for chunk in chunks:
            if video is None:
                h, w = chunk.shape[1:3]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 needs even frame sizes, got {w}x{h} for {path}")
                video = box.add_stream("libx264", rate=fps)
                video.width, video.height, video.pix_fmt = w, h, "yuv420p"
                video.options = {"crf": str(crf), "preset": "veryfast"}
                sound = None
                if audio is not None:
                    sound = box.add_stream("aac", rate=sample_rate, options={"aac_coder": "fast"})
                    sound.layout, sound.bit_rate = "mono", 64000
            for frame in chunk:
                for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    box.mux(packet)
        if video is None:
            raise ValueError(f"no frames to write to {path}")
        for packet in video.encode():
            box.mux(packet)
        if sound is not None:
            pcm = np.clip(np.asarray(audio, np.float32), -1, 1)
            for i in range(0, len(pcm), 1024):
                block = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024], format="fltp", layout="mono")
                block.sample_rate, block.pts = sample_rate, i
                for packet in sound.encode(block):
                    box.mux(packet)
            for packet in sound.encode():
                box.mux(packet)
    return path
