/* json.c — JSON text to a small DOM, using libyaml's event parser (yaml_parser_parse).
 *
 * JSON (RFC 8259) is YAML flow syntax with double-quoted strings, so libyaml does all the
 * tokenizing and reports syntax errors at problem_mark. This file only turns the event stream
 * into nodes and refuses what JSON does not have:
 *   - MAPPING/SEQUENCE_START events must use the flow style ({...}, [...]);
 *   - keys and string values must be double-quoted scalars;
 *   - plain (unquoted) scalars must be true, false, null or a JSON number
 *     (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), read with strtoll/strtod in the C locale;
 *   - anchors, aliases, tags and more than one document are errors.
 * Nodes and strings are carved from an arena of qnpu__malloc'ed blocks owned by the document.
 * The builder keeps its own stack of open containers, so nesting depth costs no C recursion. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json.h"

#define ARENA_BLOCK (64 * 1024)
#define MAX_DEPTH   256

/* ---- arena ------------------------------------------------------------------------------ */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    unsigned char *data;
} arena_block;

struct qnpu__json_doc {
    arena_block *blocks;
    qnpu__json *root;
};

static void *arena_alloc(qnpu__json_doc *d, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    arena_block *b = d->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > ARENA_BLOCK ? size : ARENA_BLOCK;
        b = qnpu__malloc(sizeof *b);
        if (!b)
            return NULL;
        b->data = qnpu__malloc(cap);
        if (!b->data) {
            qnpu__free(b);
            return NULL;
        }
        b->cap = cap;
        b->used = 0;
        b->next = d->blocks;
        d->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

/* Copy n bytes plus a NUL terminator into the arena. */
static char *arena_strndup(qnpu__json_doc *d, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(d, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void qnpu__json_free(qnpu__json_doc *doc)
{
    if (!doc)
        return;
    for (arena_block *b = doc->blocks, *next; b; b = next) {
        next = b->next;
        qnpu__free(b->data);
        qnpu__free(b);
    }
    qnpu__free(doc);
}

const qnpu__json *qnpu__json_root(const qnpu__json_doc *doc)
{
    return doc ? doc->root : NULL;
}

/* ---- numbers ---------------------------------------------------------------------------- */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* strtod that ignores the application's LC_NUMERIC (JSON always uses '.'). */
static double c_strtod(const char *s)
{
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Match the JSON number grammar over s[0..n); *integral = no fraction and no exponent. */
static int json_number_syntax(const char *s, size_t n, int *integral)
{
    size_t i = 0;
    *integral = 1;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && is_digit(s[i]))
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        *integral = 0;
        if (++i >= n || !is_digit(s[i]))
            return 0;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *integral = 0;
        if (++i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return 0;
        while (i < n && is_digit(s[i]))
            i++;
    }
    return i == n;
}

/* ---- the builder ------------------------------------------------------------------------ */

typedef struct open_container {
    qnpu__json *node;
    qnpu__json *tail;          /* last child, for O(1) appends          */
    const char *key;           /* OBJECT: key read, value not yet seen  */
    size_t key_len;
} open_container;

typedef struct builder {
    qnpu__json_doc *doc;
    const char *name;
    open_container stack[MAX_DEPTH];
    int depth;
    int documents;
} builder;

static qnpu_status fail_at(const builder *b, yaml_mark_t mark, const char *what)
{
    return qnpu__fail(QNPU_ERR_FORMAT, "%s:%zu:%zu: %s", b->name, mark.line + 1, mark.column + 1,
                      what);
}

static qnpu_status fail_parser(const builder *b, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "invalid JSON";
    if (p->error == YAML_MEMORY_ERROR)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory while parsing JSON", b->name);
    if (p->error == YAML_READER_ERROR)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: byte %zu: %s", b->name, p->problem_offset, problem);
    if (p->context)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s:%zu:%zu: %s (%s at line %zu, column %zu)", b->name,
                          p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                          p->context, p->context_mark.line + 1, p->context_mark.column + 1);
    return qnpu__fail(QNPU_ERR_FORMAT, "%s:%zu:%zu: %s", b->name, p->problem_mark.line + 1,
                      p->problem_mark.column + 1, problem);
}

static qnpu__json *new_node(builder *b, qnpu__json_type type, yaml_mark_t mark)
{
    qnpu__json *n = arena_alloc(b->doc, sizeof *n);
    if (n) {
        memset(n, 0, sizeof *n);
        n->type = type;
        n->line = mark.line + 1;
        n->column = mark.column + 1;
    }
    return n;
}

static open_container *top(builder *b)
{
    return b->depth ? &b->stack[b->depth - 1] : NULL;
}

/* Hang a finished value under the open container (or make it the root). */
static qnpu_status attach(builder *b, qnpu__json *n, yaml_mark_t mark)
{
    open_container *c = top(b);
    if (!c) {
        if (b->doc->root)
            return fail_at(b, mark, "more than one JSON value");
        b->doc->root = n;
        return QNPU_OK;
    }
    if (c->node->type == QNPU__JSON_OBJECT) {
        n->key = c->key;
        n->key_len = c->key_len;
        c->key = NULL;
    }
    n->parent = c->node;
    if (c->tail)
        c->tail->next = n;
    else
        c->node->first = n;
    c->tail = n;
    c->node->len++;
    return QNPU_OK;
}

/* Are we inside an object, waiting for a member name? */
static int expecting_key(builder *b)
{
    open_container *c = top(b);
    return c && c->node->type == QNPU__JSON_OBJECT && !c->key;
}

static qnpu_status no_oom(builder *b, const void *p)
{
    return p ? QNPU_OK : qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory while parsing JSON", b->name);
}

static qnpu_status on_start(builder *b, const yaml_event_t *ev, qnpu__json_type type, int flow)
{
    if (expecting_key(b))
        return fail_at(b, ev->start_mark, "object keys must be strings");
    if (!flow)
        return fail_at(b, ev->start_mark, "not JSON: block-style YAML collection");
    if (b->depth == MAX_DEPTH)
        return fail_at(b, ev->start_mark, "JSON nested too deeply");
    qnpu__json *n = new_node(b, type, ev->start_mark);
    qnpu_status s = no_oom(b, n);
    if (s == QNPU_OK)
        s = attach(b, n, ev->start_mark);
    if (s == QNPU_OK)
        b->stack[b->depth++] = (open_container){n, NULL, NULL, 0};
    return s;
}

static qnpu_status on_end(builder *b)
{
    if (b->depth == 0)
        return qnpu__fail(QNPU_ERR_INTERNAL, "%s: unbalanced JSON events", b->name);
    b->depth--;
    return QNPU_OK;
}

/* A plain scalar: true, false, null or a number. */
static qnpu_status plain_value(builder *b, qnpu__json *n, const char *text, size_t len,
                               yaml_mark_t mark)
{
    int integral;
    if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
        n->type = QNPU__JSON_BOOL;
        n->boolean = text[0] == 't';
    } else if (strcmp(text, "null") == 0) {
        n->type = QNPU__JSON_NULL;
    } else if (strlen(text) == len && json_number_syntax(text, len, &integral)) {
        n->type = QNPU__JSON_NUMBER;
        n->num = c_strtod(text);
        if (!isfinite(n->num))
            return fail_at(b, mark, "number out of range");
        if (integral) {
            errno = 0;
            long long v = strtoll(text, NULL, 10);
            n->is_int = errno != ERANGE;
            n->i = n->is_int ? (int64_t)v : 0;
        }
    } else if (len == 0) {
        /* libyaml stands in an empty plain scalar for a missing key or value */
        return fail_at(b, mark, "missing value (or a missing ':' before it)");
    } else {
        char what[200];
        snprintf(what, sizeof what, "'%.100s' is not a JSON value (expected a number, true, "
                 "false, null or a double-quoted string)", text);
        return fail_at(b, mark, what);
    }
    return QNPU_OK;
}

static qnpu_status on_scalar(builder *b, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    yaml_scalar_style_t style = ev->data.scalar.style;
    if (style != YAML_PLAIN_SCALAR_STYLE && style != YAML_DOUBLE_QUOTED_SCALAR_STYLE)
        return fail_at(b, ev->start_mark, "not JSON: strings need double quotes");
    if (expecting_key(b)) {
        if (style != YAML_DOUBLE_QUOTED_SCALAR_STYLE)
            return fail_at(b, ev->start_mark, "object keys must be double-quoted strings");
        open_container *c = top(b);
        c->key = arena_strndup(b->doc, text, len);
        c->key_len = len;
        return no_oom(b, c->key);
    }
    qnpu__json *n = new_node(b, QNPU__JSON_STRING, ev->start_mark);
    qnpu_status s = no_oom(b, n);
    if (s != QNPU_OK)
        return s;
    if (style == YAML_PLAIN_SCALAR_STYLE) {
        s = plain_value(b, n, text, len, ev->start_mark);
    } else {
        n->str = arena_strndup(b->doc, text, len);
        n->len = len;
        s = no_oom(b, n->str);
    }
    return s == QNPU_OK ? attach(b, n, ev->start_mark) : s;
}

/* Anchors (&a), tags (!!str) and explicit documents (---, %YAML) have no JSON meaning. */
static int yaml_only(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return ev->data.scalar.anchor || ev->data.scalar.tag;
    case YAML_SEQUENCE_START_EVENT:
        return ev->data.sequence_start.anchor || ev->data.sequence_start.tag;
    case YAML_MAPPING_START_EVENT:
        return ev->data.mapping_start.anchor || ev->data.mapping_start.tag;
    case YAML_DOCUMENT_START_EVENT:
        return !ev->data.document_start.implicit;
    default:
        return 0;
    }
}

