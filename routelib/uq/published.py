"""Published per-item outputs of the paper's kind of models: MMLU-Pro, 12,032 items x 17 models.

From ``Linwei94/LLM-Calibration-Study`` (a fork of ``openai/simple-evals``; MIT, copyright
OpenAI) at :data:`UPSTREAM_COMMIT`: one zero-shot chain-of-thought response per item, carrying
three signals. Read from :func:`published_dir` (the ``directory`` argument, else
``ROUTELIB_PUBLISHED_DIR``, else ``../shared/published`` beside the checkout when it exists, else
``<cache>/published``) as ``mmlu_pro/<file>.csv``; ``download=True`` fetches what is missing
from the upstream repository at the pinned commit (:func:`fetch`).

Checks on every read: each file's items line up with the reference :data:`REFERENCE` (pinned by
its sha256): the category + gold letter sequence must be identical row by row, else
:class:`AlignmentError` naming the file and the first mismatching row (a shuffled or truncated
file); then its sha256 must equal :data:`SHA256`, else :class:`ChecksumError`.

Tables (:data:`TABLE_COLUMNS` = ``routelib.columns.CONFIDENCE_COLUMNS``): ``slm`` the short
name (:data:`MODELS`); ``model_id`` name + ``@`` + the file's sha256[:12]; ``dataset`` the
category slugified (``computer_science``): the 14 categories play the paper's 14 datasets;
``item_id`` ``mmlu_pro-<row:05d>`` (no question id was published; the rows are the same items in
every file); ``correct`` = ``extracted_answer == correct_answer`` (no parsed answer is wrong).
Methods (:data:`SIGNALS`): the number stated in the response -> ``verbal_1s``;
``logit_perplexity_confidence``, which is mean(exp(token logprob)) -> ``avg_token_prob``; a
grader model's decisiveness score -> ``linguistic_judge`` (not one of the paper's 8 methods).
Discards (``discarded``, NaN ``confidence``, ``discard_reason``) are kept and counted: empty,
unparsable, or outside [0, 1] (the judge's score is the mean of every "Confidence score: x" in
its reply: 0.95 and 95 give 47.975; 124 such items in the 17 files). LLM tables: like
``routelib.study.llm_answers``. Untestable here: p(True), verbalization-2s, Jaccard degree and
the probes (no follow-up prompts, samples or hidden states were published).
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from routelib import config
from routelib.columns import (CONF_COLUMNS, CONFIDENCE, CONFIDENCE_COLUMNS as TABLE_COLUMNS,
                              CORRECT, DATASET, DISCARD_REASON, DISCARDED, ITEM_ID, LLM,
                              LLM_COLUMNS, METHOD, MODEL_ID, SLM)
from routelib.errors import RoutelibError


UPSTREAM_REPO = "Linwei94/LLM-Calibration-Study"
UPSTREAM_COMMIT = "ddc349e31695f3c2f8b8dfb2c3376a720914df55"  # 2025-05-23
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
UPSTREAM_PATH = "results/mmlu_pro_{file}_eval_all_None.csv"
LICENSE_FILE, LICENSE_PATH = "LICENSE.upstream", "LICENSE"
LICENSE = "MIT (copyright OpenAI)"
SUBDIR = "mmlu_pro"
CATEGORIES = ("business", "law", "psychology", "biology", "chemistry", "history", "other",
              "health", "economics", "math", "physics", "computer_science", "philosophy",
              "engineering")  # the datasets of the tables (category slugs), in file order
ENV = "ROUTELIB_PUBLISHED_DIR"

# file name (without .csv) -> sha256, computed from the copy in ../shared/published, which is
# byte-identical to the blobs at UPSTREAM_COMMIT (checked against a clone of the repository)
SHA256 = {
    "Llama-3.2-1B-Instruct": "2bb0449a1d5356b46a10918e9ac8d1092e2c4cdd07ff46e846c736d8c3d9e653",
    "Llama-3.2-3B-Instruct": "324a427db283021599a9767286edb88a6fe110ba021793a4e2d25665b8e1443f",
    "Meta-Llama-3.1-405B-Instruct-Turbo":
        "8be64581be2f13c41a3ea9a384855c5699ae8da4321b40c36ca65547920da665",
    "Meta-Llama-3.1-70B-Instruct-Turbo":
        "d9296c1c50757cd8814e2f41ae8e3a10ae996c4f72a5924404a3bb970cbc5dcc",
    "Meta-Llama-3.1-8B-Instruct-Turbo":
        "427f7a6375226a964a4e7eca0b146289f8910368519ff077395b7fc5d11abd28",
    "Mistral-7B-Instruct-v0.1": "4a31280881385f810b8522c5a5f1ba14a4969dd65124e489f626fc3db03ff2d2",
    "Phi-3-mini-128k-instruct": "581cf40793ddb95994e95633af17c213f388f637216cde760fc384ecb04234f1",
    "Phi-3.5-mini-instruct": "a10f570796edc89e78ff60d07d226a5ee4dfd42d0f95fbeb78bdc4be66231901",
    "Qwen2.5-3B-Instruct": "b451f230b54aa687244abc5d9c468d102dfa10f488ec313b2904ede6e2f7a442",
    "Qwen2.5-7B-Instruct": "c44fd9b33aba93d118d88f3f1ca5de2ba2955105fc7d8cbd03121adfbfc43e4b",
    "Qwen3-1.7B": "1c5a957588f1259770a21fe483175facef17cc9deac49b9891bd3b276f953474",
    "Qwen3-4B": "758d441747edf6b0387b66ca21863a7599bb0a2d062484849a87bf3062461ded",
    "Qwen3-8B": "63fdee9aea65cb1cf49d91994504c7ef5f3b3da8f227004ca6c02c965fc49c97",
    "gemma-2-9b-it": "7da6ed626631b0ae81b3ccbaa07c8e1fb86d36305c45441fcc2558379c65007d",
    "gemma-3-1b-it": "dc5e80e47bf047ca33c81931366979a22b84f081a7db1f98be9b8a9340db6ee2",
    "gpt-4o-2024-08-06": "9b432a72f21f31d1f315376f9240486202acee0dcebe5913cacf55b39f5b6e5a",
    "gpt-4o-mini-2024-07-18": "d0fa862778f618e977ab0c173f9328de04cd192c2d174b321e6ef6de239d66d3",
    LICENSE_FILE: "d831db55645e47ca8e491c5a0e37f1ee744d7b10bf5aa8d50146c795ac0176c0",
}

# the registry: short name -> (upstream file, role, the paper's model it plays or None)
MODELS = {
    "llama-3.2-1b-instruct": ("Llama-3.2-1B-Instruct", "slm", "Llama-3.2-1B-Instruct"),
    "llama-3.2-3b-instruct": ("Llama-3.2-3B-Instruct", "slm", "Llama-3.2-3B-Instruct"),
    "llama-3.1-8b-instruct-turbo": ("Meta-Llama-3.1-8B-Instruct-Turbo", "slm",
                                    "Llama-3.1-8B-Instruct"),
    "phi-3.5-mini-instruct": ("Phi-3.5-mini-instruct", "slm", "Phi-3.5-mini-instruct"),
    "qwen2.5-7b-instruct": ("Qwen2.5-7B-Instruct", "slm", "Qwen2.5-7B-Instruct"),
    # v0.1 stands in for the paper's v0.3
    "mistral-7b-instruct-v0.1": ("Mistral-7B-Instruct-v0.1", "slm", "Mistral-7B-Instruct-v0.3"),
    "llama-3.1-70b-instruct-turbo": ("Meta-Llama-3.1-70B-Instruct-Turbo", "llm",
                                     "Llama-3.1-70B-Instruct"),
    "gpt-4o-mini-2024-07-18": ("gpt-4o-mini-2024-07-18", "llm", "GPT-4o-mini"),
    # published, not among the paper's models
    "phi-3-mini-128k-instruct": ("Phi-3-mini-128k-instruct", "slm", None),
    "qwen2.5-3b-instruct": ("Qwen2.5-3B-Instruct", "slm", None),
    "qwen3-1.7b": ("Qwen3-1.7B", "slm", None),
    "qwen3-4b": ("Qwen3-4B", "slm", None),
    "qwen3-8b": ("Qwen3-8B", "slm", None),
    "gemma-2-9b-it": ("gemma-2-9b-it", "slm", None),
    "gemma-3-1b-it": ("gemma-3-1b-it", "slm", None),
    "llama-3.1-405b-instruct-turbo": ("Meta-Llama-3.1-405B-Instruct-Turbo", "llm", None),
    "gpt-4o-2024-08-06": ("gpt-4o-2024-08-06", "llm", None),
}
SPEC_FIELDS = ("file", "role", "paper")
PAPER_SLMS = tuple(k for k, (_, role, paper) in MODELS.items() if role == "slm" and paper)
PAPER_LLMS = tuple(k for k, (_, role, paper) in MODELS.items() if role == "llm" and paper)
REFERENCE = "gpt-4o-mini-2024-07-18"  # the file every other one is aligned with

SIGNALS = {"verbal_1s": "verbal_numerical_confidence",
           "avg_token_prob": "logit_perplexity_confidence",
           "linguistic_judge": "verbal_linguistic_confidence"}
METHODS = tuple(SIGNALS)
EMPTY_REASON = {"verbal_1s": "no confidence stated in the response",
                "avg_token_prob": "no token log-probabilities",
                "linguistic_judge": "no judge score"}
UNPARSABLE, OUT_OF_RANGE = "unparsable value", "value outside [0, 1]"
FILE_COLUMNS = ("category", "correct_answer", "extracted_answer", *SIGNALS.values())


class PublishedError(RoutelibError, ValueError):
    """The published outputs are missing, unknown or not what was published."""


class ChecksumError(PublishedError):
    """A file's sha256 differs from the pinned one."""


