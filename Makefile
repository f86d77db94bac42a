# Two commands do everything: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DATA   ?= $(if $(DIGITKIT_DATA),$(DIGITKIT_DATA),../shared/data/mnist)
OUT    ?= runs/demo
PYTEST_ARGS ?=

.PHONY: venv install demo test test-slow lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[train,dev]"
	touch $@

venv install: $(VENV)/.installed

# The main job: train -> convert (int8, float32) -> verify -> bench -> classify -> $(OUT)/report.md.
# Re-running reuses the finished stages in $(OUT).
demo: $(VENV)/.installed
	$(VENV)/bin/digitkit pipeline --out $(OUT) --data-dir $(DATA)

# The default suite: fast synthetic tests (the slow real-data runs are `make test-slow`).
test: $(VENV)/.installed
	$(VENV)/bin/ruff check toolkit converters runtime tests benchmarks src pi
	DIGITKIT_DATA=$(DATA) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	DIGITKIT_DATA=$(DATA) $(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check toolkit converters runtime tests benchmarks src pi

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# tflite-runtime 2.14 (older Raspberry Pi OS) must give the same predictions as ai-edge-litert on the whole
# test set. It needs numpy<2, so it runs in its own venv (.venv-tflite-runtime), built on first use.
COMPAT_MODEL ?= $(OUT)/int8.tflite
.PHONY: compat
compat: $(VENV)/.installed
	@test -f $(COMPAT_MODEL) || $(VENV)/bin/digitkit convert $(OUT)/float.keras --out $(COMPAT_MODEL) --data-dir $(DATA)
	bash benchmarks/compat_tflite_runtime.sh $(COMPAT_MODEL) $(DATA)

# The pretrained int8 model shipped inside the package (runtime/models/), made by the project's own training
# (default settings, seed 0) and conversion (default int8, gate 0.3 pp). The runtime metadata is embedded in the
# .tflite; its record FILE.tflite.json (report, provenance and the training record) goes beside it.
SHIPPED     := runtime/models/digitkit_seed_int8.tflite
MODEL_FLOAT ?= runs/model/float.keras
.PHONY: model
$(MODEL_FLOAT):
	$(VENV)/bin/digitkit train --data-dir $(DATA) --out $(MODEL_FLOAT) --seed 0
model: $(VENV)/.installed $(MODEL_FLOAT)
	$(VENV)/bin/digitkit convert $(MODEL_FLOAT) --out $(SHIPPED) --data-dir $(DATA)
	@echo "now put the new sha256 in digitkit.runtime.modelcheck.TRUSTED_SHA256: $$(sha256sum $(SHIPPED) | cut -c1-64)"

# The browser test of `digitkit camera --serve` (tests/runtime/test_server.py) drives real headless
# Chromium; without it that test is skipped with the reason. Debian/Ubuntu, as root.
.PHONY: browser-deps
browser-deps:
	apt-get update && apt-get install -y chromium chromium-driver

# The runtime on emulated arm64 (Raspberry Pi 3 / 4 / 5 CPUs) compared with this x86-64 host: root only; the
# Debian roots live in .pi/ and are reused (see "Raspberry Pi check" in the README). PI_DISTROS="bookworm trixie"
# adds Debian 13 (Python 3.13); PI_PROFILES and PI_TESTS choose a subset.
.PHONY: test-pi
test-pi: $(VENV)/.installed
	DIGITKIT_DATA=$(DATA) bash pi/check.sh
