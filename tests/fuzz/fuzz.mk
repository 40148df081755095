# tests/fuzz/fuzz.mk - libFuzzer harnesses (tests/fuzz/fuzz_*.c), built
# with clang, AddressSanitizer and UBSan.  Included from the top-level
# Makefile (or used as `make -f Makefile -f tests/fuzz/fuzz.mk TARGET`).
#
#   make fuzz-bins       build/fuzz/fuzz_<name> for every harness
#   make fuzz            build, then run each harness FUZZ_SECONDS (60) seconds
#                        on a working corpus build/fuzz/corpus/<name>/ seeded
#                        from tests/fuzz/corpus/<name>/; fails when one crashed
#                        (the input is left in build/fuzz/<name>-crash-*)
#   make fuzz-replay     every committed corpus through its harness (seconds)
#
#   FUZZ_NAMES="addr smtp_cmd"  only these harnesses; FUZZ_ARGS: more
#   libFuzzer options (e.g. FUZZ_ARGS=-jobs=4).
#
# pkg-config is read when a recipe runs, never while make parses this file:
# on a fresh machine `make deps` installs it after make has started.

ifndef SELOR_FUZZ_MK
SELOR_FUZZ_MK := 1
fuzz_saved_goal := $(.DEFAULT_GOAL)

FUZZ_CC      ?= clang
FUZZ_AR      ?= ar
FUZZ_DIR     := build/fuzz
FUZZ_OBJ     := $(FUZZ_DIR)/obj
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
FUZZ_ALL     := smtp_cmd smtp_data addr queue_file config passwd smtp_reply bounce \
                smtp_auth srs spf rules smtp_proxy milter
FUZZ_NAMES   ?= $(FUZZ_ALL)

# Read once, on first use (recursive: nothing runs at parse time).
FUZZ_PKGS       := libuv hiredis libcares openssl
FUZZ_PKG_CFLAGS  = $(eval FUZZ_PKG_CFLAGS := $$(shell pkg-config --cflags $(FUZZ_PKGS)))$(FUZZ_PKG_CFLAGS)
FUZZ_PKG_LIBS    = $(eval FUZZ_PKG_LIBS := $$(shell pkg-config --libs $(FUZZ_PKGS)))$(FUZZ_PKG_LIBS)

FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_WARN    := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
                -Wmissing-prototypes -Wno-unused-parameter
# Project sources: their warnings are the project's business (gcc -Werror
# in the main build); harnesses: -Werror.
FUZZ_CFLAGS   = -std=gnu11 -D_GNU_SOURCE $(or $(SRC_INC),-Isrc -Icluster) $(FUZZ_PKG_CFLAGS) \
                -O1 -g -fno-omit-frame-pointer $(FUZZ_WARN) \
                -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_LDFLAGS  = -fsanitize=fuzzer $(FUZZ_SAN)
FUZZ_LIBS     = $(FUZZ_PKG_LIBS) -luuid -lcrypt -lcrypto -ldl -lm

# The code the harnesses reach, as an archive: a harness links only the
# objects it uses, so coverage counts only code it can reach.  The core
# of the top-level Makefile (CORE_SRC, when this file is included after it)
# and the pure SMTP parsers.
FUZZ_LIB_SRC := $(sort $(CORE_SRC) src/smtp/smtp_cmd.c src/smtp/smtp_data.c \
                src/smtp/smtp_reply.c src/smtp/smtp_proxy.c)
FUZZ_LIB     := $(FUZZ_DIR)/libselor_fuzz.a
FUZZ_EXTRA_passwd := $(FUZZ_OBJ)/modules/passwd/selor_passwd.o \
                     $(FUZZ_OBJ)/modules/common/pwscheme.o \
                     $(FUZZ_OBJ)/modules/common/reqmem.o
# SPF's pure parts (not in CORE_SRC: only programs that do DNS link SPF).
FUZZ_EXTRA_spf := $(FUZZ_OBJ)/src/core/spf_parse.o $(FUZZ_OBJ)/src/core/spf_macro.o \
                  $(FUZZ_OBJ)/src/core/spf_header.o
# The rules' parser and matchers (and what they check arguments with).
FUZZ_EXTRA_rules := $(addprefix $(FUZZ_OBJ)/src/rules/,rules_parse.o rules_match.o \
                      rules_set.o rules_exec.o) $(FUZZ_OBJ)/src/core/spf_header.o
# The milter wire format and header changes.
FUZZ_EXTRA_milter := $(FUZZ_OBJ)/src/smtp/milter_proto.o $(FUZZ_OBJ)/src/smtp/milter_head.o
FUZZ_BINS     = $(foreach n,$(FUZZ_ALL),$(FUZZ_DIR)/fuzz_$(n))

$(FUZZ_OBJ)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_OBJ)/modules/%.o: modules/%.c
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_OBJ)/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -MMD -MP -c -o $@ $<

$(FUZZ_LIB): $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(FUZZ_LIB_SRC))
	@echo "  AR    $@"
	@rm -f $@
	@$(FUZZ_AR) rcs $@ $^

define FUZZ_LINK_RULE
$(FUZZ_DIR)/fuzz_$(1): $(FUZZ_OBJ)/tests/fuzz/fuzz_$(1).o $(FUZZ_EXTRA_$(1)) $(FUZZ_LIB)
	@echo "  LD    $$@"
	@$$(FUZZ_CC) $$(FUZZ_LDFLAGS) -o $$@ $$^ $$(FUZZ_LIBS)
endef
$(foreach n,$(FUZZ_ALL),$(eval $(call FUZZ_LINK_RULE,$(n))))

# The l file seeds come from the real formatter (tests/fuzz/seed_queue_file.c).
$(FUZZ_DIR)/seed_queue_file: $(FUZZ_OBJ)/tests/fuzz/seed_queue_file.o $(FUZZ_LIB)
	@echo "  LD    $@"
	@$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(FUZZ_LIBS)

fuzz-bins: $(FUZZ_BINS)

# deps: the top-level Makefile's (clang comes with it), when included from it.
fuzz: fuzz-deps fuzz-bins
	@FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_ARGS='$(FUZZ_ARGS)' \
	    sh tests/fuzz/fuzz.sh $(FUZZ_NAMES)

fuzz-replay: fuzz-bins
	@FUZZ_NO_BUILD=1 sh tests/fuzz/replay.sh

# Rewrites the generated l files (gen-*) of tests/fuzz/corpus/queue_file.
fuzz-seeds: $(FUZZ_DIR)/seed_queue_file
	@$(FUZZ_DIR)/seed_queue_file tests/fuzz/corpus/queue_file

fuzz-deps:
	@if [ -f ha/install-deps.sh ]; then sh ha/install-deps.sh; fi

.PHONY: fuzz fuzz-bins fuzz-replay fuzz-seeds fuzz-deps

-include $(wildcard $(FUZZ_OBJ)/src/*.d $(FUZZ_OBJ)/src/*/*.d $(FUZZ_OBJ)/modules/*/*.d \
                    $(FUZZ_OBJ)/tests/fuzz/*.d)

# Including this file never changes the default goal.
.DEFAULT_GOAL := $(fuzz_saved_goal)
endif
