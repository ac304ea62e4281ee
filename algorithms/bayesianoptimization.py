"""bayesianoptimization: a surrogate model of the objective, and the point that maximizes an
acquisition function on it. Katib's setting names, meanings and defaults.

Every parameter is modelled through the shared encoding (`algorithms.model.Encoder`): numeric
parameters as their quantile in [0, 1] under their distribution, so every distribution and step
is honoured and ranges that contain 0 or negative numbers work; CATEGORICAL parameters as
unordered choices. Nothing is kept between requests: the model is rebuilt from the request's
trials each time, with randomness seeded by `Request.seed`, so a retried request gets the same
reply and a restarted pod continues where the last one stopped.

* Observations: SUCCEEDED and EARLYSTOPPED trials with a value (`History.observed`). Until there
  are `n_initial_points` of them, proposals come from a scrambled Sobol sequence (seeded by the
  experiment, continued across batches).
* Pending trials (CREATED, RUNNING) and the earlier members of a batch enter the model at the
  best value observed so far (the "constant liar", cl_min), which pushes proposals apart.
* No proposal repeats a trial in any condition or another member of the batch: a model proposal
  that does is replaced by the best unused candidate of the acquisition search, then by a random
  unused draw (`draw_new`); a repeat happens only when a finite space is full.

base_estimator GP uses the Gaussian process of this module: a Matern-5/2 kernel with one length
scale per parameter (a Hamming distance for CATEGORICAL ones), hyperparameters fitted by L-BFGS-B
on the log marginal likelihood plus weak priors, log-EI, and acquisitions maximized by L-BFGS-B
from the best of a Sobol candidate set (plus perturbations of the best points), the best
observed point and candidates drawn in proportion to their acquisition. RF, ET and GBRT are
scikit-optimize's estimators (built as its `Optimizer` builds them), on the same encoding and the
same candidate search, without the gradient refinement.

Cost policy (Katib's service exceeds the 60 s deadline at about a hundred trials): the model is
fitted on at most `MAX_FIT_POINTS` observations (the best half by value plus a seeded random
sample of the rest; fewer when there are many parameters) and at most `MAX_PENDING` pending
trials; each acquisition search scores `N_CANDIDATES` + `N_LOCAL` candidates and refines
`N_STARTS` of them (only with at most `MAX_REFINED_DIMS` numeric parameters); in a batch only
the first `MAX_REFINED` members are refined (and, for the tree models, only they refit the model
with their lie), only the first `MAX_MODELLED` members get a search of their own, and later ones
take the best unused candidates of the last search. The time of a request therefore stops
growing with the number of trials and the batch size, beyond reading them. The GP's likelihood
fit and the acquisition searches check `Request.check` between steps, so a call whose caller is
gone stops within about a second.

BLAS runs one thread (set once when this module is loaded, for the whole process): the matrices
are small, and a pod has few cores shared by concurrent requests.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
from scipy import linalg, optimize, special
from scipy.stats import qmc
from threadpoolctl import threadpool_limits

from .base import Algorithm, Proposal, Reply, Request, derive_seed
from .errors import Problems
from .experiment import Experiment
from .limits import Limits
from .model import Encoder, draw_new
from .settings import FIELD, RANDOM_STATE, Schema, Setting
from .space import ParamType, SearchSpace

MAX_FIT_POINTS = 300  # observations the model is fitted on
MAX_FIT_CELLS = 1_500_000  # bound on points² × parameters (the GP's distance tensor, 12 MB)
MAX_PENDING = 64  # pending trials told to the model as lies
N_CANDIDATES = 2048  # Sobol candidates per acquisition search
N_LOCAL = 256  # perturbations of the best observed points added to the candidates
N_STARTS = 10  # starting points refined by L-BFGS-B
MAX_REFINED = 8  # batch members that get a refined (not only sampled) acquisition optimum
MAX_MODELLED = 32  # batch members that get an acquisition search of their own
MAX_REFINED_DIMS = 64  # numeric parameters up to which the acquisition optimum is refined
ENUMERATE_UP_TO = 4096  # a finite space this small is searched point by point

threadpool_limits(limits=1, user_api="blas")  # once, process-wide (module docstring)
# "The balance properties of Sobol' points require n to be a power of 2": irrelevant here.
warnings.filterwarnings("ignore", message=".*balance properties of Sobol' points", category=UserWarning)

ESTIMATORS = ("GP", "RF", "ET", "GBRT")
ACQ_FUNCS = ("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps")
ACQ_OPTIMIZERS = ("auto", "sampling", "lbfgs")


class BayesianOptimization(Algorithm):
    name = "bayesianoptimization"
    summary = (
        "A surrogate model (GP, RF, ET or GBRT) of the trials and the point that maximizes an acquisition "
        "function; pending trials enter as constant liars."
    )
    schema = Schema(
        Setting(
            "base_estimator",
            str,
            "GP",
            "Surrogate model: GP (Gaussian process), RF (random forest), ET (extra trees) or GBRT "
            "(gradient-boosted trees).",
            choices=ESTIMATORS,
        ),
        Setting(
            "n_initial_points",
            int,
            10,
            "Observed trials needed before the model is used; until then proposals are a Sobol design.",
            low=0,
            high=100_000,
        ),
        Setting(
            "acq_func",
            str,
            "LCB",
            "Acquisition function: LCB (lower confidence bound, kappa 1.96), EI (expected improvement), PI "
            "(probability of improvement), or gp_hedge (each proposal uses one of the three, chosen at "
            "random). EIps and PIps act as EI and PI: trial durations are not in the request. Katib's "
            "default is gp_hedge; LCB is the default here because it measures best (README).",
            choices=ACQ_FUNCS,
        ),
        Setting(
            "acq_optimizer",
            str,
            "auto",
            "How the acquisition is maximized: sampling (candidates only), lbfgs (candidates refined "
            "by L-BFGS-B; GP only) or auto (lbfgs for GP, sampling for the tree models).",
            choices=ACQ_OPTIMIZERS,
        ),
        RANDOM_STATE,
    )

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        if settings["acq_optimizer"] == "lbfgs" and settings["base_estimator"] != "GP":
            problems.add(
                f'{FIELD}["acq_optimizer"]',
                f'"lbfgs" needs base_estimator GP (the {settings["base_estimator"]} model has no gradient); '
                "use auto or sampling",
            )

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        settings = request.settings
        rng = random.Random(request.seed)
        taken = request.history.taken()
        observed = request.history.observed()
        count = request.count
        if count == 0:
            return Reply([])
        if not observed or len(observed) < settings["n_initial_points"]:
            points = _initial_design(request, rng, taken)
        else:
            X, y = _training_set(space, observed, rng)
            pending = [t.unit for t in request.history.pending()[:MAX_PENDING]]
            points = _Search(space, settings, rng, request.check).propose(X, y, pending, count, taken)
        return Reply([Proposal(space.format(p)) for p in points])


# -- the initial design ----------------------------------------------------------------------------


def _initial_design(request: Request, rng: random.Random, taken: set[tuple]) -> list[tuple]:
    """Points of a scrambled Sobol sequence seeded by the experiment, continuing from the number
    of trials already made, so that successive batches extend one low-discrepancy design."""
    space = request.experiment.space
    seed = derive_seed(request.experiment.name, request.settings.get("random_state"), "sobol")
    sobol = qmc.Sobol(len(space), scramble=True, seed=np.random.default_rng(seed))
    start = len(request.history.trials)
    if start:
        sobol.fast_forward(start)
    points = []
    units = sobol.random(request.count)
    for unit in units:
        point = space.from_unit(unit)
        if point in taken:
            point = draw_new(space, rng, taken)
        taken.add(point)
        points.append(point)
    return points


# -- the training set -------------------------------------------------------------------------------


def _fit_limit(space: SearchSpace) -> int:
    return max(16, min(MAX_FIT_POINTS, int(math.sqrt(MAX_FIT_CELLS / max(len(space), 1)))))


def _training_set(space: SearchSpace, observed: list, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Encoded points and values of at most `_fit_limit` observations: the best half by value and
    a seeded random sample of the others."""
    limit = _fit_limit(space)
    if len(observed) > limit:
        ranked = sorted(range(len(observed)), key=lambda i: observed[i].value)
        best, rest = ranked[: limit // 2], ranked[limit // 2 :]
        chosen = sorted(best + rng.sample(rest, limit - len(best)))
        observed = [observed[i] for i in chosen]
    X = np.array([t.unit for t in observed], dtype=float)
    y = np.array([t.value for t in observed], dtype=float)
    return X, y


def _standardize(y: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance; ranks when the values are too large to scale."""
    with np.errstate(all="ignore"):
        std = y.std()
        z = (y - y.mean()) / std if std > 0 else np.zeros_like(y)
    if not np.all(np.isfinite(z)):
        ranks = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(float)
        return _standardize(ranks)
    return z


# -- tree models from scikit-optimize --------------------------------------------------------------


class _Trees:
    """skopt's RF, ET or GBRT regressor (as its `Optimizer` builds them), categorical parameters
    one-hot encoded; its spread across trees or quantiles is the uncertainty."""

    cheap_update = False  # adding a lie refits the ensemble

    def __init__(self, kind: str, categorical: np.ndarray, sizes: np.ndarray, seed: int):
        self.kind = kind
        self.categorical = categorical
        self.sizes = sizes
        self.seed = seed

    def _features(self, X: np.ndarray) -> np.ndarray:
        if not self.categorical.any():
            return X
        columns = []
        for j in range(X.shape[1]):
            if self.categorical[j]:
                columns.append(np.eye(int(self.sizes[j]))[X[:, j].astype(int)])
            else:
                columns.append(X[:, j : j + 1])
        return np.hstack(columns)

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y
        from skopt.utils import cook_estimator  # scikit-learn: loaded by the first RF, ET or GBRT call only

        self.model = cook_estimator(self.kind, random_state=self.seed, n_jobs=1)
        self.model.fit(self._features(X), y)

    def add(self, x: np.ndarray, value: float) -> None:
        self.fit(np.vstack([self.X, x[None, :]]), np.append(self.y, value))

    def predict(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        F = self._features(C)
        if self.kind == "GBRT":  # quantiles 0.16, 0.5 and 0.84
            q = self.model.predict(F, return_quantiles=True)
            mean, std = q[:, 1], (q[:, 2] - q[:, 0]) / 2.0
        else:
            mean, std = self.model.predict(F, return_std=True)
        return mean, np.maximum(std, 1e-9)


# -- the Gaussian process ---------------------------------------------------------------------------

_SQRT5 = math.sqrt(5.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# Length scales (unit-cube inputs) stop at 2: a longer one would let the model declare a parameter
# irrelevant after sampling a single basin, and stop exploring along it (measured on Hartmann6).
_BOUNDS_LOG_LENGTH = (math.log(0.01), math.log(2.0))
_BOUNDS_LOG_SIGNAL = (math.log(0.05), math.log(20.0))
_BOUNDS_LOG_NOISE = (math.log(1e-6), math.log(1.0))


def _sq_distances(A: np.ndarray, B: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Per-parameter squared distances, shape (len(A), len(B), d): (a - b)² for numeric
    parameters, 1 where the choices differ for categorical ones."""
    diff = A[:, None, :] - B[None, :, :]
    out = diff * diff
    if categorical.any():
        out[:, :, categorical] = (np.abs(diff[:, :, categorical]) > 0.5).astype(float)
    return out


def _matern(r: np.ndarray) -> np.ndarray:
    s = _SQRT5 * r
    return (1.0 + s + s * s / 3.0) * np.exp(-s)


class _GP:
    """A zero-mean GP on standardized values with a Matern-5/2 ARD kernel."""

    cheap_update = True  # adding a lie refactors the kernel matrix, hyperparameters kept

    def __init__(self, categorical: np.ndarray, check: Callable[[], None]):
        self.categorical = categorical
        self.check = check

    # Hyperparameters theta = (log length scales..., log signal variance, log noise variance).

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y
        d = X.shape[1]
        D = _sq_distances(X, X, self.categorical)
        bounds = [_BOUNDS_LOG_LENGTH] * d + [_BOUNDS_LOG_SIGNAL, _BOUNDS_LOG_NOISE]
        starts = [
            np.r_[np.full(d, math.log(0.5)), 0.0, math.log(1e-3)],
            np.r_[np.full(d, math.log(0.15)), 0.0, math.log(1e-4)],
        ]
        best = None
        for theta0 in starts:
            try:
                result = optimize.minimize(
                    self._neg_log_posterior,
                    theta0,
                    args=(D, y),
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": 200, "gtol": 1e-4},
                )
            except (np.linalg.LinAlgError, ValueError):
                continue
            if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
        theta = best.x if best is not None else starts[0]
        self._set(theta)

    def _neg_log_posterior(self, theta: np.ndarray, D: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        self.check()  # called once per L-BFGS-B step
        d = D.shape[2]
        length2 = np.exp(2.0 * theta[:d])
        signal, noise = math.exp(theta[d]), math.exp(theta[d + 1])
        scaled = D / length2
        r = np.sqrt(scaled.sum(axis=2))
        e = np.exp(-_SQRT5 * r)
        M = (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * e
        n = len(y)
        K = signal * M + (noise + 1e-9) * np.eye(n)
        try:
            L = linalg.cholesky(K, lower=True)
        except linalg.LinAlgError:
            return 1e25, np.zeros_like(theta)
        alpha = linalg.cho_solve((L, True), y)
        lml = -0.5 * y @ alpha - np.log(np.diag(L)).sum() - n * _LOG_SQRT_2PI
        K_inv = linalg.cho_solve((L, True), np.eye(n))
        W = np.outer(alpha, alpha) - K_inv
        G = W * (signal * 5.0 / 3.0 * (1.0 + _SQRT5 * r) * e)
        grad = np.empty_like(theta)
        grad[:d] = 0.5 * np.einsum("ij,ijk->k", G, scaled)
        grad[d] = 0.5 * np.sum(W * (signal * M))
        grad[d + 1] = 0.5 * noise * np.trace(W)
        # Weak priors (log densities and their gradients in theta):
        # inverse squared length scale q = 1/l²: -(0.1/q + 0.1 q), which favours l near 1 and keeps
        # l away from both bounds; signal variance Gamma(2, 1); noise variance Gamma(1.1, 30).
        q = 1.0 / length2
        prior = -(0.1 / q + 0.1 * q).sum() + (math.log(signal) - signal) + (0.1 * math.log(noise) - 30.0 * noise)
        grad[:d] += -(0.2 / q - 0.2 * q)  # d/dlog l of -(0.1 l² + 0.1 / l²)
        grad[d] += 1.0 - signal
        grad[d + 1] += 0.1 - 30.0 * noise
        value = lml + prior
        if not np.isfinite(value):
            return 1e25, np.zeros_like(theta)
        return -value, -grad

    def _set(self, theta: np.ndarray) -> None:
        d = self.X.shape[1]
        self.theta = theta
        self.inv_length2 = np.exp(-2.0 * theta[:d])
        self.signal, self.noise = math.exp(theta[d]), math.exp(theta[d + 1])
        self._factor()

    def _factor(self) -> None:
        K = self.kernel(self.X, self.X) + (self.noise + 1e-9) * np.eye(len(self.X))
        for jitter in (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1.0):  # the last one always works on a kernel matrix
            try:
                self.L = linalg.cholesky(K + jitter * np.eye(len(K)), lower=True)
                break
            except linalg.LinAlgError:
                continue
        self.alpha = linalg.cho_solve((self.L, True), self.y)

    def kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """The kernel matrix, without the (len(A), len(B), d) tensor of `_sq_distances`."""
        numeric = ~self.categorical
        scale = np.sqrt(self.inv_length2[numeric])
        As, Bs = A[:, numeric] * scale, B[:, numeric] * scale
        r2 = (As * As).sum(axis=1)[:, None] + (Bs * Bs).sum(axis=1)[None, :] - 2.0 * (As @ Bs.T)
        for j in np.flatnonzero(self.categorical):
            r2 += self.inv_length2[j] * (A[:, j, None] != B[None, :, j])
        return self.signal * _matern(np.sqrt(np.maximum(r2, 0.0)))

    def add(self, x: np.ndarray, value: float) -> None:
        """Conditions on one more point (a lie), keeping the hyperparameters."""
        self.X = np.vstack([self.X, x[None, :]])
        self.y = np.append(self.y, value)
        self._factor()

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Ks = self.kernel(Xs, self.X)
        mean = Ks @ self.alpha
        v = linalg.solve_triangular(self.L, Ks.T, lower=True)
        var = np.maximum(self.signal - np.einsum("ij,ij->j", v, v), 1e-12)
        return mean, np.sqrt(var)


def _log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z Phi(z)), the log of expected improvement per unit sigma, stable for z << 0."""
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu * zu - _LOG_SQRT_2PI) + zu * special.ndtr(zu))
    zl = z[~upper]
    with np.errstate(all="ignore"):  # both branches of np.where are computed
        # phi(z) (1 - |z| Phi(z)/phi(z)); Phi(z)/phi(z) = sqrt(pi/2) erfcx(-z/sqrt 2) (Mills ratio)
        c = np.minimum(
            np.log(-zl * special.erfcx(-zl / math.sqrt(2.0)) * math.sqrt(math.pi / 2.0)),
            -1e-300,
        )
        log1mexp = np.where(c > -math.log(2.0), np.log(-np.expm1(c)), np.log1p(-np.exp(c)))
        tail = -2.0 * np.log(-zl)  # 1 - e^c ~ 1/z², where the difference loses its digits
        out[~upper] = -0.5 * zl * zl - _LOG_SQRT_2PI + np.where(zl < -1e3, tail, log1mexp)
    return out


def _acquisition(kind: str, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """To maximize, for minimization of standardized values."""
    if kind == "LCB":
        return -(mean - 1.96 * std)
    z = (best - mean) / std
    if kind == "PI":
        return special.log_ndtr(z)
    return np.log(std) + _log_h(z)  # log EI


class _Search:
    """Fits the model, then maximizes the acquisition once per batch member, telling the model
    each chosen point at the best observed value (constant liar) before choosing the next."""

    def __init__(self, space: SearchSpace, settings: dict, rng: random.Random, check: Callable[[], None]):
        self.space = space
        self.check = check
        self.encoder = Encoder(space)
        self.categorical = np.array([p.type is ParamType.CATEGORICAL for p in space.parameters])
        self.sizes = np.array([p.size or 0 for p in space.parameters])
        self.estimator = settings["base_estimator"]
        self.acq = {"EIps": "EI", "PIps": "PI"}.get(settings["acq_func"], settings["acq_func"])
        self.refine = (
            self.estimator == "GP"
            and settings["acq_optimizer"] != "sampling"
            and 0 < int((~self.categorical).sum()) <= MAX_REFINED_DIMS
        )
        self.rng = rng
        self.np_rng = np.random.default_rng(rng.randrange(2**63))

    def propose(self, X, y, pending, count, taken) -> list[tuple]:
        y = _standardize(y)
        if self.estimator == "GP":
            model = _GP(self.categorical, self.check)
        else:
            model = _Trees(self.estimator, self.categorical, self.sizes, self.rng.randrange(2**31))
        lie = float(y.min())
        if pending and not model.cheap_update:
            model.fit(
                np.vstack([X, np.asarray(pending, dtype=float)]),
                np.r_[y, np.full(len(pending), lie)],
            )
        else:
            model.fit(X, y)
            for x in pending:
                model.add(np.asarray(x, dtype=float), lie)
        points = []
        for i in range(count):
            self.check()
            if i < MAX_MODELLED:
                point, x, ranked = self._one(model, X, y, taken, refine=self.refine and i < MAX_REFINED)
            else:  # the best unused candidates of the last search, in its order
                point = next((p for p in ranked if p not in taken), None) or draw_new(self.space, self.rng, taken)
            taken.add(point)
            points.append(point)
            if i + 1 < min(count, MAX_MODELLED) and (model.cheap_update or i + 1 < MAX_REFINED):
                model.add(x, lie)
        return points

    def _one(self, model, X: np.ndarray, y: np.ndarray, taken: set[tuple], refine: bool):
        """(the point chosen, its encoding, the candidate points in the chosen acquisition's order)."""
        candidates, enumerated = self._candidates(X, y, taken)
        refine = refine and not enumerated
        mean, std = model.predict(candidates)
        best = float(y.min())
        kinds = ["EI", "PI", "LCB"] if self.acq == "gp_hedge" else [self.acq]
        nominees = []
        for kind in kinds:
            score = _acquisition(kind, mean, std, best)
            order = np.argsort(-score, kind="stable")
            x = candidates[order[0]]
            if refine and (~self.categorical).any():
                x = self._refine(
                    model,
                    kind,
                    best,
                    self._starts(candidates, score, order, X[np.argmin(y)]),
                    score[order[0]],
                )
            nominees.append((x, order))
        if len(nominees) > 1:
            # gp_hedge: skopt's hedge weighs each nominee by gains accumulated over earlier asks;
            # rebuilt from the request, the gains are all zero, so each is equally likely.
            pick = self.rng.randrange(len(nominees))
        else:
            pick = 0
        x, order = nominees[pick]
        point = self.encoder.decode(x)
        if point in taken:
            for j in order:  # the best unused candidate
                point = self.encoder.decode(candidates[j])
                if point not in taken:
                    break
            else:
                point = draw_new(self.space, self.rng, taken)
        ranked = (self.encoder.decode(candidates[j]) for j in order)
        # The model takes the point where it really is (the grid point, for a finite parameter).
        return point, np.array(self.space.encode(point), dtype=float), ranked

    def _candidates(self, X: np.ndarray, y: np.ndarray, taken: set[tuple]) -> tuple[np.ndarray, bool]:
        """Encoded candidates, and whether they are every free point of a small finite space."""
        space = self.space
        if space.size is not None and space.size <= ENUMERATE_UP_TO:
            points, encoded = self._enumeration
            free = np.fromiter((p not in taken for p in points), dtype=bool, count=len(points))
            return (encoded[free] if free.any() else encoded), True
        d = len(space)
        sobol = qmc.Sobol(d, scramble=True, seed=self.np_rng)
        U = sobol.random(N_CANDIDATES)
        # Perturbations of the best observed points: local moves, and a new choice of a categorical.
        top = X[np.argsort(y, kind="stable")[: min(8, len(y))]]
        local = top[self.np_rng.integers(len(top), size=N_LOCAL)]
        local = local + self.np_rng.normal(0.0, 0.05, size=local.shape) * ~self.categorical
        local = np.clip(local, 0.0, 1.0)
        C = np.vstack([U, local])
        if self.categorical.any():
            cat = np.flatnonzero(self.categorical)
            sizes = self.sizes[cat]
            C[:N_CANDIDATES, cat] = np.minimum(np.floor(U[:, cat] * sizes), sizes - 1)
            flip = self.np_rng.random((N_LOCAL, len(cat))) < 1.0 / d
            fresh = np.floor(self.np_rng.random((N_LOCAL, len(cat))) * sizes)
            C[N_CANDIDATES:, cat] = np.where(flip, fresh, C[N_CANDIDATES:, cat])
        return C, False

    @cached_property
    def _enumeration(self) -> tuple[list[tuple], np.ndarray]:
        """Every point of a small finite space and its encoding, built once per request."""
        points = [self.space.point(r) for r in range(self.space.size)]
        return points, np.array([self.space.encode(p) for p in points], dtype=float)

    def _starts(
        self,
        candidates: np.ndarray,
        score: np.ndarray,
        order: np.ndarray,
        incumbent: np.ndarray,
    ) -> np.ndarray:
        """The best candidate, the best observed point, and candidates drawn with probability
        exp(score - best score) (a roulette over the basins of the acquisition)."""
        first = order[0]
        weights = np.exp(np.minimum(score - score[first], 0.0))
        weights[first] = 0.0
        picks = [first]
        n = min(N_STARTS - 2, int(np.count_nonzero(weights > 0)))
        if n > 0:
            picks += list(self.np_rng.choice(len(candidates), size=n, replace=False, p=weights / weights.sum()))
        return np.vstack([candidates[picks], incumbent[None, :]])

    def _refine(self, gp, kind: str, best: float, starts: np.ndarray, first_score: float) -> np.ndarray:
        """L-BFGS-B on the numeric coordinates (categorical ones fixed) from each start."""
        numeric = np.flatnonzero(~self.categorical)
        step = 1e-6

        def negative(u: np.ndarray, base: np.ndarray) -> tuple[float, np.ndarray]:
            # The value and a forward-difference gradient, in one vectorized prediction.
            pts = np.repeat(base[None, :], len(numeric) + 1, axis=0)
            pts[0, numeric] = u
            pts[1:, numeric] = u
            h = np.where(u + step <= 1.0, step, -step)
            pts[1 + np.arange(len(numeric)), numeric] += h
            mean, std = gp.predict(pts)
            f = _acquisition(kind, mean, std, best)
            return -float(f[0]), -(f[1:] - f[0]) / h

        best_x, best_f = starts[0], -float(first_score)
        for x0 in starts:
            self.check()
            try:
                result = optimize.minimize(
                    negative,
                    x0[numeric],
                    args=(x0,),
                    jac=True,
                    method="L-BFGS-B",
                    bounds=[(0.0, 1.0)] * len(numeric),
                    options={"maxiter": 50},
                )
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(result.fun) and result.fun < best_f:
                best_f = result.fun
                best_x = x0.copy()
                best_x[numeric] = np.clip(result.x, 0.0, 1.0)
        return best_x
