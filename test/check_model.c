/* check_model.c — tests of the model component. */
#include "testutil.h"

Suite *qnpu_model_suite(void)
{
    return suite_create("model");
}
