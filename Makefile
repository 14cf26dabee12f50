# lantern_async: a C loader built with PGXS, and a Go library built with
# go build -buildmode=c-shared that the loader dlopen()s inside each worker.
#
#   make            build both libraries
#   make install    install them and the extension files into pg_config's directories
#   make test       build, install, run the Go unit tests and the integration tests
#   make unit       tidy-check, the layers check, go vet and the Go unit tests (what CI runs first)
#   make layers     fail if a file of the loader includes or calls a layer above its own
#   make tidy-check fail if `go mod tidy` would change go.mod or go.sum
#   make demo       set up what is missing, then show a background index build
#   make bench      build and install, then run the benchmark (tests/bench): one table on stdout
#   make cli        build the client command ./lantern-async (cmd/lantern-async)
#   make test-images build the ready image of 15, 17 and 18 and run the whole
#                   suite on each, in a container (needs Docker)
#   make image      build the ready image lantern_async:pg17 (PG=15 or PG=18 for the others)

PG_CONFIG ?= pg_config
GO ?= go

EXTENSION = lantern_async
MODULE_big = lantern_async
# The loader by layer, top to bottom (cgo/loader/README.md; make layers checks
# that no #include and no call goes up).
LOADER = cgo/loader
OBJS = $(LOADER)/entry/loader.o $(LOADER)/entry/golib.o \
       $(LOADER)/functions/submit.o $(LOADER)/functions/cancel.o $(LOADER)/functions/wait.o \
       $(LOADER)/functions/wait_caller.o $(LOADER)/functions/progress.o \
       $(LOADER)/hooks/dbguard.o $(LOADER)/hooks/fatal.o $(LOADER)/hooks/sqlguard.o \
       $(LOADER)/tables/catalog.o $(LOADER)/tables/privilege.o $(LOADER)/tables/queue.o $(LOADER)/tables/enqueue.o $(LOADER)/tables/columns.o \
       $(LOADER)/tables/attempts.o $(LOADER)/tables/statements.o $(LOADER)/tables/dependencies.o \
       $(LOADER)/state/shmem.o $(LOADER)/state/slots.o $(LOADER)/state/slot_job.o \
       $(LOADER)/state/slot_wake.o $(LOADER)/state/slot_cancel.o $(LOADER)/state/blocks.o \
       $(LOADER)/state/demand.o $(LOADER)/state/commit_notes.o $(LOADER)/state/lost.o $(LOADER)/state/history.o \
       $(LOADER)/state/waiters.o \
       $(LOADER)/base/guc.o
# Every #include of ours names its layer's folder: "state/la_state.h".
PG_CPPFLAGS = -I$(LOADER)
DATA = sql/lantern_async--0.1.0.sql sql/lantern_async--0.2.0.sql \
       sql/lantern_async--0.1.0--0.2.0.sql sql/lantern_async--0.3.0.sql \
       sql/lantern_async--0.2.0--0.3.0.sql sql/lantern_async--0.4.0.sql \
       sql/lantern_async--0.3.0--0.4.0.sql sql/lantern_async--0.5.0.sql \
       sql/lantern_async--0.4.0--0.5.0.sql sql/lantern_async--0.6.0.sql \
       sql/lantern_async--0.5.0--0.6.0.sql
PGFILEDESC = "lantern_async - background tasks inside PostgreSQL"

GO_LIB = lantern_async_go.so
EXTRA_CLEAN = $(GO_LIB) lantern_async_go.h

