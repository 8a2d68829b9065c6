/* recipe.c — YAML recipes (qnpu_options_load_recipe) and the compiled-in presets.
 *
 * A recipe is one YAML document whose top level is a mapping:
 *
 *     version: 1                      # required, and the only version there is
 *     calib.num_samples: 16           # a flat key: the parameter's name
 *     quant:                          # or nested mappings, whose keys are joined with '.'
 *       w_bits: 4
 *       bits_override: ["layer0.*.in:8", "layer4.down.in:16"]   # STRING parameters only
 *
 * Every value is a scalar handed as text to qnpu_options_set_str, so numbers, true/false,
 * choice words and strings all go through the one typed path of options.c; a sequence is
 * allowed for STRING parameters and is joined with ','.
 *
 * The loader reads libyaml's event stream (yaml_parser_parse) in two phases:
 *   1. parse: the events become a flat list of entries (full dotted key, value text, marks).
 *      Syntax errors (libyaml's, at problem_mark), invalid UTF-8, anchors, aliases, tags, a
 *      top level that is not a mapping, lists of non-scalars, missing values and duplicate
 *      keys are reported here;
 *   2. apply: the version is checked first (so a recipe from a newer format says so before
 *      complaining about its keys), then each entry in document order is looked up with
 *      qnpu_param_from_name and set on a clone of the caller's options. Only when every entry
 *      applied cleanly are the same values set on the caller's object, so a failed load leaves
 *      it unchanged (an out-of-memory error while copying text values back is the exception).
 * Every error is QNPU_ERR_RECIPE with "NAME:LINE:COLUMN: problem" (1-based, columns count
 * characters as libyaml's marks do) and names the key. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "recipe.h"

#define MAX_DEPTH 8             /* nested mappings; parameter names have one or two parts */
#define MAX_SUGGEST_LEN 64      /* keys longer than this get no "did you mean" */

/* ---- entries: what the parse phase produces --------------------------------------------- */

typedef enum entry_kind {
    E_VALUE,  /* key: scalar                        */
    E_LIST,   /* key: [scalars] (value = joined)    */
    E_GROUP   /* key: {mapping} (its keys follow)   */
} entry_kind;

typedef struct entry {
    entry_kind kind;
    char *key;                 /* full dotted key, e.g. "calib.num_samples"         */
    char *value;               /* E_VALUE, E_LIST: the text; E_GROUP: NULL          */
    size_t value_len;
    yaml_mark_t key_mark;      /* where the (last part of the) key starts           */
    yaml_mark_t value_mark;    /* where the value (scalar, '[' or first '-') starts */
} entry;

typedef struct frame {
    int is_list;
    char *prefix;              /* mapping: its full key ("" at the top)               */
    char *key;                 /* mapping: a key read, its value not yet seen, or NULL */
    yaml_mark_t key_mark;
    size_t list_entry;         /* list: index of its E_LIST entry                      */
} frame;

typedef struct recipe_parse {
    const char *name;          /* path or "preset NAME", starts every message */
    const unsigned char *text;
    size_t len;
    entry *entries;
    size_t n_entries, cap_entries;
    frame stack[MAX_DEPTH + 1];
    int depth;
    int documents;
    int have_root;             /* a non-empty top-level node was seen */
    yaml_mark_t root_mark;
} recipe_parse;

static qnpu_status fail_mark(const recipe_parse *r, size_t line, size_t column, const char *fmt,
                             ...) QNPU__PRINTF(4, 5);

/* "name:line:column: problem" with a 1-based line and column. */
static qnpu_status fail_mark(const recipe_parse *r, size_t line, size_t column, const char *fmt,
                             ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return qnpu__fail(QNPU_ERR_RECIPE, "%s:%zu:%zu: %s", r->name, line, column, what);
}

#define FAIL_AT(r, mark, ...) fail_mark((r), (mark).line + 1, (mark).column + 1, __VA_ARGS__)

static qnpu_status no_memory(const recipe_parse *r)
{
    return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory while reading the recipe", r->name);
}

/* Line and column (1-based, counting characters) of byte `offset`, for libyaml's reader
 * errors, which give a byte offset only, and for our UTF-8 check. */
