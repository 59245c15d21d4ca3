"""Synthetic street scenes in the real Cityscapes layout, and matching videos.

They stand in for Cityscapes wherever it is not given (tests, the demo, calibration, training): a
perspective road with sidewalks, terrain, buildings with windows, trees, poles, sky, and moving cars
and people. Every class has its own colour range and texture plus noise, so a small network can
learn it, and everything is deterministic by seed. The files are read back by the real reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lrnnet._io import atomic_output, write_image
from lrnnet.data.cityscapes import IMAGE_SUFFIX, LABEL_ID_SUFFIX
from lrnnet.data.labels import LABEL_ID
from lrnnet.errors import InputError

# The classes a synthetic scene contains (names from the official table).
SCENE_CLASSES = ("road", "sidewalk", "building", "pole", "vegetation", "terrain", "sky", "person", "car")


Color = tuple[int, int, int]


def _random_color(rng: np.random.Generator, low: int, high: int) -> Color:
    red, green, blue = (int(c) for c in rng.integers(low, high, size=3))
    return red, green, blue


@dataclass
class _Mover:
    kind: str  # "car" or "person"
    x: float  # centre, fraction of width at t=0
    depth: float  # 0 (horizon) .. 1 (bottom of the frame)
    speed: float  # fraction of width per frame
    color: Color


@dataclass
class SceneLayout:
    """Everything random about one scene; drawing it at time t gives one frame and its labels."""

    horizon: float
    vanish_x: float
    road_half_width: float
    sidewalk_width: float
    buildings: list[tuple[float, float, float, Color]]  # x0, x1, top (fractions), BGR colour
    trees: list[tuple[float, float, float]]  # x, crown radius, crown height above horizon (fractions)
    poles: list[float]
    movers: list[_Mover] = field(default_factory=list)
    brightness: float = 1.0
    seed: int = 0

    @classmethod
    def random(cls, rng: np.random.Generator) -> SceneLayout:
        buildings = []
        x = 0.0
        while x < 1.0:
            width = rng.uniform(0.08, 0.22)
            top = rng.uniform(0.05, 0.3)
            color = _random_color(rng, 60, 200)
            buildings.append((x, x + width, top, color))
            x += width + rng.uniform(0.0, 0.05)
        trees = [(rng.uniform(0, 1), rng.uniform(0.04, 0.08), rng.uniform(0.05, 0.15)) for _ in range(rng.integers(1, 4))]
        poles = list(rng.uniform(0.05, 0.95, size=rng.integers(1, 3)))
        movers = [_Mover("car", rng.uniform(0.1, 0.9), rng.uniform(0.35, 0.85), rng.uniform(-0.012, 0.012),
                         _random_color(rng, 20, 235))
                  for _ in range(rng.integers(1, 4))]
        movers += [_Mover("person", rng.uniform(0.02, 0.98), rng.uniform(0.3, 0.8), rng.uniform(-0.004, 0.004),
                          _random_color(rng, 30, 220))
                   for _ in range(rng.integers(1, 4))]
        return cls(horizon=rng.uniform(0.38, 0.5), vanish_x=rng.uniform(0.4, 0.6),
                   road_half_width=rng.uniform(0.3, 0.42), sidewalk_width=rng.uniform(0.1, 0.2),
                   buildings=buildings, trees=trees, poles=poles, movers=movers,
                   brightness=rng.uniform(0.8, 1.15), seed=int(rng.integers(0, 2**31 - 1)))


class _Canvas:
    """Paints image and labelIds together so they can never disagree."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.h, self.w, self.rng = height, width, rng
        self.image = np.zeros((height, width, 3), dtype=np.float32)
        self.labels = np.zeros((height, width), dtype=np.uint8)

    def paint(self, mask: np.ndarray, class_name: str, texture: np.ndarray) -> None:
        self.image[mask] = texture[mask]
        self.labels[mask] = LABEL_ID[class_name]

    def flat(self, color: tuple[int, int, int], noise: float) -> np.ndarray:
        base = np.broadcast_to(np.array(color, dtype=np.float32), (self.h, self.w, 3))
        return base + self.rng.normal(0.0, noise, size=(self.h, self.w, 1)).astype(np.float32)

    def polygon_mask(self, points: list[tuple[float, float]]) -> np.ndarray:
        mask = np.zeros((self.h, self.w), dtype=np.uint8)
        pts = np.array([[x * self.w, y * self.h] for x, y in points], dtype=np.int32)
        cv2.fillPoly(mask, [pts], 1)
        return mask.astype(bool)

    def rect_mask(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        mask = np.zeros((self.h, self.w), dtype=bool)
        mask[max(int(y0 * self.h), 0):max(int(y1 * self.h), 0), max(int(x0 * self.w), 0):max(int(x1 * self.w), 0)] = True
        return mask


def render_scene(layout: SceneLayout, size: tuple[int, int], t: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw `layout` at frame `t`: (BGR uint8 image, labelIds uint8), both `size`=(height, width)."""
    height, width = size
    canvas = _Canvas(height, width, np.random.default_rng(layout.seed + 7919 * t))
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    hz, vx = layout.horizon, layout.vanish_x

    sky = np.array([235, 190, 120], np.float32) * (1 - ys) + np.array([250, 225, 190], np.float32) * ys
    canvas.paint(np.ones((height, width), bool), "sky", np.broadcast_to(sky, (height, width, 3)).copy())
    canvas.paint(canvas.rect_mask(0, hz - 0.02, 1, 1), "terrain", canvas.flat((60, 150, 140), 14))

    for x0, x1, top, color in layout.buildings:
        facade = canvas.flat(color, 8)
        window_rows = (np.arange(height)[:, None] // max(height // 40, 2)) % 3 == 0
        window_cols = (np.arange(width)[None, :] // max(width // 80, 2)) % 3 == 0
        facade[window_rows & window_cols] *= 0.45
        canvas.paint(canvas.rect_mask(x0, top, x1, hz + 0.01), "building", facade)

    road_bottom = (vx - layout.road_half_width * 2.2, vx + layout.road_half_width * 2.2)
    walk = layout.sidewalk_width * 2.2
    left_walk = [(vx - 0.01, hz), (road_bottom[0], 1.0), (road_bottom[0] - walk, 1.0), (vx - 0.02, hz)]
    right_walk = [(vx + 0.01, hz), (road_bottom[1], 1.0), (road_bottom[1] + walk, 1.0), (vx + 0.02, hz)]
    tiles = canvas.flat((170, 160, 175), 10)
    tiles[(np.arange(height) % max(height // 30, 3)) == 0] *= 0.7
    canvas.paint(canvas.polygon_mask(left_walk) | canvas.polygon_mask(right_walk), "sidewalk", tiles)
    asphalt = canvas.flat((85, 80, 80), 12)
    canvas.paint(canvas.polygon_mask([(vx - 0.01, hz), (vx + 0.01, hz), (road_bottom[1], 1.0), (road_bottom[0], 1.0)]),
                 "road", asphalt)

    for tx, radius, crown in layout.trees:
        leaves = canvas.flat((40, 130, 50), 25)
        crown_mask = np.zeros((height, width), np.uint8)
        cv2.ellipse(crown_mask, (int(tx * width), int((hz - crown) * height)),
                    (int(radius * width), int(radius * 1.4 * width)), 0, 0, 360, 1, -1)
        canvas.paint(canvas.rect_mask(tx - 0.004, hz - crown, tx + 0.004, hz + 0.03), "vegetation", leaves)
        canvas.paint(crown_mask.astype(bool), "vegetation", leaves)
    for px in layout.poles:
        canvas.paint(canvas.rect_mask(px - 0.003, hz - 0.3, px + 0.003, hz + 0.08), "pole", canvas.flat((120, 120, 125), 6))

    for mover in sorted(layout.movers, key=lambda m: m.depth):  # far first, near ones occlude them
        x = (mover.x + mover.speed * t) % 1.2 - 0.1
        y = hz + mover.depth * (1 - hz)
        scale = 0.15 + mover.depth
        if mover.kind == "car":
            w, h = 0.12 * scale, 0.09 * scale
            body = canvas.flat(mover.color, 10)
            body[: int(height * (y - h * 0.55))] *= 1.0
            canvas.paint(canvas.rect_mask(x - w / 2, y - h, x + w / 2, y), "car", body)
            canvas.paint(canvas.rect_mask(x - w * 0.35, y - h * 0.95, x + w * 0.35, y - h * 0.6), "car",
                         canvas.flat((60, 50, 40), 6))
        else:
            w, h = 0.018 * scale, 0.12 * scale
            clothes = canvas.flat(mover.color, 10)
            canvas.paint(canvas.rect_mask(x - w / 2, y - h * 0.8, x + w / 2, y), "person", clothes)
            head = np.zeros((height, width), np.uint8)
            cv2.circle(head, (int(x * width), int((y - h * 0.88) * height)), max(int(w * 0.45 * width), 1), 1, -1)
            canvas.paint(head.astype(bool), "person", canvas.flat((120, 160, 210), 6))

    image = np.clip(canvas.image * layout.brightness, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (3, 3), 0), canvas.labels


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_output(path) as tmp:
        write_image(tmp, image)


def _check_size(size: tuple[int, int]) -> None:
    if len(size) != 2 or min(size) < 16:
        raise InputError(f"synthetic scene size must be (height, width) of at least 16x16, got {size}")


def write_synthetic_cityscapes(root: str | Path, size: tuple[int, int] = (256, 512),
                               counts: dict[str, int] | None = None, cities: int = 2, seed: int = 0) -> Path:
    """Write a Cityscapes-layout tree of synthetic scenes (images + *_gtFine_labelIds.png); returns root."""
    _check_size(size)
    counts = {"train": 16, "val": 6} if counts is None else counts
    root = Path(root)
    for split_index, (split, count) in enumerate(sorted(counts.items())):
        rng = np.random.default_rng([seed, split_index])
        for index in range(count):
            city = f"synth{index % cities}"
            stem = f"{city}_{index // cities:06d}_000019"
            image, label_ids = render_scene(SceneLayout.random(rng), size)
            _write_png(root / "leftImg8bit" / split / city / f"{stem}{IMAGE_SUFFIX}", image)
            _write_png(root / "gtFine" / split / city / f"{stem}{LABEL_ID_SUFFIX}", label_ids)
    return root


def synthetic_video_frames(size: tuple[int, int], frames: int, seed: int = 0):
    """Yield (BGR frame, labelIds) for a street video with moving cars and people."""
    _check_size(size)
    layout = SceneLayout.random(np.random.default_rng([seed, 99]))
    for t in range(frames):
        yield render_scene(layout, size, t)


def write_synthetic_video(path: str | Path, size: tuple[int, int] = (256, 512), frames: int = 30,
                          fps: float = 17.0, seed: int = 0) -> Path:
    """Write an MP4 (mp4v) street video; 17 fps is Cityscapes' demoVideo frame rate."""
    path = Path(path)
    height, width = size
    with atomic_output(path) as tmp:
        # OpenCV picks the container from the extension, so the temporary file keeps it.
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write an mp4v video to {path}")
        try:
            for image, _ in synthetic_video_frames(size, frames, seed):
                writer.write(image)
        finally:
            writer.release()
    return path


def write_synthetic_demo_video(root: str | Path, sequence: str = "synth_00", size: tuple[int, int] = (256, 512),
                               frames: int = 10, seed: int = 0) -> Path:
    """The same video as a Cityscapes demoVideo image sequence under root/leftImg8bit/demoVideo/."""
    folder = Path(root) / "leftImg8bit" / "demoVideo" / sequence
    for t, (image, _) in enumerate(synthetic_video_frames(size, frames, seed)):
        _write_png(folder / f"{sequence}_000000_{t:06d}{IMAGE_SUFFIX}", image)
    return folder
