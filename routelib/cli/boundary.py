"""The command line's error boundary: which exceptions become one line on stderr (exit 2).

- every :class:`routelib.errors.RoutelibError` (its message says what to do);
- a ``KeyError`` routelib raises on purpose about an unknown name (its message is a sentence);
- the Hugging Face hub out of reach: an ``OSError`` (``ConnectionError`` included) raised
  inside ``datasets``, ``huggingface_hub`` or ``transformers``;
- a corrupt or truncated parquet file (pyarrow names it): which file to delete;
- a file that is not UTF-8 where routelib reads text: which file and line.

Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path

from routelib.errors import RoutelibError

HUB_PACKAGES = ("datasets", "huggingface_hub", "transformers", "requests", "urllib3", "httpx")
_UNREACHABLE = re.compile(r"reach|connect|offline|resolve|network|timed? ?out|max retries",
                          re.I)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _packages(exc: BaseException) -> set[str]:
    """Top-level packages of the frames the exception passed through (and its causes)."""
    out = set()
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            parts = Path(frame.filename).parts
            if "site-packages" in parts:
                i = parts.index("site-packages")
                if i + 1 < len(parts):
                    out.add(parts[i + 1].removesuffix(".py"))
            elif "routelib" in parts:
                out.add("routelib")
        out.add(type(exc).__module__.split(".")[0])
        exc = exc.__cause__ or exc.__context__
    return out


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def hub_message(exc: BaseException) -> str | None:
    if not isinstance(exc, OSError) or not (_packages(exc) & set(HUB_PACKAGES)):
        return None
    text = one_line(str(exc))
    if isinstance(exc, ConnectionError) or _UNREACHABLE.search(text) or \
            any(isinstance(e, (ConnectionError, TimeoutError)) for e in _chain(exc)):
        first = text.split(". ")[0][:200]
        local = os.environ.get("ROUTELIB_DATA_DIR") or "<folder of <dataset>/<split>.jsonl>"
        return (f"the Hugging Face hub is not reachable ({first}); for datasets use --source "
                f"local with ROUTELIB_DATA_DIR={local} (or --data-dir), for models an embedded "
                "one (`routelib models`) or one already in the Hugging Face cache "
                "(HF_HUB_OFFLINE=1)")
    return f"Hugging Face hub: {text[:300]}"


def _arrow_message(exc: BaseException) -> str | None:
    if not any(type(e).__module__.startswith("pyarrow") for e in _chain(exc)):
        return None
    text = one_line(str(exc))
    m = re.search(r"'([^']+\.parquet)'", text)
    if not m:
        return None
    path = m.group(1)
    what = text.split(": ", 1)[-1] if ": " in text else text
    return (f"{path}: cannot be read ({what[:200]}); the file is corrupt or truncated: delete it "
            "and rerun to recompute it")


def _path_in_frames(exc: BaseException) -> Path | None:
    """The ``path`` a routelib function was reading when ``exc`` was raised (innermost first)."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        frame = tb.tb_frame
        if "routelib" in Path(frame.f_code.co_filename).parts:
            value = frame.f_locals.get("path")
            if isinstance(value, (str, Path)) and Path(value).is_file():
                found = Path(value)
        tb = tb.tb_next
    return found


def _utf8_message(exc: UnicodeDecodeError) -> str | None:
    path = _path_in_frames(exc)
    if path is None:
        return None
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return (f"{path}:{lineno}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column "
                    f"{e.start + 1}); save the file as UTF-8")
    return f"{path}: not valid UTF-8 ({one_line(exc)}); save the file as UTF-8"


def clear_progress_bars() -> None:
    """Remove progress bars an error left open, so the error line stands alone."""
    tqdm = getattr(sys.modules.get("tqdm.std"), "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", None) or ()):
        bar.leave = False
        bar.close()


def explain(exc: BaseException) -> str | None:
    """The one-line message for ``exc``, or None when it is a bug (keep the traceback)."""
    if isinstance(exc, RoutelibError):
        return one_line(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) \
            and " " in exc.args[0].strip() and "routelib" in _packages(exc):
        return one_line(exc.args[0])  # e.g. "UQ method 'x' is not known; known: ..."
    if isinstance(exc, UnicodeDecodeError):
        return _utf8_message(exc)
    return hub_message(exc) or _arrow_message(exc)