static void offset_position(const recipe_parse *r, size_t offset, size_t *line, size_t *column)
{
    size_t i = 0, l = 1, c = 1;
    if (r->len >= 3 && memcmp(r->text, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* a byte-order mark is not a character of the first line */
    for (; i < offset && i < r->len; i++) {
        unsigned char b = r->text[i];
        if (b == '\n' || (b == '\r' && (i + 1 >= r->len || r->text[i + 1] != '\n'))) {
            l++;
            c = 1;
        } else if ((b & 0xC0) != 0x80 && b != '\r') {
            c++;
        }
    }
    *line = l;
    *column = c;
}

/* Offset of the first byte that does not start a well-formed UTF-8 sequence (no overlong
 * forms, no surrogates, nothing above U+10FFFF, not truncated), or n if the text is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (need >= n - i)
            return i; /* truncated at the end of the text */
        for (size_t k = 1; k <= need; k++) {
            unsigned char c = s[i + k];
            if (k == 1 ? (c < lo || c > hi) : (c & 0xC0) != 0x80)
                return i;
        }
        i += need + 1;
    }
    return n;
}

/* ---- parse phase ------------------------------------------------------------------------- */

static char *join_key(const char *prefix, const char *key)
{
    size_t a = strlen(prefix), b = strlen(key);
    char *s = qnpu__malloc(a + b + 2);
    if (!s)
        return NULL;
    if (a) {
        memcpy(s, prefix, a);
        s[a++] = '.';
    }
    memcpy(s + a, key, b + 1);
    return s;
}

/* Append an entry for the pending key of the mapping on top of the stack; the key moves into
 * the entry. A full key seen before is a duplicate. */
static qnpu_status add_entry(recipe_parse *r, entry_kind kind, const char *value, size_t value_len,
                             yaml_mark_t value_mark, size_t *index)
{
    frame *f = &r->stack[r->depth - 1];
    char *key = join_key(f->prefix, f->key);
    if (!key)
        return no_memory(r);
    for (size_t i = 0; i < r->n_entries; i++)
        if (strcmp(r->entries[i].key, key) == 0) {
            yaml_mark_t first = r->entries[i].key_mark;
            qnpu_status s = FAIL_AT(r, f->key_mark, "duplicate key '%s' (first at line %zu, column %zu)",
                                    key, first.line + 1, first.column + 1);
            qnpu__free(key);
            return s;
        }
    if (r->n_entries == r->cap_entries) {
        size_t cap = r->cap_entries ? 2 * r->cap_entries : 32;
        entry *e = qnpu__realloc(r->entries, r->cap_entries * sizeof *e, cap * sizeof *e);
        if (!e) {
            qnpu__free(key);
            return no_memory(r);
        }
        r->entries = e;
        r->cap_entries = cap;
    }
    entry *e = &r->entries[r->n_entries];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->key = key;
    e->key_mark = f->key_mark;
    e->value_mark = value_mark;
    if (kind != E_GROUP) {
        e->value = qnpu__strndup(value, value_len);
        e->value_len = value_len;
        if (!e->value) {
            qnpu__free(key);
            return no_memory(r);
        }
    }
    r->n_entries++;
    if (index)
        *index = r->n_entries - 1;
    return QNPU_OK;
}

static qnpu_status push(recipe_parse *r, yaml_mark_t mark, frame fr)
{
    if (r->depth == MAX_DEPTH + 1) {
        qnpu__free(fr.prefix);
        return FAIL_AT(r, mark, "nested more than %d levels deep", MAX_DEPTH);
    }
    r->stack[r->depth++] = fr;
    return QNPU_OK;
}

/* Close the top frame; the mapping around it has then seen the value of its pending key. */
static void pop(recipe_parse *r)
{
    frame *f = &r->stack[--r->depth];
    qnpu__free(f->prefix);
    qnpu__free(f->key);
    if (r->depth > 0) {
        frame *up = &r->stack[r->depth - 1];
        qnpu__free(up->key);
        up->key = NULL;
    }
}

/* A scalar in the text: refuse embedded NUL bytes (a "\0" escape) and, for values, YAML's
 * empty and null plain scalars. */
