/*
 * json.c: a strict RFC 8259 parser building a compact tree in an arena (see json.h for what "strict" means).
 *
 * Every read of the input goes through an index checked against len: the parser never reads past text[len - 1],
 * never needs a NUL, and keeps no global state (thread-safe). Arrays and objects collect their children on one
 * growable stack and copy them into the arena when they close, so a value costs 24 bytes (a member 40) whatever
 * its kind. Objects get a key-sorted index (merge sort, O(n log n)) used both to reject duplicate keys and for
 * mkj_get's binary search.
 */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MKJ_DEFAULT_DEPTH 64
#define MKJ_DEFAULT_VALUES ((size_t)8 << 20)
#define MKJ_BLOCK 65536

typedef struct mkj_block {
    struct mkj_block *next;
    size_t used, cap;
    /* data follows (the header is 24 bytes, so data is 8-byte aligned) */
} mkj_block;

struct mkj_doc {
    mkj_block *blocks;
    mkj_value root;
};

typedef struct pending {
    const char *key; /* NULL for array items */
    uint32_t key_len;
    size_t key_pos; /* byte offset of the key, for the duplicate-key message */
    mkj_value value;
} pending;

typedef struct parser {
    const unsigned char *s;
    size_t len, i;
    int depth, max_depth;
    size_t n_values, max_values;
    mkj_doc *doc;
    pending *stack;
    size_t sp, stack_cap;
    char *err;
    size_t err_size;
    mk_status status; /* MK_OK until the first error */
} parser;

