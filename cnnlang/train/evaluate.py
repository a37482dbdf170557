"""Evaluation of a classifier on a dataset: loss, top-1 and top-5 accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlang.data import Batches, Dataset, Normalizer

from .losses import softmax_cross_entropy
from .metrics import ConfusionMatrix, topk_correct


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
    loss_sum, top5, count = 0.0, 0, 0
    k = min(5, classes)
    for x, y in Batches(dataset, batch_size, shuffle=False, seed=0, epoch=0, normalizer=normalizer, dtype=network.dtype):
        logits = network.forward(x)
        loss, _ = softmax_cross_entropy(logits, y)
        loss_sum += loss * len(y)
        top5 += topk_correct(logits, y, k)
        confusion.update(logits.argmax(axis=1), y)
        count += len(y)
    return Evaluation(loss_sum / count, confusion.accuracy, top5 / count, confusion, count)
