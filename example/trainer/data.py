"""Synthetic, linearly separable-ish data: no downloads, no numpy."""

import math
import random


def make_dataset(n_samples: int, n_features: int, seed: int):
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(n_features)]
    true_b = rng.uniform(-0.5, 0.5)
    xs, ys = [], []
    for _ in range(n_samples):
        x = [rng.gauss(0, 1) for _ in range(n_features)]
        logit = sum(w * v for w, v in zip(true_w, x)) + true_b
        p = 1 / (1 + math.exp(-logit))
        xs.append(x)
        ys.append(1 if rng.random() < p else 0)
    return xs, ys
