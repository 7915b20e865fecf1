"""The one place that makes a backend for a model name (loaded lazily, on first use)."""
from __future__ import annotations


def lazy_backend(model: str, batch_size: int = 16):
    """A zero-argument factory that loads ``model`` on first call and then reuses it."""
    holder = {}

    def get():
        if "b" not in holder:
            from routelib.models.backend import TransformersBackend
            holder["b"] = TransformersBackend.from_registry(model, batch_size=batch_size)
        return holder["b"]
    return get
