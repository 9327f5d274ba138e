# Two commands do all the set-up on a fresh machine:
#   make serve   create the environment, build the Ségur index if missing, start the service
#   make test    install the dev extras and run the test suite
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint eval bench index clean

serve:
	./scripts/bootstrap.sh run
	$(VENV)/bin/rag serve --host $(HOST) --port $(PORT)

test:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/python -m pytest

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

bench:
	./scripts/bootstrap.sh dev
	$(VENV)/bin/python -m bench.run

clean:
	rm -rf index/built $(VENV) .pytest_cache .ruff_cache
