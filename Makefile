# Two commands do all the set-up: `make test` and `make demo` create .venv when missing,
# install torch==2.13.0 first (the CPU wheel) and then the project with its extras.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.argos-installed

.PHONY: install test demo benchmark clean

$(STAMP): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[dev,sim,space]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest -q tests

demo: $(STAMP)
	$(PYTHON) examples/demo.py --output_dir outputs/demo

benchmark: $(STAMP)
	$(PYTHON) benchmarks/benchmark_world_model.py

clean:
	rm -rf $(VENV) outputs
