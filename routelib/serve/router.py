"""The live router: the SLM answers, scores its own confidence, and escalates to the LLM below a
threshold (paper Section 3.2, deployed).

:class:`Router` takes any two backends (:mod:`routelib.models.backend`): the SLM must support the
passes its UQ method needs (a local :class:`~routelib.models.backend.TransformersBackend`), the LLM
only ``generate`` (e.g. an OpenAI-compatible endpoint). The threshold is given directly or
read from a calibration set exported by :func:`routelib.routing.calibration.export_calibration_set`
for a target routing ratio (:func:`threshold_from_calibration`), which is how the paper sets
thresholds for data it has never seen.

Methods usable at run time: every method of :mod:`routelib.uq.methods` that needs no label
(average token probability, perplexity, p(True), verbalized 1s/2s, Jaccard degree), and the
probes when a fitted probe is passed (``probe=``, e.g. :meth:`routelib.uq.probe.MLPProbe.load`).

When the LLM call fails (endpoint down, timeout, budget exhausted), the user still gets the
SLM's answer, with ``tier="slm-fallback"`` and the error in ``error``: a query is never lost.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from routelib.answers.answer import AnswerConfig, answer_records, chosen_configs
from routelib.columns import CONFIDENCE
from routelib.data.schema import Record
from routelib.errors import RoutelibError
from routelib.routing.calibration import CSV_NAME, thresholds_from_calibration
from routelib.routing.cost import CostModel
from routelib.uq import methods as uq, passes


def _group(record: Record) -> str | None:
    """The prompt-selection group of a query (``ModelSpec.answer_styles`` groups), or None."""
    return "mcq" if record.type == "mcq" else "math" if record.domain == "math" else None


class RouterError(RoutelibError, ValueError):
    pass


@dataclass
class RouteResult:
    """What the router did with one query. ``answer``: the response shown to the user;
    ``extracted``: the answer read from it (number, option letter, text); ``tier``: ``"slm"``,
    ``"llm"`` or ``"slm-fallback"``; ``latency_s``: seconds per stage; ``cost``: per the
    :class:`~routelib.routing.simulation.CostModel` (per call)."""
    question: str
    answer: str
    extracted: str | None
    tier: str
    confidence: float
    threshold: float
    method: str
    slm_answer: str
    llm_answer: str | None = None
    latency_s: dict = field(default_factory=dict)
    cost: float = 0.0
    error: str | None = None
    adaptive: dict | None = None  # with an adaptive threshold: n, DKW band, budget counts

    def to_dict(self) -> dict:
        return asdict(self)


def make_record(question: str, choices=None, context: str | None = None,
                kind: str = "auto") -> Record:
    """A :class:`~routelib.data.Record` for a live query (no gold answer). ``kind``: ``mcq``
    (needs ``choices``), ``math``, ``text`` or ``auto`` (mcq with choices, math when the
    question has a digit, else text)."""
    if not question or not question.strip():
        raise RouterError("the question is empty")
    if kind == "auto":
        kind = "mcq" if choices else ("math" if any(c.isdigit() for c in question) else "text")
    if kind == "mcq":
        if not choices or len(choices) < 2:
            raise RouterError("an MCQ query needs at least two choices")
        return Record("live-0", "live", "mcq", "general", question, context, tuple(choices), 0,
                      str(choices[0]))
    if kind not in ("math", "text"):
        raise RouterError(f"kind {kind!r} is not known; known: auto, mcq, math, text")
    return Record("live-0", "live", "free_form", "math" if kind == "math" else "general",
                  question, context, None, "0" if kind == "math" else "", "")


def threshold_from_calibration(path, ratio: float) -> float:
    """The threshold that routes ``ratio`` of the calibration set's items: a directory (or its
    ``calibration_set.csv``) written by :func:`routelib.routing.calibration.export_calibration_set`."""
    if not 0.0 <= ratio <= 1.0:
        raise RouterError(f"the routing ratio must be in [0, 1], got {ratio}")
    p = Path(path)
    csv = p / CSV_NAME if p.is_dir() else p
    if not csv.exists():
        raise RouterError(f"no calibration set at {csv}; export one with `python -m routelib "
                          "routing --export DIR`")
    try:
        table = pd.read_csv(csv)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser and empty-file errors
        raise RouterError(f"{csv}: not a readable CSV ({' '.join(str(exc).split())})") from None
    if CONFIDENCE not in table.columns:
        raise RouterError(f"{csv}: no {CONFIDENCE!r} column (it has {list(table.columns)}); "
                          "export a calibration set with `python -m routelib routing --export "
                          "DIR`")
    conf = pd.to_numeric(table[CONFIDENCE], errors="coerce")
    bad = list(table.index[conf.isna() & table[CONFIDENCE].notna()][:3] + 2)
    if bad:
        raise RouterError(f"{csv}: {CONFIDENCE!r} is not a number on line(s) "
                          f"{', '.join(map(str, bad))}")
    if not conf.notna().any():
        raise RouterError(f"{csv}: the {CONFIDENCE!r} column holds no number")
    return float(thresholds_from_calibration(conf, [ratio])[0])


class Router:
    def __init__(self, slm, method: str = "perplexity", threshold: float = 0.5, llm=None,
                 probe=None, cost: CostModel = CostModel(), slm_config: dict | None = None,
                 decide=None):
        """``decide``: optional ``conf -> (escalate, threshold, details)`` replacing the fixed
        threshold (e.g. :func:`adaptive_decider`)."""
        if method not in uq.METHODS:
            raise RouterError(f"UQ method {method!r} is not known; known: {', '.join(uq.METHODS)}")
        if method in uq.PROBE_METHODS and probe is None:
            raise RouterError(f"method {method!r} needs a fitted probe (probe=MLPProbe.load(...))")
        if math.isnan(float(threshold)):
            raise RouterError("the threshold is NaN: no confidence would ever reach it")
        self.slm, self.llm, self.method, self.threshold = slm, llm, method, float(threshold)
        self.uq = uq.make(method, probe=probe) if method in uq.PROBE_METHODS else uq.make(method)
        self.cost = cost
        self.slm_config = slm_config or chosen_configs(slm)
        self.decide = decide

    def _slm_cfg(self, record: Record) -> AnswerConfig:
        group = _group(record)
        cfg = self.slm_config.get(group) if group else None
        if cfg is None:
            cfg = AnswerConfig("options" if record.type == "mcq" else "generate")
        if cfg.chat and self.slm.render_chat("x") is None:
            cfg = AnswerConfig(cfg.style)
        return cfg

    def _llm_cfg(self, record: Record) -> AnswerConfig:
        """The LLM generates; in the chat format its prompt selection chose for the query's
        group (:func:`~routelib.answers.answer.chosen_configs`), else in its chat format where
        it has one (a plain prompt made the instruct stand-in repeat its answer on one line up
        to the token limit)."""
        group = _group(record)
        chosen = chosen_configs(self.llm).get(group) if group else None
        has_chat = self.llm.render_chat("x") is not None
        return AnswerConfig("generate", has_chat and (chosen.chat if chosen is not None else True))

    def route(self, question: str, choices=None, context: str | None = None,
              kind: str = "auto") -> RouteResult:
        record = make_record(question, choices, context, kind)
        t0 = time.perf_counter()
        [row] = answer_records(self.slm, [record], self._slm_cfg(record))
        stats = passes.compute_stats(self.slm, [record], [row], [self.method])
        conf = float(self.uq.compute(stats)[0])
        t_slm = time.perf_counter() - t0
        res = RouteResult(question, row["response"], row["extracted"], "slm", conf,
                          self.threshold, self.method, row["response"],
                          latency_s={"slm": round(t_slm, 3)}, cost=self.cost.slm_cost_per_call)
        # a discarded confidence (NaN, e.g. no number in a verbalized answer) escalates
        escalate = not conf >= self.threshold
        if self.decide is not None:
            escalate, res.threshold, res.adaptive = self.decide(conf)
        if escalate:
            if self.llm is None:
                res.tier, res.error = "slm-fallback", "no LLM configured"
                res.latency_s["total"] = round(time.perf_counter() - t0, 3)
                return res
            t1 = time.perf_counter()
            try:
                if not hasattr(self.llm, "generate"):  # a factory: load the LLM on first need
                    self.llm = self.llm()
                [llm_row] = answer_records(self.llm, [record], self._llm_cfg(record))
            except Exception as exc:  # noqa: BLE001 - the user's query must not fail
                res.tier, res.error = "slm-fallback", f"{type(exc).__name__}: {exc}"
            else:
                res.tier, res.answer, res.extracted = "llm", llm_row["response"], \
                    llm_row["extracted"]
                res.llm_answer = llm_row["response"]
                res.cost += self.cost.llm_cost_per_call
            res.latency_s["llm"] = round(time.perf_counter() - t1, 3)
        res.latency_s["total"] = round(time.perf_counter() - t0, 3)
        return res


def adaptive_decider(state_file, ratio: float, start: float | None = None,
                     budget: float | None = None, **config):
    """A ``decide`` for :class:`Router`: the threshold follows the confidences of the queries
    seen so far (their empirical ``ratio``-quantile, :mod:`routelib.routing.adaptive`), kept in
    ``state_file`` (locked, atomic: concurrent routers and a router killed mid-write lose no
    query); ``budget`` caps the share of LLM calls so far. ``config``: the fields of
    :class:`~routelib.routing.adaptive.AdaptiveConfig` (window, randomize_ties, delta, ...)."""
    from routelib.routing import adaptive as A
    store, cfg = A.StateFile(state_file), A.AdaptiveConfig(ratio, **config)

    def decide(conf: float):
        d = A.adaptive_step(store, conf, cfg, start=start, budget=budget)
        return d.route, d.threshold, {"n": d.n, "band": d.band, "tie_fraction": d.tie_fraction,
                                      "wanted_llm": d.wanted, "routed": d.routed,
                                      "total": d.total, "state_file": str(state_file)}
    return decide
