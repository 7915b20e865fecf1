"""What the in-process backends and the endpoint SLM do with a Hugging Face tokenizer, written
once: the chat prompt, token ids with the special tokens added once, a log-likelihood request
split into context and continuation ids, and a generation's ids cut at a stop string.

:class:`~routelib.models.transformers_backend.TransformersBackend` and
:class:`~routelib.models.vllm_backend.VLLMBackend` must tokenize identically (their parity tests
compare the scores), so both call these; the endpoint SLM renders its chat template here too.
"""
from __future__ import annotations

from typing import Sequence

from routelib.models.backend import cut_at_stop


def chat_prompt(tok, user: str) -> str:
    """The prompt text up to the assistant's answer for one user message (the tokenizer's chat
    template)."""
    return tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                   add_generation_prompt=True)


def encode(tok, text: str) -> list[int]:
    """Token ids; the tokenizer's special tokens (e.g. Gemma's or Llama's BOS) are added unless
    the text already starts with them, as chat-template output does."""
    bos = tok.bos_token
    return tok(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def split_tokens(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The ids of ``context`` and of ``continuation`` after it: the tail of the whole text's
    ids when the context's ids are its prefix, else (tokenization merged across the boundary)
    the continuation encoded on its own, without special tokens."""
    ctx = encode(tok, context)
    whole = encode(tok, context + continuation)
    if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
        return ctx, whole[len(ctx):]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError(f"empty continuation for context ending {context[-40:]!r}")
    return ctx, cont


def cut_ids_at_stop(tok, ids: Sequence[int], stop: Sequence[str]) -> tuple[str, int | None]:
    """The decoded text of a generation's ``ids`` before the earliest ``stop`` string, and how
    many leading ids that text keeps (those whose decoding fits in it); ``None`` when no stop
    string occurs (every id is kept)."""
    text, stopped = cut_at_stop(tok.decode(ids, skip_special_tokens=True), stop)
    if not stopped:
        return text, None
    keep = 0
    while keep < len(ids) and \
            len(tok.decode(ids[:keep + 1], skip_special_tokens=True)) <= len(text):
        keep += 1
    return text, keep
