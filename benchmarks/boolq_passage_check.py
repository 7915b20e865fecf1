"""How much does the BoolQ probe lose because it trains on passage-less questions?

The local BoolQ train split has no passages (``train_nopassage``), while the evaluation prompts
show the passage, so the in-domain probe learns from hidden states of prompts unlike the ones it
scores. This script measures that: it answers the same 200 evaluation items *without* their
passage (a dataset folder ``boolq_nopassage``: the validation file with ``context`` set to
null, so the seed-50 subsample picks the same items), reads the hidden states, and scores both
versions with the same stored trained probe (learned from ``--train-limit`` passage-less train
items). Matched prompts (passage-less train, passage-less eval) against mismatched ones
(passage-less train, eval with passage): AUROC of each, with the SLM's accuracy on each.

    ROUTELIB_DATA_DIR=../shared/datasets python benchmarks/boolq_passage_check.py smollm2-135m

Answers and hidden states of ``boolq_nopassage`` are cached like any dataset's (under
``data_cache/answers/<slm>/boolq_nopassage/`` and ``data_cache/stats/...``), so a second run
loads no model. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

NAME = "boolq_nopassage"


def make_root(src: Path, root: Path) -> Path:
    """``<root>/boolq_nopassage/``: BoolQ validation without passages, same order and ids."""
    folder = root / NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(
        "type: true_false\ndomain: commonsense\neval_split: validation\n"
        "train_split: train_nopassage\n"  # a train split: 'eval' is then the whole file
        "note: BoolQ validation with the passage removed (benchmarks/boolq_passage_check.py)\n")
    train = (src / "boolq" / "train_nopassage.jsonl").read_text().splitlines()
    (folder / "train_nopassage.jsonl").write_text(
        "\n".join(json.dumps({k: v for k, v in json.loads(x).items() if k != "dataset"})
                  for x in train if x.strip()) + "\n")
    lines = []
    for line in (src / "boolq" / "validation.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            r.pop("dataset", None)
            r["context"] = None
            lines.append(json.dumps(r))
    (folder / "validation.jsonl").write_text("\n".join(lines) + "\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--train-limit", type=int, default=None)
    args = ap.parse_args()
    src = Path(os.environ["ROUTELIB_DATA_DIR"])
    from routelib import config
    root = make_root(src, config.cache_dir() / "tmp" / "boolq_check")
    os.environ["ROUTELIB_DATA_PATH"] = str(root)
    from routelib.uq import confidence, metrics, stats as S
    from routelib.uq.statcache import item_stats
    train_limit = args.train_limit or confidence.PROBE_TRAIN_LIMIT
    feats = confidence.train_features(args.model, ["boolq"], train_limit, progress=False)
    t0 = time.time()
    out = {}
    for ds in ("boolq", NAME):
        _, rows, st = item_stats(args.model, ds, ["trained_probe"], limit=args.limit,
                                 progress=False)
        model_id = str(rows["model_id"].iloc[0])
        probe = confidence.stored_probe(args.model, model_id, "trained_probe", "boolq", feats)
        X = np.stack([d[S.HIDDEN_STATE] for d in st])
        y = rows["correct"].astype(int).to_numpy()
        lo_hi = metrics.auroc_with_ci(probe.predict_proba(X)[:, 1], y)
        out[ds] = (len(y), y.mean(), lo_hi)
    print(f"{args.model}: BoolQ trained probe, {len(feats['boolq'][1])} passage-less train "
          f"items, {time.time() - t0:.0f} s")
    for ds, (n, acc, auc) in out.items():
        what = "eval with passage (mismatched)" if ds == "boolq" else "eval without passage"
        ci = "" if auc.ci_low is None else f" [{auc.ci_low:.3f}, {auc.ci_high:.3f}]"
        print(f"  {what}: N={n}, SLM accuracy {acc:.3f} ({auc.n_correct} correct), "
              f"probe AUROC {auc.value:.3f}{ci}")


if __name__ == "__main__":
    main()
