# libquantnpu — GNU Makefile (Debian 12). See README.md.
#
#   make                 library (shared + static) and the quantnpu CLI into build/
#   make check           Check suites, CLI tests, Python unittest, ABI, install and docs checks
#   make recipes-doc     regenerate docs/recipes.md from the parameter table and recipes/*.yaml
#   make check-asan      the same suites under AddressSanitizer + UBSan (build/asan/)
#   make check-all       check, check-asan, check-alloc, check-tsan, fuzzing, check-interop, deb (CI)
#   make demo            evaluate, generate from (and later quantize) stories260K
#   make bench           float forward benchmark on a TinyLlama-1.1B-shaped model, the integer
#                        engine on it, and the Quant.npu training pipeline on stories260K
#   make install PREFIX=/usr/local DESTDIR=   /   make uninstall
#   make deps            apt-get install the build dependencies
#   make deb             Debian packages in a scratch copy, lintian, install and use them ($(B)/deb)
#   make check-abi       the ABI gate against test/abi/libquantnpu.abi (make abi-baseline)
#   make docs            Doxygen HTML of include/quantnpu.h into $(B)/docs

PREFIX       ?= /usr/local
EXEC_PREFIX  ?= $(PREFIX)
BINDIR       ?= $(EXEC_PREFIX)/bin
LIBDIR       ?= $(EXEC_PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR       ?= $(PREFIX)/share/man
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
PCRE2_CFLAGS ?= $(shell pkg-config --cflags libpcre2-8 2>/dev/null)
PCRE2_LIBS   ?= $(shell pkg-config --libs libpcre2-8 2>/dev/null || echo -lpcre2-8)
UTF8PROC_CFLAGS ?= $(shell pkg-config --cflags libutf8proc 2>/dev/null)
UTF8PROC_LIBS   ?= $(shell pkg-config --libs libutf8proc 2>/dev/null || echo -lutf8proc)
CHECK_CFLAGS ?= $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   ?= $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)
# ONNX export: C code generated at build time from Debian's onnx.proto (libonnx-dev) by protoc-c
# into $(B)/gen, linked with libprotobuf-c.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
PROTOC_C   ?= protoc-c
PROTOBUF_C_CFLAGS ?= $(shell pkg-config --cflags libprotobuf-c 2>/dev/null)
PROTOBUF_C_LIBS   ?= $(shell pkg-config --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)

# Required flags live apart from the user's CFLAGS, so `make CFLAGS=...` cannot drop them.
QNPU_CFLAGS  = -std=c11 -D_GNU_SOURCE -fvisibility=hidden -Iinclude -Wall -Wextra -Wno-unused-parameter \
               -pthread $(YAML_CFLAGS) $(PROTOBUF_C_CFLAGS) $(PCRE2_CFLAGS) $(UTF8PROC_CFLAGS) -I$(B)/gen $(SAN_FLAGS)
QNPU_LIBS    = $(BLIS_LIBS) $(YAML_LIBS) $(PROTOBUF_C_LIBS) $(PCRE2_LIBS) $(UTF8PROC_LIBS) -lm -pthread
ifeq ($(SAN),1)
SAN_FLAGS    = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ifeq ($(SAN),thread)
SAN_FLAGS    = -fsanitize=thread -fno-omit-frame-pointer
endif

