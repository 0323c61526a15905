# The two commands a new user needs: `make run` and `make test`.
PROFILE ?= cluster
FLASHSALE := .venv/bin/flashsale
PYTEST_ARGS ?=

.PHONY: install run stop status test test-unit bench clean

install:            ## install what is missing (apt packages, .venv, FerretDB, Hadoop jars)
	bash scripts/install.sh

run: install        ## the whole pipeline (PROFILE=local|cluster): stack, simulator, DAGs, dashboard; Ctrl-C stops all
	$(FLASHSALE) run --profile $(PROFILE)

stop:               ## stop the pipeline and every service; nothing is left running or listening
	$(FLASHSALE) stack down

status:
	$(FLASHSALE) stack status

test: install       ## install what is missing, then run all tests against the real services
	.venv/bin/python -m pytest -ra $(PYTEST_ARGS)

test-unit: install  ## only the tests that need no service
	.venv/bin/python -m pytest -ra -m "not services" $(PYTEST_ARGS)

clean: stop
	rm -rf .run
