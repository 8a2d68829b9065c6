/* version.c — runtime version getters (compare with the header's macros). */
#include "../internal.h"

unsigned qnpu_version_number(void) { return QNPU_VERSION_NUMBER; }
const char *qnpu_version_string(void) { return QNPU_VERSION_STRING; }
