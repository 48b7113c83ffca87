# One command per habit. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.txt layers/core/requirements.txt | cksum | cut -d' ' -f1)
SAM_VENV := .venv-sam
SAM_VERSION := 1.170.0
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_VERSION)
ASL_VALIDATOR := .tools/node_modules/.bin/asl-validator
AXE := .tools/node_modules/axe-core/axe.min.js
USER   ?= demo-user

# The scanners pin their own dependencies: each gets a venv of its own, rebuilt when its pin moves.
CHECKOV_VERSION := 3.3.30
BANDIT_VERSION  := 1.9.4
CHECKOV_VENV := .venv-checkov
BANDIT_VENV  := .venv-bandit
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
BANDIT_STAMP  := $(BANDIT_VENV)/.installed-$(BANDIT_VERSION)

.PHONY: install tools demo run webhook-secret token test test-fast lint asl scan bench bench-checks clean screenshots

$(STAMP): requirements-dev.txt layers/core/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install  ## the whole journey on the embedded local stack
	$(BIN)/python -m local demo

run: install  ## serve the API on http://127.0.0.1:$${API_PORT:-3000}/v1 until interrupted; WEBHOOK_URL=... posts every event there
	$(BIN)/python -m local run

webhook-secret: install  ## the local stack's webhook signing secret (whsec_...), for your receiver
	@$(BIN)/python -c 'from local.webhook_receiver import local_secret; from local.stack import LocalConfig; print(local_secret(LocalConfig().state_dir))'

token: install  ## a bearer token the running local stack accepts: make token USER=alice
	@$(BIN)/python -m local.auth token --user "$(USER)"

# Two workers, in two steps: the unit and contract tests must not see a local stack's process
# environment, so they finish before any worker starts one; then each worker runs whole files
# of integration and browser tests against a stack of its own.
TEST_WORKERS ?= 2
test: install  ## unit, contract and integration tests (the local stack starts itself)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) tests/unit tests/contract
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests/integration tests/e2e

test-fast: install  ## everything but the local-stack tests
	$(BIN)/python -m pytest -m "not integration"

# Everything lint and scan need, installed side by side: make -j4 tools
tools: install $(SAM_STAMP) $(CHECKOV_STAMP) $(BANDIT_STAMP) $(ASL_VALIDATOR) $(AXE)

# aws-sam-cli pins its own boto3: it gets a venv of its own.
$(SAM_STAMP):
	rm -rf $(SAM_VENV)
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_VERSION)
	touch $@

lint: install asl scan $(SAM_STAMP)  ## ruff, mypy, cfn-lint, sam validate, asl-validator, checkov and bandit
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1

$(ASL_VALIDATOR):
	npm install --prefix .tools --no-audit --no-fund --silent asl-validator@4.0.0

# axe-core, injected into the try-it page by the browser tests; after asl-validator, as two
# npm installs into one prefix at once would race.
$(AXE): $(ASL_VALIDATOR)
	npm install --prefix .tools --no-audit --no-fund --silent axe-core@4.11.0

# The README's pictures of the try-it page, taken by the browser tests on a fresh stack.
screenshots: install $(AXE)  ## regenerate docs/try-it*.png from the browser tests
	$(BIN)/python -m pytest tests/e2e/test_browser.py -q -p no:cacheprovider
	cp test-output/screenshots/04-gallery-desktop.png docs/try-it.png
	cp test-output/screenshots/06-face-avatars-desktop.png docs/try-it-faces.png
	cp test-output/screenshots/03-model-ready-phone.png docs/try-it-phone.png

