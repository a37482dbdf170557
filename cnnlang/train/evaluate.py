"""Evaluation of a classifier on a dataset: loss, top-1 and top-5 accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlang.data import Batches, Dataset, Normalizer

from .losses import CrossEntropy
from .metrics import ConfusionMatrix


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    top5: float
    confusion: ConfusionMatrix
    count: int


def evaluate(network, dataset: Dataset, normalizer: Normalizer, batch_size: int = 256) -> Evaluation:
    """Run ``network`` in its current mode over ``dataset`` in order, without augmentation. The
    loss runs where the network does; per batch, its sums and the predicted classes come back."""
    classes = network.model.output_shape[0]
    confusion = ConfusionMatrix(classes)
    cross_entropy = CrossEntropy(network.backend)
    loss_sum, top5, count = 0.0, 0, 0
    k = min(5, classes)
    for x, y in Batches(dataset, batch_size, shuffle=False, seed=0, epoch=0, normalizer=normalizer, dtype=network.dtype):
        batch = cross_entropy(network.forward(x, on_backend=True), y, k=k, gradient=False)
        loss_sum += batch.loss_sum
        top5 += batch.top_k
        count += len(y)
        confusion.update(cross_entropy.predictions(), y)
    return Evaluation(loss_sum / count if count else 0.0, confusion.accuracy, top5 / count, confusion, count)
