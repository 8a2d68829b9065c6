/* check_tokenizer.c — tests of the tokenizer component (to be written). */
#include "testutil.h"

Suite *qnpu_tokenizer_suite(void)
{
    return suite_create("tokenizer");
}
