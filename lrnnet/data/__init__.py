"""Cityscapes labels and reader, the one preprocessing function, synthetic street scenes."""

from lrnnet.data.cityscapes import (
    CityscapesDataset,
    Sample,
    demo_video_sequences,
    read_image,
    read_train_ids,
    spread_across_cities,
)
from lrnnet.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE_RGB
from lrnnet.data.preprocess import (
    MEAN_RGB,
    STD_RGB,
    colorize,
    overlay,
    preprocess,
    preprocess_batch,
    resize_labels,
)
from lrnnet.data.synthetic import (
    write_synthetic_cityscapes,
    write_synthetic_demo_video,
    write_synthetic_video,
)

__all__ = [
    "CLASS_NAMES", "IGNORE_INDEX", "MEAN_RGB", "NUM_CLASSES", "PALETTE_RGB", "STD_RGB", "CityscapesDataset", "Sample",
    "colorize", "demo_video_sequences", "overlay", "preprocess", "preprocess_batch", "read_image", "read_train_ids",
    "resize_labels", "spread_across_cities", "write_synthetic_cityscapes", "write_synthetic_demo_video",
    "write_synthetic_video",
]
