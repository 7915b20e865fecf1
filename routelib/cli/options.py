"""The options the commands share, defined once: names, types (each checked before anything
runs), defaults from :mod:`routelib.config`, help text.

Naming: ``--model`` is the model a command runs or reads; ``--slm`` / ``--llm`` appear where a
command takes both tiers (``routing``, ``findings``, ``route``, ``judge``). ``--dataset``,
``--split``, ``--limit`` and ``--source`` mean the same everywhere. The endpoint options of an
OpenAI-compatible server (:func:`add_endpoint`) exist once, with a prefix per tier
(``--llm-base-url``, ``--judge-base-url``).
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from routelib import config
from routelib.errors import RoutelibError


class CliError(RoutelibError, ValueError):
    """A command-line input is wrong; the message names the option and what to do."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``routelib CMD: error: ... (see ... --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} "
                     f"(see `{self.prog} --help`)\n")


# ---- value types: each raises an argparse error naming the option ---------------------------
def _number(kind, text: str, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(int, text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def count(text: str) -> int:
    """An integer >= 0 (``--limit 0`` means all items)."""
    value = _number(int, text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    return _number(float, text, "a finite number")


def positive_float(text: str) -> float:
    value = _number(float, text, "a number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value:g}")
    return value


def ratio(text: str) -> float:
    value = _number(float, text, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value:g}")
    return value


def fraction(text: str) -> float:
    """A share in (0, 1]."""
    value = _number(float, text, "a number in (0, 1]")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value:g}")
    return value


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no file {text!r}")
    return text


def existing_dir(text: str) -> str:
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"no directory {text!r}")
    return text


def output_file(text: str) -> str:
    """A file to write: its directory must exist (checked before any work starts)."""
    parent = Path(text).expanduser().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory {str(parent)!r} of {text!r} does not "
                                         "exist; create it first")
    return text


