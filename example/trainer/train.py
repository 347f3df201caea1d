"""Logistic regression by gradient descent, in pure Python.

    python -m trainer.train --learning_rate 0.1 --epochs 20
    caliban run --nogpu trainer.train -- --learning_rate 0.1
    caliban run --nogpu --experiment_config experiment.json trainer.train
"""

import argparse
import json
import math
import os

from trainer.data import make_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n_samples", type=int, default=500)
    parser.add_argument("--n_features", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--job_dir", default=os.environ.get("AIP_MODEL_DIR"),
                        help="Write metrics.json here (default: $AIP_MODEL_DIR, which Caliban and Vertex AI set).")
    return parser.parse_args(argv)


def sigmoid(z: float) -> float:
    if z < -60:
        return 0.0
    return 1 / (1 + math.exp(-z))


def train(xs, ys, learning_rate: float, epochs: int):
    n, d = len(xs), len(xs[0])
    w, b = [0.0] * d, 0.0
    for epoch in range(1, epochs + 1):
        grad_w, grad_b, loss = [0.0] * d, 0.0, 0.0
        for x, y in zip(xs, ys):
            p = sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b)
            err = p - y
            for i in range(d):
                grad_w[i] += err * x[i]
            grad_b += err
            loss -= y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12))
        w = [wi - learning_rate * g / n for wi, g in zip(w, grad_w)]
        b -= learning_rate * grad_b / n
        yield epoch, loss / n, w, b


def accuracy(xs, ys, w, b) -> float:
    hits = sum((sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b) >= 0.5) == bool(y) for x, y in zip(xs, ys))
    return hits / len(xs)


def main(argv=None) -> int:
    args = parse_args(argv)
    xs, ys = make_dataset(args.n_samples, args.n_features, args.seed)
    loss = float("nan")
    w, b = [0.0] * args.n_features, 0.0
    for epoch, loss, w, b in train(xs, ys, args.learning_rate, args.epochs):
        if epoch == 1 or epoch == args.epochs or epoch % max(1, args.epochs // 5) == 0:
            print(f"epoch {epoch:3d}  loss {loss:.4f}", flush=True)
    acc = accuracy(xs, ys, w, b)
    print(f"learning_rate={args.learning_rate} epochs={args.epochs} final_loss={loss:.4f} accuracy={acc:.3f}")
    if args.job_dir:
        os.makedirs(args.job_dir, exist_ok=True)
        with open(os.path.join(args.job_dir, "metrics.json"), "w") as fh:
            json.dump({"loss": loss, "accuracy": acc, **vars(args)}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
