/* json.h — a small read-only JSON DOM built on libyaml's event parser (private to lib/).
 *
 * JSON is a subset of YAML's flow syntax, so libyaml tokenizes it and reports syntax errors
 * with a line and column. The builder in json.c accepts only what JSON allows: flow mappings
 * and sequences, quoted strings as keys, quoted strings as string values, and plain scalars
 * that are JSON numbers, true, false or null. Anchors, aliases, tags and block collections are
 * rejected. Known limits (libyaml's): keys longer than 1024 characters, and \uD800-\uDFFF
 * surrogate escapes, are refused.
 *
 * Nodes live in an arena owned by the document; qnpu__json_free releases everything at once. */
#ifndef QNPU_JSON_H
#define QNPU_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

typedef enum qnpu__json_type {
    QNPU__JSON_NULL = 0,
    QNPU__JSON_BOOL,
    QNPU__JSON_NUMBER,
    QNPU__JSON_STRING,
    QNPU__JSON_ARRAY,
    QNPU__JSON_OBJECT
} qnpu__json_type;

typedef struct qnpu__json qnpu__json;
struct qnpu__json {
    qnpu__json_type type;
    int boolean;           /* BOOL: 0 or 1                                                  */
    int is_int;            /* NUMBER: written as an integer that fits int64_t               */
    int64_t i;             /* NUMBER with is_int                                            */
    double num;            /* NUMBER: the value as a double (always set)                    */
    const char *str;       /* STRING: NUL-terminated (may also hold NUL bytes; see len)      */
    size_t len;            /* STRING: byte length; ARRAY/OBJECT: number of children          */
    const char *key;       /* set on the members of an OBJECT                               */
    size_t key_len;
    qnpu__json *first;     /* ARRAY/OBJECT: first child                                     */
    qnpu__json *next;      /* next sibling                                                  */
    qnpu__json *parent;
    size_t line, column;   /* 1-based position of the value in the text                    */
};

typedef struct qnpu__json_doc qnpu__json_doc;

/* Parse `len` bytes of JSON (no NUL terminator needed). `name` (usually the file path) starts
 * every error message: "name:line:column: problem". QNPU_ERR_FORMAT on a syntax error or a
 * construct that is not JSON, QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__json_parse(const char *name, const void *text, size_t len, qnpu__json_doc **out);
void qnpu__json_free(qnpu__json_doc *doc);
const qnpu__json *qnpu__json_root(const qnpu__json_doc *doc);

/* Member `key` of an object (the last one if repeated), or NULL (also when `obj` is not an
 * object or is NULL). */
const qnpu__json *qnpu__json_get(const qnpu__json *obj, const char *key);
/* Element i of an array, or NULL. */
const qnpu__json *qnpu__json_at(const qnpu__json *arr, size_t i);

/* Typed readers: 1 on success, 0 when `v` is NULL or of another type. */
int qnpu__json_int(const qnpu__json *v, int64_t *out);     /* integer NUMBER only */
int qnpu__json_number(const qnpu__json *v, double *out);   /* any NUMBER          */
int qnpu__json_bool(const qnpu__json *v, int *out);
const char *qnpu__json_string(const qnpu__json *v);        /* STRING or NULL      */
int qnpu__json_is_null(const qnpu__json *v);               /* present and null    */

/* "null", "boolean", "number", "string", "array", "object" — for messages. */
const char *qnpu__json_type_name(const qnpu__json *v);

#endif
