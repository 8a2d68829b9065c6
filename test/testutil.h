/* testutil.h — helpers shared by the Check suites. */
#ifndef QNPU_TESTUTIL_H
#define QNPU_TESTUTIL_H

#include <check.h>
#include <stddef.h>

#include "quantnpu.h"

/* Path of a file under ../shared (or $QNPU_SHARED); returns a static buffer per call slot. */
const char *qt_shared(const char *rel);
/* 1 if the shared file exists (tests that need ../shared skip quietly without it). */
int qt_have_shared(const char *rel);
/* A fresh temporary directory (removed at exit by the runner), and a path inside it. */
const char *qt_tmpdir(void);
const char *qt_tmpfile(const char *name);
/* Write / read a whole file. */
void qt_write_file(const char *path, const void *data, size_t len);
void *qt_read_file(const char *path, size_t *len);

/* Options with num_threads 1 and the given NULL-terminated name/value pairs set as text. */
qnpu_options *qt_options(const char *const *kv);

/* A growable NUL-terminated text (start with {0}; free p). Allocation failures fail the test. */
typedef struct qt_buf {
    char *p;
    size_t len, cap;
} qt_buf;
void qt_buf_bytes(qt_buf *b, const void *data, size_t n);
void qt_buf_printf(qt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Suites, one per component (test/check_<component>.c). */
Suite *qnpu_common_suite(void);
Suite *qnpu_model_suite(void);
Suite *qnpu_gguf_suite(void);
Suite *qnpu_hf_suite(void);
Suite *qnpu_tokenizer_suite(void);
Suite *qnpu_tokenizer_hf_suite(void);
Suite *qnpu_float_suite(void);
Suite *qnpu_hadamard_suite(void);
Suite *qnpu_recipe_suite(void);
Suite *qnpu_quantizer_suite(void);
Suite *qnpu_calib_suite(void);
Suite *qnpu_kernels_suite(void);
Suite *qnpu_qnpu_file_suite(void);
Suite *qnpu_report_suite(void);
Suite *qnpu_int_gemm_suite(void);
Suite *qnpu_int_ops_suite(void);
Suite *qnpu_engine_suite(void);
Suite *qnpu_optim_suite(void);
Suite *qnpu_reliab_suite(void);
Suite *qnpu_encodings_suite(void);
Suite *qnpu_export_suite(void);

#endif
