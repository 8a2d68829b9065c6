/* check_float.c — tests of the float component. */
#include "testutil.h"

Suite *qnpu_float_suite(void)
{
    return suite_create("float");
}
