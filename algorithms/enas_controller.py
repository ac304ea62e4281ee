"""The ENAS controller (Pham et al. 2018, macro search space) in numpy: an LSTM that samples an
architecture decision by decision, trained with REINFORCE.

An architecture of L layers is L operation ids and, for layer i > 0, i skip bits (one per earlier
layer). The LSTM runs two steps per layer:

* step A reads the previous input and gives the operation logits `h @ W_soft`; the operation is
  drawn from their softmax and its embedding `W_emb[op]` is the input of
* step B, whose output `h_i` is layer i's anchor. For i > 0 the skip logit towards each earlier
  layer j is `v . tanh(h_i @ A2 + h_j @ A1)`; the bit is drawn from its sigmoid. The next input is
  the mean of the chosen anchors, `sum(b_j h_j) / (1 + sum(b_j))` (the initial input `g_emb`
  after layer 0).

Logits are shaped as in Katib: divided by `temperature`, then `tanh_const * tanh(.)` (either step
is left out when its setting is None). Weights start uniform in [-0.01, 0.01].

The loss of one sampled architecture `a` with reward `R` and baseline `b` is

    -(R - b) * log p(a)  -  entropy_weight * H  +  skip_weight * KL

where H is the exact entropy of every decision's distribution along `a` (softmax and Bernoulli
entropies: the entropy bonus), and KL is the skip penalty: for each layer i > 0 the sum over its
skip decisions of KL(Bernoulli(p_ij) || Bernoulli(skip_target)), averaged over those layers. The
gradient is computed by hand (backpropagation through both LSTM steps of every layer, the
attention and the anchor averages); tests/test_nas.py checks it against finite differences.
Parameters are updated with Adam. Everything is float64, so that the same sequence of updates
gives the same weights bit for bit. BLAS runs one thread (set once when this module is loaded, for
the whole process, as algorithms.bayesianoptimization does): the matrices are tiny, and threads
only add synchronisation (sampling 16 architectures took 8x longer with two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

threadpool_limits(limits=1, user_api="blas")  # once, process-wide (module docstring)

INIT_RANGE = 0.01
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


@dataclass(frozen=True)
class Config:
    layers: int
    operations: int
    hidden: int = 64
    temperature: float | None = 5.0
    tanh_const: float | None = 2.25
    entropy_weight: float | None = 1e-5
    skip_target: float = 0.4
    skip_weight: float | None = 0.8


@dataclass
class Architecture:
    """Sampled decisions of a batch: `ops` (B, L) and `skips[i]` (B, i) for layer i."""

    ops: np.ndarray
    skips: list[np.ndarray]

    def row(self, b: int) -> tuple[tuple[int, ...], ...]:
        """Row b in Katib's layout: per layer, the operation id followed by its skip bits."""
        return tuple((int(self.ops[b, i]), *(int(x) for x in self.skips[i][b])) for i in range(self.ops.shape[1]))

    @classmethod
    def of(cls, rows: list[tuple[tuple[int, ...], ...]]) -> Architecture:
        layers = len(rows[0])
        ops = np.array([[layer[0] for layer in row] for row in rows], dtype=np.int64)
        skips = [np.array([row[i][1:] for row in rows], dtype=np.float64).reshape(len(rows), i) for i in range(layers)]
        return cls(ops, skips)


def _shapes(config: Config) -> dict[str, tuple[int, ...]]:
    h, k = config.hidden, config.operations
    return {"lstm": (2 * h, 4 * h), "g_emb": (h,), "emb": (k, h), "soft": (h, k), "attn1": (h, h), "attn2": (h, h), "v": (h,)}


def size(config: Config) -> int:
    """The number of parameters."""
    return sum(math.prod(shape) for shape in _shapes(config).values())


