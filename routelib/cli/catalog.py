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
    reg = data.registry()
    for name, s in reg.items():
        train = s.train_split or f"(carved {data.HOLDOUT_FRACTION:.0%} of {s.eval_split})"
        where = "" if s.paper else f" ({s.folder})"
        print(f"{name:14} {s.type:10} {s.domain:16} eval={s.eval_split:11} train={train}{where}")
    for shadowed in getattr(reg, "shadowed", ()):
        print(f"(not used, an earlier root has the same name: {shadowed})")
    return 0


def add(sub) -> None:
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list datasets and splits").set_defaults(func=cmd_datasets)
