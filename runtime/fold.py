"""Batchnorm folding arithmetic: the weight and bias of a conv or fc layer with the batchnorm
layers after it absorbed (eval mode: running statistics are constants).

For each batchnorm in order, with s = gamma / sqrt(running_var + eps) per output channel:
W' = W * s along the output-channel axis (axis 0 of every conv, conv1d and fc weight), and
b' = (b - running_mean) * s + beta, where b is 0 for a layer without a bias. The sums run in
float64 and are cast once at the end, so folding costs one float32 rounding per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchNormStatistics:
    """One batchnorm's eval-mode constants; gamma and beta are None when it is not affine."""

    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None


def fold_batchnorm(
    weight: np.ndarray, bias: np.ndarray | None, batchnorms: list[BatchNormStatistics], dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') in ``dtype`` for ``weight`` (out channels first) and ``bias`` (None: no bias)
    followed by ``batchnorms`` in order."""
    folded_weight = np.asarray(weight, np.float64)
    channels = folded_weight.shape[0]
    folded_bias = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
    for bn in batchnorms:
        scale = 1.0 / np.sqrt(np.asarray(bn.running_var, np.float64) + bn.eps)
        if bn.gamma is not None:
            scale = scale * np.asarray(bn.gamma, np.float64)
        folded_weight = folded_weight * scale.reshape(channels, *[1] * (folded_weight.ndim - 1))
        folded_bias = (folded_bias - np.asarray(bn.running_mean, np.float64)) * scale
        if bn.beta is not None:
            folded_bias = folded_bias + np.asarray(bn.beta, np.float64)
    return folded_weight.astype(dtype), folded_bias.astype(dtype)
