/* check_hf.c — tests of the hf component (to be written). */
#include "testutil.h"

Suite *qnpu_hf_suite(void)
{
    return suite_create("hf");
}
