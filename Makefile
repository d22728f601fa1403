# Two commands do everything: `make run` (the site with a worker) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/kue-indonesia
# `make model`'s output: apart from the shipped folder (models/kue-mobilenetv2), never over it
MODEL ?= var/models/kue-mobilenetv2

HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
QUEUE := $(or $(CELERY_QUEUE),celery)

.PHONY: install run test lint bench model baseline messages
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

# The site and two Celery workers (classification and e-mails, with the beat that runs the periodic
# sweep; training on its own queue, so a retraining never delays a photo), on SQLite and a broker that
# needs no server unless DATABASE_URL / CELERY_BROKER_URL say otherwise. Ctrl-C (or a SIGTERM to
# make) stops them all; all three run in the background so that the shell's trap runs at once.
run: install
	$(PY) manage.py migrate --noinput
	@echo "Cakesite: http://$(HOST):$(PORT)/  (Ctrl-C stops the site and its workers)"
	$(PY) -m celery -A cakesite worker -n classify@%h --loglevel=INFO --concurrency=$(WORKERS) \
	  -Q $(QUEUE),$(QUEUE).email --beat --schedule $(or $(CAKESITE_VAR_DIR),var)/celerybeat-schedule & \
	classify=$$!; \
	$(PY) -m celery -A cakesite worker -n train@%h --loglevel=INFO --concurrency=1 -Q $(QUEUE).training \
	  --max-tasks-per-child=1 & \
	train=$$!; \
	$(PY) manage.py runserver $(HOST):$(PORT) & \
	web=$$!; trap 'pkill -P $$web 2>/dev/null; kill $$web $$classify $$train 2>/dev/null; wait' EXIT INT TERM; \
	wait $$web

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

# The Indonesian translations (locale/id): after changing text, find what is new (GNU gettext's
# xgettext), translate it in the .po files, and compile them (msgfmt). The compiled .mo files are
# committed, so running the site needs no gettext.
messages: install
	$(PY) manage.py makemessages -l id -i var --no-location --no-obsolete
	$(PY) manage.py makemessages -l id -i var --no-location --no-obsolete -d djangojs
	$(PY) manage.py compilemessages -l id -i .venv -i var

# The benchmarks (bench/README.md): accuracy on the fixed test split (needs ../shared), model
# latency, retraining wall times, the whole pipeline on PostgreSQL and Redis (the URLs from the
# environment, else this machine's local servers) and its per-stage CPU. bench.adaptation is
# slower: run it by hand.
BENCH_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/test)
BENCH_BROKER_URL ?= $(or $(CELERY_BROKER_URL),redis://127.0.0.1:6379/0)
bench: install
	$(PY) -m bench.accuracy --data $(DATA)/test $(if $(BASELINE),--baseline $(BASELINE))
	$(PY) -m bench.latency
	$(PY) -m bench.retrain
	DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) $(PY) -m bench.pipeline
	DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) $(PY) -m bench.stages

# Reproduce the shipped model from ../shared (about 15 minutes on 2 CPU cores), into var/: the
# shipped folder is registered by its files' fingerprint, and a version whose files changed is refused.
model: install
	$(PY) -m training.train --data $(DATA)/train --out $(MODEL)
	$(PY) -m training.evaluate --model $(MODEL) --data $(DATA)/test --name test --save

# The from-scratch baseline for comparison (not shipped): make bench BASELINE=var/models/simple-cnn
baseline: install
	$(PY) -m training.train --data $(DATA)/train --out var/models/simple-cnn --arch simple-cnn --patience 10
