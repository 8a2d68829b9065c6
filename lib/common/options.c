/* options.c — the parameter table (params.def) and the typed options object. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../internal.h"

enum { T_INT = QNPU_PTYPE_INT, T_FLOAT = QNPU_PTYPE_FLOAT, T_BOOL = QNPU_PTYPE_BOOL,
       T_CHOICE = QNPU_PTYPE_CHOICE, T_STRING = QNPU_PTYPE_STRING };

typedef struct param_row {
    qnpu_param id;
    const char *name;
    int type;
    double def, min, max;
    const char *choices;
    const char *doc;
} param_row;

#define INT T_INT
#define FLOAT T_FLOAT
#define BOOL T_BOOL
#define CHOICE T_CHOICE
#define STRING T_STRING
static const param_row table[] = {
#define QNPU_PARAM(id, name, type, def, mn, mx, choices, doc) {id, name, type, def, mn, mx, choices, doc},
#include "params.def"
#undef QNPU_PARAM
};
#undef INT
#undef FLOAT
#undef BOOL
#undef CHOICE
#undef STRING

#define N_PARAMS ((int)(sizeof table / sizeof table[0]))

struct qnpu_options {
    double value[N_PARAMS]; /* every numeric type fits a double exactly (ints are bounded by 2^53) */
    char *text[N_PARAMS];   /* STRING parameters: an owned copy, NULL = empty */
};

static int row_of(qnpu_param p)
{
    for (int i = 0; i < N_PARAMS; i++)
        if (table[i].id == p)
            return i;
    return -1;
}

int qnpu_param_count(void) { return N_PARAMS; }

