"""The calibration reader: Cityscapes, any image folder, or a video; streamed through THE preprocess function."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from lrnnet.calib.reader import CalibrationReader, open_calibration_set
from lrnnet.data.cityscapes import read_image
from lrnnet.data.preprocess import preprocess, resize_frame
from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo

INFO = ModelInfo(input_height=64, input_width=128, stride=8)


def _all_video_frames(path) -> list[np.ndarray]:
    """The oracle for video sampling: every frame, decoded in order by OpenCV."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_cityscapes_subset_is_deterministic_alternates_cities_and_uses_train(synthetic_root):
    chosen = open_calibration_set(synthetic_root, 4)
    assert chosen.kind == "cityscapes" and len(chosen) == 4
    assert chosen == open_calibration_set(synthetic_root, 4)
    assert chosen.images[0].parent.name != chosen.images[1].parent.name
    assert all("/leftImg8bit/train/" in p.as_posix() for p in chosen.images)
    assert chosen.digest() == open_calibration_set(synthetic_root, 4).digest()
    assert chosen.digest() != open_calibration_set(synthetic_root, 3).digest()


def test_reader_streams_preprocessed_images_one_at_a_time(synthetic_root):
    chosen = open_calibration_set(synthetic_root, 3)
    reader = CalibrationReader(chosen, INFO, "input")
    assert len(reader) == 3 and reader.images_read == 0  # nothing read up front
    first = reader.get_next()
    assert reader.images_read == 1
    np.testing.assert_array_equal(first["input"], preprocess(read_image(chosen.images[0]), (64, 128)))
    assert reader.get_next() is not None and reader.get_next() is not None and reader.get_next() is None
    reader.set_range(1, 2)  # ONNX Runtime's chunked calibration, here going back
    np.testing.assert_array_equal(reader.get_next()["input"], preprocess(read_image(chosen.images[1]), (64, 128)))
    assert reader.get_next() is None


def test_reader_feeds_uint8_when_the_graph_preprocesses(synthetic_root):
    info = ModelInfo(input_height=64, input_width=128, stride=8, input_layout=LAYOUT_NHWC_UINT8_BGR,
                     preprocess_in_graph=True)
    chosen = open_calibration_set(synthetic_root, 1)
    batch = CalibrationReader(chosen, info, "input").get_next()["input"]
    assert batch.dtype == np.uint8 and batch.shape == (1, 64, 128, 3)
    np.testing.assert_array_equal(batch[0], resize_frame(read_image(chosen.images[0]), (64, 128)))


def test_reader_batches_generator_and_array(synthetic_root):
    reader = CalibrationReader(open_calibration_set(synthetic_root, 5), INFO, "input", batch=2)
    assert len(reader) == 2  # the fifth image does not fill a batch
    feeds = list(reader.batches())
    assert [f["input"].shape for f in feeds] == [(2, 3, 64, 128)] * 2
    array = reader.to_array()
    assert array.shape == (4, 3, 64, 128)
    np.testing.assert_array_equal(array, np.concatenate([f["input"] for f in feeds]))


@pytest.fixture
def image_folder(tmp_path, synthetic_root):
    """Ten images of mixed formats in nested folders, plus things that are not images."""
    folder = tmp_path / "photos"
    sources = sorted(synthetic_root.glob("leftImg8bit/*/*/*.png"))[:10]
    for i, source in enumerate(sources):
        sub = folder / ("a" if i < 5 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        image = read_image(source)
        cv2.imwrite(str(sub / f"img_{i:02d}.{'jpg' if i % 2 else 'png'}"), image)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".thumbs").mkdir()
    cv2.imwrite(str(folder / ".thumbs" / "hidden.png"), read_image(sources[0]))
    return folder


def test_any_image_folder_recursive_and_evenly_spread(image_folder):
    every = open_calibration_set(image_folder, 100)
    assert every.kind == "images" and len(every) == 10 and every.available == 10
    assert not any(".thumbs" in p.as_posix() or p.suffix == ".txt" for p in every.images)
    assert [p.relative_to(image_folder).as_posix() for p in every.images][:2] == ["a/img_00.png", "a/img_01.jpg"]
    chosen = open_calibration_set(image_folder, 4)
    assert [p.name for p in chosen.images] == ["img_01.jpg", "img_03.jpg", "img_06.png", "img_08.png"]
    assert chosen == open_calibration_set(image_folder, 4) and chosen.digest() != every.digest()
    reader = CalibrationReader(chosen, INFO, "input")
    got = [feed["input"] for feed in reader.batches()]
    for array, path in zip(got, chosen.images, strict=True):
        np.testing.assert_array_equal(array, preprocess(read_image(path), (64, 128)))


