"""Training LRNNet: the paper's recipe as far as it is published (config.py says which parts are whose).

    from lrnnet.train import TrainConfig, train
    result = train(TrainConfig(synthetic=True, out=Path("runs/synth"), epochs=30))
    result.best, result.best_miou

Validation goes through lrnnet.eval (the code every backend is scored with); checkpoints are
lrnnet.models.save_checkpoint files that lrnnet-export, lrnnet-eval and the runners read.
"""

from lrnnet.train.config import TrainConfig
from lrnnet.train.schedule import poly_lr
from lrnnet.train.trainer import BEST, LAST, TrainResult, train

__all__ = ["BEST", "LAST", "TrainConfig", "TrainResult", "poly_lr", "train"]
