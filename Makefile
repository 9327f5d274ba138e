# Two commands do all the set-up on a fresh machine:
#   make serve   create the environment, build the Ségur index if missing, start the service
#   make test    install the dev extras and run the whole test suite (make test-fast: the unit and contract tests)
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-fast lint eval bench bench-compare index calibrate clean

serve:
	./scripts/bootstrap.sh run
	$(VENV)/bin/rag serve --host $(HOST) --port $(PORT)

test:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/python -m pytest

test-fast:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/python -m pytest -m "not slow" -q -n 2

lint:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/ruff check rag tests
	$(VENV)/bin/ruff format --check rag tests

index:
	./scripts/bootstrap.sh run
	$(VENV)/bin/rag index

eval:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/rag eval --queries eval/segur.jsonl --out eval/reports/segur
	$(VENV)/bin/rag eval --queries ../shared/benchmarks/cnil-faq/queries.jsonl \
		--corpus ../shared/benchmarks/cnil-faq/faq.jsonl --out eval/reports/cnil
	$(VENV)/bin/rag eval --queries eval/segur.jsonl --holdout 5 --folds 4 --out eval/reports/segur-holdout
	$(VENV)/bin/rag eval --queries ../shared/benchmarks/cnil-faq/queries.jsonl \
		--corpus ../shared/benchmarks/cnil-faq/faq.jsonl --holdout 20 \
		--judgements eval/judgements/cnil-holdout.jsonl --out eval/reports/cnil-holdout

calibrate:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/rag calibrate --plan eval/calibration/plan.json --out rag/assets/calibration.json

bench:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/python -m bench.run
	$(VENV)/bin/python -m bench.performance
	$(VENV)/bin/python -m bench.reliability
	$(VENV)/bin/python -m bench.embeddings
	$(VENV)/bin/python -m bench.calibration
	$(VENV)/bin/python -m bench.faults

# the quick benchmarks on BASE and on the working tree, side by side; fails when a ratio worsened beyond the noise
BASE ?= origin/main
bench-compare:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/python -m bench.run --compare $(BASE)

clean:
	rm -rf index/built $(VENV) .pytest_cache .ruff_cache
