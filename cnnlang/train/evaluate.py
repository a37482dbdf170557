"""Evaluation of a classifier on a dataset: loss, top-1 and top-5 accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlang.data import Batches, Dataset, Normalizer

from .losses import log_softmax
from .metrics import ConfusionMatrix, RunningMean, topk_correct


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    top5: float
    confusion: ConfusionMatrix
    count: int


def evaluate(network, dataset: Dataset, normalizer: Normalizer, batch_size: int = 256) -> Evaluation:
    """Run ``network`` in its current mode over ``dataset`` in order, without augmentation."""
    classes = network.model.output_shape[0]
    confusion = ConfusionMatrix(classes)
    loss, top5 = RunningMean(), 0
    k = min(5, classes)
    for x, y in Batches(dataset, batch_size, shuffle=False, seed=0, epoch=0, normalizer=normalizer, dtype=network.dtype):
        logits = network.forward(x)
        # The loss alone: no gradient is needed here.
        loss.add(-float(log_softmax(logits)[np.arange(len(y)), y].mean()), len(y))
        top5 += topk_correct(logits, y, k)
        confusion.update(logits.argmax(axis=1), y)
    return Evaluation(loss.mean, confusion.accuracy, top5 / loss.count, confusion, loss.count)
