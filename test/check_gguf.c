/* check_gguf.c — tests of the gguf component (to be written). */
#include "testutil.h"

Suite *qnpu_gguf_suite(void)
{
    return suite_create("gguf");
}
