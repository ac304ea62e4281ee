"""Flag anomalous log sequences with a small neural network, in NumPy only.

The data set is generated here, the same every run: sequences of 20 log events (30 event types)
produced by four normal workflows (Markov chains: each step mostly goes on to the next step of the
workflow, sometimes retries, takes a side step, skips a step or logs a harmless warning), and about
10% anomalies: a rare error event injected, two events swapped, steps missing, or two workflows
spliced together. Each sequence becomes 100 features: how often each event type occurs (30) plus a
bag of its transitions (the 69 most common transitions of the training set, and one count for all
others), standardized. A one-hidden-layer MLP (ReLU, sigmoid output, binary cross-entropy) is
trained with mini-batch SGD with momentum 0.9 on 4000 sequences and validated on 1000; predicting
"normal" for every sequence scores 0.875 on the validation set.

After every epoch one line goes to stdout in the format of Katib's StdOut metrics collector:

    2026-11-28T08:00:00.123456Z epoch=3 loss=0.2143 accuracy=0.9120

`loss` is the mean training loss of the epoch, `accuracy` the validation accuracy.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import numpy as np

DATA_SEED = 20261128  # the data set is fixed; --seed only changes the initial weights and batch order
LENGTH = 20
EVENTS = 30
RARE = list(range(24, 30))  # error events that normal runs almost never log
WORKFLOWS = 4
STEPS = 6
P_RETRY, P_DETOUR, P_SKIP, P_WARNING = 0.06, 0.15, 0.004, 0.004
TRAIN, VALIDATION = 48000, 4000
ANOMALY_RATE = 0.10
TRANSITIONS = 70  # the 69 most common transitions in the training set, and all others; 100 features in all
LOGIT_CLIP = 30.0
MOMENTUM = 0.9


# --- data -------------------------------------------------------------------------------------


def workflow_chains(rng: np.random.Generator) -> list[np.ndarray]:
    """Transition matrices of the normal workflows: each a cycle of STEPS steps over events 0..23,
    with retries, two optional side steps, now and then a skipped step or a harmless warning."""
    chains = []
    for _ in range(WORKFLOWS):
        steps = rng.choice(24, size=STEPS, replace=False)
        detours = dict(zip(rng.choice(STEPS, size=2, replace=False), rng.choice(np.setdiff1d(np.arange(24), steps), 2)))
        matrix = np.zeros((EVENTS, EVENTS))
        for i, event in enumerate(steps):
            following = steps[(i + 1) % STEPS]
            matrix[event, following] += 1.0 - P_RETRY - P_SKIP - P_WARNING
            matrix[event, event] += P_RETRY
            matrix[event, steps[(i + 2) % STEPS]] += P_SKIP
            matrix[event, RARE[i % 2]] += P_WARNING
            if i in detours:  # a side step, after which the workflow goes on
                matrix[event, following] -= P_DETOUR
                matrix[event, detours[i]] += P_DETOUR
                matrix[detours[i], following] += 1.0
        for event in range(EVENTS):  # after a warning (or an unused event) the workflow restarts
            if matrix[event].sum() == 0:
                matrix[event, steps[0]] = 1.0
            matrix[event] /= matrix[event].sum()
        chains.append(matrix)
    return chains


def walk(rng: np.random.Generator, matrix: np.ndarray, count: int, length: int) -> np.ndarray:
    """`count` sequences of `length` events from one chain, each starting at a random step."""
    cumulative = np.cumsum(matrix, axis=1)
    cumulative[:, -1] = 1.0
    starts = np.flatnonzero(matrix.sum(axis=0) > 0.2)  # events the workflow goes through
    out = np.empty((count, length), dtype=np.int64)
    out[:, 0] = rng.choice(starts, size=count)
    for t in range(1, length):
        u = rng.random(count)
        out[:, t] = (u[:, None] > cumulative[out[:, t - 1]]).sum(axis=1)
    return out


def make_dataset(count: int, rng: np.random.Generator, chains: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`count` sequences of LENGTH events and their labels (1 = anomaly)."""
    which = rng.integers(WORKFLOWS, size=count)
    sequences = np.empty((count, LENGTH + 4), dtype=np.int64)
    for w in range(WORKFLOWS):
        rows = np.flatnonzero(which == w)
        sequences[rows] = walk(rng, chains[w], len(rows), LENGTH + 4)
    labels = (rng.random(count) < ANOMALY_RATE).astype(np.float64)
    out = sequences[:, :LENGTH].copy()
    for row in np.flatnonzero(labels):
        seq = list(sequences[row])
        kind = rng.integers(4)
        if kind == 0:  # a rare error event
            seq[rng.integers(LENGTH)] = rng.choice(RARE)
        elif kind == 1:  # two neighbouring (different) events in the wrong order
            i = rng.choice([j for j in range(1, LENGTH - 2) if seq[j] != seq[j + 1]])
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
        elif kind == 2:  # two or three steps missing
            i = rng.integers(1, LENGTH - 4)
            del seq[i : i + rng.integers(2, 4)]
        else:  # the run switches to another workflow halfway
            other = walk(rng, chains[(which[row] + 1 + rng.integers(WORKFLOWS - 1)) % WORKFLOWS], 1, LENGTH)[0]
            i = rng.integers(6, LENGTH - 6)
            seq[i:] = other[i:]
        out[row] = seq[:LENGTH]
    return out, labels


