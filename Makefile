# Two commands do everything: `make run` (the site with a worker) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/kue-indonesia
MODEL ?= models/kue-mobilenetv2

.PHONY: install test lint bench model
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

# Accuracy of the shipped model on the fixed benchmark split (needs ../shared).
bench: install
	$(PY) -m bench.accuracy --data $(DATA)/test

# Reproduce the shipped model from ../shared (about 25 minutes on 2 CPU cores).
model: install
	$(PY) -m training.train --data $(DATA)/train --out $(MODEL)
	$(PY) -m training.evaluate --model $(MODEL) --data $(DATA)/test --name test --save
