"""Segmentation accuracy of any runner over a dataset, and accuracy drops between engines."""

from lrnnet.eval.compare import comparison, drop_table
from lrnnet.eval.evaluate import (
    PREDICTION_SUFFIX,
    EvalReport,
    check_classes,
    evaluate,
    prediction_path,
    save_prediction,
)
from lrnnet.eval.metrics import ConfusionMatrix
from lrnnet.eval.runners import ChosenSize, check_sizes, common_size, open_at_size

__all__ = ["PREDICTION_SUFFIX", "ChosenSize", "ConfusionMatrix", "EvalReport", "check_classes", "check_sizes", "common_size", "comparison",
           "drop_table", "evaluate", "open_at_size", "prediction_path", "save_prediction"]
