/*
 * json.h: a small strict JSON parser (RFC 8259) for the model loader (config.json, safetensors headers,
 * model.safetensors.index.json), and the few file helpers that config.c and safetensors.c share (util.c).
 *
 * Strict means: UTF-8 only (overlong forms, surrogates and code points above U+10FFFF rejected), no control
 * characters inside strings, only the escapes of the RFC, \uXXXX surrogate pairs must pair up, numbers follow the
 * RFC grammar exactly (no leading zeros, '+', hex, NaN or Infinity; a finite double is required), no trailing
 * commas, no comments, nothing but whitespace after the top-level value, a duplicate key in an object is an error.
 * A UTF-8 byte order mark at the very start is ignored (RFC 8259 section 8.1 allows it). The nesting depth and the
 * number of values are bounded, so memory stays proportional to the input and recursion stays shallow. The parser
 * reads only text[0 .. len) and never needs a terminating NUL.
 */
#ifndef MOEKIT_MODEL_JSON_H
#define MOEKIT_MODEL_JSON_H

#include "moekit.h"

#include <stddef.h>
#include <stdint.h>

typedef enum mkj_type {
    MKJ_NULL = 0,
    MKJ_FALSE,
    MKJ_TRUE,
    MKJ_NUMBER,
    MKJ_STRING,
    MKJ_ARRAY,
    MKJ_OBJECT
} mkj_type;

typedef struct mkj_member mkj_member;

typedef struct mkj_value {
    uint8_t type;       /* mkj_type */
    uint8_t is_integer; /* MKJ_NUMBER: the literal has no fraction or exponent and fits int64_t (see integer) */
    uint32_t n;         /* MKJ_STRING: length in bytes; MKJ_ARRAY: items; MKJ_OBJECT: members */
    union {
        struct {
            double number; /* MKJ_NUMBER: always set (correctly rounded) */
            int64_t integer; /* MKJ_NUMBER with is_integer: the exact value */
        } num;
        const char *string; /* MKJ_STRING: decoded UTF-8, NUL-terminated (may also contain \u0000 inside) */
        const struct mkj_value *items; /* MKJ_ARRAY: n values */
        struct {
            const mkj_member *members; /* MKJ_OBJECT: n members in document order */
            const uint32_t *sorted;    /* member indices sorted by key (for mkj_get) */
        } obj;
    } u;
} mkj_value;

struct mkj_member {
    const char *key; /* decoded, NUL-terminated */
    uint32_t key_len;
    mkj_value value;
};

typedef struct mkj_doc mkj_doc; /* owns every value, string and member of one parse */

typedef struct mkj_limits {
    int max_depth;       /* nesting of arrays/objects; 0 = 64 */
    size_t max_values;   /* values of any kind; 0 = 8M */
} mkj_limits;

/* Parses text[0 .. len). On success *doc owns the tree and *root points into it (free with mkj_free). On failure
 * returns MK_EFORMAT (or MK_ENOMEM) and writes "line L, column C: what" into err (always NUL-terminated); *doc is
 * NULL. The parser does not touch mk_last_error(). limits may be NULL. */
mk_status mkj_parse(const char *text, size_t len, const mkj_limits *limits, mkj_doc **doc, const mkj_value **root,
                    char *err, size_t err_size);
void mkj_free(mkj_doc *doc);

/* Member `key` of an object, or NULL (also when obj is not an object). Binary search, O(log n). */
const mkj_value *mkj_get(const mkj_value *obj, const char *key);
/* "null", "false", "true", "number", "string", "array", "object" ("missing" for NULL) */
const char *mkj_type_name(const mkj_value *v);
/* The same for messages: "null", "false", "true", "a number", "a string", "an array", "an object", "missing" */
const char *mkj_type_desc(const mkj_value *v);

/* ---- file helpers shared by the loader (model/util.c) ------------------------------------------------------ */
/* Reads a whole regular file of at most max_bytes into a malloc'd buffer (NUL-terminated for convenience; *len
 * excludes the NUL). MK_EIO naming the path and strerror on failure; MK_EFORMAT when it is larger than
 * max_bytes. Reports through mkm_error. */
mk_status mkm_read_file(const char *path, size_t max_bytes, char **data, size_t *len);
/* 1 if path names a directory, 0 otherwise. */
int mkm_is_dir(const char *path);
/* 1 if path names an existing file (of any kind other than a directory). */
int mkm_is_file(const char *path);
/* malloc'd "dir/name" (or just name when dir is empty); NULL when out of memory. */
char *mkm_path_join(const char *dir, const char *name);

#endif /* MOEKIT_MODEL_JSON_H */
