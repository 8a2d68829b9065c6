/* check_quantnpu.c — the one Check runner: every suite, one summary line. */
#include <stdlib.h>

#include "testutil.h"

int main(void)
{
    SRunner *sr = srunner_create(qnpu_common_suite());
    srunner_add_suite(sr, qnpu_model_suite());
    srunner_add_suite(sr, qnpu_gguf_suite());
    srunner_add_suite(sr, qnpu_hf_suite());
    srunner_add_suite(sr, qnpu_tokenizer_suite());
    srunner_add_suite(sr, qnpu_float_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
