"""Glue for the book's notebooks (``notebooks/NN_*.ipynb``): read what is cached, say what is
missing, and never fail because a dataset is not computed yet.

Every notebook has a ``quick`` parameter. ``quick=True`` (what ``make notebooks`` runs) reads
the cache only: no model is loaded, and a dataset whose answers or statistics are not all cached
is left out and named (:attr:`Cached.missing`). ``quick=False`` computes and caches what is
missing (hours on a CPU for the 14 datasets).

- :func:`backend_factory`, :func:`accuracy`: accuracy tables from cached answers.
- :func:`load` / :func:`attach_llm`: the confidence tables of the SLMs and the LLM tier's answers
  on the same datasets, as a :class:`Cached`: the one loader,
  :mod:`routelib.routing.tables` (its rule for what is missing holds here too).
- :func:`figure`: a routelib.report.plots figure, or a note when there is nothing to draw yet.
- :func:`routing`, :func:`relative_accuracy`, :func:`transfer`: the saved routing study
  (:class:`routelib.routing.saved.RoutingStudy`, computed once, read by the pages too);
  :func:`cost_view`, :func:`shift_summary`, :func:`decompose`, :func:`export_calibration_sets`:
  the other tables of chapters 3-6. All empty (with a note) instead of an error on a partial
  cache.
- ``python -m routelib.report.book normalize FILE.ipynb ...`` (:func:`normalize_executed`): drop the
  timestamps papermill writes into notebook metadata and merge split stream outputs, so an
  executed chapter changes only when its outputs do.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from routelib import config, data
from routelib.report import accuracy as report
from routelib.routing import calibration as cal, cost, simulation as R, study, tables
from routelib.routing.saved import RoutingStudy, StudySettings
from routelib.uq import confidence

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_COLUMNS, MEANS_COLUMNS = study.SUMMARY_COLUMNS, study.MEANS_COLUMNS
TOP_K_TABLE_COLUMNS = study.TOP_K_TABLE_COLUMNS
COST_COLUMNS = (R.SLM, R.METHOD, "datasets", R.RATIO, R.ACCURACY, R.ROUTED, R.COST, R.LATENCY)
SHIFT_SUMMARY_COLUMNS = study.SHIFT_SUMMARY_COLUMNS


# ---- answers (chapter 1) -------------------------------------------------------------------
def _refuse_factory(model: str):
    def refuse():
        raise confidence.NotCached(f"{model}: answers not in the cache and quick=True; rerun "
                                   "with quick=False (or `python -m routelib accuracy`)")
    return refuse


def backend_factory(quick: bool):
    """``backend_factory`` for :func:`routelib.report.accuracy.accuracy_table`: with ``quick`` one that
    refuses to compute (raises :class:`routelib.uq.confidence.NotCached`), else one that loads the
    model on first need (:func:`routelib.cli.app.lazy_backend`)."""
    if quick:
        return _refuse_factory
    from routelib.models.factory import lazy_backend
    return lazy_backend


def accuracy(models, datasets=None, limit: int | None = config.LIMIT,
             quick: bool = True) -> pd.DataFrame:
    """:func:`routelib.report.accuracy.accuracy_table` per (model, dataset), leaving out what is not
    cached in quick mode. ``attrs["missing"]``: ``model: dataset`` pairs left out;
    ``attrs["complete"]``: datasets answered by every model."""
    frames, missing = [], []
    for model in models:
        for ds in data.iter_datasets(datasets):
            try:
                frames.append(report.accuracy_table([model], [ds], limit=limit,
                                                    backend_factory=backend_factory(quick)))
            except LookupError:
                missing.append(f"{model}: {ds}")
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    counts = out.groupby("dataset", sort=False)["model"].nunique() if len(out) else pd.Series()
    out.attrs.update(missing=missing,
                     complete=[d for d, k in counts.items() if k == len(list(models))])
    return out


# ---- confidence tables (chapters 2-7): the one loader -----------------------------------------
Cached = tables.Tables
load = tables.load
attach_llm = tables.attach_llm


def figure(plot, table: pd.DataFrame, *args, **kwargs):
    """``plot(table, *args, **kwargs)`` (a :mod:`routelib.report.plots` function), or ``None`` and a
    printed note when ``table`` is empty (nothing cached yet)."""
    if table is None or len(table) == 0:
        print(f"({plot.__name__}: nothing to draw yet, the inputs are not cached)")
        return None
    return plot(table, *args, **kwargs)


# ---- routing (chapters 3, 4, 7) ------------------------------------------------------------
def routing(cached: Cached, ratios=R.DEFAULT_RATIOS):
    """(simulation, per-dataset summary, per-method means) of the saved routing study
    (:class:`routelib.routing.saved.RoutingStudy`); empty frames when nothing is cached."""
    r = RoutingStudy(cached, StudySettings(ratios=tuple(ratios))).routing
    return r.simulation, r.summary, r.means


def best_methods(means: pd.DataFrame) -> dict:
    """slm -> the method with the largest mean area under the UQ routing curve."""
    if means.empty:
        return {}
    best = means.loc[means.groupby(R.SLM, sort=False)["auc_uq"].idxmax()]
    return dict(zip(best[R.SLM], best[R.METHOD]))


def cost_view(sim: pd.DataFrame, methods: dict, cost_model: R.CostModel | None = None,
              ratios=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> pd.DataFrame:
    """Per SLM and its method (``methods``: slm -> method), the UQ routing curve averaged over
    datasets with :func:`routelib.routing.simulation.cost_curve` per query (``n_items=1``): LLM calls and
    latency per query at each routing ratio, for the illustrative :class:`~routelib.routing.simulation.CostModel`."""
    cost_model = cost_model or cost.CostModel()
    frames = []
    for slm, method in methods.items():
        uq = sim[(sim[R.SLM] == slm) & (sim[R.METHOD] == method) & (sim[R.ROUTER] == "uq")]
        curve = uq.groupby(R.RATIO, as_index=False)[[R.ACCURACY, R.ROUTED]].mean()
        curve = curve[curve[R.RATIO].round(6).isin([round(r, 6) for r in ratios])]
        frames.append(cost.cost_curve(curve, cost_model, n_items=1).assign(
            **{R.SLM: slm, R.METHOD: method, "datasets": uq[R.DATASET].nunique()}))
    if not frames:
        return pd.DataFrame(columns=list(COST_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(COST_COLUMNS)]


def relative_accuracy(cached: Cached, keep_fractions=None) -> pd.DataFrame:
    """Relative accuracy on the most confident items (Fig. 3) from the saved routing study;
    empty when nothing is cached."""
    settings = StudySettings() if keep_fractions is None else \
        StudySettings(keep_fractions=tuple(keep_fractions))
    return RoutingStudy(cached, settings).routing.relative


# ---- distributions (chapter 5) -------------------------------------------------------------
shift_summary = study.shift_summary


decompose = study.decompose


# ---- calibration (chapter 6) ---------------------------------------------------------------
def transfer(cached: Cached, methods, runs: int = 3):
    """(transfer table, error table, mean errors) of the saved routing study's transfer part
    for the ``methods`` present; empty frames (and a printed reason) when no (slm, method) has
    two cached datasets."""
    try:
        t = RoutingStudy(cached, StudySettings(transfer_methods=tuple(methods),
                                               runs=runs)).transfer
    except cal.CalibrationError as exc:
        print(f"transfer not computed: {exc}")
        errors = pd.DataFrame(columns=list(cal.ERROR_COLUMNS))
        return (pd.DataFrame(columns=list(cal.TRANSFER_COLUMNS)), errors,
                errors.drop(columns=[R.LLM, cal.TARGET]))
    return t.table, t.errors, t.means


def export_calibration_sets(cached: Cached, methods, export_dir: str) -> pd.DataFrame:
    """:func:`routelib.routing.study.export_calibration_sets` for every SLM under ``export_dir``
    (relative to the repository root unless absolute); paths shown as given."""
    root = Path(export_dir) if Path(export_dir).is_absolute() else REPO_ROOT / export_dir
    return study.export_calibration_sets(cached.conf, cached.slms, methods, root,
                                         shown_as=Path(export_dir))


# ---- executed notebooks --------------------------------------------------------------------
VOLATILE_PAPERMILL = ("start_time", "end_time", "duration", "environment_variables")


def _coalesce_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of the same name (stdout, stderr): how a kernel splits
    printed text into messages depends on timing, not on the text."""
    out = []
    for o in outputs:
        if (o.get("output_type") == "stream" and out and out[-1].get("output_type") == "stream"
                and out[-1].get("name") == o.get("name")):
            out[-1]["text"] += o["text"]
        else:
            out.append(o)
    return out


def normalize_executed(path) -> bool:
    """Make an executed notebook depend only on its outputs, in place: drop papermill's
    timestamps and durations (notebook and cell metadata) and merge consecutive stream outputs.
    Returns whether the file changed. Needs ``nbformat`` (the ``book`` extra)."""
    import nbformat
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    pm = nb.metadata.get("papermill", {})
    for key in VOLATILE_PAPERMILL:
        pm.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for key in VOLATILE_PAPERMILL:
            cell.metadata.get("papermill", {}).pop(key, None)
        if "outputs" in cell:
            cell.outputs = _coalesce_streams(cell.outputs)
    new = nbformat.writes(nb) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "normalize":
        print("usage: python -m routelib.report.book normalize EXECUTED.ipynb ...", file=sys.stderr)
        return 2
    for p in argv[1:]:
        normalize_executed(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
