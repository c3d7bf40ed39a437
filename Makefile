# Quick start:  make demo   (base runtime install, predicts the bundled samples, streams a two-speaker clip)
#               make test   (dev install with every extra: lint, type check, then the whole test suite)
#               make test-fast  (the inner loop: no slow, shared-data or browser tests)
PYTHON ?= python3
DEV_VENV := .venv
EDGE_VENV := .venv-edge
PIP_FLAGS := --disable-pip-version-check -q

# The base install is a copy (not editable), so it is redone whenever the runtime or the models change.
EDGE_SOURCES := $(shell find edge models -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: demo test test-fast lint typecheck dev edge models bench pi-check clean

$(DEV_VENV)/.installed: pyproject.toml
	test -d $(DEV_VENV) || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(DEV_VENV)/bin/pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

$(EDGE_VENV)/.installed: pyproject.toml $(EDGE_SOURCES)
	test -d $(EDGE_VENV) || $(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	# The runtime alone; the microphone extra only where PortAudio is installed.
	if ldconfig -p 2>/dev/null | grep -q libportaudio; then \
		$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) '.[mic]'; \
	else \
		$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) .; \
		echo "note: PortAudio not found, 'gvd listen' from a microphone needs: apt install libportaudio2"; \
	fi
	touch $@

dev: $(DEV_VENV)/.installed
edge: $(EDGE_VENV)/.installed

demo: $(EDGE_VENV)/.installed
	$(EDGE_VENV)/bin/gvd models
	$(EDGE_VENV)/bin/gvd predict models/samples/
	$(EDGE_VENV)/bin/gvd listen --input models/samples/two_speakers.wav --fast

# CI runs 'make test': any lint or type finding fails it before a test runs.
test: lint typecheck
	$(DEV_VENV)/bin/python -m pytest -q

test-fast: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m pytest -q -x -m "not slow and not shared and not browser"

lint: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m ruff check .

# The runtime core (files and settings in pyproject.toml [tool.mypy]).
typecheck: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m mypy

# Non-speech for the models' speech output: installed game music and sound effects (never the three
# packages the independent evaluation uses: sound-theme-freedesktop, asc-music, drascula-music).
# The list is the packages of train/nonspeech.py's DEBIAN_SOURCES (a test keeps the two equal).
NONSPEECH_PACKAGES := hyperrogue-music fb-music-high heroes-sound-effects heroes-sound-tracks \
	colobot-common-sounds hydrogen-drumkits deepin-sound-theme lomiri-sounds lincity-ng-data warzone2100-music \
	extremetuxracer-data torus-trooper-data pingus-data tuxpaint-stamps-default

# Rebuild the shipped models from ../shared/data and ../shared/nonspeech: features ~17 min (cold cache),
# the three models ~6 min, leave-one-corpus-out 11 folds x 3 cells ~45 min on 2 cores (measured 2026-12-01).
models: $(DEV_VENV)/.installed
	apt-get install -y -qq $(NONSPEECH_PACKAGES) >/dev/null || echo "note: without $(NONSPEECH_PACKAGES) the speech output trains on synthetic non-speech only"
	$(DEV_VENV)/bin/python -m train.release --data ../shared/data --nonspeech ../shared/nonspeech --out models --loco

bench: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/gvd bench

pi-check:
	bash benchmarks/pi_check.sh

clean:
	rm -rf $(DEV_VENV) $(EDGE_VENV) build dist *.egg-info