static int is_null_word(const char *s)
{
    return !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static qnpu_status check_value(recipe_parse *r, const yaml_event_t *ev, const char *key)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (strlen(text) != len)
        return FAIL_AT(r, ev->start_mark, "%s: the value holds a NUL character", key);
    if (plain && len == 0)
        return FAIL_AT(r, ev->start_mark, "%s: missing value (write '' for empty text)", key);
    if (plain && is_null_word(text))
        return FAIL_AT(r, ev->start_mark, "%s: null is not a value (write '' for empty text)", key);
    return QNPU_OK;
}

static qnpu_status on_scalar(recipe_parse *r, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (r->depth == 0) {
        if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && len == 0)
            return QNPU_OK; /* an empty document ("---" alone) */
        return FAIL_AT(r, ev->start_mark,
                       "the top level must be a mapping of keys to values, not a single value");
    }
    frame *f = &r->stack[r->depth - 1];
    if (f->is_list) {
        entry *e = &r->entries[f->list_entry];
        qnpu_status s = check_value(r, ev, e->key);
        if (s != QNPU_OK)
            return s;
        size_t sep = e->value_len ? 1 : 0;
        char *v = qnpu__realloc(e->value, e->value_len + 1, e->value_len + sep + len + 1);
        if (!v)
            return no_memory(r);
        if (sep)
            v[e->value_len] = ',';
        memcpy(v + e->value_len + sep, text, len + 1);
        e->value = v;
        e->value_len += sep + len;
        return QNPU_OK;
    }
    if (!f->key) {
        if (strlen(text) != len)
            return FAIL_AT(r, ev->start_mark, "a key holds a NUL character");
        if (len == 0)
            return FAIL_AT(r, ev->start_mark, "empty key");
        f->key = qnpu__strndup(text, len);
        f->key_mark = ev->start_mark;
        return f->key ? QNPU_OK : no_memory(r);
    }
    char *key = join_key(f->prefix, f->key);
    if (!key)
        return no_memory(r);
    qnpu_status s = check_value(r, ev, key);
    qnpu__free(key);
    if (s == QNPU_OK)
        s = add_entry(r, E_VALUE, text, len, ev->start_mark, NULL);
    if (s == QNPU_OK) {
        qnpu__free(f->key);
        f->key = NULL;
    }
    return s;
}

static qnpu_status on_collection(recipe_parse *r, const yaml_event_t *ev, int is_list)
{
    const char *what = is_list ? "a list" : "a mapping";
    if (r->depth == 0) {
        if (is_list)
            return FAIL_AT(r, ev->start_mark,
                           "the top level must be a mapping of keys to values, not a list");
        r->have_root = 1;
        r->root_mark = ev->start_mark;
        char *prefix = qnpu__strdup("");
        if (!prefix)
            return no_memory(r);
        return push(r, ev->start_mark, (frame){0, prefix, NULL, {0, 0, 0}, 0});
    }
    frame *f = &r->stack[r->depth - 1];
    if (f->is_list)
        return FAIL_AT(r, ev->start_mark, "%s: a list may hold only scalar values, not %s",
                       r->entries[f->list_entry].key, what);
    if (!f->key)
        return FAIL_AT(r, ev->start_mark, "a key must be text, not %s", what);
    size_t index;
    qnpu_status s = add_entry(r, is_list ? E_LIST : E_GROUP, "", 0, ev->start_mark, &index);
    if (s != QNPU_OK)
        return s;
    if (is_list)
        return push(r, ev->start_mark, (frame){1, NULL, NULL, f->key_mark, index});
    char *prefix = qnpu__strdup(r->entries[index].key);
    if (!prefix)
        return no_memory(r);
    return push(r, ev->start_mark, (frame){0, prefix, NULL, {0, 0, 0}, 0});
}

