"""Test-time augmentation: each image is predicted as it is and mirrored left to right, and the
two views' probabilities are averaged (the mirror is the one augmentation every preset trains
with). More views were measured and did not help (benchmarks/trust.md).

The out-of-distribution score stays that of the image itself: its threshold was set on
single images of the validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Outputs = dict[str, np.ndarray]


def with_mirror(function: Callable[[np.ndarray], Outputs], averaged: Sequence[str] = ("probabilities",)
                ) -> Callable[[np.ndarray], Outputs]:
    """`function` (pixels (N, S, S, 3) -> named outputs) run on the images and their mirror
    images in one call, with the outputs named in `averaged` averaged over both views and
    every other output the images' own."""

    def call(pixels: np.ndarray) -> Outputs:
        n = len(pixels)
        outputs = function(np.concatenate([pixels, pixels[:, :, ::-1]]))
        return {name: (value[:n] + value[n:]) / 2 if name in averaged else value[:n]
                for name, value in outputs.items() if value is not None}

    return call
