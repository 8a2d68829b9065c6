/* check_common.c — tests of the common component. */
#include "testutil.h"

Suite *qnpu_common_suite(void)
{
    return suite_create("common");
}
