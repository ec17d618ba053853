# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment first: .venv from requirements.txt (paddle 2.6.2, the default line),
# or with PADDLE=3 (`make PADDLE=3 demo`, `make PADDLE=3 test`) .venv3 from requirements-paddle3.txt
# (paddle 3.3.1; INT8 stays on the 2.6.2 line, see README "Paddle 3").  The test targets add the test
# extras (pytest, onnxruntime, paddle2onnx: requirements-test.txt / requirements-paddle3-test.txt);
# `make demo` needs none of them.
#   make test        every test but the pipeline smoke test (CI: .ci/run)
#   make test-pipeline  benchmarks/msra_demo.sh end to end at a smoke budget (tests/test_msra_demo.py)
#   make test-fast   the tests that run no script of the suite and no fresh Python (no training, export
#                    or quantization; tests/conftest.py marks the others `slow`) and no real_assets test:
#                    198 of 321 tests, about 40-50 s on the 2 cores while a training shared them
# TESTS selects test files (default: all), e.g. `make PADDLE=3 test TESTS="tests/test_export.py"`.
PYTHON ?= python3
PADDLE ?= 2
TESTS  ?= tests

ifeq ($(PADDLE),3)
VENV   ?= .venv3
REQS   := requirements-paddle3.txt
CONS   := constraints-paddle3.txt
TREQS  := requirements-paddle3-test.txt
else ifeq ($(PADDLE),2)
VENV   ?= .venv
REQS   := requirements.txt
CONS   := constraints.txt
TREQS  := requirements-test.txt
else
$(error PADDLE=$(PADDLE): choose 2 (paddle 2.6.2, default) or 3 (paddle 3.3.1))
endif

BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
PYTEST := $(BIN)/python -m pytest $(TESTS) -q -p no:cacheprovider --durations=15

.PHONY: venv demo test test-fast test-pipeline clean

$(STAMP): $(REQS) $(CONS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r $(REQS) -c $(CONS)
	touch $(STAMP)

# The test extras on top of the stack.
$(TSTAMP): $(STAMP) $(TREQS)
	$(BIN)/python -m pip install -q -r $(TREQS) -c $(CONS)
	touch $(TSTAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo.py

test: $(TSTAMP)
	$(PYTEST) -m "not pipeline"

# the whole NER pipeline (benchmarks/msra_demo.sh) on the real assets at a smoke budget: 3-4 min
test-pipeline: $(TSTAMP)
	$(PYTEST) -m pipeline

test-fast: $(TSTAMP)
	$(PYTEST) -m "not slow and not real_assets"

clean:
	rm -rf .venv .venv3 .cache out