class AlignmentError(PublishedError):
    """A file's items (category + gold, row by row) differ from the reference file's."""


def published_dir(directory: str | Path | None = None) -> Path:
    """The directory holding ``mmlu_pro/`` (module docstring for the order of lookup)."""
    if directory is not None:
        return Path(directory).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    root = next((p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file()),
                None)  # the checkout this module runs from, if any
    shared = root.parent / "shared" / "published" if root is not None else None
    return shared if shared is not None and shared.is_dir() else config.cache_dir() / "published"


def spec(name: str) -> dict:
    """The :data:`MODELS` entry of ``name`` as a dict (:data:`SPEC_FIELDS`), or raises."""
    if name not in MODELS:
        raise PublishedError(f"no published model {name!r}; known: {', '.join(MODELS)}")
    return dict(zip(SPEC_FIELDS, MODELS[name]))


def raw_url(path: str) -> str:
    """The URL of ``path`` in the upstream repository at the pinned commit."""
    return RAW_URL.format(repo=UPSTREAM_REPO, commit=UPSTREAM_COMMIT, path=path)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch(models: Sequence[str] | None = None, directory: str | Path | None = None,
          opener=None, timeout: float = 60.0) -> Path:
    """Download the files of ``models`` (default all) and the licence missing in
    ``<directory>/mmlu_pro/`` from upstream at the pinned commit, each checked against
    :data:`SHA256` before it is written. ``opener(url, timeout=...)`` (default
    ``urllib.request.urlopen``) returns a readable context manager. Returns the directory."""
    root = published_dir(directory)
    opener = opener or urllib.request.urlopen
    files = [spec(n)["file"] for n in (models or MODELS)]
    targets = [(f"{f}.csv", UPSTREAM_PATH.format(file=f)) for f in files]
    for local, path in targets + [(LICENSE_FILE, LICENSE_PATH)]:
        dest = root / SUBDIR / local
        if dest.exists():
            continue
        url = raw_url(path)
        try:
            with opener(url, timeout=timeout) as response:
                body = response.read()
        except (urllib.error.URLError, OSError) as e:
            raise PublishedError(f"could not download {url}: {e}") from e
        got, want = hashlib.sha256(body).hexdigest(), SHA256[local.removesuffix(".csv")]
        if got != want:
            raise ChecksumError(f"{url}: sha256 {got[:12]} is not the pinned {want[:12]}; "
                                "nothing written")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        tmp.write_bytes(body)
        tmp.replace(dest)
    if root == config.cache_dir() / "published" and not (root / ".gitignore").exists():
        (root / ".gitignore").write_text("# downloaded data: never committed\n*\n")
    return root