# The Go library's C helpers (cgo/helpers) include server headers; their
# PostgreSQL symbols resolve at dlopen() time against the postgres executable.
# Go's build cache does not see headers outside the package directory (the
# loader's, and cgo/helpers' for the adapters in cgo/): their checksum in the
# flags makes a change to them rebuild.
LOADER_HEADERS = $(shell find $(LOADER) -name '*.h' | LC_ALL=C sort)
LA_HEADERS_SUM := $(shell cat $(LOADER_HEADERS) $(sort $(wildcard cgo/helpers/*.h)) | cksum | cut -d' ' -f1)
export CGO_CFLAGS = -I$(shell $(PG_CONFIG) --includedir-server) -O2 -Wall -Wno-unused-function \
                    -DLA_HEADERS_SUM=$(LA_HEADERS_SUM)
# Go's async preemption signal (SIGURG) is also PostgreSQL's latch wake-up
# signal: turn preemption off at link time (environment variables never
# reach Go inside a PostgreSQL process).
GO_LDFLAGS = -X=runtime.godebugDefault=asyncpreemptoff=1
GO_SOURCES = $(shell find cgo bgworker control -name '*.go' -o -name '*.c' -o -name '*.h') go.mod go.sum

all: $(GO_LIB) lantern-async

# PGXS does not track header dependencies: a changed struct must rebuild every user.
$(OBJS): $(LOADER_HEADERS)

$(GO_LIB): $(GO_SOURCES)
	$(GO) build -trimpath -buildmode=c-shared -ldflags='$(GO_LDFLAGS)' -o $@ ./cgo

install: install-golib

install-golib: $(GO_LIB) installdirs
	$(INSTALL_SHLIB) $(GO_LIB) '$(DESTDIR)$(pkglibdir)/$(GO_LIB)'

uninstall: uninstall-golib

uninstall-golib:
	rm -f '$(DESTDIR)$(pkglibdir)/$(GO_LIB)'

# go.mod must be what `go mod tidy` makes of it (direct requirements not
# marked // indirect, go.sum complete); -diff prints the change and exits 1.
tidy-check:
	@$(GO) mod tidy -diff || { echo 'go.mod/go.sum are not tidy: run `go mod tidy` and commit the result' >&2; exit 1; }

# The loader's layers call one way only: no #include, and no symbol an object
# uses, goes up (cgo/check-layers.sh, cgo/loader/README.md).
layers: $(OBJS)
	cgo/check-layers.sh $(OBJS)

unit: tidy-check layers
	$(GO) vet ./...
	$(GO) test -count=1 ./bgworker/... ./control/... ./cmd/...

# The integration tests are one Go package per subject under tests/, each
# with a cluster of its own (tests/internal/testkit.Run): TEST_PARALLEL
# packages run at once. Most of their time is waiting, not CPU.
# The slowest packages are named first, so that none of them starts last
# (go test starts packages in the order given).
TEST_PARALLEL ?= 4
TEST_PACKAGES = ./tests/scale/ ./tests/scheduling/ ./tests/durability/ ./tests/timeouts/ ./tests/security/ ./tests/...
test: all unit
	$(MAKE) install
	$(GO) test -count=1 -p $(TEST_PARALLEL) -timeout 30m $(TEST_PACKAGES)
	@[ -n "$$LANTERN_ASYNC_TEST_IMAGE" ] || echo 'make test: skipped the ready-image tests (TestReadyImage*): they need Docker and an image; `make test-images` builds lantern_async:pg15, pg17 and pg18 and runs them'

# The ready image of each version, built here; the whole integration suite
# runs on it through testcontainers-go: its clusters in one container
# (LANTERN_ASYNC_TEST_BACKEND=docker), and TestReadyImage* starting the image
# as a user would. No registry here: the reaper (ryuk) image cannot be
# pulled, so it is off; the harness removes its containers itself.
IMAGE_VERSIONS ?= 15 17 18
test-images:
	@docker info >/dev/null 2>&1 || { echo 'make test-images: no Docker engine answers (start dockerd)' >&2; exit 1; }
	set -e; for v in $(IMAGE_VERSIONS); do \
		tests/docker/image.sh $$v; \
		start=$$(date +%s); \
		TESTCONTAINERS_RYUK_DISABLED=true LANTERN_ASYNC_TEST_BACKEND=docker \
			LANTERN_ASYNC_TEST_IMAGE=lantern_async:pg$$v \
			$(GO) test -count=1 -p $(TEST_PARALLEL) -timeout 30m $(TEST_PACKAGES); \
		echo "make test-images: PostgreSQL $$v: the suite took $$(( $$(date +%s) - start )) s"; \
	done

demo:
	if [ -n "$(PG)" ] && [ "$(PG)" != 15 ]; then tests/demo/demo-hnsw.sh $(PG); else tests/demo/demo.sh; fi

# Starts its own throw-away cluster (tests/internal/pgcluster) with the
# installed extension; progress on stderr, the table on stdout. Row 14 runs
# River's program, a module of its own (tests/bench/river: only the bench
# builds it and downloads its modules, never `make test` or `make unit`).
RIVER_BENCH = tests/bench/river/river-bench
EXTRA_CLEAN += $(RIVER_BENCH)
bench: install
	$(GO) -C tests/bench/river build -o '$(CURDIR)/$(RIVER_BENCH)' .
	PG_CONFIG='$(PG_CONFIG)' BENCH_RIVER_BIN='$(CURDIR)/$(RIVER_BENCH)' $(GO) run ./tests/bench

.PHONY: install-golib uninstall-golib tidy-check layers unit test test-images demo bench

# The client command: pure Go, static (no cgo), at the repository root.
CLI = lantern-async
CLI_SOURCES = $(shell find cmd/lantern-async -name '*.go') go.mod go.sum
EXTRA_CLEAN += $(CLI)

$(CLI): $(CLI_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./cmd/lantern-async

cli: $(CLI)

.PHONY: cli

# The ready image (tests/docker/Dockerfile), registry-free unless
# REGISTRY=docker.io/library/ is given.
image:
	tests/docker/image.sh $(or $(PG),17)

.PHONY: image

# No JIT bitcode: it would need clang on every build machine, for no gain here.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
