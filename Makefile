# `sam build` runs this Makefile for every function of infra/template.yaml and
# infra/example.yaml (their Metadata say `BuildMethod: makefile`), one target a function:
# `make build-<LogicalId>` with ARTIFACTS_DIR set to where its package goes, run in the
# repository root.
#
# Every target first runs the same single `cargo lambda build` for ALL the Lambda binaries,
# so the dependencies they share (the AWS SDK, tokio, rustls) compile once, with one set of
# features, for every function of both templates. The first target does the work; the
# following ones find everything built and take a second or two. Then each copies its own
# `bootstrap`.
#
# Needs cargo, cargo-lambda and zig on PATH (`cargo xtask` puts its pinned ones there).
#
# `LAMBDA_BUILD=host` is what `cargo xtask` sets for the local emulator, which runs the
# binaries on this machine: a plain debug `cargo build` of the Lambda binaries (with
# `--workspace`, for the features every package of the workspace turns on). Its
# dependencies are the very ones `cargo xtask` and the tests compiled (one feature set, see
# xtask/Cargo.toml), so it costs seconds, not a second build of the AWS SDK for a cross target.
# The binaries land stripped (as the release profile's) where cargo-lambda puts them,
# `target/lambda/<binary>/bootstrap`, stripped again only when the binary or the bootstrap is
# another file than the last strip's (`stripped-from`: inode, size, time of both; another
# tree's build in this target folder writes both): every function's target runs this.

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
LAMBDA_PACKAGES := -p controller -p rejitter -p example-consumer

.PHONY: lambdas build-ControllerFunction build-RejitterFunction build-ConsumerFunction

ifeq ($(LAMBDA_BUILD),host)
lambdas:
	$(CARGO) build --workspace --bin controller --bin rejitter --bin example-consumer
	for binary in controller rejitter example-consumer; do \
	  from=$(CARGO_TARGET_DIR)/debug/$$binary; out=$(CARGO_TARGET_DIR)/lambda/$$binary; \
	  [ -f $$out/bootstrap ] && \
	  [ "$$(cat $$out/stripped-from 2>/dev/null)" = "$$(stat -c '%i %s %y' $$from $$out/bootstrap)" ] || { \
	    mkdir -p $$out && strip -o $$out/bootstrap $$from && \
	    stat -c '%i %s %y' $$from $$out/bootstrap > $$out/stripped-from; }; \
	done
else
lambdas:
	$(CARGO) lambda build --release --x86-64 $(LAMBDA_PACKAGES)
endif

build-ControllerFunction: lambdas
	cp $(CARGO_TARGET_DIR)/lambda/controller/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-RejitterFunction: lambdas
	cp $(CARGO_TARGET_DIR)/lambda/rejitter/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ConsumerFunction: lambdas
	cp $(CARGO_TARGET_DIR)/lambda/example-consumer/bootstrap $(ARTIFACTS_DIR)/bootstrap
