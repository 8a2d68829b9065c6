/* error.c — status strings and the per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../internal.h"

#define QNPU__ERRMSG_CAP 1024

static _Thread_local char last_error[QNPU__ERRMSG_CAP];

const char *qnpu_status_string(qnpu_status s)
{
    switch (s) {
    case QNPU_OK: return "success";
    case QNPU_ERR_INVALID_ARG: return "invalid argument";
    case QNPU_ERR_NO_MEMORY: return "out of memory";
    case QNPU_ERR_IO: return "input/output error";
    case QNPU_ERR_FORMAT: return "malformed file";
    case QNPU_ERR_UNSUPPORTED: return "unsupported";
    case QNPU_ERR_STATE: return "invalid state for this call";
    case QNPU_ERR_CANCELLED: return "cancelled";
    case QNPU_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case QNPU_ERR_NUMERIC: return "non-finite number";
    case QNPU_ERR_RECIPE: return "invalid recipe";
    case QNPU_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *qnpu_last_error(void)
{
    return last_error;
}

qnpu_status qnpu__fail(qnpu_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    qnpu__log(QNPU_LOG_DEBUG, "%s: %s", qnpu_status_string(s), last_error);
    return s;
}

void qnpu__error_prefix(const char *fmt, ...)
{
    char prefix[QNPU__ERRMSG_CAP], old[QNPU__ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof last_error - 3)
        n = sizeof last_error - 3;
    memcpy(last_error, prefix, n);
    memcpy(last_error + n, ": ", 2);
    size_t rest = sizeof last_error - n - 3;
    size_t ol = strnlen(old, rest);
    memcpy(last_error + n + 2, old, ol);
    last_error[n + 2 + ol] = '\0';
}
