/* log.c — process-global log sink (silent by default) and the live-handle counter that guards
 * the global setters. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../internal.h"

static qnpu_log_fn log_fn;
static void *log_user;
static int log_level = QNPU_LOG_WARN;
static atomic_int live_handles;

void qnpu__handle_acquire(void) { atomic_fetch_add(&live_handles, 1); }
void qnpu__handle_release(void) { atomic_fetch_sub(&live_handles, 1); }
int qnpu__handles_live(void) { return atomic_load(&live_handles); }

qnpu_status qnpu_set_log_callback(qnpu_log_fn fn, void *user)
{
    if (qnpu__handles_live())
        return qnpu__fail(QNPU_ERR_STATE, "qnpu_set_log_callback: called while handles exist");
    log_fn = fn;
    log_user = user;
    return QNPU_OK;
}

qnpu_status qnpu_set_log_level(int level)
{
    if (level < 0 || level > QNPU_LOG_DEBUG)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_set_log_level: level %d not in 0..4", level);
    log_level = level;
    return QNPU_OK;
}

void qnpu__log(int level, const char *fmt, ...)
{
    qnpu_log_fn fn = log_fn;
    int limit = log_level;
    if (!fn) {
        const char *env = getenv("QNPU_LOG_LEVEL");
        if (!env)
            return;
        limit = atoi(env);
    }
    if (level > limit)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (fn)
        fn(log_user, level, line);
    else
        fprintf(stderr, "quantnpu: %s\n", line);
}