/* ---- errors -------------------------------------------------------------------------------------------------- */
static void fail_at(parser *p, size_t pos, mk_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_at(parser *p, size_t pos, mk_status status, const char *fmt, ...) {
    if (p->status != MK_OK) return; /* keep the first error */
    p->status = status;
    if (!p->err || p->err_size == 0) return;
    if (pos > p->len) pos = p->len;
    size_t line = 1, line_start = 0;
    for (size_t k = 0; k < pos; k++)
        if (p->s[k] == '\n') {
            line++;
            line_start = k + 1;
        }
    int n = snprintf(p->err, p->err_size, "line %zu, column %zu: ", line, pos - line_start + 1);
    if (n < 0 || (size_t)n >= p->err_size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
    va_end(ap);
}

/* A printable description of the byte at pos: "'x'", "byte 0xNN" or "end of input". */
static const char *describe(const parser *p, size_t pos, char *buf, size_t size) {
    if (pos >= p->len)
        snprintf(buf, size, "end of input");
    else if (p->s[pos] >= 0x20 && p->s[pos] < 0x7f)
        snprintf(buf, size, "'%c'", p->s[pos]);
    else
        snprintf(buf, size, "byte 0x%02x", p->s[pos]);
    return buf;
}

/* ---- arena --------------------------------------------------------------------------------------------------- */
static void *arena_alloc(parser *p, size_t size) {
    if (size > SIZE_MAX - 64) {
        fail_at(p, p->i, MK_ENOMEM, "allocation of %zu bytes overflows", size);
        return NULL;
    }
    size = (size + 7) & ~(size_t)7;
    mkj_block *b = p->doc->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > MKJ_BLOCK ? size : MKJ_BLOCK;
        mkj_block *nb = malloc(sizeof(mkj_block) + cap);
        if (!nb) {
            fail_at(p, p->i, MK_ENOMEM, "out of memory (%zu bytes)", cap);
            return NULL;
        }
        nb->used = 0;
        nb->cap = cap;
        if (b && size > MKJ_BLOCK) {
            /* a big one-off block goes behind the current one, which keeps its free space */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            p->doc->blocks = nb;
        }
        b = nb;
    }
    void *r = (char *)(b + 1) + b->used;
    b->used += size;
    return r;
}

static int push(parser *p, const pending *e) {
    if (p->sp == p->stack_cap) {
        size_t cap = p->stack_cap ? p->stack_cap * 2 : 64;
        pending *ns = realloc(p->stack, cap * sizeof *ns);
        if (!ns) {
            fail_at(p, p->i, MK_ENOMEM, "out of memory");
            return 0;
        }
        p->stack = ns;
        p->stack_cap = cap;
    }
    p->stack[p->sp++] = *e;
    return 1;
}

/* ---- lexing helpers ---------------------------------------------------------------------------------------- */
static void skip_ws(parser *p) {
    while (p->i < p->len) {
        unsigned char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 4 hex digits at s[k .. k+4) (all < end), or -1. */
static long hex4(const parser *p, size_t k, size_t end) {
    if (k > end || end - k < 4) return -1;
    long v = 0;
    for (int j = 0; j < 4; j++) {
        int d = hex_digit(p->s[k + (size_t)j]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *out, unsigned long cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence starting at s[k] (a byte >= 0x80) that ends before `end`, or 0. */
static size_t utf8_seq(const parser *p, size_t k, size_t end) {
    unsigned char c = p->s[k];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c == 0xE0) {
        n = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
        n = 3;
    else if (c == 0xED) {
        n = 3;
        hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c == 0xF0) {
        n = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3)
        n = 4;
    else if (c == 0xF4) {
        n = 4;
        hi = 0x8F; /* nothing above U+10FFFF */
    } else
        return 0;
    if (end - k < n) return 0;
    if (p->s[k + 1] < lo || p->s[k + 1] > hi) return 0;
    for (size_t j = 2; j < n; j++)
        if (p->s[k + j] < 0x80 || p->s[k + j] > 0xBF) return 0;
    return n;
}

/* Parses the string whose opening quote is at p->i; on success p->i is past the closing quote. */
static int parse_string(parser *p, const char **out, uint32_t *out_len) {
    const size_t open = p->i;
    size_t j = open + 1;
    /* pass 1: find the closing quote (a backslash always skips the next byte) */
    for (;;) {
        if (j >= p->len) {
            fail_at(p, open, MK_EFORMAT, "unterminated string");
            return 0;
        }
        if (p->s[j] == '"') break;
        j += p->s[j] == '\\' ? 2 : 1;
    }
    const size_t end = j; /* index of the closing quote */
    const size_t raw = end - (open + 1);
    if (raw > UINT32_MAX - 1) {
        fail_at(p, open, MK_EFORMAT, "string longer than 4 GiB");
        return 0;
    }
    char *dst = arena_alloc(p, raw + 1); /* decoding never grows a string */
    if (!dst) return 0;
    size_t n = 0;
    char desc[32];
    for (size_t k = open + 1; k < end;) {
        unsigned char c = p->s[k];
        if (c < 0x20) {
            fail_at(p, k, MK_EFORMAT, "control character U+%04X in a string must be escaped", (unsigned)c);
            return 0;
        }
        if (c == '\\') {
            if (k + 1 >= end) {
                fail_at(p, k, MK_EFORMAT, "unterminated escape");
                return 0;
            }
            unsigned char e = p->s[k + 1];
            switch (e) {
            case '"': dst[n++] = '"'; k += 2; continue;
            case '\\': dst[n++] = '\\'; k += 2; continue;
            case '/': dst[n++] = '/'; k += 2; continue;
            case 'b': dst[n++] = '\b'; k += 2; continue;
            case 'f': dst[n++] = '\f'; k += 2; continue;
            case 'n': dst[n++] = '\n'; k += 2; continue;
            case 'r': dst[n++] = '\r'; k += 2; continue;
            case 't': dst[n++] = '\t'; k += 2; continue;
            case 'u': break;
            default:
                fail_at(p, k, MK_EFORMAT, "invalid escape '\\' followed by %s", describe(p, k + 1, desc, sizeof desc));
                return 0;
            }
            long cp = hex4(p, k + 2, end);
            if (cp < 0) {
                fail_at(p, k, MK_EFORMAT, "\\u must be followed by 4 hex digits");
                return 0;
            }
            size_t used = 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail_at(p, k, MK_EFORMAT, "unpaired low surrogate \\u%04lX", (unsigned long)cp);
                return 0;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = -1;
                if (end - k >= 12 && p->s[k + 6] == '\\' && p->s[k + 7] == 'u') lo = hex4(p, k + 8, end);
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    fail_at(p, k, MK_EFORMAT, "high surrogate \\u%04lX not followed by a \\u low surrogate",
                            (unsigned long)cp);
                    return 0;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                used = 12;
            }
            n += put_utf8(dst + n, (unsigned long)cp);
            k += used;
            continue;
        }
        if (c < 0x80) {
            dst[n++] = (char)c;
            k++;
            continue;
        }
        size_t sl = utf8_seq(p, k, end);
        if (!sl) {
            fail_at(p, k, MK_EFORMAT, "invalid UTF-8 byte 0x%02x in a string", (unsigned)c);
            return 0;
        }
        memcpy(dst + n, p->s + k, sl);
        n += sl;
        k += sl;
    }
    dst[n] = '\0';
    *out = dst;
    *out_len = (uint32_t)n;
    p->i = end + 1;
    return 1;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, mkj_value *v) {
    const size_t start = p->i;
    size_t k = start;
    int negative = 0, integral = 1;
    if (k < p->len && p->s[k] == '-') {
        negative = 1;
        k++;
    }
    if (k < p->len && p->s[k] == '0') {
        k++;
        if (k < p->len && is_digit(p->s[k])) {
            fail_at(p, start, MK_EFORMAT, "number with a leading zero");
            return 0;
        }
    } else if (k < p->len && is_digit(p->s[k])) {
        while (k < p->len && is_digit(p->s[k])) k++;
    } else {
        fail_at(p, start, MK_EFORMAT, "invalid number");
        return 0;
    }
    const size_t int_end = k;
    if (k < p->len && p->s[k] == '.') {
        k++;
        if (!(k < p->len && is_digit(p->s[k]))) {
            fail_at(p, k, MK_EFORMAT, "a digit must follow the decimal point");
            return 0;
        }
        while (k < p->len && is_digit(p->s[k])) k++;
        integral = 0;
    }
    if (k < p->len && (p->s[k] == 'e' || p->s[k] == 'E')) {
        k++;
        if (k < p->len && (p->s[k] == '+' || p->s[k] == '-')) k++;
        if (!(k < p->len && is_digit(p->s[k]))) {
            fail_at(p, k, MK_EFORMAT, "a digit must follow the exponent");
            return 0;
        }
        while (k < p->len && is_digit(p->s[k])) k++;
        integral = 0;
    }
    const size_t n = k - start;
    char small[64];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) {
        fail_at(p, start, MK_ENOMEM, "out of memory");
        return 0;
    }
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    double d = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (!isfinite(d)) {
        fail_at(p, start, MK_EFORMAT, "number out of the range of a double");
        return 0;
    }
    v->type = MKJ_NUMBER;
    v->is_integer = 0;
    v->u.num.number = d;
    v->u.num.integer = 0;
    if (integral) {
        uint64_t mag = 0;
        int overflow = 0;
        for (size_t j = start + (size_t)negative; j < int_end; j++) {
            unsigned dg = (unsigned)(p->s[j] - '0');
            if (mag > (UINT64_MAX - dg) / 10) {
                overflow = 1;
                break;
            }
            mag = mag * 10 + dg;
        }
        if (!overflow && (negative ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
            v->is_integer = 1;
            v->u.num.integer = negative ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
        }
    }
    p->i = k;
    return 1;
}

/* ---- sorting of object keys ---------------------------------------------------------------------------------- */
static int key_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* Stable merge sort of idx[0..n) by members[idx].key; tmp has room for n. */
static void sort_keys(const pending *members, uint32_t *idx, uint32_t *tmp, size_t n) {
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) {
                const pending *x = &members[idx[a]], *y = &members[idx[b]];
                if (key_cmp(y->key, y->key_len, x->key, x->key_len) < 0)
                    tmp[o++] = idx[b++];
                else
                    tmp[o++] = idx[a++];
            }
            while (a < mid) tmp[o++] = idx[a++];
            while (b < hi) tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

/* ---- values -------------------------------------------------------------------------------------------------- */
static int parse_value(parser *p, mkj_value *v);

static int enter(parser *p) {
    if (++p->depth > p->max_depth) {
        fail_at(p, p->i, MK_EFORMAT, "nesting deeper than %d levels", p->max_depth);
        return 0;
    }
    return 1;
}

/* After an item of an array or object: consumes ',' (returns 1: another item follows) or the closing bracket
 * (returns 0), else records the error and returns -1. */
static int after_item(parser *p, char close, const char *where) {
    char desc[32];
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ',') {
        p->i++;
        return 1;
    }
    if (p->i < p->len && p->s[p->i] == close) {
        p->i++;
        return 0;
    }
    fail_at(p, p->i, MK_EFORMAT, "expected ',' or '%c' in %s, found %s", close, where,
            describe(p, p->i, desc, sizeof desc));
    return -1;
}

static int parse_array(parser *p, mkj_value *v) {
    const size_t base = p->sp;
    if (!enter(p)) return 0;
    p->i++; /* '[' */
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
    } else {
        for (;;) {
            pending e = {0};
            skip_ws(p);
            if (!parse_value(p, &e.value)) return 0;
            if (!push(p, &e)) return 0;
            const int sep = after_item(p, ']', "an array");
            if (sep < 0) return 0;
            if (sep == 0) break;
        }
    }
    const size_t n = p->sp - base;
    mkj_value *items = NULL;
    if (n) {
        items = arena_alloc(p, n * sizeof *items);
        if (!items) return 0;
        for (size_t k = 0; k < n; k++) items[k] = p->stack[base + k].value;
    }
    p->sp = base;
    p->depth--;
    v->type = MKJ_ARRAY;
    v->n = (uint32_t)n; /* n <= max_values < 2^32 */
    v->u.items = items;
    return 1;
}

static int parse_object(parser *p, mkj_value *v) {
    const size_t base = p->sp;
    char desc[32];
    if (!enter(p)) return 0;
    p->i++; /* '{' */
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            pending e = {0};
            skip_ws(p);
            if (!(p->i < p->len && p->s[p->i] == '"')) {
                fail_at(p, p->i, MK_EFORMAT, "expected a string key in an object, found %s",
                        describe(p, p->i, desc, sizeof desc));
                return 0;
            }
            e.key_pos = p->i;
            if (!parse_string(p, &e.key, &e.key_len)) return 0;
            skip_ws(p);
            if (!(p->i < p->len && p->s[p->i] == ':')) {
                fail_at(p, p->i, MK_EFORMAT, "expected ':' after an object key, found %s",
                        describe(p, p->i, desc, sizeof desc));
                return 0;
            }
            p->i++;
            skip_ws(p);
            if (!parse_value(p, &e.value)) return 0;
            if (!push(p, &e)) return 0;
            const int sep = after_item(p, '}', "an object");
            if (sep < 0) return 0;
            if (sep == 0) break;
        }
    }
    const size_t n = p->sp - base;
    mkj_member *members = NULL;
    uint32_t *sorted = NULL;
    if (n) {
        members = arena_alloc(p, n * sizeof *members);
        sorted = members ? arena_alloc(p, n * sizeof *sorted) : NULL;
        uint32_t *tmp = sorted ? malloc(n * sizeof *tmp) : NULL;
        if (!tmp) {
            if (sorted) fail_at(p, p->i, MK_ENOMEM, "out of memory");
            return 0;
        }
        const pending *pm = p->stack + base;
        for (size_t k = 0; k < n; k++) sorted[k] = (uint32_t)k;
        sort_keys(pm, sorted, tmp, n);
        free(tmp);
        for (size_t k = 1; k < n; k++) {
            const pending *a = &pm[sorted[k - 1]], *b = &pm[sorted[k]];
            if (!key_cmp(a->key, a->key_len, b->key, b->key_len)) {
                /* stable sort: b is the later occurrence */
                fail_at(p, b->key_pos, MK_EFORMAT, "duplicate key \"%.*s\" in an object",
                        (int)(b->key_len > 200 ? 200 : b->key_len), b->key);
                return 0;
            }
        }
        for (size_t k = 0; k < n; k++) {
            members[k].key = pm[k].key;
            members[k].key_len = pm[k].key_len;
            members[k].value = pm[k].value;
        }
    }
    p->sp = base;
    p->depth--;
    v->type = MKJ_OBJECT;
    v->n = (uint32_t)n;
    v->u.obj.members = members;
    v->u.obj.sorted = sorted;
    return 1;
}

static int literal(parser *p, const char *word, mkj_type type, mkj_value *v) {
    size_t n = strlen(word);
    if (p->len - p->i < n || memcmp(p->s + p->i, word, n) != 0) {
        fail_at(p, p->i, MK_EFORMAT, "invalid literal (expected %s)", word);
        return 0;
    }
    p->i += n;
    v->type = (uint8_t)type;
    return 1;
}

static int parse_value(parser *p, mkj_value *v) {
    char desc[32];
    memset(v, 0, sizeof *v);
    if (++p->n_values > p->max_values) {
        fail_at(p, p->i, MK_EFORMAT, "more than %zu values", p->max_values);
        return 0;
    }
    if (p->i >= p->len) {
        fail_at(p, p->i, MK_EFORMAT, "unexpected end of input, expected a value");
        return 0;
    }
    switch (p->s[p->i]) {
    case '{': return parse_object(p, v);
    case '[': return parse_array(p, v);
    case '"': {
        const char *s;
        uint32_t n;
        if (!parse_string(p, &s, &n)) return 0;
        v->type = MKJ_STRING;
        v->n = n;
        v->u.string = s;
        return 1;
    }
    case 't': return literal(p, "true", MKJ_TRUE, v);
    case 'f': return literal(p, "false", MKJ_FALSE, v);
    case 'n': return literal(p, "null", MKJ_NULL, v);
    default:
        if (p->s[p->i] == '-' || is_digit(p->s[p->i])) return parse_number(p, v);
        fail_at(p, p->i, MK_EFORMAT, "expected a value, found %s", describe(p, p->i, desc, sizeof desc));
        return 0;
    }
}

/* ---- public ---------------------------------------------------------------------------------------------------- */
void mkj_free(mkj_doc *doc) {
    if (!doc) return;
    for (mkj_block *b = doc->blocks; b;) {
        mkj_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

mk_status mkj_parse(const char *text, size_t len, const mkj_limits *limits, mkj_doc **doc, const mkj_value **root,
                    char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (doc) *doc = NULL;
    if (root) *root = NULL;
    if (!doc || !root || (!text && len)) {
        if (err && err_size) snprintf(err, err_size, "mkj_parse: NULL argument");
        return MK_EINVAL;
    }
    parser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)(text ? text : "");
    p.len = text ? len : 0;
    p.max_depth = limits && limits->max_depth > 0 ? limits->max_depth : MKJ_DEFAULT_DEPTH;
    p.max_values = limits && limits->max_values > 0 ? limits->max_values : MKJ_DEFAULT_VALUES;
    if (p.max_values > UINT32_MAX - 1) p.max_values = UINT32_MAX - 1;
    p.err = err;
    p.err_size = err_size;
    p.status = MK_OK;
    p.doc = calloc(1, sizeof *p.doc);
    if (!p.doc) {
        if (err && err_size) snprintf(err, err_size, "out of memory");
        return MK_ENOMEM;
    }
    if (p.len >= 3 && p.s[0] == 0xEF && p.s[1] == 0xBB && p.s[2] == 0xBF) p.i = 3;
    skip_ws(&p);
    if (p.i >= p.len) {
        fail_at(&p, p.i, MK_EFORMAT, "empty input: no JSON value");
    } else if (parse_value(&p, &p.doc->root)) {
        skip_ws(&p);
        if (p.i != p.len) {
            char desc[32];
            fail_at(&p, p.i, MK_EFORMAT, "unexpected %s after the JSON value", describe(&p, p.i, desc, sizeof desc));
        }
    }
    free(p.stack);
    if (p.status != MK_OK) {
        mkj_free(p.doc);
        return p.status;
    }
    *doc = p.doc;
    *root = &p.doc->root;
    return MK_OK;
}

const mkj_value *mkj_get(const mkj_value *obj, const char *key) {
    if (!obj || obj->type != MKJ_OBJECT || !key) return NULL;
    size_t klen = strlen(key);
    if (klen > UINT32_MAX) return NULL;
    size_t lo = 0, hi = obj->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mkj_member *m = &obj->u.obj.members[obj->u.obj.sorted[mid]];
        int c = key_cmp(m->key, m->key_len, key, (uint32_t)klen);
        if (c == 0) return &m->value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *mkj_type_name(const mkj_value *v) {
    if (!v) return "missing";
    switch ((mkj_type)v->type) {
    case MKJ_NULL: return "null";
    case MKJ_FALSE: return "false";
    case MKJ_TRUE: return "true";
    case MKJ_NUMBER: return "number";
    case MKJ_STRING: return "string";
    case MKJ_ARRAY: return "array";
    case MKJ_OBJECT: return "object";
    }
    return "?";
}

const char *mkj_type_desc(const mkj_value *v) {
    if (!v) return "missing";
    switch ((mkj_type)v->type) {
    case MKJ_NUMBER: return "a number";
    case MKJ_STRING: return "a string";
    case MKJ_ARRAY: return "an array";
    case MKJ_OBJECT: return "an object";
    default: return mkj_type_name(v);
    }
}
