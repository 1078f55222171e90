# Quick start: `make train` (a short MNIST ternary run) and `make test` (the test suite).
# Both create the virtual environment .venv and the data folder data/ when they are missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
# Data root read by the code; data/ is also where torchvision downloads to.
export LRNETS_DATA ?= $(CURDIR)/data

.PHONY: venv data train test test-fast

$(BIN)/lrnets-train: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $@

venv: $(BIN)/lrnets-train

# data/: links to the offline MNIST and Fashion-MNIST copies and CIFAR-10 batches written from
# the offline JPEG copy (about 30 s), when ../shared/data exists; otherwise an empty folder that
# torchvision downloads into.
data: venv
	mkdir -p data
	@for d in MNIST FashionMNIST; do \
	  if [ -d $(SHARED_DATA)/$$d ] && [ ! -e data/$$d ]; then ln -s $(SHARED_DATA)/$$d data/$$d; fi; \
	done
	@if [ -f $(SHARED_DATA)/make_cifar10.py ] && [ ! -d data/cifar-10-batches-py ]; then \
	  $(BIN)/python $(SHARED_DATA)/make_cifar10.py data; fi

# A few minutes on a CPU: one full-precision epoch, then one ternary epoch and the sampled
# evaluation. The paper's schedule is `$(BIN)/python train.py dataset=mnist mode=ternary`.
train: data
	$(BIN)/python train.py dataset=mnist mode=ternary debug=quickstart $(ARGS)

# Everything: the fast tests and the slow real-data ones (about 18 minutes on 2 cores).
test: data
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

# The fast tests only (synthetic data, about 5.5 minutes on 2 cores).
test-fast: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)
