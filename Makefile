# libquantnpu — GNU Makefile (Debian 12). See README.md.
#
#   make                 library (shared + static) and the quantnpu CLI into build/
#   make check           Check suites, CLI tests, Python unittest, ABI, install and docs checks
#   make recipes-doc     regenerate docs/recipes.md from the parameter table and recipes/*.yaml
#   make check-asan      the same suites under AddressSanitizer + UBSan (build/asan/)
#   make demo            evaluate, generate from (and later quantize) stories260K
#   make bench           float forward benchmark on a TinyLlama-1.1B-shaped model, the integer
#                        engine on it, and the Quant.npu training pipeline on stories260K
#   make install PREFIX=/usr/local DESTDIR=   /   make uninstall
#   make deps            apt-get install the build dependencies

PREFIX       ?= /usr/local
EXEC_PREFIX  ?= $(PREFIX)
BINDIR       ?= $(EXEC_PREFIX)/bin
LIBDIR       ?= $(EXEC_PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install

CC      ?= cc
CFLAGS  ?= -O2 -g
SHARED  ?= ../shared

B ?= build

VERSION := $(shell sed -n 's/^\#define QNPU_VERSION_STRING "\(.*\)"/\1/p' include/quantnpu.h)
MAJOR   := $(shell sed -n 's/^\#define QNPU_VERSION_MAJOR \([0-9]*\)/\1/p' include/quantnpu.h)
SONAME  := libquantnpu.so.$(MAJOR)

BLIS_LIBS ?= $(shell pkg-config --libs blis 2>/dev/null || echo -lblis -lm)
YAML_CFLAGS ?= $(shell pkg-config --cflags yaml-0.1 2>/dev/null)
YAML_LIBS   ?= $(shell pkg-config --libs yaml-0.1 2>/dev/null || echo -lyaml)
CHECK_CFLAGS ?= $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   ?= $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

# Required flags live apart from the user's CFLAGS, so `make CFLAGS=...` cannot drop them.
QNPU_CFLAGS  = -std=c11 -D_GNU_SOURCE -fvisibility=hidden -Iinclude -Wall -Wextra -Wno-unused-parameter \
               -pthread $(YAML_CFLAGS) $(SAN_FLAGS)
QNPU_LIBS    = $(BLIS_LIBS) $(YAML_LIBS) -lm -pthread
ifeq ($(SAN),1)
SAN_FLAGS    = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

LIB_SRC  := $(sort $(wildcard lib/*/*.c))
# The recipe presets are compiled in: recipes/*.yaml -> $(B)/gen/recipes.c (tools/gen_recipes.sh).
RECIPES  := $(sort $(wildcard recipes/*.yaml))
DYN_OBJ  := $(LIB_SRC:%.c=$(B)/obj/dynamic/%.o) $(B)/obj/dynamic/gen/recipes.o
STA_OBJ  := $(LIB_SRC:%.c=$(B)/obj/static/%.o) $(B)/obj/static/gen/recipes.o
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/obj/cli/%.o)
TEST_SRC := $(sort $(wildcard test/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(B)/obj/test/%.o)
BENCH_SRC := $(sort $(wildcard bench/*.c))

SHLIB    := $(B)/libquantnpu.so.$(VERSION)
STLIB    := $(B)/libquantnpu.a
CLI      := $(B)/quantnpu
CHECKBIN := $(B)/check_quantnpu

.PHONY: all lib cli examples check check-c check-python check-abi-basic check-install check-asan \
        check-recipes-doc recipes-doc demo bench install install-lib install-headers install-pc install-bin uninstall clean deps dist

all: lib cli

lib: $(SHLIB) $(STLIB) $(B)/libquantnpu.pc

cli: $(CLI)

# The integer engine's scalar operators run every element through loops over the code storage
# types; -O3 unswitches and unrolls them (decode ~20 % faster on the TinyLlama shape). Integer
# code only, so the results are the same bit for bit.
HOT_OBJ := $(foreach k,static dynamic,$(B)/obj/$(k)/lib/kernels/int_ops_ref.o $(B)/obj/$(k)/lib/engine/decoder.o)
# The stage-1 attention's row loops (softmax with a polynomial exponential) and the quantizer
# backward's aggregation vectorize at -O3; -fno-trapping-math lets the clamps' comparisons become
# blends (no value changes).
HOT_OBJ += $(foreach k,static dynamic,$(B)/obj/$(k)/lib/optim/backward.o)
HOT_OBJ += $(foreach k,static dynamic,$(B)/obj/$(k)/lib/optim/qgrad.o)
$(foreach k,static dynamic,$(B)/obj/$(k)/lib/optim/backward.o $(B)/obj/$(k)/lib/optim/qgrad.o): HOT_CFLAGS := -O3 -fno-trapping-math
$(HOT_OBJ): HOT_CFLAGS := -O3

$(B)/obj/dynamic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) -fPIC $(CPPFLAGS) $(CFLAGS) $(HOT_CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/static/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(HOT_CFLAGS) -MMD -MP -c $< -o $@

$(B)/gen/recipes.c: tools/gen_recipes.sh $(RECIPES)
	@mkdir -p $(dir $@)
	sh tools/gen_recipes.sh $(RECIPES) > $@.tmp && mv $@.tmp $@

$(B)/obj/dynamic/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) -Ilib -fPIC $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/static/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) -Ilib $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/cli/%.o $(B)/obj/test/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) -Ilib $(CHECK_CFLAGS) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(SHLIB): $(DYN_OBJ) lib/libquantnpu.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libquantnpu.map -Wl,-z,defs \
	    $(SAN_FLAGS) $(LDFLAGS) -o $@ $(DYN_OBJ) $(QNPU_LIBS)
	ln -sf libquantnpu.so.$(VERSION) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libquantnpu.so

$(STLIB): $(STA_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(CLI): $(CLI_OBJ) $(STLIB)
	$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STLIB) $(QNPU_LIBS)

$(B)/libquantnpu.pc: pkgconfig/libquantnpu.pc.in include/quantnpu.h
	@mkdir -p $(B)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@EXEC_PREFIX@|$(EXEC_PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# ---- tests -------------------------------------------------------------------------------

$(CHECKBIN): $(TEST_OBJ) $(STLIB)
	$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(STLIB) $(QNPU_LIBS) $(CHECK_LIBS)

# One runner, one Check summary line. QNPU_SHARED tells the tests where ../shared is.
check-c: $(CHECKBIN) $(CLI)
	CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-600} QNPU_SHARED=$(SHARED) QNPU_CLI=$(CLI) $(CHECKBIN)
	sh test/kernels/no_float.sh $(B)
	QNPU_SHARED=$(SHARED) sh test/cli/test_cli.sh $(CLI)

check-python: $(SHLIB)
	QNPU_LIBRARY=$(CURDIR)/$(B)/$(SONAME) QNPU_SHARED=$(SHARED) PYTHONPATH=python \
	    python3 -m unittest discover -s test/python -t test/python

check-abi-basic: $(SHLIB)
	sh test/abi/check_abi.sh $(B) lib/libquantnpu.map $(SONAME)

check-install: lib
	sh test/abi/check_install.sh $(B)

check-recipes-doc: $(B)/tools/gen_recipes_doc
	sh test/recipes/check_doc.sh $(B)/tools/gen_recipes_doc docs/recipes.md

check: all
	$(MAKE) --no-print-directory check-c check-python check-abi-basic check-install check-recipes-doc

check-asan:
	CK_TIMEOUT_MULTIPLIER=4 $(MAKE) --no-print-directory B=build/asan SAN=1 CFLAGS="-O1 -g" check-c
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	    $(MAKE) --no-print-directory B=build/asan SAN=1 CFLAGS="-O1 -g" check-python

# ---- docs/recipes.md, generated from the parameter table and the presets ------------------

$(B)/tools/gen_recipes_doc: tools/gen_recipes_doc.c $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STLIB) $(QNPU_LIBS)

recipes-doc: $(B)/tools/gen_recipes_doc
	$(B)/tools/gen_recipes_doc > docs/recipes.md.tmp && mv docs/recipes.md.tmp docs/recipes.md

# ---- demo and bench ----------------------------------------------------------------------

demo: $(CLI) $(B)/bench/gen_model
	sh examples/demo.sh $(CLI) $(SHARED) $(B)/bench/gen_model

# Each bench/*.c is one program; they share bench/bench_util.h and link cli/machine.o (the
# machine peaks and machine_pick_blis_arch, which they call as the CLI does).
# bench_train counts the FLOPs of every BLIS sgemm at run time, to check its FLOP model.
BENCH_OBJ := $(B)/obj/cli/cli/machine.o
$(B)/bench/bench_train: BENCH_LDFLAGS := -Wl,--wrap=bli_sgemm_ex
$(B)/bench/%: bench/%.c bench/bench_util.h $(BENCH_OBJ) $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) -Ilib $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BENCH_OBJ) $(STLIB) $(QNPU_LIBS) $(BENCH_LDFLAGS)

bench: $(BENCH_SRC:bench/%.c=$(B)/bench/%) $(CLI)
	QNPU_SHARED=$(SHARED) sh bench/run.sh $(B)

# ---- install -----------------------------------------------------------------------------

install: install-lib install-headers install-pc install-bin

install-lib: lib
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)
	$(INSTALL) -m 644 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libquantnpu.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libquantnpu.so

install-headers:
	$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR)
	$(INSTALL) -m 644 include/quantnpu.h $(DESTDIR)$(INCLUDEDIR)/

install-pc: $(B)/libquantnpu.pc
	$(INSTALL) -d $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 644 $(B)/libquantnpu.pc $(DESTDIR)$(PKGCONFIGDIR)/

install-bin: cli
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 755 $(CLI) $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libquantnpu.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libquantnpu.so $(DESTDIR)$(LIBDIR)/libquantnpu.a \
	      $(DESTDIR)$(INCLUDEDIR)/quantnpu.h $(DESTDIR)$(PKGCONFIGDIR)/libquantnpu.pc \
	      $(DESTDIR)$(BINDIR)/quantnpu

clean:
	rm -rf build

deps:
	apt-get update
	apt-get install -y --no-install-recommends build-essential pkg-config libblis-dev libyaml-dev \
	    check python3

dist:
	git archive --prefix=libquantnpu-$(VERSION)/ -o libquantnpu-$(VERSION).tar.gz HEAD

-include $(DYN_OBJ:.o=.d) $(STA_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
