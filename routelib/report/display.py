"""Tables and sentences as the book shows them: markdown that a notebook cell displays.

- :class:`Markdown`: a ``str`` that Jupyter renders as markdown (``_repr_markdown_``), so a
  chapter cell ends with ``display.table(...)`` and needs no IPython import; papermill stores it
  as ``text/markdown`` and the book renders it as a GitHub table.
- :func:`table`: a data frame as a markdown table without the pandas index (a named index, as in
  a pivot, becomes ordinary columns), floats rounded to ``digits``, shares in :data:`PERCENT`
  as percentages with one decimal, missing values as ``–``. With ``top``, a longer table shows
  its first ``top`` rows and writes the whole table to ``<csv>.csv`` in
  :func:`default_tables_dir`, linked under it; :func:`download` writes and links a table
  without showing it.
- Where the CSVs go: ``$ROUTELIB_TABLES_DIR`` when set, else ``routelib_tables/`` in the
  current working directory, so a user's rerun of a chapter (papermill, Jupyter) never touches
  the book. ``make notebooks`` names the book's folder :data:`TABLES_DIR` (copied into the built
  book); only a CSV written there is linked as the book links it (:data:`TABLES_LINK`), any
  other is linked by the path written (relative to the working directory when inside it).
- :func:`sentences`: a chapter's conclusions as a markdown list.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
# the book copies book/_static/ into its HTML (html_static_path); a chapter page
# (book/chapters/NN.html) links the folder as TABLES_LINK
TABLES_DIR = REPO_ROOT / "book" / "_static" / "tables"
TABLES_LINK = "../../_static/tables"
TABLES_ENV = "ROUTELIB_TABLES_DIR"  # the folder for the CSVs (make notebooks: TABLES_DIR)
RUN_TABLES = "routelib_tables"      # the default, in the working directory: never the book's


def default_tables_dir() -> Path:
    """``$ROUTELIB_TABLES_DIR`` when set, else ``./routelib_tables`` (in the current working
    directory when called); the book's :data:`TABLES_DIR` only when the variable names it."""
    value = os.environ.get(TABLES_ENV)
    return Path(value).expanduser() if value else Path.cwd() / RUN_TABLES


def csv_link(path: Path) -> str:
    """The markdown link to a written CSV: the book's link (:data:`TABLES_LINK`) when ``path``
    is in :data:`TABLES_DIR`, else the path itself (relative to the working directory when it is
    inside it, else absolute)."""
    path = Path(path).resolve()
    if path.parent == TABLES_DIR.resolve():
        return f"[{path.name}]({TABLES_LINK}/{path.name})"
    try:
        shown = path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = path.as_posix()
    return f"[{shown}](<{shown}>)" if " " in shown else f"[{shown}]({shown})"


def _write(t: pd.DataFrame, name: str, tables_dir: Path | None) -> Path:
    folder = Path(tables_dir) if tables_dir is not None else default_tables_dir()
    folder.mkdir(parents=True, exist_ok=True)
    t.to_csv(folder / f"{name}.csv", index=False, float_format="%.6g")
    return folder / f"{name}.csv"


# columns holding a share in [0, 1], shown as a percentage with one decimal
PERCENT = frozenset({"accuracy", "slm_accuracy", "llm_accuracy", "slm_acc", "llm_acc", "gap",
                     "ci_low", "ci_high", "ratio_95_uq", "ratio_95_oracle", "ratio_95_random",
                     "rate", "routed", "ratio", "keep_fraction", "share"})


class Markdown(str):
    """Markdown text; Jupyter displays it rendered."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _cell(value, column: str, digits: int, percent) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return "–"
        text = f"{100 * x:.1f}%" if column in percent else f"{x:.{digits}f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.%") else text  # no -0.000
    if value is None or value is pd.NA or value is pd.NaT:
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _label(c) -> str:
    return f"{c:g}" if isinstance(c, (float, np.floating)) else str(c)


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a named index turned into columns (an unnamed range index dropped) and
    column levels joined: what :func:`table` shows."""
    out = frame.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" ".join(_label(c) for c in col if str(c)) for col in out.columns]
    else:
        out.columns = [_label(c) for c in out.columns]
    named = any(n is not None for n in out.index.names)
    out = out.reset_index() if named else out.reset_index(drop=True)
    out.columns = [str(c) for c in out.columns]
    return out


def header(name: str) -> str:
    """A column name as a header cell: a line may break after each ``_`` (``<wbr>``), so a
    long name such as ``mean_abs_ratio_error`` wraps between its words, never inside one; the
    underscores escaped, so that ``_build/calibration_sets`` is not read as emphasis."""
    return str(name).replace("|", "\\|").replace("_", "\\_<wbr>")  # \_: not emphasis


def markdown_rows(frame: pd.DataFrame, digits: int = 3, percent=PERCENT) -> str:
    """The GitHub table of ``frame`` (already :func:`flat`); numbers right-aligned."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    head = "| " + " | ".join(header(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    rows = ["| " + " | ".join(_cell(v, c, digits, percent) for c, v in zip(frame.columns, r))
            + " |" for r in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def table(frame: pd.DataFrame, digits: int = 3, top: int | None = None, csv: str | None = None,
          percent=PERCENT, tables_dir: Path | None = None) -> Markdown:
    """``frame`` as a markdown table (see the module doc). ``top`` rows at most; when the table
    is longer and ``csv`` names it, the whole table is written to ``tables_dir/<csv>.csv``
    (default :func:`default_tables_dir`, full precision) and linked (:func:`csv_link`); without
    ``csv`` the rows left out are counted."""
    t = flat(frame)
    shown = t if top is None or len(t) <= top else t.head(top)
    text = markdown_rows(shown, digits, percent)
    if len(shown) < len(t):
        note = f"\n\nThe first {len(shown)} of {len(t)} rows."
        if csv:
            note += f" The whole table: {csv_link(_write(t, csv, tables_dir))}."
        text += note
    return Markdown(text)


def download(frame: pd.DataFrame, name: str, what: str, tables_dir: Path | None = None
             ) -> Markdown:
    """Write ``frame`` (:func:`flat`) to ``tables_dir/<name>.csv`` (default
    :func:`default_tables_dir`) and return a line linking it (:func:`csv_link`):
    "``what``: [name.csv](../../_static/tables/name.csv) (N rows)" in the book."""
    t = flat(frame)
    return Markdown(f"{what}: {csv_link(_write(t, name, tables_dir))} ({len(t)} rows).")


def sentences(lines) -> Markdown:
    """Sentences (a list of strings) as one markdown list: what a chapter shows."""
    items = [s for s in lines if s]
    return Markdown("\n".join(f"- {s}" for s in items) if items else "Nothing cached to sum up.")
