# Build and push the example model images with modelcar: no Docker, Podman or daemon.
#
#   make build-all                      build every image of modelcar.toml into the local store
#   make REGISTRY=quay.io/me VERSION=v2.0.0 all
#   make BASE_IMAGE=oci:build/base:busybox build-all
#
# REGISTRY, VERSION and BASE_IMAGE, given here or in the environment, override modelcar.toml.
# They are passed to modelcar as --registry, --image-version and --base, only when set, so
# `make -n` shows where images go.

CARGO    ?= cargo
# Where cargo puts what it builds (CI keeps it under the home directory between runs).
TARGET   := $(or $(CARGO_TARGET_DIR),target)
MODELCAR ?= $(TARGET)/release/modelcar
IMAGES   := sklearn xgboost lightgbm

# Where `make install` puts the binary, man pages and completions (DESTDIR: a staging root).
PREFIX   ?= /usr/local
DESTDIR  ?=

# modelcar's own image (make image, make push-image): a static glibc binary (no musl toolchain
# is needed) per Rust target of STATIC_TARGETS, each on the base's platform of its architecture
# (several targets give a multi-platform image and need a base with those platforms), with the
# build machine's CA bundle. Another target needs its standard library (rustup target add) and
# a linker for it (CARGO_TARGET_<TRIPLE>_LINKER): README, section CI.
STATIC_TARGETS ?= $(or $(STATIC_TARGET),x86_64-unknown-linux-gnu)
STATICS       := $(foreach t,$(STATIC_TARGETS),$(TARGET)/$(t)/release/modelcar)
# The linker for arm64 binaries: Debian's gcc-aarch64-linux-gnu (with libc6-dev-arm64-cross for
# the static glibc).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER ?= aarch64-linux-gnu-gcc
TOOL_BASE     ?= oci:build/base:busybox
CA_BUNDLE     ?= /etc/ssl/certs/ca-certificates.crt
TOOL_IMAGE    ?= $(or $(REGISTRY),$(shell sed -n 's/^registry *= *"\(.*\)"/\1/p' modelcar.toml))/modelcar:$(or $(VERSION),v$(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1))
# The image's layer has the time of the last commit, so the same tree gives the same digest.
TOOL_EPOCH    ?= $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null),0)

# Only what the user set is passed on, so modelcar.toml keeps its defaults otherwise (stripped,
# so the command lines make echoes read as they would be typed).
PLACE    := $(strip $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(VERSION),--image-version $(VERSION)))
BASE     := $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

.PHONY: help bin static image push-image install build-all push-all all clean distclean test test-cargo lint e2e bench offline-base \
	$(addprefix build-,$(IMAGES)) $(addprefix push-,$(IMAGES))

help: ## Display help information
	@echo "Targets:"
	@grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'
	@echo "  build-NAME       Build one image (NAME: $(IMAGES))"
	@echo "  push-NAME        Push one image"
	@echo
	@echo "Variables (defaults from modelcar.toml):"
	@echo "  REGISTRY=$(or $(REGISTRY),$(shell sed -n 's/^registry *= *"\(.*\)"/\1/p' modelcar.toml))"
	@echo "  VERSION=$(or $(VERSION),$(shell sed -n 's/^version *= *"\(.*\)"/\1/p' modelcar.toml))"
	@echo "  BASE_IMAGE=$(or $(BASE_IMAGE),$(shell sed -n 's/^base *= *"\(.*\)"/\1/p' modelcar.toml))"
	@echo "  (passed as --registry, --image-version and --base when set: make -n shows them)"
	@echo "  PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)  (make install: bin/, share/man/man1, share/*/completions)"
	@echo "  TOOL_IMAGE=$(TOOL_IMAGE) TOOL_BASE=$(TOOL_BASE)  (make image, make push-image)"
	@echo
	@echo "clean removes this REGISTRY/VERSION's project images from the local store"
	@echo "(modelcar images lists what is there); distclean also deletes build/ and target/."

bin: ## Build the modelcar binary (the first, release compile takes a few minutes)
	@[ -x $(MODELCAR) ] || echo "Compiling modelcar in release mode into $(MODELCAR): the first build takes a few minutes; later ones take seconds."
	$(CARGO) build --release --locked --quiet

install: bin ## Install modelcar, its man pages and bash/zsh/fish completions under $(DESTDIR)$(PREFIX)
	install -D -m 0755 $(MODELCAR) $(DESTDIR)$(PREFIX)/bin/modelcar
	rm -rf $(TARGET)/man && $(MODELCAR) man $(TARGET)/man >/dev/null
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 $(TARGET)/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(MODELCAR) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/modelcar
	$(MODELCAR) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_modelcar
	$(MODELCAR) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/modelcar.fish

static: ## Build a statically linked modelcar (glibc, crt-static) for the container image
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --locked --quiet $(foreach t,$(STATIC_TARGETS),--target $(t))

build/base/index.json:
	scripts/offline-base.sh build/base

image: static $(if $(filter oci:build/base:busybox,$(TOOL_BASE)),build/base/index.json) ## Build modelcar's own image (TOOL_IMAGE) into the local store, with modelcar's library
	$(CARGO) run --release --locked --quiet --example tool-image -- \
		--base $(TOOL_BASE) --tag $(TOOL_IMAGE) $(foreach b,$(STATICS),--binary $(b)) --ca $(CA_BUNDLE) --epoch $(TOOL_EPOCH)

push-image: bin image ## Push modelcar's own image (REGISTRY/modelcar:VERSION)
	$(MODELCAR) push $(TOOL_IMAGE)

$(addprefix build-,$(IMAGES)): build-%: bin
	$(MODELCAR) build $(strip $(PLACE) $(BASE) $*)

build-all: bin ## Build all model images
	$(MODELCAR) build $(strip $(PLACE) $(BASE) --all)

$(addprefix push-,$(IMAGES)): push-%: bin
	$(MODELCAR) push $(strip $(PLACE) $*)

push-all: $(addprefix push-,$(IMAGES)) ## Push all images to the registry

all: build-all push-all ## Build and push all images

clean: bin ## Remove this REGISTRY/VERSION's project images from the local store
	$(MODELCAR) $(strip clean $(PLACE))
	@echo "build/ and target/ are kept: make distclean deletes them too"

# Only the repository's own target/: a CARGO_TARGET_DIR elsewhere may be shared (CI keeps one).
distclean: clean ## clean, then delete build/ (offline base) and target/ (compiled code)
	rm -rf build target

offline-base: ## Make build/base, a busybox base for machines without registry access
	scripts/offline-base.sh build/base

test: test-cargo ## Run every test: unit, integration and end to end (installs missing tools; root)
	MODELCAR=$(TARGET)/debug/modelcar e2e/run.sh

test-cargo: ## Unit and integration tests only
	scripts/test-deps.sh
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		$(CARGO) test --locked --no-fail-fast; \
	fi

e2e: ## End to end: KServe's pod reproduced with containerd and MLServer (root; e2e/README.md)
	e2e/run.sh

bench: ## Speed benchmark against buildah and olot+skopeo (long; see bench/run.sh)
	bench/run.sh

lint: ## Formatting and lints
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