qnpu_status qnpu_param_at(int i, qnpu_param *out)
{
    if (i < 0 || i >= N_PARAMS || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_param_at: index %d not in 0..%d", i, N_PARAMS - 1);
    *out = table[i].id;
    return QNPU_OK;
}

qnpu_status qnpu_param_from_name(const char *name, qnpu_param *out)
{
    if (!name || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_param_from_name: NULL argument");
    for (int i = 0; i < N_PARAMS; i++)
        if (strcmp(table[i].name, name) == 0) {
            *out = table[i].id;
            return QNPU_OK;
        }
    return qnpu__fail(QNPU_ERR_INVALID_ARG, "unknown parameter '%s'", name);
}

qnpu_status qnpu_param_info(qnpu_param p, const char **name, int *type, double *min, double *max)
{
    int r = row_of(p);
    if (r < 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "unknown parameter id %d", (int)p);
    if (name) *name = table[r].name;
    if (type) *type = table[r].type;
    if (min) *min = table[r].min;
    if (max) *max = table[r].max;
    return QNPU_OK;
}

const char *qnpu_param_doc(qnpu_param p)
{
    int r = row_of(p);
    return r < 0 ? NULL : table[r].doc;
}

const char *qnpu_param_choices(qnpu_param p)
{
    int r = row_of(p);
    return r < 0 ? NULL : table[r].choices;
}

qnpu_status qnpu_options_create(qnpu_options **out)
{
    if (!out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_options_create: NULL out");
    qnpu_options *o = qnpu__calloc(1, sizeof *o);
    if (!o)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_options_create: out of memory");
    for (int i = 0; i < N_PARAMS; i++)
        o->value[i] = table[i].def;
    qnpu__handle_acquire();
    *out = o;
    return QNPU_OK;
}

void qnpu_options_free(qnpu_options *o)
{
    if (!o)
        return;
    for (int i = 0; i < N_PARAMS; i++)
        qnpu__free(o->text[i]);
    qnpu__free(o);
    qnpu__handle_release();
}

qnpu_status qnpu_options_clone(const qnpu_options *src, qnpu_options **out)
{
    qnpu_status s = qnpu_options_create(out);
    if (s != QNPU_OK || !src)
        return s;
    memcpy((*out)->value, src->value, sizeof src->value);
    for (int i = 0; i < N_PARAMS; i++)
        if (src->text[i] && !((*out)->text[i] = qnpu__strdup(src->text[i]))) {
            qnpu_options_free(*out);
            *out = NULL;
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_options_clone: out of memory");
        }
    return QNPU_OK;
}

static qnpu_status lookup(const qnpu_options *o, qnpu_param p, const char *fn, int *row)
{
    (void)o;
    *row = row_of(p);
    if (*row < 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: unknown parameter id %d", fn, (int)p);
    return QNPU_OK;
}

static qnpu_status set_number(qnpu_options *o, int r, double v)
{
    const param_row *row = &table[r];
    if (row->type == T_CHOICE)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: takes one of %s, not a number", row->name, row->choices);
    if (row->type == T_STRING)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: takes a string, not a number", row->name);
    if (row->type != T_FLOAT && v != floor(v))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: takes an integer, got %g", row->name, v);
    if (!(v >= row->min && v <= row->max))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: %g is outside [%g, %g]", row->name, v, row->min, row->max);
    o->value[r] = v;
    return QNPU_OK;
}

qnpu_status qnpu_options_set_int(qnpu_options *o, qnpu_param p, int64_t v)
{
    int r;
    if (!o)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_options_set_int: NULL options");
    qnpu_status s = lookup(o, p, "qnpu_options_set_int", &r);
    if (s != QNPU_OK)
        return s;
    return set_number(o, r, (double)v);
}

qnpu_status qnpu_options_set_float(qnpu_options *o, qnpu_param p, double v)
{
    int r;
    if (!o)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_options_set_float: NULL options");
    qnpu_status s = lookup(o, p, "qnpu_options_set_float", &r);
    return s != QNPU_OK ? s : set_number(o, r, v);
}

/* index of `word` in a '|'-separated list, or -1 */
static int choice_index(const char *choices, const char *word)
{
    size_t wl = strlen(word);
    int idx = 0;
    for (const char *c = choices; c; idx++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == wl && strncmp(c, word, len) == 0)
            return idx;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

qnpu_status qnpu_options_set_str(qnpu_options *o, qnpu_param p, const char *v)
{
    int r;
    if (!o || !v)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_options_set_str: NULL argument");
    qnpu_status s = lookup(o, p, "qnpu_options_set_str", &r);
    if (s != QNPU_OK)
        return s;
    const param_row *row = &table[r];
    if (row->type == T_STRING) {
        char *copy = qnpu__strdup(v);
        if (!copy)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", row->name);
        qnpu__free(o->text[r]);
        o->text[r] = copy;
        return QNPU_OK;
    }
    if (row->type == T_CHOICE) {
        int i = choice_index(row->choices, v);
        if (i < 0)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: '%s' is not one of %s", row->name, v, row->choices);
        o->value[r] = i;
        return QNPU_OK;
    }
    if (row->type == T_BOOL) {
        if (!strcmp(v, "true") || !strcmp(v, "1"))
            return set_number(o, r, 1);
        if (!strcmp(v, "false") || !strcmp(v, "0"))
            return set_number(o, r, 0);
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: '%s' is not true or false", row->name, v);
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: '%s' is not a number", row->name, v);
    return set_number(o, r, d);
}

qnpu_status qnpu_options_get_int(const qnpu_options *o, qnpu_param p, int64_t *out)
{
    int r;
    qnpu_status s = lookup(o, p, "qnpu_options_get_int", &r);
    if (s != QNPU_OK)
        return s;
    if (!out || table[r].type == T_FLOAT || table[r].type == T_STRING)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: not an integer parameter", table[r].name);
    *out = (int64_t)(o ? o->value[r] : table[r].def);
    return QNPU_OK;
}

qnpu_status qnpu_options_get_float(const qnpu_options *o, qnpu_param p, double *out)
{
    int r;
    qnpu_status s = lookup(o, p, "qnpu_options_get_float", &r);
    if (s != QNPU_OK)
        return s;
    if (!out || table[r].type == T_CHOICE || table[r].type == T_STRING)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: not a numeric parameter", table[r].name);
    *out = o ? o->value[r] : table[r].def;
    return QNPU_OK;
}

qnpu_status qnpu_options_get_str(const qnpu_options *o, qnpu_param p, const char **out)
{
    static _Thread_local char word[64];
    int r;
    qnpu_status s = lookup(o, p, "qnpu_options_get_str", &r);
    if (s != QNPU_OK)
        return s;
    if (!out || (table[r].type != T_CHOICE && table[r].type != T_STRING))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: not a choice or string parameter", table[r].name);
    if (table[r].type == T_STRING) {
        *out = o && o->text[r] ? o->text[r] : "";
        return QNPU_OK;
    }
    int want = (int)(o ? o->value[r] : table[r].def);
    const char *c = table[r].choices;
    for (int i = 0; i < want; i++)
        c = strchr(c, '|') + 1;
    const char *bar = strchr(c, '|');
    size_t len = bar ? (size_t)(bar - c) : strlen(c);
    if (len >= sizeof word)
        len = sizeof word - 1;
    memcpy(word, c, len);
    word[len] = '\0';
    *out = word;
    return QNPU_OK;
}

const char *qnpu__opt_str(const qnpu_options *o, qnpu_param p)
{
    int r = row_of(p);
    return r >= 0 && o && o->text[r] ? o->text[r] : "";
}

int64_t qnpu__opt_int(const qnpu_options *o, qnpu_param p)
{
    int r = row_of(p);
    return r < 0 ? 0 : (int64_t)(o ? o->value[r] : table[r].def);
}

double qnpu__opt_float(const qnpu_options *o, qnpu_param p)
{
    int r = row_of(p);
    return r < 0 ? 0 : (o ? o->value[r] : table[r].def);
}

int qnpu__opt_threads(const qnpu_options *o)
{
    int64_t n = qnpu__opt_int(o, QNPU_P_NUM_THREADS);
    if (n > 0)
        return (int)n;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}
