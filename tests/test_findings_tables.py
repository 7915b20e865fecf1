"""The findings page's per-claim tables on hand-built inputs."""
import pandas as pd

from routelib.report import findings_tables as FT


def _means():
    rows = []
    for slm, gains in (("smollm2-135m", {"a": 0.01, "b": -0.02, "c": 0.03}),
                       ("gemma3-270m", {"a": 0.0, "b": 0.05, "c": 0.01})):
        for i, (m, g) in enumerate(gains.items()):
            rows.append({"slm": slm, "method": m, "auc_uq": 0.3 + i / 100 + g,
                         "auc_random": 0.3 + i / 100, "beats_random": 3 + i, "datasets": 14,
                         "items": 100 * (i + 1), "ratio_95_uq": 0.25, "ratio_95_random": 0.5})
    return pd.DataFrame(rows)


def _rows(md: str) -> list[list[str]]:
    lines = [l for l in md.splitlines() if l.startswith("|")]
    return [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]


def test_routing_table_orders_one_slms_methods_by_the_gain_over_their_own_random_router():
    rows = _rows(FT.routing(_means(), "smollm2-135m"))
    assert [r[0] for r in rows] == ["c", "a", "b"]
    c = rows[0]
    assert c[1:4] == ["0.350", "0.320", "0.030"]       # area, its own random, gain
    assert c[4] == "5/14" and c[5] == "300"             # beats random, N scored
    assert c[6:] == ["25.0%", "50.0%"]
    assert len(rows) == 3                               # the other SLM's rows are not mixed in


def test_transfer_table_counts_targets_where_the_calibration_set_beats_the_random_sample():
    means = pd.DataFrame([{"slm": "s-1", "method": "m", "strategy": st, "mean_abs_ratio_error": e}
                          for st, e in (("calibration", 0.1), ("random", 0.2), ("pooled", 0.15),
                                        ("single", 0.3))])
    errors = {"calibration": [0.1, 0.3, 0.2], "random": [0.2, 0.1, 0.25]}
    spread = pd.DataFrame([{"slm": "s-1", "method": "m", "strategy": st, "target": t,
                            "error": e, "error_sd": 0.01 * (k + 1)}
                           for st, es in errors.items() for k, (t, e) in
                           enumerate(zip("xyz", es))])
    (row,) = _rows(FT.transfer(means, spread))
    assert row[:2] == ["s-1", "m"]
    assert row[2:6] == ["0.100", "0.200", "0.150", "0.300"]  # the paper's strategy order
    assert row[6] == "0.020"                                  # calibration sd, mean over targets
    assert row[7] == "2/3"                                    # x and z, not y


def test_short_names_fall_back_to_full_names_when_families_collide():
    assert FT.short_names(["smollm2-135m", "gemma3-270m"]) == {"smollm2-135m": "smollm2",
                                                             "gemma3-270m": "gemma3"}
    both = ["smollm2-135m", "smollm2-360m"]
    assert FT.short_names(both) == {s: s for s in both}
