import cv2
import numpy as np

from lrnnet.data import write_synthetic_cityscapes, write_synthetic_video
from lrnnet.data.labels import LABEL_ID
from lrnnet.data.synthetic import SCENE_CLASSES, synthetic_video_frames


def _tree_bytes(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_generator_is_deterministic_by_seed(tmp_path):
    a = write_synthetic_cityscapes(tmp_path / "a", size=(32, 64), counts={"train": 3}, seed=1)
    b = write_synthetic_cityscapes(tmp_path / "b", size=(32, 64), counts={"train": 3}, seed=1)
    c = write_synthetic_cityscapes(tmp_path / "c", size=(32, 64), counts={"train": 3}, seed=2)
    assert _tree_bytes(a) == _tree_bytes(b)
    assert _tree_bytes(a) != _tree_bytes(c)


def test_scenes_hold_only_scene_classes_with_distinct_appearance(synthetic_root):
    allowed = {LABEL_ID[name] for name in SCENE_CLASSES}
    means = {}
    for label_path in sorted(synthetic_root.glob("gtFine/train/*/*_labelIds.png")):
        label_ids = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        stem = label_path.name[: -len("_gtFine_labelIds.png")]
        image = cv2.imread(str(synthetic_root / "leftImg8bit" / "train" / label_path.parent.name / f"{stem}_leftImg8bit.png"))
        assert set(np.unique(label_ids)) <= allowed
        for name in ("road", "sky", "vegetation"):
            mask = label_ids == LABEL_ID[name]
            if mask.any():
                means.setdefault(name, []).append(image[mask].mean(axis=0))
    road, sky, vegetation = (np.mean(means[n], axis=0) for n in ("road", "sky", "vegetation"))
    # learnable: the classes differ in colour by far more than the noise
    assert np.abs(sky - road).max() > 60 and np.abs(vegetation - road).max() > 30


def test_video_moves_and_reads_back(tmp_path):
    path = write_synthetic_video(tmp_path / "v.mp4", size=(64, 128), frames=6, fps=10)
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 6 and frames[0].shape == (64, 128, 3)
    labels = [ids for _, ids in synthetic_video_frames((64, 128), 6)]
    assert not np.array_equal(labels[0], labels[5])  # cars and people move
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
