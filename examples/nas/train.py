"""A neural architecture search trial in NumPy: builds the network ENAS proposes and trains it.

The data set is the one of examples/anomaly (log sequences, 10% anomalous, 100 standardized
features; predicting "normal" everywhere scores 0.875). The network is read from the two
assignments Katib's enas service (and this project's) gives every trial, parsed the way Katib's
own ENAS trial parses them (`text.replace("'", '"')`, then JSON):

    --architecture  one list per layer: [operation id, skip bits...]; layer i (from 0) has i bits
    --nn_config     {"num_layers", "input_sizes", "output_sizes", "embedding"}; the embedding maps
                    each operation id used to {"opt_id", "opt_type", "opt_params"}

Layer i reads the output of layer i - 1 (the input features for layer 0), concatenated with every
earlier tensor whose skip bit is 1: bit j of layer i stands for tensor j, where tensor 0 is the
input and tensor j > 0 the output of layer j - 1 (as Katib's ModelConstructor reads them).
Operations: `dense` (opt_params units and activation relu, tanh or sigmoid) and `identity` (the
concatenated inputs, unchanged). A final dense layer gives one logit (output_sizes [1]).

Training: Adam, binary cross-entropy, mini-batches of 64, `--epochs` passes over the first
`--train-size` training sequences. After every epoch one line in the format of Katib's StdOut
metrics collector: `epoch=N loss=L accuracy=A` (validation accuracy).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ANOMALY = Path(__file__).resolve().parent.parent / "anomaly" / "train.py"
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "sigmoid": (lambda z: 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), lambda z, a: a * (1.0 - a)),
}
BATCH = 64
BETAS, EPSILON = (0.9, 0.999), 1e-8


def load_data():
    """examples/anomaly's data set (the same fixed seed)."""
    spec = importlib.util.spec_from_file_location("anomaly_train", ANOMALY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_data()


def katib_json(text: str):
    """What Katib's NAS trials do with an assignment."""
    return json.loads(text.replace("'", '"'))


class Network:
    """The proposed layers, then a dense layer to one logit; trained with Adam."""

    def __init__(self, architecture: list, nn_config: dict, rng: np.random.Generator):
        self.layers = []  # (kind, activation, sources)
        self.params: list[np.ndarray] = []
        widths = [int(nn_config["input_sizes"][-1])]  # tensor j: 0 the input, j > 0 layer j - 1
        for i, row in enumerate(architecture):
            operation = nn_config["embedding"][str(row[0])]
            sources = [i] + [j for j, bit in enumerate(row[1:]) if bit == 1]
            width = sum(widths[j] for j in sources)
            if operation["opt_type"] == "dense":
                units = int(operation["opt_params"]["units"])
                self._add(width, units, rng)
                self.layers.append(("dense", operation["opt_params"]["activation"], sources))
                widths.append(units)
            elif operation["opt_type"] == "identity":
                self.layers.append(("identity", None, sources))
                widths.append(width)
            else:
                raise ValueError(f"unknown operation type {operation['opt_type']!r}")
        self._add(widths[-1], int(nn_config["output_sizes"][-1]), rng)
        self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in self.params]
        self.steps = 0

    def _add(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> None:
        self.params += [rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)), np.zeros(fan_out)]

    def forward(self, x: np.ndarray):
        tensors, caches, p = [x], [], 0
        for kind, activation, sources in self.layers:
            inputs = np.concatenate([tensors[j] for j in sources], axis=1)
            if kind == "dense":
                z = inputs @ self.params[p] + self.params[p + 1]
                out = ACTIVATIONS[activation][0](z)
                caches.append((inputs, z, out, p))
                p += 2
            else:
                out = inputs
                caches.append((inputs, None, None, None))
            tensors.append(out)
        logits = (tensors[-1] @ self.params[p] + self.params[p + 1])[:, 0]
        return np.clip(logits, -30.0, 30.0), tensors, caches

    def step(self, x: np.ndarray, y: np.ndarray, rate: float) -> float:
        logits, tensors, caches = self.forward(x)
        loss = float(np.mean(np.logaddexp(0.0, logits) - y * logits))
        dlogits = (1.0 / (1.0 + np.exp(-logits)) - y)[:, None] / len(y)
        grads = [None] * len(self.params)
        grads[-2], grads[-1] = tensors[-1].T @ dlogits, dlogits.sum(axis=0)
        dtensors = [np.zeros_like(t) for t in tensors]
        dtensors[-1] += dlogits @ self.params[-2].T
        for index in range(len(self.layers) - 1, -1, -1):
            kind, activation, sources = self.layers[index]
            inputs, z, out, p = caches[index]
            dout = dtensors[index + 1]
            if kind == "dense":
                dz = dout * ACTIVATIONS[activation][1](z, out)
                grads[p], grads[p + 1] = inputs.T @ dz, dz.sum(axis=0)
                dinputs = dz @ self.params[p].T
            else:
                dinputs = dout
            start = 0
            for j in sources:  # the concatenation, split back
                width = tensors[j].shape[1]
                dtensors[j] += dinputs[:, start : start + width]
                start += width
        self._adam(grads, rate)
        return loss

    def _adam(self, grads: list, rate: float) -> None:
        self.steps += 1
        b1, b2 = BETAS
        scale = rate * np.sqrt(1 - b2**self.steps) / (1 - b1**self.steps)
        for param, grad, (m, v) in zip(self.params, grads, self.moments):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            param -= scale * m / (np.sqrt(v) + EPSILON)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((self.forward(x)[0] > 0.0) == (y > 0.5)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", required=True, help="the enas assignment `architecture`")
    parser.add_argument("--nn_config", required=True, help="the enas assignment `nn_config`")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=8000, help="training sequences used (at most 48000)")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    architecture, nn_config = katib_json(args.architecture), katib_json(args.nn_config)
    print(f"architecture {json.dumps(architecture)}", flush=True)
    np.seterr(all="ignore")
    x_train, y_train, x_val, y_val = load_data()
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    rng = np.random.default_rng(args.seed)
    network = Network(architecture, nn_config, rng)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        losses = [network.step(x_train[b], y_train[b], args.lr) for b in np.array_split(order, max(len(order) // BATCH, 1))]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        print(f"{stamp} epoch={epoch} loss={np.mean(losses):.4f} accuracy={network.accuracy(x_val, y_val):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
