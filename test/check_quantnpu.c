/* check_quantnpu.c — the one Check runner: every suite, one summary line. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    /* made here, before the tests fork, so every test shares it and it is removed at exit */
    const char *tmp = qt_tmpdir();
    SRunner *sr = srunner_create(qnpu_common_suite());
    srunner_add_suite(sr, qnpu_model_suite());
    srunner_add_suite(sr, qnpu_gguf_suite());
    srunner_add_suite(sr, qnpu_hf_suite());
    srunner_add_suite(sr, qnpu_tokenizer_suite());
    srunner_add_suite(sr, qnpu_tokenizer_hf_suite());
    srunner_add_suite(sr, qnpu_float_suite());
    srunner_add_suite(sr, qnpu_hadamard_suite());
    srunner_add_suite(sr, qnpu_recipe_suite());
    srunner_add_suite(sr, qnpu_quantizer_suite());
    srunner_add_suite(sr, qnpu_calib_suite());
    srunner_add_suite(sr, qnpu_kernels_suite());
    srunner_add_suite(sr, qnpu_qnpu_file_suite());
    srunner_add_suite(sr, qnpu_report_suite());
    srunner_add_suite(sr, qnpu_int_gemm_suite());
    srunner_add_suite(sr, qnpu_int_ops_suite());
    srunner_add_suite(sr, qnpu_engine_suite());
    srunner_add_suite(sr, qnpu_optim_suite());
    srunner_add_suite(sr, qnpu_reliab_suite());
    srunner_add_suite(sr, qnpu_encodings_suite());
    srunner_add_suite(sr, qnpu_export_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
