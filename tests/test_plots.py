"""routelib.report.plots on synthetic tables produced by the real routelib functions."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from routelib.report import plots
from routelib.routing import calibration, distributions, relative, simulation as routing
from routelib.uq import methods as uq, metrics

DATASETS = ("d1", "d2", "d3")
METHODS = ("p_true", "avg_token_prob", "jaccard_degree")  # neither paper nor alphabetical order
PAPER_ORDER = ["avg_token_prob", "p_true", "jaccard_degree"]
N_ITEMS = 60


def _tables(seed: int = 50, slm: str = "slm-a", all_correct: str | None = None):
    """Confidence table (avg_token_prob informative, jaccard_degree random, p_true in between; d3
    shifted up) and an LLM table, one LLM."""
    rng = np.random.default_rng(seed)
    conf_rows, llm_rows = [], []
    for k, ds in enumerate(DATASETS):
        slm_ok = rng.random(N_ITEMS) < 0.55
        if ds == all_correct:
            slm_ok[:] = True
        llm_ok = rng.random(N_ITEMS) < 0.8
        shift = 0.3 * (ds == "d3")
        confs = {"avg_token_prob": 0.3 + 0.4 * slm_ok + 0.15 * rng.standard_normal(N_ITEMS),
                 "p_true": 0.5 + 0.1 * slm_ok + 0.2 * rng.standard_normal(N_ITEMS),
                 "jaccard_degree": rng.random(N_ITEMS)}
        for m in METHODS:
            for i in range(N_ITEMS):
                conf_rows.append((slm, ds, f"{ds}-{i:03d}", m, confs[m][i] + shift, slm_ok[i]))
        llm_rows += [("llm-x", ds, f"{ds}-{i:03d}", llm_ok[i]) for i in range(N_ITEMS)]
    return (pd.DataFrame(conf_rows, columns=list(routing.CONF_COLUMNS)),
            pd.DataFrame(llm_rows, columns=list(routing.LLM_COLUMNS)))


@pytest.fixture(scope="module")
def tables():
    return _tables()


@pytest.fixture(scope="module")
def sim(tables):
    return routing.simulate(*tables)


def _close(fig):
    assert isinstance(fig, Figure)
    plt.close(fig)


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


# ---- palette -------------------------------------------------------------------------------
def test_method_palette_follows_the_registry_and_is_distinct():
    assert list(plots.METHOD_PALETTE) == list(uq.METHODS)
    assert plots.AUROC in metrics.AUROC_COLUMNS
    colours = [tuple(c) for c in plots.METHOD_PALETTE.values()]
    assert len(set(colours)) == len(colours)
    assert plots.method_order(["zzz", "jaccard_degree", "avg_token_prob", "jaccard_degree"]) == \
        ["avg_token_prob", "jaccard_degree", "zzz"]
    assert to_rgba(plots.method_color("zzz")) not in map(to_rgba, colours)  # its own colour


# ---- Figure 1 ------------------------------------------------------------------------------
def _heatmap_matrix(ax):
    arr = ax.collections[0].get_array()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    return np.ma.asarray(arr).reshape(len(rows), len(cols)), rows, cols


def test_auroc_heatmap_shows_the_table_values_in_paper_order(tables):
    table = metrics.auroc_table(tables[0])
    fig = plots.auroc_heatmap(table)
    ax = fig.axes[0]
    matrix, rows, cols = _heatmap_matrix(ax)
    assert rows == PAPER_ORDER and cols == list(DATASETS)
    expected = table.pivot(index="method", columns="dataset", values="auroc").loc[rows, cols]
    np.testing.assert_allclose(matrix.filled(np.nan), expected.to_numpy())
    # the informative method beats the random one on every dataset
    assert (matrix[0] > matrix[2]).all()
    texts = sorted(float(t.get_text()) for t in ax.texts)
    assert texts == sorted(round(v, 2) for v in expected.to_numpy().ravel())
    assert "undefined" in fig._suptitle.get_text()
    assert len(fig.axes) == 2  # one heatmap + the colour bar
    _close(fig)


def test_auroc_heatmap_masks_undefined_auroc():
    conf, _ = _tables(all_correct="d2")
    table = metrics.auroc_table(conf)
    assert table.loc[table["dataset"] == "d2", "auroc"].isna().all()
    fig = plots.auroc_heatmap(table)
    matrix, rows, cols = _heatmap_matrix(fig.axes[0])
    j = cols.index("d2")
    assert matrix.mask[:, j].all() and not matrix.mask[:, [0, 2]].any()
    assert len(fig.axes[0].texts) == len(rows) * (len(cols) - 1)  # no number in blank cells
    assert "all items correct or all wrong" in fig._suptitle.get_text()
    _close(fig)


def test_auroc_heatmap_one_panel_per_slm_with_a_shared_colour_bar():
    conf = pd.concat([_tables(50, "slm-a")[0], _tables(51, "slm-b")[0]], ignore_index=True)
    table = metrics.auroc_table(conf)
    fig = plots.auroc_heatmap(table, annot=False)
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes[:2]] == \
        ["SLM: slm-a", "SLM: slm-b"]
    for ax, name in zip(fig.axes[:2], ("slm-a", "slm-b")):
        matrix, rows, cols = _heatmap_matrix(ax)
        sub = table[table["slm"] == name]
        expected = sub.pivot(index="method", columns="dataset", values="auroc").loc[rows, cols]
        np.testing.assert_allclose(matrix, expected.to_numpy())
        assert not ax.texts
    _close(fig)
    one = plots.auroc_heatmap(table, slm="slm-b")
    np.testing.assert_allclose(
        _heatmap_matrix(one.axes[0])[0],
        table[table["slm"] == "slm-b"].pivot(index="method", columns="dataset",
                                             values="auroc").loc[PAPER_ORDER].to_numpy())
    _close(one)
    with pytest.raises(ValueError, match=r"slm-c.*available: \['slm-a', 'slm-b'\]"):
        plots.auroc_heatmap(table, slm="slm-c")
    with pytest.raises(ValueError, match="auroc"):
        plots.auroc_heatmap(table.drop(columns="auroc"))


# ---- Figure 2 ------------------------------------------------------------------------------
def test_routing_curves_plot_the_simulated_accuracies(sim):
    fig = plots.routing_curves(sim)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == list(DATASETS)
    for ax in axes:
        lines = _lines(ax)
        assert list(lines) == PAPER_ORDER + ["oracle", "random"]
        d = sim[sim["dataset"] == ax.get_title()]
        for method in PAPER_ORDER:
            c = d[(d["router"] == "uq") & (d["method"] == method)]
            np.testing.assert_allclose(lines[method].get_ydata(), 100 * c["accuracy"])
            np.testing.assert_allclose(lines[method].get_xdata(), 100 * c["routed"])
            assert np.all(lines["oracle"].get_ydata() >= lines[method].get_ydata() - 1e-9)
        oracle = d[(d["router"] == "oracle") & (d["method"] == METHODS[0])]
        np.testing.assert_allclose(lines["oracle"].get_ydata(), 100 * oracle["accuracy"])
        assert lines["oracle"].get_linestyle() == "--" and lines["random"].get_linestyle() == ":"
    _close(fig)


def test_routing_curves_selection_and_errors(sim, tables):
    fig = plots.routing_curves(sim, dataset="d2")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["d2"]
    _close(fig)
    fig = plots.routing_curves(sim, dataset=["d3", "d1"])
    assert sorted(ax.get_title() for ax in fig.axes if ax.get_visible()) == ["d1", "d3"]
    _close(fig)
    with pytest.raises(ValueError, match=r"nope.*available: \['d1', 'd2', 'd3'\]"):
        plots.routing_curves(sim, dataset="nope")
    conf, llm = tables
    two = routing.simulate(conf, pd.concat([llm, llm.assign(llm="llm-y")]))
    with pytest.raises(ValueError, match=r"several llms \['llm-x', 'llm-y'\]"):
        plots.routing_curves(two)
    _close(plots.routing_curves(two, llm="llm-y"))
    with pytest.raises(ValueError, match="router"):
        plots.routing_curves(sim.drop(columns="router"))


# ---- Figure 3 ------------------------------------------------------------------------------
def test_relative_accuracy_table_by_hand():
    """Two hand-made datasets: d (5 items, distinct confidences) and e (4 items, all tied, so
    the item id decides which are routed first); the table is built, rows sorted and
    columns named by relative_accuracy_table, every value below computed by hand."""
    conf = pd.DataFrame(
        [("s", "d", f"d{i}", "m", c, ok) for i, (c, ok) in enumerate(
            [(0.9, True), (0.1, False), (0.5, True), (0.7, False), (0.3, True)])]
        + [("s", "e", f"e{i}", "m", 0.5, ok) for i, ok in enumerate([False, True, True, False])],
        columns=list(routing.CONF_COLUMNS)).iloc[::-1]          # input order must not matter
    llm = pd.DataFrame([("L", "d", f"d{i}", ok) for i, ok in enumerate([1, 1, 0, 1, 1])]
                       + [("L", "e", f"e{i}", True) for i in range(4)],
                       columns=list(routing.LLM_COLUMNS)).astype({"correct": bool})
    top = relative.relative_accuracy_table(conf, llm, keep_fractions=[0.2, 0.5, 1.0])
    assert list(top.columns) == ["slm", "llm", "dataset", "method", *routing.TOP_K_COLUMNS]
    got = top.set_index(["dataset", "keep_fraction"])
    # d: LLM right on 4 of 5. Keep 20% -> the most confident item d0 (right); 50% -> 5 - 3
    # routed (2.5 rounds half up) = d0, d3 (one right); 100% -> 3 of 5 right
    # e: LLM always right; ties routed by item id, so keeping 1 of 4 keeps e3 (wrong), 2 of
    # 4 keep e2, e3 (one right); all: 2 of 4 right
    # the LLM on the same kept items: d0 right (1.0); d0, d3 right (1.0); all: 4 of 5
    expected = {("d", 0.2): (1, 1.0, 1.0, 1.0), ("d", 0.5): (2, 0.5, 1.0, 0.5),
                ("d", 1.0): (5, 0.6, 0.8, 0.75), ("e", 0.2): (1, 0.0, 1.0, 0.0),
                ("e", 0.5): (2, 0.5, 1.0, 0.5), ("e", 1.0): (4, 0.5, 1.0, 0.5)}
    assert len(top) == len(expected)
    for key, (n_kept, slm_acc, llm_acc, rel) in expected.items():
        row = got.loc[key]
        assert row["n_kept"] == n_kept, key
        assert (row["slm_accuracy"], row["llm_accuracy"], row["relative_accuracy"]) == \
            pytest.approx((slm_acc, llm_acc, rel)), key
    # against the LLM on all of d (0.8): 1.25 and 0.625, the old reading, kept as its own column
    assert got.loc[("d", 0.2), "relative_to_all"] == pytest.approx(1.25)
    assert got.loc[("d", 0.5), "relative_to_all"] == pytest.approx(0.625)
    assert (got.loc["d", "llm_accuracy_all"] == 0.8).all()


def test_relative_accuracy_plots_one_line_per_method(tables):
    top = relative.relative_accuracy_table(*tables)
    fig = plots.relative_accuracy(top)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(DATASETS)
    for ax in axes:
        lines = _lines(ax)
        assert list(lines)[:3] == PAPER_ORDER
        c = top[(top["dataset"] == ax.get_title()) & (top["method"] == "avg_token_prob")]
        np.testing.assert_allclose(lines["avg_token_prob"].get_ydata(), c["relative_accuracy"])
        np.testing.assert_allclose(lines["avg_token_prob"].get_xdata(), 100 * c["keep_fraction"])
    _close(fig)
    # no dataset column: one panel
    fig = plots.relative_accuracy(top[top["dataset"] == "d1"].drop(columns="dataset"))
    assert sum(ax.get_visible() for ax in fig.axes) == 1
    _close(fig)
    with pytest.raises(ValueError, match="relative_accuracy"):
        plots.relative_accuracy(top.drop(columns="relative_accuracy"))


def test_method_colour_is_the_same_across_figures(sim, tables):
    f2 = plots.routing_curves(sim)
    f3 = plots.relative_accuracy(relative.relative_accuracy_table(*tables))
    for method in METHODS:
        c2 = _lines(f2.axes[0])[method].get_color()
        c3 = _lines(f3.axes[0])[method].get_color()
        assert to_rgba(c2) == to_rgba(c3) == to_rgba(plots.METHOD_PALETTE[method])
    _close(f2)
    _close(f3)


# ---- Figure 4 ------------------------------------------------------------------------------
def test_confidence_distributions_pooled_and_shift_annotation(tables):
    conf = tables[0]
    shift = distributions.distribution_shift(conf)
    fig = plots.confidence_distributions(conf, "avg_token_prob", shift=shift)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == len(DATASETS) + 1
    pooled = lines[-1]
    assert pooled.get_label().startswith("pooled (n=180)")
    assert to_rgba(pooled.get_color()) == to_rgba("black")
    assert pooled.get_linewidth() > max(line.get_linewidth() for line in lines[:-1])
    for line in lines:  # each KDE is a density
        x, y = line.get_xdata(), line.get_ydata()
        assert np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) == pytest.approx(1.0, abs=0.05)
    row = shift[(shift["method"] == "avg_token_prob") & (shift["dataset"] == "d3")].iloc[0]
    assert f"KS={row['ks']:.2f}" in lines[2].get_label()
    assert row["ks"] > shift.loc[(shift["method"] == "avg_token_prob")
                                 & (shift["dataset"] == "d1"), "ks"].iloc[0]  # d3 is shifted
    _close(fig)
    with pytest.raises(ValueError, match=r"perplexity.*available: \['p_true', 'avg_token_prob'"):
        plots.confidence_distributions(conf, "perplexity")


def test_confidence_distributions_constant_dataset_and_slm_choice(tables):
    conf = pd.concat([tables[0], tables[0].assign(slm="slm-b")], ignore_index=True)
    with pytest.raises(ValueError, match=r"several slms \['slm-a', 'slm-b'\]"):
        plots.confidence_distributions(conf, "p_true")
    conf.loc[(conf["slm"] == "slm-b") & (conf["dataset"] == "d1"), "confidence"] = 0.5
    fig = plots.confidence_distributions(conf, "p_true", slm="slm-b")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[0].endswith("(constant)") and len(labels) == 4
    _close(fig)


# ---- Figure 5 ------------------------------------------------------------------------------
def test_calibration_vs_full_plots_transfer_columns(tables):
    conf, llm = tables
    result = calibration.transfer_table(conf, llm, "slm-a", "avg_token_prob", runs=2)
    fig = plots.calibration_vs_full(result)
    assert len(fig.axes) == 2 * len(DATASETS)
    acc_ax, real_ax = fig.axes[2], fig.axes[3]   # target d2
    assert acc_ax.get_title() == "target: d2"
    d = result[result["target"] == "d2"]
    acc, real = _lines(acc_ax), _lines(real_ax)
    assert list(acc) == ["ground truth (own data)", "calibration", "random", "pooled", "single"]
    cal = d[d["strategy"] == "calibration"]
    np.testing.assert_allclose(acc["calibration"].get_ydata(), 100 * cal["accuracy"])
    np.testing.assert_allclose(real["calibration"].get_ydata(), 100 * cal["realized_ratio"])
    np.testing.assert_allclose(acc["ground truth (own data)"].get_ydata(),
                               100 * cal["ground_truth_accuracy"])
    diag = real["requested = realized"]
    assert list(diag.get_xdata()) == list(diag.get_ydata()) == [0, 100]
    _close(fig)
    fig = plots.calibration_vs_full(result, target="d3")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "target: d3"
    _close(fig)
    with pytest.raises(ValueError, match=r"d9.*available: \['d1', 'd2', 'd3'\]"):
        plots.calibration_vs_full(result, target="d9")
    mixed = pd.concat([result, calibration.transfer_table(conf, llm, "slm-a", "p_true",
                                                          strategies=("pooled",))])
    with pytest.raises(ValueError, match="several methods"):
        plots.calibration_vs_full(mixed)


def test_calibration_vs_full_one_line_per_single_source(tables):
    conf, llm = tables
    parts = [calibration.transfer(conf, llm, "slm-a", "p_true", "d1", strategy="single",
                                  source=s) for s in ("d2", "d3")]
    fig = plots.calibration_vs_full(pd.concat(parts, ignore_index=True))
    assert list(_lines(fig.axes[0]))[1:] == ["single (d2)", "single (d3)"]
    _close(fig)


# ---- the book's layouts ----------------------------------------------------------------------
def test_auroc_heatmap_with_datasets_as_rows_is_the_transpose(tables):
    table = metrics.auroc_table(tables[0])
    fig = plots.auroc_heatmap(table, rows="dataset")
    matrix, rows, cols = _heatmap_matrix(fig.axes[0])
    assert rows == list(DATASETS) and cols == PAPER_ORDER
    expected = table.pivot(index="dataset", columns="method", values="auroc").loc[rows, cols]
    np.testing.assert_allclose(matrix.filled(np.nan), expected.to_numpy())
    assert fig.axes[0].get_ylabel() == "dataset" and fig.axes[0].get_xlabel() == "UQ method"
    _close(fig)
    with pytest.raises(ValueError, match="rows='slm'"):
        plots.auroc_heatmap(table, rows="slm")


def test_method_summary_draws_each_slms_mean_per_method(tables):
    conf = pd.concat([tables[0], tables[0].assign(slm="slm-b")], ignore_index=True)
    from routelib.report.uq_page import method_ranking
    ranking = method_ranking(metrics.auroc_table(conf))
    means = pd.DataFrame({"slm": ["slm-a", "slm-b"], "method": ["p_true", "p_true"],
                          "auc_uq": [0.4, 0.5], "auc_random": [0.35, 0.52]})
    fig = plots.method_summary(ranking, means)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == PAPER_ORDER
    heights = sorted(round(p.get_height(), 6) for p in right.patches)
    assert heights == [-0.02, 0.05]                       # gains over random, from 0
    first = [p for p in left.patches][:3]                 # slm-a's bars start at chance
    assert all(p.get_y() == 0.5 for p in first)
    want = ranking[ranking["slm"] == "slm-a"].set_index("method").loc[PAPER_ORDER, "mean_auroc"]
    np.testing.assert_allclose([0.5 + p.get_height() for p in first], want)
    _close(fig)
    with pytest.raises(ValueError, match="non-empty"):
        plots.method_summary()
def test_probe_learning_curves_one_panel_per_slm_points_without_auroc_left_out():
    curve = pd.DataFrame({
        "slm": ["a", "a", "a", "a", "b", "b"], "dataset": ["x", "x", "y", "y", "x", "x"],
        "n_train": [50, 100, 50, 100, 50, 100], "auroc": [0.6, 0.7, np.nan, 0.55, 0.5, 0.52]})
    fig = plots.probe_learning_curves(curve)
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    lines = {ax.get_title(): {ln.get_label(): ln.get_xydata().tolist() for ln in ax.get_lines()
                              if not ln.get_label().startswith("_")} for ax in panels}
    assert lines["a"] == {"x": [[50, 0.6], [100, 0.7]], "y": [[100, 0.55]]}
    assert lines["b"] == {"x": [[50, 0.5], [100, 0.52]]}
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plots.probe_learning_curves(curve.iloc[:0])