LIB_SRC  := $(sort $(wildcard lib/*/*.c))
# The recipe presets are compiled in: recipes/*.yaml -> $(B)/gen/recipes.c (tools/gen_recipes.sh).
RECIPES  := $(sort $(wildcard recipes/*.yaml))
DYN_OBJ  := $(LIB_SRC:%.c=$(B)/obj/dynamic/%.o) $(B)/obj/dynamic/gen/recipes.o $(B)/obj/dynamic/gen/onnx.pb-c.o
STA_OBJ  := $(LIB_SRC:%.c=$(B)/obj/static/%.o) $(B)/obj/static/gen/recipes.o $(B)/obj/static/gen/onnx.pb-c.o
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/obj/cli/%.o)
TEST_SRC := $(sort $(wildcard test/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(B)/obj/test/%.o)
BENCH_SRC := $(sort $(wildcard bench/*.c))

SHLIB    := $(B)/libquantnpu.so.$(VERSION)
STLIB    := $(B)/libquantnpu.a
CLI      := $(B)/quantnpu
CHECKBIN := $(B)/check_quantnpu

.PHONY: all lib cli examples check-examples check check-all check-c check-python check-abi-basic check-install check-asan \
        check-recipes-doc recipes-doc check-interop check-alloc check-tsan run-alloc-sweep run-threads demo bench install install-lib install-headers install-pc install-bin uninstall clean deps dist

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

# onnx.pb-c.c / .h from the ONNX schema; the sources that include the header wait for it.
$(B)/gen/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(dir $@)
	$(PROTOC_C) --c_out=$(B)/gen -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)
$(B)/gen/onnx.pb-c.c: $(B)/gen/onnx.pb-c.h ;
$(foreach k,static dynamic,$(B)/obj/$(k)/lib/export/onnx.o) $(B)/obj/test/test/check_export.o \
    $(B)/fuzz/obj/lib/export/onnx.o: $(B)/gen/onnx.pb-c.h

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

# examples/NN_*.c, compiled as a user would (C11, the public header only) and run on ../shared.
EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(sort $(wildcard examples/[0-9]*.c)))

examples: $(EXAMPLES)

$(B)/examples/%: examples/%.c include/quantnpu.h $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Iinclude $(SAN_FLAGS) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STLIB) $(QNPU_LIBS)

check-examples: $(EXAMPLES)
	QNPU_SHARED=$(SHARED) sh test/examples/run.sh $(B)

check: all
	$(MAKE) --no-print-directory check-c check-python check-abi-basic check-install check-recipes-doc check-examples \
	    check-abi check-debian check-man

# Everything CI runs (.ci/run, the README's test command), in this order.
check-all: check
	$(MAKE) --no-print-directory check-asan
	$(MAKE) --no-print-directory check-alloc check-tsan
	$(MAKE) --no-print-directory check-fuzz-regress fuzz
	$(MAKE) --no-print-directory check-interop
	$(MAKE) --no-print-directory deb

check-asan:
	CK_TIMEOUT_MULTIPLIER=4 $(MAKE) --no-print-directory B=build/asan SAN=1 CFLAGS="-O1 -g" check-c
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	    $(MAKE) --no-print-directory B=build/asan SAN=1 CFLAGS="-O1 -g" check-python

# ---- reliability (docs/reliability.md): allocation-failure sweep, I/O errors, threads -------
# check-alloc: test/reliab/alloc_sweep.c under ASan + LSan (SAN=1 build in $(SAN_B)/asan);
# check-tsan: test/reliab/threads.c under ThreadSanitizer (gcc; $(SAN_B)/tsan).
SAN_B ?= $(B)
$(B)/reliab/%: test/reliab/%.c $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STLIB) $(QNPU_LIBS)

run-alloc-sweep: $(B)/reliab/alloc_sweep $(B)/reliab/io_errors
	$(B)/reliab/alloc_sweep $(SHARED)
	sh test/reliab/io_errors.sh $(B)/reliab/io_errors $(SHARED)

run-threads: $(B)/reliab/threads
	$(B)/reliab/threads $(SHARED) 4

check-alloc:
	$(MAKE) --no-print-directory B=$(SAN_B)/asan SAN=1 CFLAGS="-O1 -g" run-alloc-sweep

check-tsan:
	BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	    $(MAKE) --no-print-directory B=$(SAN_B)/tsan SAN=thread CFLAGS="-O1 -g" run-threads

# ---- interop: the ONNX exports in ONNX Runtime and the onnx checker (docs/export.md) -------
# onnxruntime-node (CPU binaries in the package; its CUDA download is skipped) goes into
# $(B)/interop; Debian's python3-onnx (make deps) is run as /usr/bin/python3.
ORT_NODE_VERSION ?= 1.30.0

$(B)/interop/ref: test/interop/ref.c $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STLIB) $(QNPU_LIBS)

check-interop: $(CLI) $(B)/interop/ref
	test -d $(B)/interop/node_modules/onnxruntime-node || \
	    ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --prefix $(B)/interop \
	    onnxruntime-node@$(ORT_NODE_VERSION)
	QNPU_SHARED=$(SHARED) sh test/interop/check_interop.sh $(B)

# ---- docs/recipes.md, generated from the parameter table and the presets ------------------

$(B)/tools/gen_recipes_doc: tools/gen_recipes_doc.c $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(QNPU_CFLAGS) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STLIB) $(QNPU_LIBS)

recipes-doc: $(B)/tools/gen_recipes_doc
	$(B)/tools/gen_recipes_doc > docs/recipes.md.tmp && mv docs/recipes.md.tmp docs/recipes.md

# ---- fuzzing (docs/fuzzing.md) -------------------------------------------------------------
# libFuzzer harnesses test/fuzz/fuzz_NAME.c, built with clang against the library's objects
# compiled with -fsanitize=fuzzer-no-link,address,undefined into $(B)/fuzz/obj.
#   make fuzz [FUZZ_TIME=60] [FUZZ_JOBS=2]   run every harness FUZZ_TIME seconds, FUZZ_JOBS at once
#   make fuzz-NAME                           one harness (e.g. make fuzz-gguf FUZZ_TIME=600;
#                                            FUZZ_RUNS=N FUZZ_TIME=0: stop after N executions)
#   make check-fuzz-regress                  replay test/fuzz/corpus/NAME and test/fuzz/regress/NAME
#   make fuzz-corpus                         regenerate the seeds (tools/gen_fuzz_corpus.c)
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 60
FUZZ_JOBS   ?= 2
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Iinclude -Ilib -g -O1 -Wall -Wextra -Wno-unused-parameter \
               -pthread $(YAML_CFLAGS) $(PROTOBUF_C_CFLAGS) $(PCRE2_CFLAGS) $(UTF8PROC_CFLAGS) -I$(B)/gen \
               -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_NAMES  := $(patsubst test/fuzz/fuzz_%.c,%,$(sort $(wildcard test/fuzz/fuzz_*.c)))
FUZZ_BINS   := $(FUZZ_NAMES:%=$(B)/fuzz/fuzz_%)
FUZZ_OBJ    := $(LIB_SRC:%.c=$(B)/fuzz/obj/%.o) $(B)/fuzz/obj/gen/recipes.o $(B)/fuzz/obj/gen/onnx.pb-c.o

.PHONY: fuzz fuzz-build fuzz-corpus check-fuzz-regress $(FUZZ_NAMES:%=fuzz-%)

# clang needs many minutes and about 1 GB for the AVX-512 VNNI kernels under ASan + coverage;
# the fuzz build keeps their reference fallback (the engine then picks the AVX2 kernels).
$(B)/fuzz/obj/lib/kernels/int_gemm_vnni.o: FUZZ_EXTRA := -DQNPU_NO_SIMD
$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_EXTRA) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(B)/fuzz/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(B)/fuzz/libquantnpu.a: $(FUZZ_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz_util.h $(B)/fuzz/libquantnpu.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/fuzz/libquantnpu.a $(QNPU_LIBS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_NAMES:%=fuzz-%): fuzz-%: $(B)/fuzz/fuzz_%
	QNPU_SHARED=$(SHARED) sh test/fuzz/run.sh $< $* $(FUZZ_TIME) $(B)/fuzz $(FUZZ_RUNS)

fuzz: fuzz-build
	$(MAKE) --no-print-directory -j$(FUZZ_JOBS) -O $(FUZZ_NAMES:%=fuzz-%)

check-fuzz-regress: fuzz-build
	QNPU_SHARED=$(SHARED) sh test/fuzz/regress.sh $(B)/fuzz $(FUZZ_NAMES)

# the seed generator links the same instrumented library (so it runs under ASan too)
$(B)/fuzz/gen_fuzz_corpus: tools/gen_fuzz_corpus.c $(B)/fuzz/libquantnpu.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(B)/fuzz/libquantnpu.a $(QNPU_LIBS)

fuzz-corpus: $(B)/fuzz/gen_fuzz_corpus
	$(B)/fuzz/gen_fuzz_corpus test/fuzz/corpus
	mkdir -p test/fuzz/corpus/recipe && cp recipes/*.yaml test/data/recipes/*.yaml test/fuzz/corpus/recipe/

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

install: install-lib install-headers install-pc install-bin install-man

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
	      $(DESTDIR)$(BINDIR)/quantnpu $(DESTDIR)$(MANDIR)/man1/quantnpu.1 $(DESTDIR)$(MANDIR)/man3/libquantnpu.3

# ---- man pages, API docs, ABI gate, Debian packages (docs/abi.md, docs/packaging.md) -----

.PHONY: install-man check-man docs check-abi abi-baseline check-debian deb-symbols deb

install-man:
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	$(INSTALL) -m 644 docs/man/quantnpu.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 docs/man/libquantnpu.3 $(DESTDIR)$(MANDIR)/man3/

# The pages render without a groff warning; quantnpu.1 names every command and option of --help.
check-man: $(CLI)
	sh test/man/check_man.sh $(CLI) docs/man

docs:
	@mkdir -p $(B)/docs
	(cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $(B)/docs"; echo "PROJECT_NUMBER = $(VERSION)") | doxygen -

# The gate needs DWARF: the default CFLAGS have -g. check_abi_gate.sh proves that it fails on
# breaking changes, in a scratch copy that reuses $(B)'s objects.
ABI_BASELINE ?= test/abi/libquantnpu.abi
check-abi: $(SHLIB)
	sh test/abi/abi.sh check $(ABI_BASELINE) $(SHLIB)
	sh test/abi/check_abi_gate.sh $(B) $(ABI_BASELINE)

abi-baseline: $(SHLIB)
	sh test/abi/abi.sh dump $(SHLIB) $(ABI_BASELINE)

check-debian:
	sh test/deb/check_debian.sh

deb-symbols:
	sh tools/gen_symbols.sh lib/libquantnpu.map > debian/libquantnpu0.symbols

# dpkg-buildpackage in a scratch copy under $(B)/deb, lintian, then install the packages, build
# and run a program against them, and purge them again (QNPU_DEB_KEEP=1 keeps them installed).
deb:
	sh test/deb/run_deb.sh $(B)/deb $(SHARED)

clean:
	rm -rf build

deps:
	apt-get update
	apt-get install -y --no-install-recommends build-essential pkg-config libblis-dev libyaml-dev \
	    check python3 clang libclang-rt-14-dev \
	    libonnx-dev protobuf-c-compiler libprotobuf-c-dev python3-onnx libpcre2-dev libutf8proc-dev \
	    abigail-tools doxygen groff-base rsync debhelper dh-python dpkg-dev fakeroot lintian
	command -v npm >/dev/null || apt-get install -y --no-install-recommends nodejs npm

dist:
	git archive --prefix=libquantnpu-$(VERSION)/ -o libquantnpu-$(VERSION).tar.gz HEAD

-include $(DYN_OBJ:.o=.d) $(STA_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d)
