"""The routing threshold of an exported calibration set (the file ``route --ratio`` reads),
checked line by line: a missing, unreadable or non-numeric set is a one-line error."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from routelib.columns import CONFIDENCE
from routelib.errors import RoutelibError
from routelib.routing.calibration import CSV_NAME, thresholds_from_calibration


class CalibrationSetError(RoutelibError, ValueError):
    """An exported calibration set that cannot give a threshold."""


def threshold_from_calibration(path, ratio: float) -> float:
    """The threshold that routes ``ratio`` of the calibration set's items: a directory (or its
    ``calibration_set.csv``) written by :func:`routelib.routing.calibration.export_calibration_set`."""
    if not 0.0 <= ratio <= 1.0:
        raise CalibrationSetError(f"the routing ratio must be in [0, 1], got {ratio}")
    p = Path(path)
    csv = p / CSV_NAME if p.is_dir() else p
    if not csv.exists():
        raise CalibrationSetError(f"no calibration set at {csv}; export one with `python -m routelib "
                          "routing --export DIR`")
    try:
        table = pd.read_csv(csv)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser and empty-file errors
        raise CalibrationSetError(f"{csv}: not a readable CSV ({' '.join(str(exc).split())})") from None
    if CONFIDENCE not in table.columns:
        raise CalibrationSetError(f"{csv}: no {CONFIDENCE!r} column (it has {list(table.columns)}); "
                          "export a calibration set with `python -m routelib routing --export "
                          "DIR`")
    conf = pd.to_numeric(table[CONFIDENCE], errors="coerce")
    bad = list(table.index[conf.isna() & table[CONFIDENCE].notna()][:3] + 2)
    if bad:
        raise CalibrationSetError(f"{csv}: {CONFIDENCE!r} is not a number on line(s) "
                          f"{', '.join(map(str, bad))}")
    if not conf.notna().any():
        raise CalibrationSetError(f"{csv}: the {CONFIDENCE!r} column holds no number")
    return float(thresholds_from_calibration(conf, [ratio])[0])