def _views(flat: np.ndarray, config: Config) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, shape in _shapes(config).items():
        count = math.prod(shape)
        out[name] = flat[start : start + count].reshape(shape)
        start += count
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class _Shape:
    """Katib's logit shaping: x / temperature, then tanh_const * tanh(.)."""

    def __init__(self, config: Config):
        self.scale = 1.0 if config.temperature is None else 1.0 / config.temperature
        self.const = config.tanh_const

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        z = x * self.scale
        if self.const is None:
            return z, None
        t = np.tanh(z)
        return self.const * t, t

    def backward(self, grad: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        if t is None:
            return grad * self.scale
        return grad * (self.const * (1.0 - t * t) * self.scale)


def _cell(w: np.ndarray, x: np.ndarray, c: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    u = np.concatenate([x, h], axis=1)
    a = u @ w
    n = c.shape[1]
    i, f, o = _sigmoid(a[:, :n]), _sigmoid(a[:, n : 2 * n]), _sigmoid(a[:, 2 * n : 3 * n])
    g = np.tanh(a[:, 3 * n :])
    c2 = i * g + f * c
    tc = np.tanh(c2)
    return c2, o * tc, (u, i, f, o, g, c, tc)


def _cell_backward(w: np.ndarray, cache: tuple, dh: np.ndarray, dc: np.ndarray, dw: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dc_prev, dh_prev) of one LSTM step; appends (input, gate gradient) rows to
    `dw`, whose product is the weight gradient (one matrix product for the whole sequence)."""
    u, i, f, o, g, c, tc = cache
    dc = dc + dh * o * (1.0 - tc * tc)
    da = np.concatenate([dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dh * tc * o * (1.0 - o), dc * i * (1.0 - g * g)], axis=1)
    dw.append((u, da))
    du = da @ w.T
    n = c.shape[1]
    return du[:, :n], dc * f, du[:, n:]


def _outer(pairs: list) -> np.ndarray:
    """sum(a.T @ b) over the (a, b) pairs, as one product."""
    return np.concatenate([a for a, _ in pairs]).T @ np.concatenate([b for _, b in pairs])


class Controller:
    """Parameters (one flat vector, with a view per weight), Adam state and the two passes."""

    def __init__(self, config: Config, rng: np.random.Generator | None = None, flat: np.ndarray | None = None):
        self.config = config
        self.flat = rng.uniform(-INIT_RANGE, INIT_RANGE, size(config)) if flat is None else flat
        self.params = _views(self.flat, config)
        self.m = np.zeros_like(self.flat)
        self.v = np.zeros_like(self.flat)
        self.steps = 0
        self.shape = _Shape(config)

    def copy(self) -> Controller:
        other = Controller(self.config, flat=self.flat.copy())
        other.m, other.v, other.steps = self.m.copy(), self.v.copy(), self.steps
        return other

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes + self.m.nbytes + self.v.nbytes

    # -- sampling --------------------------------------------------------------------------------

    def sample(self, count: int, rng: np.random.Generator) -> Architecture:
        """`count` architectures drawn from the controller (no gradients; the controller is unchanged)."""
        return self._run(count, rng=rng)[0]

    # -- training --------------------------------------------------------------------------------

    def loss_and_grads(self, arch: Architecture, advantages: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        """The mean loss over the batch, its gradient (flat, like `flat`) and statistics
        (log-probability, entropy, skip penalty, skip rate)."""
        _, tape = self._run(len(advantages), arch=arch)
        return self._backward(tape, np.asarray(advantages, dtype=np.float64))

    def step(self, arch: Architecture, advantages: np.ndarray, learning_rate: float) -> dict[str, float]:
        """One Adam step on the loss of `arch`; returns the statistics of the loss."""
        loss, grad, stats = self.loss_and_grads(arch, advantages)
        self.steps += 1
        b1, b2 = ADAM_BETAS
        scratch = np.multiply(grad, grad)  # in place from here: no temporaries the size of the weights
        scratch *= 1.0 - b2
        self.v *= b2
        self.v += scratch
        grad *= 1.0 - b1
        self.m *= b1
        self.m += grad
        np.sqrt(self.v, out=scratch)
        scratch += ADAM_EPSILON
        np.divide(self.m, scratch, out=scratch)
        scratch *= learning_rate * math.sqrt(1.0 - b2**self.steps) / (1.0 - b1**self.steps)
        self.flat -= scratch
        return {"loss": loss, **stats}

    # -- the passes ------------------------------------------------------------------------------

    def _run(self, batch: int, rng: np.random.Generator | None = None, arch: Architecture | None = None):
        """The forward pass: draws the decisions (rng) or follows `arch`; records a tape for backward."""
        p, cfg = self.params, self.config
        hidden, layers = cfg.hidden, cfg.layers
        c = np.zeros((batch, hidden))
        h = np.zeros((batch, hidden))
        x = np.broadcast_to(p["g_emb"], (batch, hidden))
        ops = np.zeros((batch, layers), dtype=np.int64)
        skips: list[np.ndarray] = []
        anchors = np.zeros((batch, layers, hidden))  # each layer's h after step B
        keys = np.zeros((batch, layers, hidden))  # anchors @ attn1
        tape = []
        for layer in range(layers):
            c, h_a, cell_a = _cell(p["lstm"], x, c, h)
            logits, t_op = self.shape.forward(h_a @ p["soft"])
            top = logits.max(axis=1, keepdims=True)
            log_probs = logits - (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))
            probs = np.exp(log_probs)
            if arch is None:
                u = rng.random((batch, 1))
                op = np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), cfg.operations - 1)
            else:
                op = arch.ops[:, layer]
            ops[:, layer] = op
            c, h, cell_b = _cell(p["lstm"], p["emb"][op], c, h_a)
            record = {"cell_a": cell_a, "h_a": h_a, "t_op": t_op, "log_probs": log_probs, "probs": probs, "op": op, "cell_b": cell_b, "h_b": h}
            if layer > 0:
                e = np.tanh((h @ p["attn2"])[:, None, :] + keys[:, :layer])  # (B, layer, H)
                s, t_skip = self.shape.forward(e @ p["v"])  # (B, layer)
                prob = _sigmoid(s)
                bits = (rng.random(prob.shape) < prob).astype(np.float64) if arch is None else arch.skips[layer]
                denominator = 1.0 + bits.sum(axis=1, keepdims=True)
                x = np.einsum("bj,bjh->bh", bits, anchors[:, :layer]) / denominator
                record.update(e=e, s=s, t_skip=t_skip, prob=prob, bits=bits, denominator=denominator)
            else:
                bits = np.zeros((batch, 0))
                x = np.broadcast_to(p["g_emb"], (batch, hidden))
            skips.append(bits)
            anchors[:, layer] = h
            keys[:, layer] = h @ p["attn1"]
            if arch is not None:  # sampling keeps no tape: its memory grows with the batch
                tape.append(record)
        return Architecture(ops, skips), tape

    def _backward(self, tape: list[dict], advantages: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        p, cfg = self.params, self.config
        batch, hidden, layers = len(advantages), cfg.hidden, cfg.layers
        beta = cfg.entropy_weight or 0.0
        weight = cfg.skip_weight or 0.0
        log_t, log_1t = math.log(cfg.skip_target), math.log1p(-cfg.skip_target)
        skip_layers = max(layers - 1, 1)
        rows = np.arange(batch)

        # The loss terms.
        log_prob = np.zeros(batch)
        entropy = np.zeros(batch)
        kl = np.zeros(batch)
        skips_taken = 0.0
        for record in tape:
            lp, pr = record["log_probs"], record["probs"]
            log_prob += lp[rows, record["op"]]
            entropy += -(pr * lp).sum(axis=1)
            if "s" in record:
                s, prob, bits = record["s"], record["prob"], record["bits"]
                log_prob += (bits * s - _softplus(s)).sum(axis=1)
                h_bern = _softplus(s) - prob * s
                entropy += h_bern.sum(axis=1)
                kl += (-h_bern - prob * log_t - (1.0 - prob) * log_1t).sum(axis=1) / skip_layers
                skips_taken += bits.sum()
        losses = -advantages * log_prob - beta * entropy + weight * kl

        # Backpropagation, last layer first. The loss is the mean over the batch.
        flat = np.zeros_like(self.flat)
        grads = _views(flat, cfg)
        pairs: dict[str, list] = {"lstm": [], "soft": [], "attn1": [], "attn2": []}
        adv = advantages[:, None] / batch
        entropy_scale, kl_scale = beta / batch, weight / (skip_layers * batch)
        target_logit = log_t - log_1t
        dh = np.zeros((batch, hidden))  # into the hidden state leaving the current step
        dc = np.zeros((batch, hidden))
        d_anchor = np.zeros((batch, layers, hidden))  # from later layers' skip inputs
        d_key = np.zeros((batch, layers, hidden))  # from later layers' attention
        dx_next = np.zeros((batch, hidden))  # into the input of the next layer's step A
        for layer in range(layers - 1, -1, -1):
            record = tape[layer]
            h_b = record["h_b"]
            dh_b = dh + d_anchor[:, layer] + d_key[:, layer] @ p["attn1"].T
            pairs["attn1"].append((h_b, d_key[:, layer]))
            if layer > 0:  # the next input is the mean of the chosen anchors; the skip decisions
                bits = record["bits"]
                d_anchor[:, :layer] += bits[:, :, None] * (dx_next / record["denominator"])[:, None, :]
                s, prob = record["s"], record["prob"]
                slope = prob * (1.0 - prob)
                ds = -adv * (bits - prob) + entropy_scale * slope * s + kl_scale * slope * (s - target_logit)
                draw = self.shape.backward(ds, record["t_skip"])  # (B, layer)
                e = record["e"]
                grads["v"] += np.einsum("bj,bjh->h", draw, e)
                de = draw[:, :, None] * p["v"] * (1.0 - e * e)  # (B, layer, H)
                d_key[:, :layer] += de
                de_query = de.sum(axis=1)
                pairs["attn2"].append((h_b, de_query))
                dh_b += de_query @ p["attn2"].T
            else:  # the next input is g_emb
                grads["g_emb"] += dx_next.sum(axis=0)
            dx_b, dc, dh = _cell_backward(p["lstm"], record["cell_b"], dh_b, dc, pairs["lstm"])
            np.add.at(grads["emb"], record["op"], dx_b)
            # The operation decision.
            lp, pr = record["log_probs"], record["probs"]
            onehot = np.zeros_like(pr)
            onehot[rows, record["op"]] = 1.0
            entropy_layer = -(pr * lp).sum(axis=1, keepdims=True)
            draw_op = self.shape.backward(-adv * (onehot - pr) + entropy_scale * pr * (lp + entropy_layer), record["t_op"])
            pairs["soft"].append((record["h_a"], draw_op))
            dx_next, dc, dh = _cell_backward(p["lstm"], record["cell_a"], dh + draw_op @ p["soft"].T, dc, pairs["lstm"])
        grads["g_emb"] += dx_next.sum(axis=0)  # layer 0 reads g_emb
        for name, products in pairs.items():
            if products:  # attn2 has none in a one-layer network
                grads[name] += _outer(products)
        possible = batch * layers * (layers - 1) / 2
        stats = {
            "log_prob": float(log_prob.mean()),
            "entropy": float(entropy.mean()),
            "skip_penalty": float(kl.mean()),
            "skip_rate": skips_taken / possible if possible else 0.0,
        }
        return float(losses.mean()), flat, stats
