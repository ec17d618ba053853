# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment .venv from requirements.txt first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: venv demo test clean

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	touch $(STAMP)

# The test extras (onnxruntime for the ONNX parity check) on top of the stack.
$(TSTAMP): $(STAMP) requirements-test.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt -c constraints.txt
	touch $(TSTAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo.py

test: $(TSTAMP)
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .cache out
