"""What routelib knows: ``models``, ``datasets``."""
from __future__ import annotations


def cmd_models(args) -> int:
    from routelib.models import registry as models
    for name, s in models.MODELS.items():
        where = "embedded GGUF" if s.embedded else s.hub_id
        print(f"{name:20} {s.role:4} {s.display:50} {where}")
    return 0


def cmd_datasets(args) -> int:
    from routelib import data
    for name, s in data.DATASETS.items():
        train = s.train_split or f"(carved {data.HOLDOUT_FRACTION:.0%} of {s.eval_split})"
        print(f"{name:14} {s.type:10} {s.domain:16} eval={s.eval_split:11} train={train}")
    return 0


def add(sub) -> None:
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list datasets and splits").set_defaults(func=cmd_datasets)
