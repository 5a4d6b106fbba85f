# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use and installs tensorflow-cpu (never `tensorflow` too).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow
export PYTHONHASHSEED ?= 0

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[tensorflow-cpu,test,examples]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/depth_demo.py

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/callback_overhead.py
	$(PY) benchmarks/depth.py
	$(PY) benchmarks/training.py

clean:
	rm -rf $(VENV) runs build *.egg-info
