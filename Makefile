# The two commands a new user needs: `make run` and `make test`.
PROFILE ?= cluster
FLASHSALE := .venv/bin/flashsale
PYTEST_ARGS ?=
PYTEST := .venv/bin/python -m pytest -ra
# the test tiers, one folder and one marker each, cheapest first (tests/README.md)
TIERS := tests/unit tests/integration tests/services tests/e2e

.PHONY: install run stop status test test-unit test-integration test-services test-e2e test-cluster cluster-images cluster-up cluster-down lint bench benchmarks-doc clean

install:            ## install what is missing (apt packages, .venv, FerretDB, Hadoop jars)
	bash scripts/install.sh

run: install        ## the whole pipeline (PROFILE=local|cluster): stack, simulator, DAGs, dashboard; Ctrl-C stops all
	$(FLASHSALE) run --profile $(PROFILE)

stop:               ## stop the pipeline and every service; nothing is left running or listening
	$(FLASHSALE) stack down

status:
	$(FLASHSALE) stack status

test: install       ## install what is missing, then run every tier in order: unit, integration, services, e2e, compose (test-cluster)
	$(PYTEST) $(TIERS) $(PYTEST_ARGS)
	bash cluster/docker/test_cluster.sh

test-unit: install  ## the fast tier only (tests/unit): no JVM, no server, no Ray; with the lint checks; < 2 min
	$(PYTEST) -m unit tests/unit $(PYTEST_ARGS)

test-integration: install  ## tests/integration: local Spark, local Ray, Airflow DagBag, docker-compose config; no stack
	$(PYTEST) -m integration tests/integration $(PYTEST_ARGS)

test-services: install  ## tests/services: each service and component against the real stack (started if not up)
	$(PYTEST) -m services tests/services $(PYTEST_ARGS)

test-e2e: install   ## tests/e2e: the whole pipeline on the stack, and a second stack's lifecycle
	$(PYTEST) -m e2e tests/e2e $(PYTEST_ARGS)

# ---- the Docker Compose stack (cluster/README.md). NOHUB=1: no Docker Hub (Debian-built base and
# third-party images, docker-compose.nohub.yml); ENV_FILE: the secrets (default .env, see .env.example)
NOHUB ?= 0
ENV_FILE ?= .env
COMPOSE_FILES := -f docker-compose.yml $(if $(filter 1,$(NOHUB)),-f docker-compose.nohub.yml)
DOCKER_COMPOSE := .venv/bin/docker-compose --env-file $(ENV_FILE) $(COMPOSE_FILES)

cluster-images: install  ## build the compose images (layer cache reused); NOHUB=1 builds the no-Docker-Hub ones too
	bash cluster/docker/images.sh $(if $(filter 1,$(NOHUB)),--nohub)

cluster-up: cluster-images  ## build what is missing, then bring the compose stack up and wait until every service is healthy
	$(DOCKER_COMPOSE) up -d --no-build --wait --wait-timeout 900
	$(DOCKER_COMPOSE) ps

cluster-down:       ## stop the compose stack and delete its volumes
	$(DOCKER_COMPOSE) down -v --remove-orphans

test-cluster: install  ## tests/compose: dockerd (started if none runs, stopped after), images, the stack for real, down -v
	bash cluster/docker/test_cluster.sh $(PYTEST_ARGS)

lint:               ## ruff, ruff format --check, mypy, the import-linter layer contract (test-unit runs them too)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

benchmarks-doc:     ## regenerate docs/benchmarks.md and the README's key figures from bench/results/ (no server)
	.venv/bin/python -m bench.report

clean: stop
	rm -rf .run
