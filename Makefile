# Two entry points (see README): `make report` runs the suite, `make test` runs the tests.
# Both build .venv from the pinned requirements.txt on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FIDELITY ?= count

.PHONY: report test clean-venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

report: $(VENV)/.installed
	$(PY) run_all.py --fidelity $(FIDELITY)

# pytest exits 5 when it collects no tests; make treats any non-zero exit as failure,
# so an empty test run cannot pass silently.  The second pytest is the JAX lane: the tests
# marked `jax` (layers, tiny models, optimiser, losses, exact resume) under the JAX backend.
# Both lanes run on two pytest-xdist workers (one per core of the CI machine), handed one
# test at a time (--dist loadgroup: plain load scheduling sends each worker a contiguous
# chunk, which put every heavy test on one worker) except tests grouped to share a cache;
# --durations shows where the time goes.
XDIST := -n 2 --dist loadgroup
test: $(VENV)/.installed
	$(PY) -m pytest -q $(XDIST) --durations=12 tests
	KERAS_BACKEND=jax $(PY) -m pytest -q $(XDIST) -m jax tests
	$(PY) run_all.py --fidelity count --check

clean-venv:
	rm -rf $(VENV)