/* Apply one event; *done is set at the end of the stream. */
static qnpu_status on_event(builder *b, const yaml_event_t *ev, int *done)
{
    if (yaml_only(ev))
        return fail_at(b, ev->start_mark, "not JSON: YAML anchor, tag or document marker");
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        *done = 1;
        return QNPU_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (b->documents++)
            return fail_at(b, ev->start_mark, "more than one JSON document");
        return QNPU_OK;
    case YAML_ALIAS_EVENT:
        return fail_at(b, ev->start_mark, "not JSON: YAML alias");
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, QNPU__JSON_OBJECT,
                        ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, QNPU__JSON_ARRAY,
                        ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        return on_end(b);
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    default:
        return QNPU_OK; /* STREAM_START, DOCUMENT_END, NO_EVENT */
    }
}

static qnpu_status run_parser(builder *b, yaml_parser_t *p)
{
    int done = 0;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev))
            return fail_parser(b, p);
        qnpu_status s = on_event(b, &ev, &done);
        yaml_event_delete(&ev);
        if (s != QNPU_OK)
            return s;
    }
    if (!b->doc->root)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s:1:1: no JSON value (empty text)", b->name);
    return QNPU_OK;
}

qnpu_status qnpu__json_parse(const char *name, const void *text, size_t len, qnpu__json_doc **out)
{
    *out = NULL;
    builder *b = qnpu__calloc(1, sizeof *b);
    qnpu__json_doc *doc = qnpu__calloc(1, sizeof *doc);
    if (!b || !doc) {
        qnpu__free(b);
        qnpu__free(doc);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory while parsing JSON", name);
    }
    b->doc = doc;
    b->name = name;
    yaml_parser_t p;
    qnpu_status s;
    if (!yaml_parser_initialize(&p)) {
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: cannot initialize the JSON parser", name);
    } else {
        yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
        s = run_parser(b, &p);
        yaml_parser_delete(&p);
    }
    qnpu__free(b);
    if (s != QNPU_OK) {
        qnpu__json_free(doc);
        return s;
    }
    *out = doc;
    return QNPU_OK;
}