def test_video_frames_are_sampled_evenly_and_match_a_full_decode(synthetic_video):
    chosen = open_calibration_set(synthetic_video, 4)
    assert chosen.kind == "video" and chosen.available == 12 and chosen.frame_indices == (1, 4, 7, 10)
    oracle = _all_video_frames(synthetic_video)
    reader = CalibrationReader(chosen, INFO, "input")
    got = [feed["input"] for feed in reader.batches()]
    assert len(got) == 4 and reader.images_read == 4
    for array, index in zip(got, chosen.frame_indices, strict=True):
        np.testing.assert_array_equal(array, preprocess(oracle[index], (64, 128)))
    assert chosen.digest() == open_calibration_set(synthetic_video, 4).digest()
    assert chosen.digest() != open_calibration_set(synthetic_video, 3).digest()


def test_calibration_logs_time_per_image(synthetic_root):
    from lrnnet.log import logger

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    collect, level, propagate = Collect(), logger.level, logger.propagate
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        reader = CalibrationReader(open_calibration_set(synthetic_root, 3), INFO, "input")
        assert len(list(reader.batches())) == 3
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
        logger.propagate = propagate
    lines = [line for line in collect.lines if "ms/image" in line]
    assert len(lines) == 1 and lines[0].startswith("calibration: 3 images in ") and "at 64x128" in lines[0]


@pytest.mark.parametrize("make, message", [
    ("empty_folder", "has no images"),
    ("missing", "does not exist"),
    ("text_file", "is neither a folder"),
    ("zero_frame_video", "has no frame that can be decoded"),
    ("cityscapes_without_train", "no images for split 'train'"),
])
def test_bad_calibration_data(tmp_path, make, message):
    target = tmp_path / "data"
    if make == "empty_folder":
        (target / "sub").mkdir(parents=True)
        (target / "sub" / "readme.txt").write_text("no images here")
    elif make == "text_file":
        target = tmp_path / "data.csv"
        target.write_text("a,b\n1,2\n")
    elif make == "zero_frame_video":
        target = tmp_path / "empty.mp4"
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter.fourcc(*"mp4v"), 10, (64, 32))
        writer.release()  # a header, no frame
        assert target.is_file()
    elif make == "cityscapes_without_train":
        (target / "leftImg8bit" / "val" / "city").mkdir(parents=True)
    with pytest.raises(InputError, match=message) as caught:
        open_calibration_set(target, 4)
    assert "\n" not in str(caught.value)


_RSS_PROBE = textwrap.dedent("""
    import json, resource, sys
    from lrnnet.calib.reader import CalibrationReader, open_calibration_set
    from lrnnet.export.metadata import ModelInfo

    info = ModelInfo(input_height=512, input_width=1024, stride=8)
    reader = CalibrationReader(open_calibration_set(sys.argv[1], int(sys.argv[2])), info, "input")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = sum(float(feed["input"][0, 0, 0, 0]) for feed in reader.batches())
    print(json.dumps({"images": reader.images_read, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "before_kib": before}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["images", "video"])
def test_memory_is_flat_in_the_number_of_images(tmp_path, synthetic_root, kind):
    """Peak RSS of a process reading 32 images at 512x1024 (6 MiB each as float32) vs 4: within 1.3x.

    Holding the 32 preprocessed images would add 192 MiB to a ~150 MiB process, far past 1.3x.
    """
    from lrnnet.data.synthetic import write_synthetic_video

    if kind == "video":
        data = write_synthetic_video(tmp_path / "long.mp4", size=(128, 256), frames=40)
    else:
        data = tmp_path / "photos"
        data.mkdir()
        for i, path in enumerate(sorted(synthetic_root.glob("leftImg8bit/*/*/*.png")) * 3):
            shutil.copy(path, data / f"{i:03d}.png")

    def peak(count: int) -> dict:
        out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(data), str(count)], check=True,
                             capture_output=True, text=True, env={**os.environ, "LRNNET_NO_PROGRESS": "1"})
        return json.loads(out.stdout.strip().splitlines()[-1])

    small, large = peak(4), peak(32)
    assert small["images"] == 4 and large["images"] == 32
    assert large["peak_kib"] <= 1.3 * small["peak_kib"], (small, large)


@pytest.fixture
def build_dir(tmp_path, monkeypatch, tiny_onnx):
    """An empty working folder holding lrnnet.onnx, and a logger that binds this test's stderr."""
    from lrnnet.log import logger

    shutil.copy(tiny_onnx, tmp_path / "lrnnet.onnx")
    monkeypatch.chdir(tmp_path)
    saved = logger.handlers[:]
    logger.handlers.clear()
    yield tmp_path
    logger.handlers[:] = saved


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["images", "video"])
def test_build_engine_calibrates_from_a_folder_or_a_video(build_dir, synthetic_root, synthetic_video, kind):
    """A user with a checkpoint's export and a street video (or some photos) builds INT8."""
    import onnxruntime as ort

    from lrnnet.cli.build_engine import main
    from lrnnet.engine.sidecar import read_sidecar

    if kind == "video":
        data = synthetic_video
    else:
        data = build_dir / "photos" / "trip"
        data.mkdir(parents=True)
        for i, path in enumerate(sorted(synthetic_root.glob("leftImg8bit/*/*/*.png"))[:6]):
            cv2.imwrite(str(data / f"{i}.jpg"), read_image(path))
        data = data.parent
    assert main(["--int8", "--calib-data", str(data), "--calib-images", "3", "-o", "int8.onnx", "--no-progress"]) == 0
    sidecar = read_sidecar(build_dir / "int8.onnx")
    assert sidecar.calibration["images"] == 3 and sidecar.precision == "int8"
    expected = open_calibration_set(data, 3).digest()
    assert sidecar.calibration["digest"] == expected
    session = ort.InferenceSession(str(build_dir / "int8.onnx"), providers=["CPUExecutionProvider"])
    frame = next(open_calibration_set(data, 1).frames())
    logits = session.run(None, {session.get_inputs()[0].name: preprocess(frame, (128, 256))})[0]
    assert logits.shape == (1, 19, 128, 256) and np.isfinite(logits).all()