def _read(name: str, root: Path) -> tuple[pd.DataFrame, str, Path]:
    path = root / SUBDIR / f"{spec(name)['file']}.csv"
    if not path.is_file():
        raise PublishedError(f"{path} not found: set {ENV} to a copy of the published outputs, or "
                             f"pass download=True to fetch them from github.com/{UPSTREAM_REPO} "
                             f"at {UPSTREAM_COMMIT[:12]}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except ValueError as e:  # pandas' ParserError included
        raise PublishedError(f"{path}: not a readable CSV ({' '.join(str(e).split())})") from e
    missing = [c for c in FILE_COLUMNS if c not in frame.columns]
    if missing:
        raise PublishedError(f"{path} lacks column(s) {missing}")
    return frame, sha256_file(path), path


def _items(frame: pd.DataFrame) -> np.ndarray:
    return (frame["category"].str.strip() + " / " + frame["correct_answer"].str.strip()).to_numpy()


def check_aligned(path: Path, items: np.ndarray, reference: np.ndarray) -> None:
    """:class:`AlignmentError` unless ``items`` (category / gold per row) equal ``reference``."""
    n = min(len(items), len(reference))
    diff = np.flatnonzero(items[:n] != reference[:n])
    where = f"(category + gold must match the reference {REFERENCE} row by row)"
    if len(diff):
        i = int(diff[0])
        raise AlignmentError(f"{path.name}: row {i} (line {i + 2}) is {items[i]!r} but the "
                             f"reference has {reference[i]!r} {where}")
    if len(items) != len(reference):
        raise AlignmentError(f"{path.name}: {len(items)} item rows, the reference has "
                             f"{len(reference)}: first mismatching row {n} (line {n + 2}) "
                             f"{where}")


def _check_sha(name: str, path: Path, got: str) -> None:
    want = SHA256[spec(name)["file"]]
    if got != want:
        raise ChecksumError(f"{path}: sha256 {got[:12]} differs from the pinned {want[:12]} "
                            f"(upstream {raw_url(UPSTREAM_PATH.format(file=spec(name)['file']))});"
                            " not the published file: delete it and fetch it again")


def load_files(models: Sequence[str], directory: str | Path | None = None,
               download: bool = False, opener=None) -> dict[str, tuple[pd.DataFrame, str]]:
    """short name -> (raw frame, sha256) of each of ``models``, checked (module docstring)."""
    root = published_dir(directory)
    names = list(dict.fromkeys([REFERENCE, *models]))
    for n in names:
        spec(n)
    if download:
        fetch(names, root, opener)
    ref, ref_sha, ref_path = _read(REFERENCE, root)
    _check_sha(REFERENCE, ref_path, ref_sha)
    reference = _items(ref)
    out = {REFERENCE: (ref, ref_sha)}
    for n in names[1:]:
        frame, sha, path = _read(n, root)
        check_aligned(path, _items(frame), reference)
        _check_sha(n, path, sha)
        out[n] = (frame, sha)
    return {n: out[n] for n in models}


def slug(category: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", category.strip().lower()).strip("_")


def item_ids(n: int) -> np.ndarray:
    return np.array([f"mmlu_pro-{i:05d}" for i in range(n)], dtype=object)


def parse_signal(raw: pd.Series, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(confidence with NaN for discards, discard reason or "") of one signal column."""
    text = raw.astype(str).str.strip()
    value = pd.to_numeric(text, errors="coerce").to_numpy(float)
    empty = (text == "").to_numpy()
    unparsable = ~empty & np.isnan(value)
    out_of_range = ~np.isnan(value) & ~((value >= 0.0) & (value <= 1.0))
    reason = np.select([empty, unparsable, out_of_range],
                       [EMPTY_REASON[method], UNPARSABLE, OUT_OF_RANGE], "").astype(object)
    return np.where(reason == "", value, np.nan), reason


def _check_choice(values, known: Sequence[str], what: str) -> list[str]:
    values = list(known if values is None else ([values] if isinstance(values, str) else values))
    bad = [v for v in values if v not in known]
    if bad:
        raise PublishedError(f"unknown {what} {bad}; known: {', '.join(known)}")
    return values


def _graded(frame: pd.DataFrame) -> pd.DataFrame:
    """dataset, item_id and correctness of each row of a raw file."""
    return pd.DataFrame({DATASET: frame["category"].map(slug).to_numpy(),
                         ITEM_ID: item_ids(len(frame)),
                         CORRECT: (frame["extracted_answer"].str.strip()
                                   == frame["correct_answer"].str.strip()).to_numpy()})


def _tidy(name: str, frame: pd.DataFrame, sha: str, methods: Sequence[str]) -> pd.DataFrame:
    base = _graded(frame).assign(**{SLM: name, MODEL_ID: f"{name}@{sha[:12]}"})
    parts = []
    for m in methods:
        conf, reason = parse_signal(frame[SIGNALS[m]], m)
        parts.append(base.assign(**{METHOD: m, CONFIDENCE: conf, DISCARDED: reason != "",
                                    DISCARD_REASON: reason}))
    return pd.concat(parts, ignore_index=True)[list(TABLE_COLUMNS)]


def _load(names, datasets, directory, download, opener, build) -> pd.DataFrame:
    datasets = _check_choice(datasets, CATEGORIES, "MMLU-Pro category slug(s)")
    files = load_files(names, directory, download, opener)
    out = pd.concat([build(n, *files[n]) for n in names], ignore_index=True)
    out = out[out[DATASET].isin(datasets)].reset_index(drop=True)
    out.attrs["provenance"] = provenance(names)
    return out


def confidence_table(slms: str | Sequence[str] = PAPER_SLMS, methods=None, datasets=None,
                     directory: str | Path | None = None, download: bool = False,
                     opener=None) -> pd.DataFrame:
    """The tidy confidence table (:data:`TABLE_COLUMNS`) of ``slms`` for ``methods`` (default
    all 3) on ``datasets`` (category slugs, default all 14); discards kept and counted."""
    slms = _check_choice(slms, tuple(MODELS), "published model(s)")
    methods = _check_choice(methods, METHODS, "method(s) of the published outputs")
    return _load(slms, datasets, directory, download, opener,
                 lambda n, frame, sha: _tidy(n, frame, sha, methods))


def llm_table(llms: str | Sequence[str] = PAPER_LLMS, datasets=None,
              directory: str | Path | None = None, download: bool = False,
              opener=None) -> pd.DataFrame:
    """Rows (llm, dataset, item_id, correct) of ``llms``, as ``routelib.study.llm_answers``."""
    llms = _check_choice(llms, tuple(MODELS), "published model(s)")
    return _load(llms, datasets, directory, download, opener,
                 lambda n, frame, sha: _graded(frame).assign(**{LLM: n})[list(LLM_COLUMNS)])


def tables(slms: str | Sequence[str] = PAPER_SLMS, llms: str | Sequence[str] = PAPER_LLMS,
           methods=None, datasets=None, directory: str | Path | None = None,
           download: bool = False, opener=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(confidence table, LLM table) for any SLMs and LLMs of :data:`MODELS`."""
    conf = confidence_table(slms, methods, datasets, directory, download, opener)
    return conf, llm_table(llms, datasets, directory, download, opener)


def provenance(models: Sequence[str] | None = None) -> dict:
    """Source, commit, licence and per-file URL and sha256 of ``models`` (default all 17),
    to be carried into every page that uses these outputs."""
    paths = {n: UPSTREAM_PATH.format(file=spec(n)["file"]) for n in (models or MODELS)}
    files = {n: {"path": p, "url": raw_url(p), "sha256": SHA256[spec(n)["file"]]}
             for n, p in paths.items()}
    return {"source": f"github:{UPSTREAM_REPO}",
            "repository": f"https://github.com/{UPSTREAM_REPO}",
            "commit": UPSTREAM_COMMIT, "license": LICENSE,
            "license_url": raw_url(LICENSE_PATH), "license_sha256": SHA256[LICENSE_FILE],
            "dataset": "MMLU-Pro test split (TIGER-Lab/MMLU-Pro), 12032 items, 14 categories",
            "files": files}
