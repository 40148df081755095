# Selor - build, run, test.
#
#   make          build/selor, build/selorctl, build/mod/*.so
#   make deps     install the Debian packages the build and the tests need
#   make run      build and start one node in the foreground (conf/selor.dev.conf)
#   make test     unit tests (cmocka) and system tests (pytest) against the
#                 sanitizer build; the last line is "N passed, N failed"
#   make bench    accept (and delivery) throughput against Postfix
#   make asan     the AddressSanitizer + UBSan build in build/asan
#   make fuzz     every libFuzzer harness (tests/fuzz/) for FUZZ_SECONDS (60)
#   make deb      the Debian package build/deb/selor_VERSION_ARCH.deb (pkg/deb/)

CC      ?= cc
PKGS    := libuv hiredis libcares openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PQ_INC  := $(shell pg_config --includedir 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wno-unused-parameter
# The tree reads like docs/architecture.md: core utilities, SMTP in, the
# spool, queue and delivery, accounts, the rules; the programs at the top of src/.
SRC_DIRS := src src/core src/smtp src/spool src/queue src/accounts src/rules src/ops cluster
SRC_INC  := $(addprefix -I,$(SRC_DIRS))
CFLAGS_COMMON := -std=gnu11 $(WARN) -D_GNU_SOURCE $(SRC_INC) \
           $(PKG_CFLAGS) -I$(PQ_INC) -fPIC
OPT     ?= -O2 -g
SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined
LIBS    := $(PKG_LIBS) -luuid -lcrypt -lcrypto -ldl -lm

# Code shared by every program.
CORE_SRC := $(addprefix src/core/,mem.c buf.c arena.c async.c log.c priv.c sysload.c config.c config_reload.c \
              net.c addr.c stream.c srs.c strset.c metrics.c) \
            $(addprefix src/spool/,queue_id.c queue_file.c spool.c spool_commit.c spool_queues.c queue_edit.c) \
            $(addprefix src/accounts/,module.c accounts.c) src/queue/bounce.c
# SPF (RFC 7208): check_host() on src/core/dns.c, used by the rules and
# tests/tools/spf_tool.
SPF_SRC := $(addprefix src/core/,spf.c spf_parse.c spf_macro.c spf_header.c)
# The rules engine (the daemon, and selorctl rules test).
RULES_SRC := $(addprefix src/rules/,rules_parse.c rules_set.c rules_eval.c rules_match.c \
               rules_exec.c) $(SPF_SRC)
# The daemon.
SELOR_SRC := src/main.c src/master.c src/tls_reload.c src/core/dns.c \
             $(addprefix src/ops/,ops.c ops_agent.c ops_http.c) \
             $(addprefix src/smtp/,smtp_worker.c smtp_server.c smtp_policy.c smtp_message.c smtp_auth.c smtp_rules.c \
               smtp_cmd.c smtp_data.c smtp_reply.c smtp_proxy.c smtp_milter.c smtp_milter_pkt.c milter.c \
               milter_proto.c milter_head.c) \
             $(addprefix src/queue/,queue.c queue_ctl.c delivery.c delivery_report.c \
               delivery_domains.c delivery_conf.c delivery_rules.c delivery_plan.c \
               lease.c deliver_smtp.c smtp_cache.c \
               smtp_client.c smtp_client_txn.c smtp_encode.c deliver_local.c) \
             cluster/coord.c cluster/coord_embedded.c cluster/coord_redis.c cluster/coord_redis_limits.c \
             cluster/coord_net.c cluster/coord_sentinel.c cluster/coord_redis_lua.c \
             $(RULES_SRC)
CTL_SRC  := src/selorctl.c src/selorctl_summary.c cluster/coord_ctl.c src/rules/rules_test.c \
            src/core/dns.c $(RULES_SRC) \
            cluster/coord.c cluster/coord_embedded.c cluster/coord_redis.c cluster/coord_redis_limits.c \
            cluster/coord_net.c cluster/coord_sentinel.c cluster/coord_redis_lua.c
MODULES  := passwd tls pgsql
# A module's sources: MOD_SRC_<name>, or modules/<name>/selor_<name>.c alone.
# Code shared by several modules lives in modules/common/.
MOD_SRC_passwd := modules/passwd/selor_passwd.c modules/common/pwscheme.c \
                  modules/common/reqmem.c
MOD_SRC_pgsql := $(wildcard modules/pgsql/*.c) modules/common/pwscheme.c \
                 modules/common/reqmem.c
mod_src = $(or $(MOD_SRC_$(1)),modules/$(1)/selor_$(1).c)
mod_objs = $(addprefix $(B)/obj/,$(addsuffix .o,$(basename $(call mod_src,$(1)))))
MOD_LIBS_passwd := -lcrypt
MOD_LIBS_tls := -lssl -lcrypto
# libpq by name: no pkg-config here (it may run before `make deps`).
MOD_LIBS_pgsql := -lpq -lcrypt

# Build flavours: build/ (optimised) and build/asan (sanitizers).
B  ?= build
BF ?= $(OPT)

all: $(B)/selor $(B)/selorctl $(foreach m,$(MODULES),$(B)/mod/selor_$(m).so) \
     test-tools

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_COMMON) $(BF) -MMD -MP -c -o $@ $<

$(B)/selor: $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC) $(SELOR_SRC))
	@echo "  LD    $@"
	@$(CC) $(BF) -rdynamic -o $@ $^ $(LIBS)

$(B)/selorctl: $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC) $(CTL_SRC))
	@echo "  LD    $@"
	@$(CC) $(BF) -rdynamic -o $@ $^ $(LIBS)

.SECONDEXPANSION:
$(B)/mod/selor_%.so: $$(call mod_objs,$$*)
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(BF) -shared -o $@ $^ $(MOD_LIBS_$*)

# Modules only the tests load (tests/modules/selor_*.c), next to the others.
TEST_MODULES := slow
$(B)/testmod/selor_%.so: $(B)/obj/tests/modules/selor_%.o
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(BF) -shared -o $@ $^

test-mods: $(foreach m,$(TEST_MODULES),$(B)/testmod/selor_$(m).so)

# Unit tests: one cmocka program per tests/unit/test_*.c, linked with the
# core objects of the same flavour.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
UNIT_EXTRA := src/smtp/smtp_cmd.c src/smtp/smtp_data.c src/smtp/smtp_reply.c src/smtp/smtp_proxy.c \
              src/smtp/milter_proto.c src/smtp/milter_head.c \
              src/queue/smtp_client.c src/queue/smtp_client_txn.c src/queue/smtp_cache.c \
              src/queue/smtp_encode.c src/queue/deliver_local.c src/core/dns.c \
              src/queue/lease.c src/queue/delivery_conf.c cluster/coord.c \
              cluster/coord_embedded.c cluster/coord_redis.c cluster/coord_redis_limits.c cluster/coord_net.c \
              cluster/coord_sentinel.c cluster/coord_redis_lua.c $(RULES_SRC)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC) $(UNIT_EXTRA))
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(BF) -rdynamic -o $@ $^ $(LIBS) -lcmocka

# Unit tests of module code linked in directly.
$(B)/tests/test_pwscheme: $(B)/obj/modules/common/pwscheme.o

unit-bins: $(UNIT_BIN)

# Command-line wrappers the system tests call to reach library code
# (tests/tools/*.c); never installed, never part of selor or selorctl.
TOOLS := srs_tool coord_tool spf_tool
$(B)/tools/%: $(B)/obj/tests/tools/%.o $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC))
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(BF) -rdynamic -o $@ $^ $(LIBS)

# A tool's code beyond CORE_SRC.  coord_tool drives the Redis backend,
# which falls back on the embedded one.
$(B)/tools/coord_tool: $(patsubst %.c,$(B)/obj/%.o,cluster/coord.c \
                         cluster/coord_embedded.c cluster/coord_redis.c cluster/coord_redis_limits.c \
                         cluster/coord_net.c cluster/coord_sentinel.c \
                         cluster/coord_redis_lua.c src/core/dns.c)
$(B)/tools/spf_tool: $(patsubst %.c,$(B)/obj/%.o,src/core/dns.c $(SPF_SRC))

test-tools: $(foreach t,$(TOOLS),$(B)/tools/$(t))

asan:
	@$(MAKE) --no-print-directory B=build/asan BF="$(SAN)" all unit-bins test-mods

deps:
	@sh ha/install-deps.sh

# deps first, then a new make: its pkg-config flags are read after the
# packages are installed (a fresh machine has no pkg-config before deps).
run: deps
	@$(MAKE) --no-print-directory all
	@sh ha/run-dev.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
	@sh tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@sh tests/bench/bench.sh

deb: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory deb-pkg

# The packaged programs: the objects of `make all`, but for main.c and
# selorctl.c, compiled again with the package's default configuration.
PKG_CONF := /etc/selor/selor.conf
$(B)/pkgobj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_COMMON) $(BF) -DSELOR_DEFAULT_CONF='"$(PKG_CONF)"' -MMD -MP -c -o $@ $<

$(B)/pkg/selor: $(B)/pkgobj/src/main.o \
                $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC) $(filter-out src/main.c,$(SELOR_SRC)))
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(BF) -rdynamic -o $@ $^ $(LIBS)

$(B)/pkg/selorctl: $(B)/pkgobj/src/selorctl.o \
                   $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC) $(filter-out src/selorctl.c,$(CTL_SRC)))
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(BF) -rdynamic -o $@ $^ $(LIBS)

deb-pkg: $(B)/pkg/selor $(B)/pkg/selorctl
	@sh pkg/deb/mkdeb.sh $(B)

# The harnesses' own rules (fuzz-bins, fuzz-run, fuzz-replay): after CORE_SRC.
include tests/fuzz/fuzz.mk

clean:
	rm -rf build var

.PHONY: all asan deps run test bench clean unit-bins test-mods test-tools deb deb-pkg

-include $(shell find $(B)/obj $(B)/pkgobj -name '*.d' 2>/dev/null)
