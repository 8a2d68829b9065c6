/* session.c — float32 reference engine. Being written. */
#include "../internal.h"