/* Anchors (&a), aliases (*a) and tags (!!str) have no meaning in a recipe. */
static qnpu_status refuse_yaml_only(recipe_parse *r, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return FAIL_AT(r, ev->start_mark, "aliases (*%s) are not allowed in a recipe",
                       (const char *)ev->data.alias.anchor);
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    default:
        return QNPU_OK;
    }
    if (anchor)
        return FAIL_AT(r, ev->start_mark, "anchors (&%s) are not allowed in a recipe",
                       (const char *)anchor);
    if (tag) {
        /* libyaml gives the resolved tag; show the common "!!int" form as written */
        const char *t = (const char *)tag, *core = "tag:yaml.org,2002:";
        int is_core = strncmp(t, core, strlen(core)) == 0;
        return FAIL_AT(r, ev->start_mark, "tags (%s%s) are not allowed in a recipe",
                       is_core ? "!!" : "", is_core ? t + strlen(core) : t);
    }
    return QNPU_OK;
}

static qnpu_status on_event(recipe_parse *r, const yaml_event_t *ev, int *done)
{
    qnpu_status s = refuse_yaml_only(r, ev);
    if (s != QNPU_OK)
        return s;
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        *done = 1;
        return QNPU_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (r->documents++)
            return FAIL_AT(r, ev->start_mark, "a recipe is one YAML document, found a second");
        return QNPU_OK;
    case YAML_MAPPING_START_EVENT:
        return on_collection(r, ev, 0);
    case YAML_SEQUENCE_START_EVENT:
        return on_collection(r, ev, 1);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        if (r->depth == 0)
            return qnpu__fail(QNPU_ERR_INTERNAL, "%s: unbalanced YAML events", r->name);
        pop(r);
        return QNPU_OK;
    case YAML_SCALAR_EVENT:
        return on_scalar(r, ev);
    default:
        return QNPU_OK; /* STREAM_START, DOCUMENT_END */
    }
}

static qnpu_status fail_parser(const recipe_parse *r, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR)
        return no_memory(r);
    if (p->error == YAML_READER_ERROR) {
        size_t line, column;
        offset_position(r, p->problem_offset, &line, &column);
        return fail_mark(r, line, column, "%s", problem);
    }
    if (p->context)
        return FAIL_AT(r, p->problem_mark, "%s (%s at line %zu, column %zu)", problem, p->context,
                       p->context_mark.line + 1, p->context_mark.column + 1);
    return FAIL_AT(r, p->problem_mark, "%s", problem);
}

