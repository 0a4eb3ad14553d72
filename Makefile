# flotilla: the two commands are `make run` and `make test`; see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help run test fuzz screenshots bench soak openapi lint fmt binaries release migrate pages doctor clean build-deps

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'
	@echo "  Details: docs/development.md (commands, tests), docs/benchmarks.md, docs/operations.md"

run: binaries ## Build and run the whole fleet behind nginx on http://127.0.0.1:8080
	@scripts/dev-fleet.sh

test: build-deps ## Unit and end-to-end tests, on SQLite and PostgreSQL
	@scripts/test.sh

fuzz: build-deps ## Fuzz every service with schemathesis, on both databases, deeply (FUZZ_EXAMPLES=500)
	@scripts/fuzz.sh

screenshots: build-deps ## Every page at 360 and 1280 px, light and dark, into var/screenshots
	@scripts/screenshots.sh

bench: build-deps ## Throughput through nginx next to nginx's own floor, and idle memory
	@scripts/bench.sh

soak: build-deps ## People signing up, in and out for SOAK_MINUTES (10): errors, p99s, memory
	@scripts/soak.sh

openapi: build-deps ## Merge the services' OpenAPI documents into docs/openapi.json (the site's /api/)
	@scripts/openapi.sh

lint: ## rustfmt and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

binaries: build-deps ## Optimised binaries in target/release
	cargo build --release --workspace --bins

release: build-deps ## The release tarball for servers: dist/flotilla-VERSION-linux-ARCH.tar.gz
	@scripts/release

build-deps: ## Install what the build needs beyond Rust (gcc, pkg-config, libssl-dev) if missing
	@scripts/ensure-build-deps.sh

migrate: binaries ## Apply pending migrations to DATABASE_URL (default var/flotilla.db)
	target/release/flotilla-worker migrate

pages: binaries ## Rebuild the static site into var/www
	target/release/flotilla-pages build

doctor: ## Check that this machine can run and test flotilla
	@scripts/doctor.sh

clean: ## Remove build output and var/ (the dev database, keys, mail, site)
	cargo clean
	rm -rf var
