# Two commands on a fresh machine: `make demo` and `make test`.
# Each backend gets its own venv, created on first use:
#   .venv/tensorflow  tensorflow-cpu (never `tensorflow` too)
#   .venv/jax         jax[cpu]                 (no TensorFlow anywhere)
#   .venv/torch       torch==2.13.0, CPU build (no TensorFlow anywhere)
# `make test` runs the suite on all three; `make test BACKEND=jax` on one.
PYTHON ?= python3
BACKEND ?= all
# pytest-xdist workers for `make test` (`auto`: one a CPU; 0 runs in this process). Whole
# files go to one worker (--dist loadfile): a file's tests share its module-level models.
TEST_WORKERS ?= auto
BACKENDS := tensorflow jax torch
DEMO_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

ifeq ($(BACKEND),all)
TEST_BACKENDS := $(BACKENDS)
else
TEST_BACKENDS := $(BACKEND)
endif

# keras-hub 0.32 depends on tensorflow-text, which pulls the full `tensorflow`:
# install it without dependencies, then its light ones.
KERAS_HUB := keras-hub==0.32.0
KERAS_HUB_DEPS := regex kagglehub sentencepiece tokenizers
EXTRA_tensorflow := tensorflow-cpu
EXTRA_jax := jax
EXTRA_torch := torch
# The CPU build of torch that lies on this machine's disk; a plain `torch` pulls CUDA wheels.
PRE_torch := torch==2.13.0

.PHONY: demo test bench venv clean $(addprefix test-,$(BACKENDS))

venv: $(foreach b,$(TEST_BACKENDS),.venv/$(b)/.installed)

.venv/%/.installed: setup.cfg pyproject.toml
	test -x .venv/$*/bin/python || $(PYTHON) -m venv .venv/$*
	.venv/$*/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(if $(PRE_$*),.venv/$*/bin/python -m pip install --quiet "$(PRE_$*)")
	.venv/$*/bin/python -m pip install --quiet -e ".[$(EXTRA_$*),test,examples]"
	.venv/$*/bin/python -m pip install --quiet --no-deps "$(KERAS_HUB)"
	.venv/$*/bin/python -m pip install --quiet $(KERAS_HUB_DEPS)
	touch $@

demo: .venv/$(DEMO_BACKEND)/.installed
	KERAS_BACKEND=$(DEMO_BACKEND) .venv/$(DEMO_BACKEND)/bin/python examples/depth_demo.py

test: $(addprefix test-,$(TEST_BACKENDS))

# A static pattern rule: make skips implicit-rule search for .PHONY targets.
$(addprefix test-,$(BACKENDS)): test-%: .venv/%/.installed
	@echo "=== tests on the $* backend ==="
	KERAS_BACKEND=$* .venv/$*/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: .venv/$(DEMO_BACKEND)/.installed
	KERAS_BACKEND=$(DEMO_BACKEND) .venv/$(DEMO_BACKEND)/bin/python benchmarks/speed.py
	KERAS_BACKEND=$(DEMO_BACKEND) .venv/$(DEMO_BACKEND)/bin/python benchmarks/callback_overhead.py
	KERAS_BACKEND=$(DEMO_BACKEND) .venv/$(DEMO_BACKEND)/bin/python benchmarks/depth.py
	KERAS_BACKEND=$(DEMO_BACKEND) .venv/$(DEMO_BACKEND)/bin/python benchmarks/training.py

clean:
	rm -rf .venv runs build *.egg-info