def transition_vocabulary(sequences: np.ndarray) -> np.ndarray:
    """Bucket of each of the EVENTS**2 transitions: the most common ones get their own, the rest share the last."""
    bigrams = (sequences[:, :-1] * EVENTS + sequences[:, 1:]).ravel()
    frequency = np.bincount(bigrams, minlength=EVENTS * EVENTS)
    common = np.argsort(-frequency, kind="stable")[: TRANSITIONS - 1]
    buckets = np.full(EVENTS * EVENTS, TRANSITIONS - 1)
    buckets[common] = np.arange(TRANSITIONS - 1)
    return buckets


def features(sequences: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Event counts plus bag-of-transitions counts."""
    count = len(sequences)
    rows = np.arange(count)[:, None]
    histogram = np.zeros((count, EVENTS))
    np.add.at(histogram, (rows, sequences), 1.0)
    transitions = np.zeros((count, TRANSITIONS))
    np.add.at(transitions, (rows, vocabulary[sequences[:, :-1] * EVENTS + sequences[:, 1:]]), 1.0)
    return np.hstack([histogram, transitions])


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation features (standardized with training statistics) and labels."""
    rng = np.random.default_rng(DATA_SEED)
    chains = workflow_chains(rng)
    sequences, labels = make_dataset(TRAIN + VALIDATION, rng, chains)
    x = features(sequences, transition_vocabulary(sequences[:TRAIN]))
    mean, std = x[:TRAIN].mean(axis=0), x[:TRAIN].std(axis=0) + 1e-3
    x = (x - mean) / std
    return x[:TRAIN], labels[:TRAIN], x[TRAIN:], labels[TRAIN:]


# --- model ------------------------------------------------------------------------------------


class MLP:
    """inputs -> hidden (ReLU) -> 1 logit; trained with SGD with momentum on binary cross-entropy."""

    def __init__(self, inputs: int, hidden: int, rng: np.random.Generator):
        self.params = {
            "w1": rng.normal(0.0, np.sqrt(2.0 / inputs), (inputs, hidden)),
            "b1": np.zeros(hidden),
            "w2": rng.normal(0.0, np.sqrt(1.0 / hidden), (hidden, 1)),
            "b2": np.zeros(1),
        }
        self.velocity = {name: np.zeros_like(p) for name, p in self.params.items()}

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        hidden = np.maximum(x @ p["w1"] + p["b1"], 0.0)
        # Clipped so that a diverging run gives bad numbers, not overflow.
        return hidden, np.clip(hidden @ p["w2"] + p["b2"], -LOGIT_CLIP, LOGIT_CLIP)[:, 0]

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One SGD step on a mini-batch; returns the batch's mean loss."""
        hidden, z = self.logits(x)
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        dz = (1.0 / (1.0 + np.exp(-z)) - y)[:, None] / len(y)  # d loss / d logit
        dhidden = (dz @ self.params["w2"].T) * (hidden > 0)
        grads = {"w2": hidden.T @ dz, "b2": dz.sum(axis=0), "w1": x.T @ dhidden, "b1": dhidden.sum(axis=0)}
        for name, grad in grads.items():
            velocity = self.velocity[name]
            velocity *= MOMENTUM
            velocity -= lr * grad
            self.params[name] += velocity
        return loss

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((self.logits(x)[1] > 0.0) == (y > 0.5)))


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set (default 10)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batch order")
    args = parser.parse_args(argv)
    if args.lr <= 0 or args.batch_size < 1 or args.epochs < 1 or args.hidden < 1:
        parser.error("--lr must be > 0 and --batch-size, --epochs and --hidden at least 1")

    np.seterr(all="ignore")  # a diverging run may overflow inside ReLU units: its accuracy says so
    x_train, y_train, x_val, y_val = load_data()
    rng = np.random.default_rng(args.seed)
    model = MLP(x_train.shape[1], args.hidden, rng)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            losses.append(model.step(x_train[batch], y_train[batch], args.lr))
        loss = float(np.mean(losses))
        if not np.isfinite(loss):
            loss = float(np.log(2.0) + LOGIT_CLIP)  # the worst a clipped logit can score
        print(f"{timestamp()} epoch={epoch} loss={loss:.4f} accuracy={model.accuracy(x_val, y_val):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