static qnpu_status parse(recipe_parse *r)
{
    size_t bad = utf8_invalid_at(r->text, r->len);
    if (bad < r->len) {
        size_t line, column;
        offset_position(r, bad, &line, &column);
        return fail_mark(r, line, column, "invalid UTF-8 (byte 0x%02x)", r->text[bad]);
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return no_memory(r);
    yaml_parser_set_input_string(&p, r->text, r->len);
    qnpu_status s = QNPU_OK;
    for (int done = 0; !done && s == QNPU_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            s = fail_parser(r, &p);
            break;
        }
        s = on_event(r, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (s == QNPU_OK && !r->have_root)
        s = fail_mark(r, 1, 1, "empty recipe (it needs at least 'version: 1')");
    return s;
}

static void parse_free(recipe_parse *r)
{
    while (r->depth > 0) {
        frame *f = &r->stack[--r->depth];
        qnpu__free(f->prefix);
        qnpu__free(f->key);
    }
    for (size_t i = 0; i < r->n_entries; i++) {
        qnpu__free(r->entries[i].key);
        qnpu__free(r->entries[i].value);
    }
    qnpu__free(r->entries);
}

/* ---- "did you mean" ---------------------------------------------------------------------- */

/* Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
 * of neighbours cost 1. Both strings are at most MAX_SUGGEST_LEN bytes. */
static size_t edit_distance(const char *a, size_t n, const char *b, size_t m)
{
    size_t d[MAX_SUGGEST_LEN + 1][MAX_SUGGEST_LEN + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

/* The closest parameter name to `key` (groups: the closest section, a dotted prefix of a
 * name) into out, or "" when nothing is close. First a tail of the key that is a name
 * ("quant.quant.w_bits"), then the closest spelling, then a parameter whose last part is the
 * key's last part ("num_samples" -> "calib.num_samples"). */
static void suggest(const char *key, int group, char *out, size_t cap)
{
    size_t n = strlen(key), best = (size_t)-1;
    out[0] = '\0';
    if (n == 0 || n > MAX_SUGGEST_LEN)
        return;
    /* a section written twice ("quant: {quant.w_bits: 4}"): a tail of the key is a name */
    qnpu_param tail;
    for (const char *dot = strchr(key, '.'); !group && dot; dot = strchr(dot + 1, '.'))
        if (qnpu_param_from_name(dot + 1, &tail) == QNPU_OK && strlen(dot + 1) < cap) {
            strcpy(out, dot + 1);
            return;
        }
    for (int i = 0; i < qnpu_param_count(); i++) {
        qnpu_param p;
        const char *name;
        if (qnpu_param_at(i, &p) != QNPU_OK || qnpu_param_info(p, &name, NULL, NULL, NULL) != QNPU_OK)
            continue;
        /* candidates: the whole name, or for groups each prefix that ends before a '.' */
        for (const char *end = group ? strchr(name, '.') : name + strlen(name); end;
             end = group ? strchr(end + 1, '.') : NULL) {
            size_t m = (size_t)(end - name);
            if (m > MAX_SUGGEST_LEN)
                break;
            size_t d = edit_distance(key, n, name, m);
            if (d < best && m < cap) {
                best = d;
                memcpy(out, name, m);
                out[m] = '\0';
            }
        }
    }
    if (best != (size_t)-1 && best <= 1 + n / 4)
        return;
    out[0] = '\0';
    if (group)
        return;
    const char *last = strrchr(key, '.');
    last = last ? last + 1 : key;
    for (int i = 0; i < qnpu_param_count(); i++) {
        qnpu_param p;
        const char *name;
        if (qnpu_param_at(i, &p) != QNPU_OK || qnpu_param_info(p, &name, NULL, NULL, NULL) != QNPU_OK)
            continue;
        const char *dot = strrchr(name, '.');
        if (strcmp(dot ? dot + 1 : name, last) == 0 && strlen(name) < cap) {
            strcpy(out, name);
            return;
        }
    }
}

static qnpu_status unknown_key(const recipe_parse *r, const entry *e, int group)
{
    char hint[MAX_SUGGEST_LEN + 1];
    suggest(e->key, group, hint, sizeof hint);
    if (hint[0])
        return FAIL_AT(r, e->key_mark, "unknown key '%s' (did you mean '%s'?)", e->key, hint);
    return FAIL_AT(r, e->key_mark, "unknown key '%s'", e->key);
}

/* ---- apply phase ------------------------------------------------------------------------- */

/* 1 if some parameter's name starts with "group." */
static int is_section(const char *group)
{
    size_t n = strlen(group);
    for (int i = 0; i < qnpu_param_count(); i++) {
        qnpu_param p;
        const char *name;
        if (qnpu_param_at(i, &p) == QNPU_OK && qnpu_param_info(p, &name, NULL, NULL, NULL) == QNPU_OK &&
            strncmp(name, group, n) == 0 && name[n] == '.')
            return 1;
    }
    return 0;
}

static qnpu_status check_version(const recipe_parse *r)
{
    for (size_t i = 0; i < r->n_entries; i++) {
        const entry *e = &r->entries[i];
        if (strcmp(e->key, "version") != 0)
            continue;
        if (e->kind != E_VALUE)
            return FAIL_AT(r, e->value_mark, "version: must be 1, not %s",
                           e->kind == E_LIST ? "a list" : "a mapping");
        if (strcmp(e->value, "1") != 0)
            return FAIL_AT(r, e->value_mark,
                           "version: unsupported recipe version '%s' (this library reads version 1)",
                           e->value);
        return QNPU_OK;
    }
    return FAIL_AT(r, r->root_mark, "missing 'version: 1' (every recipe starts with it)");
}

/* Set every entry on `o`. The messages of qnpu_options_set_str start with the parameter's
 * name ("calib.num_samples: 0 is outside [1, 1e+06]"); they get the position in front. */
static qnpu_status apply(const recipe_parse *r, qnpu_options *o)
{
    for (size_t i = 0; i < r->n_entries; i++) {
        const entry *e = &r->entries[i];
        qnpu_param p;
        int type;
        if (strcmp(e->key, "version") == 0)
            continue;
        if (e->kind == E_GROUP) {
            if (qnpu_param_from_name(e->key, &p) == QNPU_OK)
                return FAIL_AT(r, e->value_mark, "%s: takes a value, not a mapping", e->key);
            if (!is_section(e->key))
                return unknown_key(r, e, 1);
            continue;
        }
        if (qnpu_param_from_name(e->key, &p) != QNPU_OK) {
            if (is_section(e->key))
                return FAIL_AT(r, e->value_mark, "%s: takes a mapping of its parameters, not %s",
                               e->key, e->kind == E_LIST ? "a list" : "a value");
            return unknown_key(r, e, 0);
        }
        if (qnpu_param_info(p, NULL, &type, NULL, NULL) != QNPU_OK)
            return qnpu__fail(QNPU_ERR_INTERNAL, "%s: parameter '%s' has no info", r->name, e->key);
        if (e->kind == E_LIST && type != QNPU_PTYPE_STRING)
            return FAIL_AT(r, e->value_mark,
                           "%s: takes a single value, not a list (lists are for text parameters)",
                           e->key);
        qnpu_status s = qnpu_options_set_str(o, p, e->value);
        if (s == QNPU_ERR_NO_MEMORY)
            return no_memory(r);
        if (s != QNPU_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", qnpu_last_error());
            return FAIL_AT(r, e->value_mark, "%s", why);
        }
    }
    return QNPU_OK;
}

qnpu_status qnpu__recipe_apply(qnpu_options *o, const char *name, const char *text, size_t len)
{
    recipe_parse r;
    memset(&r, 0, sizeof r);
    r.name = name;
    r.text = (const unsigned char *)text;
    r.len = len;
    qnpu_status s = parse(&r);
    if (s == QNPU_OK)
        s = check_version(&r);
    if (s == QNPU_OK) {
        /* validate on a clone, so a bad entry leaves `o` untouched; then the same texts, which
         * are now known to be accepted, go to `o` */
        qnpu_options *trial;
        s = qnpu_options_clone(o, &trial);
        if (s == QNPU_OK) {
            s = apply(&r, trial);
            qnpu_options_free(trial);
        }
        if (s == QNPU_OK)
            s = apply(&r, o);
    }
    parse_free(&r);
    return s;
}

/* ---- public API -------------------------------------------------------------------------- */

static const qnpu__recipe_preset *find_preset(const char *name)
{
    for (const qnpu__recipe_preset *p = qnpu__recipe_presets; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

static qnpu_status unknown_preset(const char *name, const char *hint)
{
    char list[512] = "";
    size_t used = 0;
    for (const qnpu__recipe_preset *p = qnpu__recipe_presets; p->name && used < sizeof list; p++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", p->name);
    return qnpu__fail(QNPU_ERR_INVALID_ARG, "unknown recipe preset '%s' (presets: %s%s)", name, list,
                      hint);
}

const char *qnpu_recipe_preset_name(int i)
{
    if (i < 0)
        return NULL;
    for (const qnpu__recipe_preset *p = qnpu__recipe_presets; p->name; p++)
        if (i-- == 0)
            return p->name;
    return NULL;
}

qnpu_status qnpu_recipe_preset_text(const char *name, const char **yaml)
{
    if (!name || !yaml)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_recipe_preset_text: NULL argument");
    const qnpu__recipe_preset *p = find_preset(name);
    if (!p)
        return unknown_preset(name, "");
    *yaml = p->text;
    return QNPU_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

qnpu_status qnpu_options_load_recipe(qnpu_options *o, const char *recipe)
{
    if (!o || !recipe)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_options_load_recipe: NULL argument");
    if (strchr(recipe, '/') || ends_with(recipe, ".yaml") || ends_with(recipe, ".yml")) {
        char *text;
        size_t len;
        qnpu_status s = qnpu__read_text(recipe, &text, &len);
        if (s != QNPU_OK)
            return s;
        s = qnpu__recipe_apply(o, recipe, text, len);
        qnpu__free(text);
        return s;
    }
    const qnpu__recipe_preset *p = find_preset(recipe);
    if (!p)
        return unknown_preset(recipe, "; a recipe file needs a '/' or a .yaml suffix");
    char name[128];
    snprintf(name, sizeof name, "preset %s", p->name);
    return qnpu__recipe_apply(o, name, p->text, strlen(p->text));
}
