"""Bounded memory of the video pipeline, measured as the process's peak RSS (not only Python allocations).

tracemalloc sees Python's allocator only; decoded frames live in numpy/OpenCV/FFmpeg buffers
that it may not see. Each run is a fresh process (the same code path, so the same baseline): peak
RSS of a 400-frame video must be within a few frames' worth of that of a 40-frame video.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from runtime_helpers import street_frames

SIZE = (128, 256)
FRAME_BYTES = SIZE[0] * SIZE[1] * 3

_RUN = """
import json, resource, sys
sys.path.insert(0, {helpers!r})
import torch
torch.set_num_threads(1)
from runtime_helpers import ConvRunner
from lrnnet.runtime.video import PipelineOptions, run_video
report = run_video(ConvRunner(), sys.argv[1], sys.argv[2], PipelineOptions(warmup=0))
print(json.dumps({{"frames": report["frames"], "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def _write_video(path: Path, frames) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (SIZE[1], SIZE[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _peak_rss(video: Path, output: Path) -> tuple[int, int]:
    script = _RUN.format(helpers=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script, str(video), str(output)], check=False,
                          capture_output=True, text=True, timeout=300, env={"LRNNET_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["frames"], 1024 * result["peak_rss_kib"]


@pytest.mark.slow
def test_peak_rss_stays_flat_on_a_long_video(tmp_path):
    scenes = street_frames(SIZE, 4)
    short = _write_video(tmp_path / "short.mp4", scenes * 10)
    long = _write_video(tmp_path / "long.mp4", scenes * 100)
    frames_short, rss_short = _peak_rss(short, tmp_path / "short_out.mp4")
    frames_long, rss_long = _peak_rss(long, tmp_path / "long_out.mp4")
    assert (frames_short, frames_long) == (40, 400)
    # 360 more frames are 35 MB of input alone; a pipeline that kept them would grow by that much.
    assert rss_long - rss_short < 40 * FRAME_BYTES, (rss_short, rss_long)