asl: $(ASL_VALIDATOR)  ## validate every state machine definition (cfn-lint does not look inside)
	@for f in statemachine/*.asl.json; do $(ASL_VALIDATOR) --json-path $$f || exit 1; done

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

$(BANDIT_STAMP):
	rm -rf $(BANDIT_VENV)
	$(PYTHON) -m venv $(BANDIT_VENV)
	$(BANDIT_VENV)/bin/pip install --quiet --upgrade pip
	$(BANDIT_VENV)/bin/pip install --quiet bandit==$(BANDIT_VERSION)
	touch $@

# Skips are written, with their reason, in the resource's Metadata (checkov) or on the line (# nosec).
scan: $(CHECKOV_STAMP) $(BANDIT_STAMP)  ## checkov on template.yaml, bandit (medium and up) on the code
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact \
		--framework cloudformation -f template.yaml
	$(BANDIT_VENV)/bin/bandit -c pyproject.toml -r layers functions local bench -ll --quiet

bench: install  ## every bench of the README's table (layer-size too), one run each
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/copy.py
	$(BIN)/python bench/transitions.py
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/fuzz.py
	$(BIN)/python bench/selfie_checks.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/burst.py
	$(BIN)/python bench/polling.py
	$(BIN)/python bench/worst_image.py
	$(MAKE) --no-print-directory layer-size

bench-checks: install  ## the selfie checks on good photos and bad versions: false refusals and misses
	$(BIN)/python bench/selfie_checks.py

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(BANDIT_VENV) .tools .pytest_cache .mypy_cache .ruff_cache demo-output test-output .local

# The core layer as `sam build` makes it (layers/core/Makefile), built into a temporary
# folder: its unzipped size, against Lambda's 250 MB for a function and its layers.
LAYER_GOAL_MB := 40
.PHONY: layer-size
layer-size:  ## build the core layer's Lambda wheels into a temp dir and print its unzipped size
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	$(MAKE) --no-print-directory -C layers/core build-CoreLayer ARTIFACTS_DIR="$$out" \
		PIP="$(abspath $(PYTHON)) -m pip" && \
	du -sk "$$out"/python/* | sort -rn | head -8 | awk '{printf "  %6.1f MB  %s\n", $$1/1024, $$2}' | sed "s|$$out/python/||" && \
	kb=$$(du -sk "$$out" | cut -f1) && \
	awk -v kb=$$kb -v goal=$(LAYER_GOAL_MB) 'BEGIN {printf "core layer: %.1f MB unzipped (goal <= %d MB)\n", kb/1024, goal}' && \
	if [ -d "$$out/python/botocore" ]; then echo "a second botocore is in the layer"; exit 1; fi

.PHONY: openapi schemas fuzz
openapi: install  ## regenerate openapi.json from the API functions' resolvers (a unit test compares)
	$(BIN)/python -m local.openapi > openapi.json.tmp && mv openapi.json.tmp openapi.json

schemas: install  ## regenerate docs/events/*.json, one JSON Schema per event type (a unit test compares)
	$(BIN)/python -m local.event_schemas

fuzz: install  ## schemathesis against a fresh local stack: 1000+ requests, no 5xx, no schema breach
	$(BIN)/python bench/fuzz.py

# Deploying to your AWS account (docs/deploy.md): the SAM CLI from .venv-sam and
# samconfig.toml's defaults. The first time, `make deploy GUIDED=1` asks every parameter and
# saves the answers in samconfig.toml; later runs reuse them.
# CONTAINER=1 builds inside Lambda's image (Docker must be running); the default needs none.
STACK  ?= avatar-pipeline
GUIDED ?=
CONTAINER ?=
.PHONY: deploy sam
sam: $(SAM_STAMP)  ## install the pinned SAM CLI into .venv-sam and print its version
	@SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam --version

deploy: $(SAM_STAMP)  ## sam build and sam deploy: see docs/deploy.md
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build $(if $(CONTAINER),--use-container)
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam deploy --stack-name $(STACK) $(if $(GUIDED),--guided)

# What each journey costs on AWS (docs/costs.md): measured on a fresh local stack, then
# rendered from bench/costs-measured.json; a unit test checks the page matches the file.
.PHONY: costs
costs: install  ## measure every journey on the local stack and regenerate docs/costs.md
	$(BIN)/python bench/costs.py measure
	$(BIN)/python bench/costs.py > docs/costs.md.tmp && mv docs/costs.md.tmp docs/costs.md
