/*
 * safetensors.c: mmap'd safetensors checkpoints (one file, or the shards of model.safetensors.index.json).
 *
 * File layout: u64 little-endian N | N bytes of JSON header | data section. The header maps tensor names to
 * {"dtype": "F32"|"BF16"|"F16", "shape": [d0, ...], "data_offsets": [begin, end]} with offsets relative to the
 * data section, plus an optional "__metadata__" object of strings. Checked for every file before anything points
 * into it: 8 <= file size; N <= file size - 8 and N <= 100 MB; the header is valid strict JSON (model/json.c), an
 * object, without duplicate names; each tensor has a known dtype, at most MKM_MAX_DIMS non-negative dims, two
 * integer offsets with begin <= end <= data size, end - begin == prod(shape) x dtype size (computed with overflow
 * checks), and no two non-empty tensors overlap. Gaps between tensors are allowed. Every error is MK_EFORMAT (MK_EIO
 * for open/stat/mmap) naming the file and, where there is one, the tensor.
 *
 * Tensor data may be unaligned when a writer did not pad the header to a multiple of 8 (ours does):
 * mkm_tensor_convert reads through memcpy, so it never assumes alignment.
 */
#include "json.h"
#include "model.h"

#include "internal.h" /* mki_clear_error, mki_f32_to_bf16, mki_bf16_to_f32 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_HEADER_MAX ((uint64_t)100 << 20)
#define ST_INDEX_MAX ((size_t)64 << 20)

typedef struct st_source {
    char *label; /* path of the file, or "<buffer>" */
    void *map;   /* mmap'd image (NULL for a caller's buffer) */
    size_t map_len;
} st_source;

struct mkm_st {
    char *origin; /* what was opened, for messages */
    st_source *sources;
    size_t n_sources, cap_sources;
    mkm_tensor *tensors;
    uint32_t *source_of; /* per tensor */
    size_t n, cap;
    uint32_t *by_name; /* tensor indices sorted by name */
};

static const char *dtype_str(mkm_st_dtype d) {
    switch (d) {
    case MKM_ST_F32: return "F32";
    case MKM_ST_BF16: return "BF16";
    case MKM_ST_F16: return "F16";
    }
    return "?";
}

static size_t dtype_bytes(mkm_st_dtype d) { return d == MKM_ST_F32 ? 4 : 2; }

/* ---- building ------------------------------------------------------------------------------------------------ */
static mk_status add_source(mkm_st *st, const char *label, void *map, size_t map_len, uint32_t *index) {
    if (st->n_sources == st->cap_sources) {
        size_t cap = st->cap_sources ? 2 * st->cap_sources : 4;
        st_source *ns = realloc(st->sources, cap * sizeof *ns);
        if (!ns) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
        st->sources = ns;
        st->cap_sources = cap;
    }
    char *l = strdup(label);
    if (!l) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
    st->sources[st->n_sources] = (st_source){l, map, map_len};
    *index = (uint32_t)st->n_sources++;
    return MK_OK;
}

static mk_status add_tensor(mkm_st *st, const mkm_tensor *t, uint32_t source) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 64;
        mkm_tensor *nt = realloc(st->tensors, cap * sizeof *nt);
        if (!nt) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
        st->tensors = nt;
        uint32_t *ns = realloc(st->source_of, cap * sizeof *ns);
        if (!ns) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
        st->source_of = ns;
        st->cap = cap;
    }
    if (st->n >= UINT32_MAX) return mkm_error(MK_EFORMAT, "safetensors: too many tensors");
    mkm_tensor c = *t;
    c.name = strdup(t->name);
    if (!c.name) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
    st->tensors[st->n] = c;
    st->source_of[st->n] = source;
    st->n++;
    return MK_OK;
}

void mkm_st_close(mkm_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (size_t i = 0; i < st->n_sources; i++) {
        if (st->sources[i].map) munmap(st->sources[i].map, st->sources[i].map_len);
        free(st->sources[i].label);
    }
    free(st->sources);
    free(st->tensors);
    free(st->source_of);
    free(st->by_name);
    free(st->origin);
    free(st);
}

static mkm_st *st_new(const char *origin) {
    mkm_st *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->origin = strdup(origin);
    if (!st->origin) {
        free(st);
        return NULL;
    }
    return st;
}

