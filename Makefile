# The two commands a new user needs: `make run` and `make test`.
PROFILE ?= cluster
FLASHSALE := .venv/bin/flashsale
PYTEST_ARGS ?=
PYTEST := .venv/bin/python -m pytest -ra
# the test tiers, one folder and one marker each, cheapest first (tests/README.md)
TIERS := tests/unit tests/integration tests/services tests/e2e

.PHONY: install run stop status test test-unit test-integration test-services test-e2e lint bench clean

install:            ## install what is missing (apt packages, .venv, FerretDB, Hadoop jars)
	bash scripts/install.sh

run: install        ## the whole pipeline (PROFILE=local|cluster): stack, simulator, DAGs, dashboard; Ctrl-C stops all
	$(FLASHSALE) run --profile $(PROFILE)

stop:               ## stop the pipeline and every service; nothing is left running or listening
	$(FLASHSALE) stack down

status:
	$(FLASHSALE) stack status

test: install       ## install what is missing, then run every tier in order: unit, integration, services, e2e
	$(PYTEST) $(TIERS) $(PYTEST_ARGS)

test-unit: install  ## the fast tier only (tests/unit): no JVM, no server, no Ray; with the lint checks; < 2 min
	$(PYTEST) -m unit tests/unit $(PYTEST_ARGS)

test-integration: install  ## tests/integration: local Spark, local Ray, Airflow DagBag, docker-compose config; no stack
	$(PYTEST) -m integration tests/integration $(PYTEST_ARGS)

test-services: install  ## tests/services: each service and component against the real stack (started if not up)
	$(PYTEST) -m services tests/services $(PYTEST_ARGS)

test-e2e: install   ## tests/e2e: the whole pipeline on the stack, and a second stack's lifecycle
	$(PYTEST) -m e2e tests/e2e $(PYTEST_ARGS)

lint:               ## ruff, ruff format --check, mypy, the import-linter layer contract (test-unit runs them too)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

clean: stop
	rm -rf .run