def mapping(text: str) -> tuple[str, str]:
    """``routelib_column=file_column``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected routelib_column=file_column, got {text!r}")
    return key.strip(), value.strip()


# ---- option groups --------------------------------------------------------------------------
def alias(p, old: str, dest: str, **kw) -> None:
    """An old spelling of an option, accepted but not shown in ``--help``."""
    p.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw)


def add_models(p, default, what: str = "model(s) to run", many: bool = True) -> None:
    p.add_argument("--model", nargs="+" if many else None,
                   default=list(default) if many else default,
                   help=f"{what} (`routelib models` lists the registered ones; default: "
                        f"{' '.join(default) if many else default})")


def add_datasets(p, what: str = "dataset(s)") -> None:
    p.add_argument("--dataset", nargs="+", default=["all"],
                   help=f"{what} or 'all' (default; `routelib datasets` lists them)")


def add_limit(p, default: int = config.LIMIT, what: str = "evaluation items per dataset") -> None:
    p.add_argument("--limit", type=count, default=default,
                   help=f"{what}, a fixed seed-{config.SEED} subsample (default {default}, the "
                        "reference run's; 0 = all)")


def add_split(p) -> None:
    p.add_argument("--split", default="eval",
                   help="'eval' (default), 'train' (train/dev split, or the carved-out part of an "
                        "eval-only dataset) or a physical split name")


def add_source(p) -> None:
    p.add_argument("--source", default="local", choices=("local", "hub"),
                   help="read the datasets from local JSONL (default; $ROUTELIB_DATA_DIR or "
                        "--data-dir) or from the Hugging Face hub")


def add_batch_size(p, what: str = "sequences per forward pass") -> None:
    p.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE,
                   help=f"{what} (default {config.BATCH_SIZE})")


def add_train_limit(p) -> None:
    p.add_argument("--train-limit", type=count, default=config.TRAIN_LIMIT,
                   help=f"train-split items per dataset the probes learn from (default "
                        f"{config.TRAIN_LIMIT}; 0 = all)")


def add_markdown(p, what: str) -> None:
    p.add_argument("--markdown", type=output_file, help=f"write {what} as markdown to this file")


def add_endpoint(p, tier: str, overrides: str, title: str) -> None:
    """``--{tier}-base-url``, ``--{tier}-model`` and the request options of an OpenAI-compatible
    endpoint (:class:`routelib.models.openai_backend.OpenAIBackend`)."""
    g = p.add_argument_group(f"{title} at an OpenAI-compatible endpoint")
    g.add_argument(f"--{tier}-base-url", metavar="URL",
                   help=f"OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (overrides "
                        f"{overrides})")
    g.add_argument(f"--{tier}-model", default=config.ENDPOINT_MODEL, metavar="NAME",
                   help=f"model name at the endpoint (default {config.ENDPOINT_MODEL})")
    g.add_argument("--api-key-env", default=config.ENDPOINT_KEY_ENV, metavar="VAR",
                   help="environment variable holding the API key, never printed or stored "
                        f"(default {config.ENDPOINT_KEY_ENV}; any placeholder value for a server "
                        "without auth)")
    g.add_argument("--timeout", type=positive_float, default=config.ENDPOINT_TIMEOUT_S,
                   metavar="SECONDS",
                   help=f"per request (default {config.ENDPOINT_TIMEOUT_S:g})")
    g.add_argument("--retries", type=count, default=config.ENDPOINT_RETRIES,
                   help="retries on 408/409/429/5xx, timeouts and connection errors, with "
                        f"exponential backoff (default {config.ENDPOINT_RETRIES})")
    g.add_argument("--concurrency", type=positive_int, default=config.ENDPOINT_CONCURRENCY,
                   help=f"requests in flight at most (default {config.ENDPOINT_CONCURRENCY})")


def endpoint_backend(args, tier: str, name: str | None = None):
    """The :class:`OpenAIBackend` of ``--{tier}-base-url``, or None when it is not given."""
    url = getattr(args, f"{tier}_base_url")
    if not url:
        return None
    from routelib.models.openai_backend import OpenAIBackend
    return OpenAIBackend(getattr(args, f"{tier}_model"), base_url=url,
                         api_key_env=args.api_key_env, timeout=args.timeout,
                         max_retries=args.retries, max_concurrency=args.concurrency, name=name)


def add_engine(p) -> None:
    """``--engine`` and the vLLM scale options (:class:`routelib.models.vllm_backend.EngineOptions`)."""
    g = p.add_argument_group("engine (docs/engines.md)")
    g.add_argument("--engine", choices=("transformers", "vllm"), default="transformers",
                   help="run the model with Hugging Face transformers (default) or vLLM's offline "
                        "engine (the vllm environment: make setup-vllm); vLLM results are cached "
                        "apart and the table is saved as <model>-vllm")
    g.add_argument("--tensor-parallel-size", type=positive_int, default=1, metavar="N",
                   help="vLLM: GPUs one model is split over (default 1)")
    g.add_argument("--gpu-memory-utilization", type=ratio, metavar="F",
                   help="vLLM: share of each GPU's memory the engine may take (vLLM's default "
                        "0.9)")
    g.add_argument("--max-num-seqs", type=positive_int, metavar="N",
                   help="vLLM: sequences in one engine step at most")
    g.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                   help="vLLM: weights and activations (default bfloat16 on CUDA, float32 on CPU)")


def engine_backend(args, model: str):
    """The :class:`VLLMBackend` of ``--engine vllm`` (the engine starts now), else None."""
    if getattr(args, "engine", "transformers") != "vllm":
        return None
    from routelib.models.vllm_backend import VLLMBackend
    return VLLMBackend.from_registry(model, tensor_parallel_size=args.tensor_parallel_size,
                                     gpu_memory_utilization=args.gpu_memory_utilization,
                                     max_num_seqs=args.max_num_seqs, dtype=args.dtype)


def add_slm_endpoint(p, overrides: str) -> None:
    """``--slm-base-url``, ``--slm-model``, ``--slm-tokenizer``, ``--slm-api-key-env``: the SLM
    served by an OpenAI-compatible server instead of run in process
    (:class:`routelib.models.endpoint_slm.EndpointSLMBackend`; docs/engines.md says which
    methods each server kind supports). Timeout, retries and concurrency: the tier's shared
    options where the command has them, else the SLM defaults."""
    g = p.add_argument_group("the SLM at an OpenAI-compatible endpoint (vllm serve, llama.cpp)")
    g.add_argument("--slm-base-url", metavar="URL",
                   help=f"the server of the SLM, e.g. http://127.0.0.1:8001/v1 ({overrides} "
                        "then names the SLM: its answer styles and calibration set)")
    g.add_argument("--slm-model", metavar="NAME",
                   help=f"model name at the SLM server (default: the {overrides} name)")
    g.add_argument("--slm-tokenizer", metavar="DIR",
                   help="a local tokenizer of the served model: chat templates are rendered here "
                        "and sent as raw text (lets p(True) and option scoring follow a chat "
                        "answer)")
    g.add_argument("--slm-api-key-env", metavar="VAR",
                   help="environment variable holding the SLM server's key (default: none, a "
                        "local server without auth)")


def slm_endpoint_backend(args, name: str):
    """The :class:`EndpointSLMBackend` of ``--slm-base-url`` (named ``name``), or None."""
    url = getattr(args, "slm_base_url", None)
    if not url:
        return None
    from routelib.models.endpoint_slm import EndpointSLMBackend, SLMEndpointSettings
    if args.slm_api_key_env and not os.environ.get(args.slm_api_key_env):
        raise CliError(f"--slm-api-key-env: the environment variable {args.slm_api_key_env} is "
                       "not set")
    d = SLMEndpointSettings()
    s = SLMEndpointSettings(api_key_env=args.slm_api_key_env,
                            timeout=getattr(args, "timeout", d.timeout),
                            max_retries=getattr(args, "retries", d.max_retries),
                            max_concurrency=getattr(args, "concurrency", d.max_concurrency))
    return EndpointSLMBackend(url, args.slm_model or name, name=name,
                              tokenizer=args.slm_tokenizer, settings=s)


def check_slm_endpoint(args, methods) -> None:
    """Before anything runs: ``--slm-base-url`` is not asked for what no server gives."""
    from routelib.uq import methods as uq
    probes = [m for m in methods if m in uq.PROBE_METHODS]
    if getattr(args, "slm_base_url", None) and probes:
        raise CliError(f"--slm-base-url: method {probes[0]} needs the SLM's hidden states, which "
                       "an OpenAI-compatible server does not expose; run the probe methods with "
                       "the model in process (without --slm-base-url)")


def check_endpoint(args, tier: str) -> None:
    """Before anything runs: the key variable of ``--{tier}-base-url`` is set."""
    if getattr(args, f"{tier}_base_url") and not os.environ.get(args.api_key_env):
        raise CliError(f"--{tier}-base-url: the environment variable {args.api_key_env} (named "
                       f"by --api-key-env) is not set; export {args.api_key_env}=<key> (any "
                       "placeholder for a server without auth)")


def check_methods(names, option: str) -> list[str]:
    """Validate UQ method names (``all``: every method)."""
    from routelib.uq import methods as uq
    names = list(uq.METHODS) if list(names) == ["all"] else list(names)
    unknown = [m for m in names if m not in uq.METHODS]
    if unknown:
        raise CliError(f"{option}: UQ method {unknown[0]!r} is not known; known: "
                       f"{', '.join(uq.METHODS)}")
    return names


def check_models(names) -> None:
    """Every model name resolves (the registry's own one-line error otherwise)."""
    from routelib.models import registry as models
    for name in [names] if isinstance(names, str) else names:
        models.get_spec(name)


def limit_arg(args) -> int | None:
    """``--limit`` as routelib's functions take it (0 -> None: all items)."""
    return args.limit or None