@pytest.mark.parametrize("make, message", [
    ("zero_frame_video", "has no frame that can be decoded"),
    ("folder_without_images", "has no images"),
    ("none_of_the_three", "is neither a folder"),
])
def test_build_engine_refuses_bad_calibration_data(build_dir, capsys, make, message):
    from lrnnet.cli.build_engine import main

    if make == "zero_frame_video":
        data = build_dir / "street.mp4"
        cv2.VideoWriter(str(data), cv2.VideoWriter.fourcc(*"mp4v"), 10, (64, 32)).release()
    elif make == "folder_without_images":
        data = build_dir / "photos"
        (data / "nested").mkdir(parents=True)
        (data / "nested" / "list.txt").write_text("no images")
    else:
        data = build_dir / "labels.csv"
        data.write_text("id,name\n0,road\n")
    before = {p.name for p in build_dir.iterdir()}
    assert main(["--int8", "--calib-data", str(data), "--calib-cache", "calib.json", "-o", "int8.onnx"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith("lrnnet-build-engine: error: ")]
    # One error line, the last (a progress line such as "Backend: ..." may come before it), no traceback.
    assert errors == err[-1:] and message in errors[0] and not any("Traceback" in line for line in err), err
    assert {p.name for p in build_dir.iterdir()} == before  # no engine, sidecar or cache


def _bmp_folder(folder, pixels) -> None:
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.bmp"), pixels(i))


def test_the_digest_covers_the_images_content_not_their_names_and_sizes(tmp_path):
    rng = np.random.default_rng(0)
    _bmp_folder(tmp_path / "noise", lambda i: rng.integers(0, 256, (16, 32, 3), dtype=np.uint8))
    _bmp_folder(tmp_path / "black", lambda i: np.zeros((16, 32, 3), np.uint8))
    noise, black = (open_calibration_set(tmp_path / name, 3) for name in ("noise", "black"))
    assert [p.stat().st_size for p in noise.images] == [p.stat().st_size for p in black.images]  # same names, sizes
    assert noise.digest() != black.digest()
    assert black.digest() == open_calibration_set(tmp_path / "black", 3).digest()


def test_a_video_digest_covers_all_of_its_bytes(tmp_path, synthetic_video):
    copy = tmp_path / "street.mp4"
    data = bytearray(synthetic_video.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle, far from the head and tail a sample would hash
    copy.write_bytes(bytes(data))
    assert open_calibration_set(copy, 4).digest() != open_calibration_set(synthetic_video, 4).digest()


def test_fewer_images_than_the_graphs_batch_is_bad_input(synthetic_root):
    with pytest.raises(InputError, match=r"^the graph takes batches of 4 images, so calibrating it needs at least 4 "
                                         r"calibration images; .* gives 2 \(--calib-images 4 or more"):
        CalibrationReader(open_calibration_set(synthetic_root, 2), INFO, "input", batch=4)


def test_images_used_counts_whole_batches_and_images_read_counts_each_image_once(synthetic_root):
    from lrnnet.calib.int8 import _FirstBatchReader

    reader = CalibrationReader(open_calibration_set(synthetic_root, 5), INFO, "input", batch=2)
    assert reader.images == 4  # the fifth does not fill a batch and is skipped
    trial = _FirstBatchReader(reader)  # Model Optimizer's trial batch, then the calibration itself
    trial.get_first()
    assert len(list(reader.batches())) == 2 and reader.images_read == 4


def test_a_truncated_video_calibrates_on_the_frames_it_holds(tmp_path):
    video = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 32))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    writer.release()
    truncated = tmp_path / "trunc.avi"
    truncated.write_bytes(video.read_bytes()[:video.stat().st_size // 3])  # head -c: the header still says 20
    held = len(_all_video_frames(truncated))
    assert 4 <= held < 20
    chosen = open_calibration_set(truncated, 4)
    assert chosen.available == held and max(chosen.frame_indices) < held
    reader = CalibrationReader(chosen, INFO, "input")
    assert len(list(reader.batches())) == 4 and reader.images_read == 4
