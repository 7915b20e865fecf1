"""Thresholds that adapt to a new dataset from its unlabeled queries (issue 20): pure computation.

Sign convention of :mod:`routelib.routing.simulation`: higher = more confident; below the threshold: LLM.

The rule (:func:`quantile_rules`). The seen confidences (weight 1 each), optionally pooled with a
calibration set as a *prior of weight w* (it counts as w pseudo-observations: each of its m items
weighs w / m), form a weighted empirical distribution of mass W; ratio r asks for mass q = r W.
With equal values grouped, u_1 < u_2 < ..., masses a_j, cumulative masses C_j:

- q on a boundary C_j: threshold = midpoint of u_j and u_(j+1) (-inf before the first group,
  +inf after the last, the next value when either is infinite), tie fraction 0.
- q inside group j: *deterministic*, q is rounded half up to an item boundary of the group (its
  c_j items counted as a_j / c_j each): the first gives the boundary before the group, the last
  the one after it, any other the threshold u_j (the whole tie stays with the SLM); with unit
  weights this is exactly :func:`routelib.routing.simulation.threshold_for_ratio`. *Randomized*, a real tie
  (two or more items at u_j): threshold u_j, and each item tied at u_j is routed when its seeded
  uniform draw is below p = (q - C_(j-1)) / a_j (the randomized quantile rule), so the expected
  routed mass is exactly q and discrete confidences (verbalized "80%") can realize any r.
  :func:`route_with_ties` applies a rule to a batch, the static calibration-set one included.

The band (:func:`dkw_epsilon`). By the Dvoretzky-Kiefer-Wolfowitz inequality, with probability
>= 1 - delta the empirical CDF of n i.i.d. confidences is within eps = sqrt(ln(2/delta) / (2n))
of the true one everywhere: a further query from the same distribution is routed with
probability within eps of the share routed on the seen ones (r, up to 1/(2n), unless a
deterministic rule meets a tie). A finite rest of m queries adds its own noise: :func:`finite_band`
= eps(n, delta/2) + eps(m, delta/2). No band covers a prior's bias or drift.

State (:class:`StateFile`): JSON holding the seen confidences *exactly* (floats are written as
their shortest round-trip repr; with a window only the last W are kept, which is all the rule
uses) and the routed / total counts for the budget. Each change is a read-modify-write under an
exclusive ``fcntl.flock`` on the sidecar ``<file>.lock``, written to a temporary file in the same
folder, fsynced and moved over the old file by ``os.replace``: a reader or a restarted router
sees the old or the new state, never a torn one. Each update rewrites the file (O(n) per query).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routelib.cache.locks import file_lock
from routelib.config import SEED

STATE_VERSION = 1


class AdaptiveError(ValueError):
    """Bad adaptive-threshold input: ratio out of range, NaN confidence, bad state file."""


@dataclass(frozen=True)
class TieRule:
    """A threshold and the fraction of items tied exactly at it that go to the LLM."""
    threshold: float
    tie_fraction: float = 0.0


# ---- the rule --------------------------------------------------------------------------------
def dkw_epsilon(n: int, delta: float = 0.05) -> float:
    """DKW half-width sqrt(ln(2/delta) / (2n)); ``inf`` at n = 0 (no claim)."""
    if not 0.0 < delta < 1.0:
        raise AdaptiveError(f"delta must be in (0, 1), got {delta!r}")
    return math.inf if n <= 0 else math.sqrt(math.log(2.0 / delta) / (2.0 * n))


def finite_band(n: int, rest: int, delta: float = 0.05) -> float:
    """Band on the share routed among ``rest`` further queries: eps(n, d/2) + eps(rest, d/2)."""
    return dkw_epsilon(n, delta / 2) + dkw_epsilon(rest, delta / 2)


def _finite(values, what: str) -> np.ndarray:
    c = np.asarray(values, dtype=float).reshape(-1)
    if np.isnan(c).any():
        raise AdaptiveError(f"{what} holds {int(np.isnan(c).sum())} NaN value(s); a discarded "
                            "confidence has no place in a quantile: drop it first")
    return c


def _pool(seen, prior, prior_weight: float):
    """(values, weights) of the seen confidences (weight 1) and the prior (w / m each)."""
    s = _finite(seen, "the seen confidences")
    if prior is None or prior_weight <= 0:
        return s, np.ones(len(s))
    p = _finite(prior, "the calibration confidences")
    if len(p) == 0:
        raise AdaptiveError("the calibration prior is empty")
    w = np.concatenate([np.ones(len(s)), np.full(len(p), prior_weight / len(p))])
    return np.concatenate([s, p]), w


def _boundary(u: np.ndarray, j: int) -> float:
    """Threshold on the boundary after group j (j = -1: before the first group)."""
    if j < 0:
        return -math.inf
    if j >= len(u) - 1:
        return math.inf
    lo, hi = float(u[j]), float(u[j + 1])
    return (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else hi


def _check_ratio(ratio: float) -> float:
    if not 0.0 <= float(ratio) <= 1.0:
        raise AdaptiveError(f"a routing ratio is a share in [0, 1], got {ratio!r}")
    return float(ratio)


def quantile_rules(seen, ratios, prior=None, prior_weight: float = 0.0,
                   randomize: bool = False) -> list[TieRule]:
    """One :class:`TieRule` per ratio from the weighted empirical distribution (see above)."""
    values, weights = _pool(seen, prior, prior_weight)
    if len(values) == 0:
        raise AdaptiveError("cannot choose a threshold from zero confidences")
    u, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mass = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(u))
    cum = np.cumsum(mass)
    total = float(cum[-1])
    tol = 1e-9 * max(total, 1.0)
    rules = []
    for ratio in np.atleast_1d(ratios):
        q = _check_ratio(ratio) * total
        j = min(int(np.searchsorted(cum, q - tol)), len(u) - 1)  # first group reaching q
        if q <= tol:
            rule = TieRule(-math.inf)
        elif cum[j] <= q + tol:  # q on the boundary after group j
            rule = TieRule(_boundary(u, j))
        elif randomize and counts[j] >= 2:  # a real tie straddles q: split it
            rule = TieRule(float(u[j]), float((q - (cum[j - 1] if j else 0.0)) / mass[j]))
        else:  # q rounded half up to an item boundary of group j
            i = math.floor((q - (cum[j - 1] if j else 0.0)) * counts[j] / mass[j] + 0.5 + 1e-9)
            rule = TieRule(_boundary(u, j - 1 if i <= 0 else j) if i <= 0 or i >= counts[j]
                           else float(u[j]))
        rules.append(rule)
    return rules


def tie_mask(confidence, threshold, tie_fraction, draws) -> np.ndarray:
    """Routed: ``conf < threshold``, or ``conf == threshold`` and ``draw < tie_fraction`` (the
    arguments broadcast, so many thresholds can be applied at once)."""
    c = np.asarray(confidence, dtype=float)
    return (c < threshold) | ((c == threshold) & (np.asarray(draws) < tie_fraction))


def route_with_ties(confidence, threshold: float, tie_fraction: float, rng) -> np.ndarray:
    """Route a batch (True = LLM) by a rule, one ``rng.random()`` per item (``rng``: a numpy
    Generator); with ``tie_fraction=0`` this is :func:`routelib.routing.simulation.apply_threshold`."""
    c = _finite(confidence, "the confidences")
    if math.isnan(threshold):
        raise AdaptiveError("threshold is NaN")
    return tie_mask(c, threshold, tie_fraction, rng.random(len(c)))


def tie_draw(seed: int, index: int) -> float:
    """The uniform draw of the ``index``-th decision: ``default_rng([seed, index]).random()``."""
    return float(np.random.default_rng([seed, index]).random())


# ---- the adaptive threshold ------------------------------------------------------------------
@dataclass(frozen=True)
class AdaptiveConfig:
    """``prior_weight``: pseudo-observations the calibration set counts as (0: once n > 0 the
    seen confidences alone); ``window``: use the last ``window`` only (None: all)."""
    ratio: float
    prior_weight: float = 0.0
    window: int | None = None
    randomize_ties: bool = False
    seed: int = SEED
    delta: float = 0.05

    def __post_init__(self):
        _check_ratio(self.ratio)
        if self.prior_weight < 0 or (self.window is not None and self.window < 1):
            raise AdaptiveError(f"need prior_weight >= 0 and window >= 1 (or None); got "
                                f"{self.prior_weight}, {self.window}")
        dkw_epsilon(1, self.delta)


class AdaptiveThreshold:
    """Starts from ``start`` (a calibration-set threshold) or the rule on ``calibration`` (its
    confidences), then follows the ``ratio``-quantile of the confidences observed. ``seen``:
    confidences observed before; ``decisions``: decisions made before (the next tie draw's index,
    so a restarted router continues the same draws). Deterministic given the order and seed."""

    def __init__(self, config: AdaptiveConfig, start: float | None = None, calibration=None,
                 seen=(), decisions: int = 0):
        if start is None and calibration is None:
            raise AdaptiveError("give a start threshold or a calibration set's confidences")
        if config.prior_weight > 0 and calibration is None:
            raise AdaptiveError("a prior weight needs the calibration confidences")
        self.config = config
        self.start = None if start is None else float(start)
        self.calibration = None if calibration is None else _finite(calibration, "calibration")
        self._seen = deque(maxlen=config.window)
        self.n_seen = 0
        self.decisions = int(decisions)
        self._rule: TieRule | None = None
        self.observe_many(seen)

    def observe(self, conf: float) -> None:
        self.observe_many([conf])

    def observe_many(self, confs) -> None:
        """Add target confidences in arrival order (NaN raises: a discarded one is not kept)."""
        c = _finite(confs, "the observed confidences")
        self._seen.extend(c.tolist())
        self.n_seen += len(c)
        if len(c):
            self._rule = None

    @property
    def seen(self) -> np.ndarray:
        """The confidences the quantile uses (the last ``window`` when windowed)."""
        return np.asarray(self._seen, dtype=float)

    @property
    def n(self) -> int:
        """How many target confidences the current threshold rests on."""
        return len(self._seen)

    @property
    def rule(self) -> TieRule:
        """The current :class:`TieRule` (recomputed after new observations)."""
        cfg = self.config
        if self._rule is None and self.n == 0:
            self._rule = TieRule(self.start) if self.start is not None else quantile_rules(
                self.calibration, [cfg.ratio], randomize=cfg.randomize_ties)[0]
        elif self._rule is None:
            self._rule = quantile_rules(self.seen, [cfg.ratio], self.calibration,
                                        cfg.prior_weight, cfg.randomize_ties)[0]
        return self._rule

    threshold = property(lambda self: self.rule.threshold, doc="The current threshold.")
    tie_fraction = property(lambda self: self.rule.tie_fraction, doc="Share of ties routed.")

    def band(self, delta: float | None = None) -> float:
        """DKW half-width on the realized ratio for the current n (``inf`` at n = 0)."""
        return dkw_epsilon(self.n, self.config.delta if delta is None else delta)

    def decide(self, conf: float) -> bool:
        """Route this query to the LLM? (Uses and advances the decision index for tie draws.)"""
        if math.isnan(conf):
            raise AdaptiveError("confidence is NaN; escalate it without the adaptive rule")
        rule, draw = self.rule, tie_draw(self.config.seed, self.decisions)
        self.decisions += 1
        return bool(tie_mask(conf, rule.threshold, rule.tie_fraction, draw))


# ---- budget cap ------------------------------------------------------------------------------
def budget_allows(routed: int, total: int, cap: float) -> bool:
    """May the next query go to the LLM without the share of LLM calls so far exceeding ``cap``?"""
    return routed + 1 <= cap * (total + 1) + 1e-9


@dataclass
class BudgetCap:
    """Forces a query to the SLM when routing it would make routed / total exceed ``cap``."""
    cap: float
    routed: int = 0
    total: int = 0

    def __post_init__(self):
        _check_ratio(self.cap)

    def apply(self, wants_llm: bool) -> bool:
        decision = bool(wants_llm) and budget_allows(self.routed, self.total, self.cap)
        self.routed += decision
        self.total += 1
        return decision


# ---- state file for the live router ----------------------------------------------------------
@dataclass
class AdaptiveState:
    """What a live router keeps between queries: the seen confidences (exactly; the last W with
    a window), how many were observed in all, and the counts for the budget."""
    confidences: list = field(default_factory=list)
    n_observed: int = 0
    routed: int = 0
    total: int = 0

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "confidences": self.confidences,
                           "n_observed": self.n_observed, "routed": self.routed,
                           "total": self.total})

    @classmethod
    def from_json(cls, text: str, where: str = "state") -> "AdaptiveState":
        try:
            d = json.loads(text)
            conf = [float(x) for x in d["confidences"]]
            ints = [int(d[k]) for k in ("n_observed", "routed", "total")]
            ok = d["version"] == STATE_VERSION and not any(map(math.isnan, conf)) \
                and min(ints) >= 0 and ints[1] <= ints[2] and len(conf) <= ints[0]
        except (ValueError, KeyError, TypeError) as exc:
            raise AdaptiveError(f"{where} is not a valid adaptive state file: {exc}") from exc
        if not ok:
            raise AdaptiveError(f"{where} holds an inconsistent adaptive state")
        return cls(conf, *ints)


class StateFile:
    """An :class:`AdaptiveState` in a JSON file, changed only under a lock by atomic replace."""

    def __init__(self, path):
        self.path = Path(path)
        self.lock_path, self._tmp_prefix = Path(f"{self.path}.lock"), f".{self.path.name}."

    def load(self) -> AdaptiveState:
        """The current state (empty if the file does not exist yet); no lock needed to read."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AdaptiveState()
        return AdaptiveState.from_json(text, str(self.path))

    def update(self, change):
        """Locked read, ``result = change(state)`` (mutating it), write; -> (state, result)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            for stale in self.path.parent.glob(self._tmp_prefix + "*.tmp"):
                stale.unlink(missing_ok=True)  # left by a writer killed mid-write
            state = self.load()
            result = change(state)
            self._write(state)
        return state, result

    def _write(self, state: AdaptiveState) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self._tmp_prefix, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(state.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


@dataclass(frozen=True)
class Decision:
    """``route`` (to the LLM), ``wanted`` (before the budget), the rule used, the n and band it
    rested on, and the budget counts after this query."""
    route: bool
    wanted: bool
    threshold: float
    tie_fraction: float
    n: int
    band: float
    routed: int
    total: int


def adaptive_step(store: StateFile, conf: float, config: AdaptiveConfig, start=None,
                  calibration=None, budget: float | None = None) -> Decision:
    """Decide one query by the state in ``store`` and record it, in one locked update. The rule
    rests on the confidences recorded before; a NaN confidence escalates (as in the Router) and
    is not recorded; ``budget`` forces the SLM when an LLM call would exceed the cap."""
    def change(state: AdaptiveState) -> Decision:
        at = AdaptiveThreshold(config, start, calibration, state.confidences, state.total)
        wanted = True if math.isnan(conf) else at.decide(conf)
        route = wanted and (budget is None or budget_allows(state.routed, state.total, budget))
        state.routed += route
        state.total += 1
        if not math.isnan(conf):
            state.confidences.append(float(conf))
            state.n_observed += 1
            if config.window is not None:
                del state.confidences[:-config.window]
        return Decision(route, wanted, at.threshold, at.tie_fraction, at.n,
                        at.band(), state.routed, state.total)
    return store.update(change)[1]
