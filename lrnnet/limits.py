"""The bounds on every size and count lrnnet accepts, checked before anything is allocated.

One place for each: the CLI's argument types (lrnnet.cli._common), the option classes of the library
(lrnnet.export.onnx.ExportOptions, lrnnet.engine.profile, lrnnet.runtime.benchmark.BenchmarkOptions)
and the metadata schema read them here.
"""

from __future__ import annotations

# 8192 a side (an 8K frame) and 8192x8192 pixels in all: far above any real segmentation input, far
# below what exhausts memory. A batch counts in the pixels: 8192x8192 pixels is 128 images of
# 512x1024, or 32 of the 1024x2048 a 512x1024 dynamic export's profile accepts at most.
MAX_SIDE = 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE
# The one wording of MAX_PIXELS in every message, help string and document ("67 Mpixel" and
# "64 Mpixel" both described it once: decimal and binary megapixels of the same number).
PIXELS_IN_ALL = f"{MAX_SIDE}x{MAX_SIDE} pixels in all"
# SVD by power iteration converges like (sigma2 / sigma1) ** (2 k): 15 (the default) reach float32's
# resolution for sigma2 / sigma1 up to 0.58, 100 up to 0.92; past that a sharper answer needs the
# exact SVD, not more unrolled steps (each adds ~10 nodes per region to the graph and tracing time).
MAX_POWER_ITERATIONS = 100

# An output video's frame rate: PyAV's libx264 and OpenCV's mp4v and MJPG were each read back at the
# rate asked from 0.01 to 1000 fps; below that they write another rate (libx264 24 fps at 0.0001) or
# refuse to open, above it OpenCV's MJPG writes 600 fps for 1e9.
MIN_FPS = 0.01
MAX_FPS = 1000.0
# A stream's open and read timeout: FFmpeg takes it in microseconds in a 32-bit int (2147.48 s at
# most; above that every stream fails "Numerical result out of range"); below 10 ms nothing arrives.
MIN_STREAM_TIMEOUT_S = 0.01
MAX_STREAM_TIMEOUT_S = 2147.0
# A camera index: OpenCV reads an index of 100 and more as a capture API's number plus an index
# (cv2.CAP_V4L is 200), and a C int ends far below what a user can type.
MAX_CAMERA_INDEX = 99


def fps_problem(fps: float) -> str | None:
    """Why `fps` cannot be an output video's frame rate, or None when it can."""
    if not MIN_FPS <= fps <= MAX_FPS:  # also refuses nan
        return f"frame rate {fps:g} is out of range ({MIN_FPS:g} to {MAX_FPS:g} fps)"
    return None


def timeout_problem(seconds: float) -> str | None:
    """Why `seconds` cannot be a stream timeout, or None when it can."""
    if not MIN_STREAM_TIMEOUT_S <= seconds <= MAX_STREAM_TIMEOUT_S:  # also refuses nan
        return f"timeout {seconds:g} s is out of range ({MIN_STREAM_TIMEOUT_S:g} to {MAX_STREAM_TIMEOUT_S:g} s)"
    return None


# Counts that size a loop or an allocation (a timing array of one float per iteration, a list of
# frames' latencies, generated files). Each is far above any real use and far below what exhausts
# memory or outlives the user: a million timed iterations is 8 MB of samples and over 16 minutes at
# 1 ms each; ten million training steps is over 100x the paper's schedule; a billion frames is over
# a year of a 30 fps stream.
MAX_BENCH_ITERATIONS = 1_000_000  # lrnnet-bench --iters and --warmup, lrnnet-infer --warmup
MAX_TRAIN_STEPS = 10_000_000  # lrnnet-train --iters, lrnnet-demo --train-iters
MAX_EPOCHS = 100_000  # lrnnet-train --epochs, --val-every
MAX_IMAGES = 10_000_000  # images read or generated: eval --limit, train --synthetic-images, calibration images
MAX_FRAMES = 1_000_000_000  # lrnnet-infer --max-frames, lrnnet-demo --video-frames
# Ray actors of one batch job: each is a process holding a loaded model (~0.3 GB on the CPU). 1024 is
# a large cluster's worth; a local Ray gets at most 4 per usable CPU (past one per CPU they only take
# turns, and thousands of processes exhaust the machine before any frame is segmented).
MAX_WORKERS = 1024
MAX_LOCAL_WORKERS_PER_CPU = 4


def pixels_problem(batch: int, height: int, width: int) -> str | None:
    """Why `batch` images of `height` x `width` are too large, or None when they are within the bounds."""
    if height > MAX_SIDE or width > MAX_SIDE:
        return f"{height}x{width} is too large (at most {MAX_SIDE} a side)"
    if batch * height * width > MAX_PIXELS:
        images = f"{batch} x {height}x{width}" if batch > 1 else f"{height}x{width}"
        return f"{images} is {batch * height * width:,} pixels, too large (at most {PIXELS_IN_ALL})"
    return None


def count_problem(value: int, maximum: int, minimum: int = 1) -> str | None:
    """Why `value` is outside minimum..maximum (a count of lrnnet.limits), or None when it is within."""
    if value < minimum:
        return f"expected {'a positive integer' if minimum == 1 else f'an integer >= {minimum}'}, got {value}"
    if value > maximum:
        return f"{value:,} is too many (at most {maximum:,})"
    return None


def threads_problem(threads: int) -> str | None:
    """Why `threads` compute threads are too many for this process (more than the CPUs it may use), or None.

    More threads than usable CPUs are never faster (lrnnet._threads), and a huge count starts that
    many OS threads and exhausts the machine's processes before any work starts.
    """
    from lrnnet._threads import count_text, usable_cpus

    cpus = usable_cpus()
    if threads < 1:
        return f"expected a positive number of threads, got {threads}"
    if threads > cpus:
        return f"{count_text(threads)} is more than the {count_text(cpus, 'CPU')} this process may use"
    return None