/* ---- one file image ------------------------------------------------------------------------------------------ */
typedef struct span {
    uint64_t begin, end;
    size_t tensor; /* index into st->tensors */
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->tensor < y->tensor ? -1 : x->tensor > y->tensor;
}

static mk_status nonneg_int(const mkj_value *v, uint64_t *out) {
    if (v->type != MKJ_NUMBER || !v->is_integer || v->u.num.integer < 0) return MK_EFORMAT;
    *out = (uint64_t)v->u.num.integer;
    return MK_OK;
}

/* Parses and checks one tensor entry, filling t (name and data set by the caller's buffer). */
static mk_status parse_entry(const char *label, const mkj_member *m, const unsigned char *data, uint64_t data_len,
                             mkm_tensor *t, uint64_t *begin_out, uint64_t *end_out) {
    const char *name = m->key;
    const mkj_value *e = &m->value;
    if (strlen(name) != m->key_len)
        return mkm_error(MK_EFORMAT, "%s: a tensor name contains a NUL character ('%s...')", label, name);
    if (e->type != MKJ_OBJECT)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': entry must be an object, not %s", label, name,
                         mkj_type_desc(e));
    const mkj_value *dt = mkj_get(e, "dtype"), *shape = mkj_get(e, "shape"), *off = mkj_get(e, "data_offsets");
    if (!dt || dt->type != MKJ_STRING)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': \"dtype\" is %s, not a string", label, name,
                         mkj_type_desc(dt));
    if (!strcmp(dt->u.string, "F32") && dt->n == 3)
        t->dtype = MKM_ST_F32;
    else if (!strcmp(dt->u.string, "BF16") && dt->n == 4)
        t->dtype = MKM_ST_BF16;
    else if (!strcmp(dt->u.string, "F16") && dt->n == 3)
        t->dtype = MKM_ST_F16;
    else
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': unsupported dtype \"%.32s\" (F32, BF16 or F16 expected)",
                         label, name, dt->u.string);
    if (!shape || shape->type != MKJ_ARRAY)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': \"shape\" is %s, not an array", label, name,
                         mkj_type_desc(shape));
    if (shape->n > MKM_MAX_DIMS)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': %u dimensions, more than %d", label, name, shape->n,
                         MKM_MAX_DIMS);
    t->n_dims = (int)shape->n;
    uint64_t elems = 1;
    int overflow = 0;
    for (uint32_t d = 0; d < shape->n; d++) {
        uint64_t dim;
        if (nonneg_int(&shape->u.items[d], &dim) != MK_OK)
            return mkm_error(MK_EFORMAT, "%s: tensor '%s': shape[%u] is not a non-negative integer", label, name, d);
        t->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(elems, dim, &elems)) overflow = 1;
    }
    for (int d = t->n_dims; d < MKM_MAX_DIMS; d++) t->shape[d] = 0;
    uint64_t bytes = 0;
    if (overflow || elems > (uint64_t)INT64_MAX ||
        __builtin_mul_overflow(elems, (uint64_t)dtype_bytes(t->dtype), &bytes))
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': the element count of its shape overflows", label, name);
    if (!off || off->type != MKJ_ARRAY || off->n != 2)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': \"data_offsets\" must be an array [begin, end]", label, name);
    uint64_t begin, end;
    if (nonneg_int(&off->u.items[0], &begin) != MK_OK || nonneg_int(&off->u.items[1], &end) != MK_OK)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", label, name);
    if (begin > end)
        return mkm_error(MK_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] has begin > end", label, name,
                         (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return mkm_error(MK_EFORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] runs past the end of the data section "
                         "(%llu bytes)",
                         label, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_len);
    if (end - begin != bytes)
        return mkm_error(MK_EFORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but its shape and dtype %s "
                         "need %llu",
                         label, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)(end - begin), dtype_str(t->dtype), (unsigned long long)bytes);
    t->data = data + begin;
    t->n_bytes = (size_t)bytes;
    *begin_out = begin;
    *end_out = end;
    return MK_OK;
}