/* ---- lookups ---------------------------------------------------------------------------- */

const qnpu__json *qnpu__json_get(const qnpu__json *obj, const char *key)
{
    if (!obj || obj->type != QNPU__JSON_OBJECT || !key)
        return NULL;
    size_t klen = strlen(key);
    const qnpu__json *found = NULL;
    for (const qnpu__json *c = obj->first; c; c = c->next)
        if (c->key_len == klen && memcmp(c->key, key, klen) == 0)
            found = c;
    return found;
}

const qnpu__json *qnpu__json_at(const qnpu__json *arr, size_t i)
{
    if (!arr || arr->type != QNPU__JSON_ARRAY || i >= arr->len)
        return NULL;
    const qnpu__json *c = arr->first;
    while (i--)
        c = c->next;
    return c;
}

int qnpu__json_int(const qnpu__json *v, int64_t *out)
{
    if (!v || v->type != QNPU__JSON_NUMBER || !v->is_int)
        return 0;
    *out = v->i;
    return 1;
}

int qnpu__json_number(const qnpu__json *v, double *out)
{
    if (!v || v->type != QNPU__JSON_NUMBER)
        return 0;
    *out = v->num;
    return 1;
}

int qnpu__json_bool(const qnpu__json *v, int *out)
{
    if (!v || v->type != QNPU__JSON_BOOL)
        return 0;
    *out = v->boolean;
    return 1;
}

const char *qnpu__json_string(const qnpu__json *v)
{
    return v && v->type == QNPU__JSON_STRING ? v->str : NULL;
}

int qnpu__json_is_null(const qnpu__json *v)
{
    return v && v->type == QNPU__JSON_NULL;
}

const char *qnpu__json_type_name(const qnpu__json *v)
{
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
    return v ? names[v->type] : "missing";
}
