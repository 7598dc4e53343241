# Two commands do all the set-up: `make test` and `make demo` create .venv when missing, install torch==2.13.0 first
# (the CPU wheel) and then the project with its extras, every package at the version pinned in constraints.txt (the
# lock of tested versions), so a new upstream release cannot break a fresh install.
#   make test-latest   the suite against today's newest releases (no lock), in .venv-latest
#   make lock          refresh constraints.txt: newest releases in a fresh .venv-lock, the suite must pass, then freeze
#   (both keep torch at torch==2.13.0: an eager upgrade would otherwise pull a newer torch with its CUDA packages)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.argos-installed
CONSTRAINTS := constraints.txt
TORCH := torch==2.13.0
EXTRAS := .[dev,sim,space]

.PHONY: install browser test test-slow test-latest lock demo demo-large benchmark clean

$(STAMP): setup.py $(CONSTRAINTS)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -c $(CONSTRAINTS) pip
	$(PYTHON) -m pip install --quiet -c $(CONSTRAINTS) $(TORCH)
	$(PYTHON) -m pip install --quiet -c $(CONSTRAINTS) -e "$(EXTRAS)"
	touch $(STAMP)

install: $(STAMP)

# The Space's browser tests drive Debian's headless Chromium; installed here when possible, skipped (with a line
# saying so) where it is not.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "Chromium is not installed and could not be: the browser tests of the Space will be skipped."

test: $(STAMP) browser
	$(PYTHON) -m pytest -q tests

# the slow tests (torch.compile of the model and a training step with inductor), deselected by `make test`
test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow tests

test-latest: browser
	rm -rf .venv-latest && python3 -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet $(TORCH)
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e "$(EXTRAS)" "$(TORCH)"
	.venv-latest/bin/python -m pip list --format=freeze | grep -iE "^(transformers|diffusers|accelerate|datasets|huggingface.hub|gradio)=" || true
	.venv-latest/bin/python -m pytest -q tests

lock: browser
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet $(TORCH)
	.venv-lock/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e "$(EXTRAS)" "$(TORCH)"
	.venv-lock/bin/python -m pytest -q tests
	( echo "# The lock of tested versions: written by \`make lock\` after the suite passed with them. Do not edit by hand."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | sed -e 's/+cpu$$//' | grep -v "^setuptools==\|^wheel==" ) > $(CONSTRAINTS)
	rm -rf .venv-lock

demo: $(STAMP)
	$(PYTHON) examples/demo.py --output_dir outputs/demo

# the same job with 6x the data (about 18 minutes), every sequence teacher-forced with action modulation, latent positions and latents bounded at 3 std
# (docs/model_quality.md: what it measured); the pipeline reads its context clean, as it was trained
demo-large: $(STAMP)
	$(PYTHON) examples/demo.py --output_dir outputs/demo-large --episodes 300 --world_model_steps 2000 --latent_bound 3 \
	    --model_overrides "{prediction_type: gated, action_modulation: true, latent_position_embedding: true}" \
	    --scheduler "{bootstrap_fraction: 0.25, teacher_forcing_probability: 1.0, context_signal_level: 1.0}"

benchmark: $(STAMP)
	$(PYTHON) benchmarks/benchmark_world_model.py

clean:
	rm -rf $(VENV) .venv-latest .venv-lock outputs