static mk_status parse_image(mkm_st *st, const unsigned char *buf, size_t len, uint32_t source) {
    const char *label = st->sources[source].label;
    if (len < 8)
        return mkm_error(MK_EFORMAT, "%s: %zu bytes, too short for the 8-byte header length", label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > (uint64_t)(len - 8))
        return mkm_error(MK_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", label,
                         (unsigned long long)hlen, len);
    if (hlen > ST_HEADER_MAX)
        return mkm_error(MK_EFORMAT, "%s: header length %llu is larger than the limit of %llu bytes", label,
                         (unsigned long long)hlen, (unsigned long long)ST_HEADER_MAX);
    const unsigned char *data = buf + 8 + hlen;
    const uint64_t data_len = (uint64_t)(len - 8 - hlen);

    mkj_doc *doc = NULL;
    const mkj_value *root = NULL;
    char err[256];
    mkj_limits lim = {4, 0}; /* object -> tensor -> shape: nothing valid is deeper */
    mk_status s = mkj_parse((const char *)buf + 8, (size_t)hlen, &lim, &doc, &root, err, sizeof err);
    if (s != MK_OK) return mkm_error(s, "%s: invalid JSON header: %s", label, err);
    if (root->type != MKJ_OBJECT) {
        s = mkm_error(MK_EFORMAT, "%s: the JSON header must be an object, not %s", label, mkj_type_desc(root));
        mkj_free(doc);
        return s;
    }
    span *spans = malloc((root->n ? root->n : 1) * sizeof *spans);
    if (!spans) {
        mkj_free(doc);
        return mkm_error(MK_ENOMEM, "%s: out of memory", label);
    }
    size_t n_spans = 0;
    for (uint32_t i = 0; i < root->n && s == MK_OK; i++) {
        const mkj_member *m = &root->u.obj.members[i];
        if (!strcmp(m->key, "__metadata__") && m->key_len == 12) {
            const mkj_value *md = &m->value;
            if (md->type != MKJ_OBJECT) {
                s = mkm_error(MK_EFORMAT, "%s: \"__metadata__\" must be an object, not %s", label,
                              mkj_type_desc(md));
                break;
            }
            for (uint32_t j = 0; j < md->n; j++)
                if (md->u.obj.members[j].value.type != MKJ_STRING) {
                    s = mkm_error(MK_EFORMAT, "%s: \"__metadata__\" value of \"%.64s\" must be a string", label,
                                  md->u.obj.members[j].key);
                    break;
                }
            continue;
        }
        mkm_tensor t;
        memset(&t, 0, sizeof t);
        t.name = m->key;
        uint64_t b = 0, e = 0;
        s = parse_entry(label, m, data, data_len, &t, &b, &e);
        if (s != MK_OK) break;
        if (e > b) spans[n_spans++] = (span){b, e, st->n};
        s = add_tensor(st, &t, source);
    }
    if (s == MK_OK && n_spans > 1) {
        qsort(spans, n_spans, sizeof *spans, span_cmp);
        for (size_t i = 1; i < n_spans; i++)
            if (spans[i].begin < spans[i - 1].end) {
                const mkm_tensor *a = &st->tensors[spans[i - 1].tensor], *b = &st->tensors[spans[i].tensor];
                s = mkm_error(MK_EFORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", label,
                              a->name, (unsigned long long)spans[i - 1].begin, (unsigned long long)spans[i - 1].end,
                              b->name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
                break;
            }
    }
    free(spans);
    mkj_free(doc);
    return s;
}

/* ---- name index ---------------------------------------------------------------------------------------------- */
static mk_status build_index(mkm_st *st) {
    st->by_name = malloc((st->n ? st->n : 1) * sizeof *st->by_name);
    if (!st->by_name) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < st->n; i++) st->by_name[i] = (uint32_t)i;
    /* merge sort by name (qsort has no context argument) */
    uint32_t *tmp = malloc((st->n ? st->n : 1) * sizeof *tmp);
    if (!tmp) return mkm_error(MK_ENOMEM, "safetensors: out of memory");
    uint32_t *a = st->by_name;
    for (size_t width = 1; width < st->n; width *= 2) {
        for (size_t lo = 0; lo < st->n; lo += 2 * width) {
            size_t mid = lo + width < st->n ? lo + width : st->n;
            size_t hi = lo + 2 * width < st->n ? lo + 2 * width : st->n;
            size_t x = lo, y = mid, o = lo;
            while (x < mid && y < hi)
                tmp[o++] = strcmp(st->tensors[a[y]].name, st->tensors[a[x]].name) < 0 ? a[y++] : a[x++];
            while (x < mid) tmp[o++] = a[x++];
            while (y < hi) tmp[o++] = a[y++];
        }
        memcpy(a, tmp, st->n * sizeof *a);
    }
    free(tmp);
    for (size_t i = 1; i < st->n; i++) {
        const uint32_t p = a[i - 1], q = a[i];
        if (!strcmp(st->tensors[p].name, st->tensors[q].name))
            return mkm_error(MK_EFORMAT, "tensor '%s' appears twice: in %s and in %s", st->tensors[q].name,
                             st->sources[st->source_of[p]].label, st->sources[st->source_of[q]].label);
    }
    return MK_OK;
}

