"""The one place that makes a backend for a model reference (loaded lazily, on first use)."""
from __future__ import annotations


def lazy_backend(model, batch_size: int = 16):
    """A zero-argument factory that loads ``model`` on first call and then reuses it. ``model``
    is any reference :func:`routelib.models.registry.resolve` accepts (a registered name, a hub
    id ``org/name[@revision]``, a local directory, a ``.gguf`` file); it is resolved here, so an
    unknown model fails at once, not when the model is first needed."""
    from routelib.models import registry
    spec = registry.resolve(model)
    holder = {}

    def get():
        if "b" not in holder:
            from routelib.models.transformers_backend import TransformersBackend
            holder["b"] = TransformersBackend.from_registry(model, batch_size=batch_size)
        return holder["b"]
    get.spec = spec
    return get