static long find_index(const mkm_st *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[st->by_name[mid]].name, name);
        if (c == 0) return (long)st->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- files ----------------------------------------------------------------------------------------------------- */
static mk_status map_file(mkm_st *st, const char *path, uint32_t *source) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never block on a FIFO */
    if (fd < 0) return mkm_error(MK_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mkm_error(MK_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return mkm_error(MK_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return mkm_error(MK_EIO, "%s: too large to map", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mkm_error(MK_EIO, "%s: mmap of %zu bytes failed: %s", path, len, strerror(e));
        }
    }
    close(fd);
    mk_status s = add_source(st, path, map, len, source);
    if (s != MK_OK) {
        if (map) munmap(map, len);
        return s;
    }
    return parse_image(st, map ? map : (const void *)"", len, *source);
}

static int valid_shard_name(const mkj_value *v) {
    if (v->type != MKJ_STRING || v->n == 0 || strlen(v->u.string) != v->n) return 0;
    if (strchr(v->u.string, '/')) return 0;
    return strcmp(v->u.string, ".") != 0 && strcmp(v->u.string, "..") != 0;
}

static mk_status open_sharded(mkm_st *st, const char *index_path, const char *dir) {
    char *text = NULL;
    size_t len = 0;
    mk_status s = mkm_read_file(index_path, ST_INDEX_MAX, &text, &len);
    if (s != MK_OK) return s;
    mkj_doc *doc = NULL;
    const mkj_value *root = NULL;
    char err[256];
    mkj_limits lim = {16, 0};
    s = mkj_parse(text, len, &lim, &doc, &root, err, sizeof err);
    free(text);
    if (s != MK_OK) return mkm_error(s, "%s: invalid JSON: %s", index_path, err);
    const mkj_value *wm = mkj_get(root, "weight_map");
    const char **shards = NULL;
    size_t n_shards = 0;
    if (root->type != MKJ_OBJECT)
        s = mkm_error(MK_EFORMAT, "%s: the top-level JSON value must be an object, not %s", index_path,
                      mkj_type_desc(root));
    else if (!wm || wm->type != MKJ_OBJECT)
        s = mkm_error(MK_EFORMAT, "%s: \"weight_map\" is %s, not an object", index_path,
                      mkj_type_desc(wm));
    else if (wm->n == 0)
        s = mkm_error(MK_EFORMAT, "%s: \"weight_map\" is empty", index_path);
    if (s == MK_OK && !(shards = malloc(wm->n * sizeof *shards))) s = mkm_error(MK_ENOMEM, "out of memory");
    for (uint32_t i = 0; s == MK_OK && i < wm->n; i++) {
        const mkj_member *m = &wm->u.obj.members[i];
        if (!valid_shard_name(&m->value)) {
            s = mkm_error(MK_EFORMAT, "%s: weight_map entry of tensor '%.200s' is not a plain file name", index_path,
                          m->key);
            break;
        }
        size_t k = 0;
        while (k < n_shards && strcmp(shards[k], m->value.u.string) != 0) k++;
        if (k == n_shards) shards[n_shards++] = m->value.u.string;
    }
    uint32_t *shard_source = NULL;
    if (s == MK_OK && !(shard_source = malloc(n_shards * sizeof *shard_source)))
        s = mkm_error(MK_ENOMEM, "out of memory");
    for (size_t k = 0; s == MK_OK && k < n_shards; k++) {
        char *path = mkm_path_join(dir, shards[k]);
        if (!path) {
            s = mkm_error(MK_ENOMEM, "out of memory");
            break;
        }
        s = map_file(st, path, &shard_source[k]);
        free(path);
    }
    if (s == MK_OK) s = build_index(st);
    /* every weight_map entry must be in the shard it names */
    for (uint32_t i = 0; s == MK_OK && i < wm->n; i++) {
        const mkj_member *m = &wm->u.obj.members[i];
        size_t k = 0;
        while (strcmp(shards[k], m->value.u.string) != 0) k++;
        long t = strlen(m->key) == m->key_len ? find_index(st, m->key) : -1;
        if (t < 0)
            s = mkm_error(MK_EFORMAT, "%s: tensor '%.200s' is listed in weight_map but %s does not contain it",
                          index_path, m->key, st->sources[shard_source[k]].label);
        else if (st->source_of[t] != shard_source[k])
            s = mkm_error(MK_EFORMAT, "%s: tensor '%.200s' is listed for %s but is in %s", index_path, m->key,
                          st->sources[shard_source[k]].label, st->sources[st->source_of[t]].label);
    }
    free(shard_source);
    free(shards);
    mkj_free(doc);
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

mk_status mkm_st_open(const char *path, mkm_st **out) {
    mki_clear_error();
    if (!out) return mkm_error(MK_EINVAL, "mkm_st_open: st = NULL");
    *out = NULL;
    if (!path) return mkm_error(MK_EINVAL, "mkm_st_open: path = NULL");
    mkm_st *st = st_new(path);
    if (!st) return mkm_error(MK_ENOMEM, "mkm_st_open: out of memory");
    mk_status s;
    if (mkm_is_dir(path)) {
        char *index = mkm_path_join(path, "model.safetensors.index.json");
        char *single = mkm_path_join(path, "model.safetensors");
        if (!index || !single)
            s = mkm_error(MK_ENOMEM, "mkm_st_open: out of memory");
        else if (mkm_is_file(index))
            s = open_sharded(st, index, path);
        else if (mkm_is_file(single)) {
            uint32_t src;
            s = map_file(st, single, &src);
            if (s == MK_OK) s = build_index(st);
        } else
            s = mkm_error(MK_EIO, "%s: neither model.safetensors nor model.safetensors.index.json is there", path);
        free(index);
        free(single);
    } else if (ends_with(path, ".index.json")) {
        char *dir = strdup(path);
        if (!dir) {
            s = mkm_error(MK_ENOMEM, "mkm_st_open: out of memory");
        } else {
            char *slash = strrchr(dir, '/');
            if (slash)
                slash[1] = '\0';
            else
                dir[0] = '\0';
            s = open_sharded(st, path, dir);
            free(dir);
        }
    } else {
        uint32_t src;
        s = map_file(st, path, &src);
        if (s == MK_OK) s = build_index(st);
    }
    if (s != MK_OK) {
        mkm_st_close(st);
        return s;
    }
    *out = st;
    return MK_OK;
}

mk_status mkm_st_open_buffer(const void *buf, size_t len, mkm_st **out) {
    mki_clear_error();
    if (!out) return mkm_error(MK_EINVAL, "mkm_st_open_buffer: st = NULL");
    *out = NULL;
    if (!buf && len) return mkm_error(MK_EINVAL, "mkm_st_open_buffer: buf = NULL");
    mkm_st *st = st_new("<buffer>");
    if (!st) return mkm_error(MK_ENOMEM, "mkm_st_open_buffer: out of memory");
    uint32_t src;
    mk_status s = add_source(st, "<buffer>", NULL, 0, &src);
    if (s == MK_OK) s = parse_image(st, buf ? buf : (const void *)"", len, src);
    if (s == MK_OK) s = build_index(st);
    if (s != MK_OK) {
        mkm_st_close(st);
        return s;
    }
    *out = st;
    return MK_OK;
}

size_t mkm_st_count(const mkm_st *st) { return st ? st->n : 0; }

const mkm_tensor *mkm_st_at(const mkm_st *st, size_t i) { return st && i < st->n ? &st->tensors[i] : NULL; }

static void format_shape(char *buf, size_t size, int n_dims, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < n_dims && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static void format_mask(char *buf, size_t size, unsigned mask) {
    size_t o = 0;
    buf[0] = '\0';
    for (int d = MKM_ST_F32; d <= MKM_ST_F16 && o < size; d++)
        if (mask & (1u << d))
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? " or " : "", dtype_str((mkm_st_dtype)d));
    if (!buf[0]) snprintf(buf, size, "(no dtype allowed)");
}

mk_status mkm_st_get(const mkm_st *st, const char *name, unsigned dtype_mask, int n_dims, const int64_t *shape,
                     const mkm_tensor **tensor) {
    mki_clear_error();
    if (tensor) *tensor = NULL;
    if (!st) return mkm_error(MK_EINVAL, "mkm_st_get: st = NULL");
    if (!name) return mkm_error(MK_EINVAL, "mkm_st_get: name = NULL");
    if (n_dims > MKM_MAX_DIMS || (n_dims > 0 && !shape))
        return mkm_error(MK_EINVAL, "mkm_st_get: n_dims = %d with shape %s", n_dims, shape ? "set" : "NULL");
    long i = find_index(st, name);
    if (i < 0) return mkm_error(MK_EFORMAT, "%s: tensor '%s' not found", st->origin, name);
    const mkm_tensor *t = &st->tensors[i];
    const char *file = st->sources[st->source_of[i]].label;
    if (!(dtype_mask & (1u << t->dtype))) {
        char want[64];
        format_mask(want, sizeof want, dtype_mask);
        return mkm_error(MK_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s", file, name, dtype_str(t->dtype),
                         want);
    }
    if (n_dims >= 0) {
        int same = n_dims == t->n_dims;
        for (int d = 0; same && d < n_dims; d++) same = shape[d] == t->shape[d];
        if (!same) {
            char have[160], want[160];
            format_shape(have, sizeof have, t->n_dims, t->shape);
            format_shape(want, sizeof want, n_dims, shape);
            return mkm_error(MK_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", file, name, have, want);
        }
    }
    if (tensor) *tensor = t;
    return MK_OK;
}

/* ---- conversion ------------------------------------------------------------------------------------------------ */
/* IEEE binary16 -> binary32, exact for every input (subnormals normalised, inf kept, NaN payload kept). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            uint32_t e = 113; /* 2^-14 as a binary32 exponent, lowered while normalising */
            while (!(mant & 0x400u)) {
                mant <<= 1;
                e--;
            }
            bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float load_f32(const mkm_tensor *t, size_t i) {
    const unsigned char *p = (const unsigned char *)t->data;
    if (t->dtype == MKM_ST_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == MKM_ST_BF16 ? mki_bf16_to_f32(h) : f16_to_f32(h);
}

mk_status mkm_tensor_convert(const mkm_tensor *t, mk_dtype dst_dtype, void *dst, size_t dst_elems) {
    mki_clear_error();
    if (!t) return mkm_error(MK_EINVAL, "mkm_tensor_convert: t = NULL");
    if (dst_dtype != MK_F32 && dst_dtype != MK_BF16)
        return mkm_error(MK_EINVAL, "mkm_tensor_convert: dst_dtype = %d is not MK_F32 or MK_BF16", (int)dst_dtype);
    if ((unsigned)t->dtype > MKM_ST_F16)
        return mkm_error(MK_EINVAL, "mkm_tensor_convert: tensor '%s' has dtype %d", t->name ? t->name : "?",
                         (int)t->dtype);
    const size_t n = t->n_bytes / dtype_bytes(t->dtype);
    if (n != dst_elems)
        return mkm_error(MK_EINVAL, "mkm_tensor_convert: tensor '%s' has %zu elements, dst_elems = %zu",
                         t->name ? t->name : "?", n, dst_elems);
    if (n == 0) return MK_OK;
    if (!dst) return mkm_error(MK_EINVAL, "mkm_tensor_convert: dst = NULL");
    if (!t->data) return mkm_error(MK_EINVAL, "mkm_tensor_convert: tensor '%s' has no data", t->name ? t->name : "?");
    if ((t->dtype == MKM_ST_F32 && dst_dtype == MK_F32) || (t->dtype == MKM_ST_BF16 && dst_dtype == MK_BF16)) {
        memmove(dst, t->data, t->n_bytes);
        return MK_OK;
    }
    if (dst_dtype == MK_F32) {
        float *o = dst;
        for (size_t i = 0; i < n; i++) o[i] = load_f32(t, i);
    } else {
        uint16_t *o = dst;
        for (size_t i = 0; i < n; i++) o[i] = mki_f32_to_bf16(load_f32(t, i));
    }
    return MK_OK;
}
