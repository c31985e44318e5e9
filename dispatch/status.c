/* status.c: status strings, the thread-local last-error message, version, dtypes and F32 <-> BF16 conversion. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define MKI_STR2(x) #x
#define MKI_STR(x) MKI_STR2(x)

static _Thread_local char last_error[512];

mk_status mki_error(mk_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void mki_clear_error(void) { last_error[0] = '\0'; }

MOEKIT_API const char *mk_last_error(void) { return last_error; }

MOEKIT_API const char *mk_status_str(mk_status status) {
    switch (status) {
    case MK_OK: return "MK_OK: success";
    case MK_EINVAL: return "MK_EINVAL: invalid argument";
    case MK_ENOMEM: return "MK_ENOMEM: out of memory";
    case MK_EUNSUPPORTED: return "MK_EUNSUPPORTED: not supported by this build or CPU";
    case MK_EIO: return "MK_EIO: input/output error";
    case MK_EFORMAT: return "MK_EFORMAT: corrupt or unrecognised data";
    case MK_EINTERNAL: return "MK_EINTERNAL: internal error (a moekit bug)";
    }
    return "MK_E?: unknown status";
}

MOEKIT_API unsigned mk_version(void) { return MOEKIT_VERSION; }

MOEKIT_API const char *mk_version_string(void) {
    return MKI_STR(MOEKIT_VERSION_MAJOR) "." MKI_STR(MOEKIT_VERSION_MINOR) "." MKI_STR(MOEKIT_VERSION_PATCH);
}

MOEKIT_API size_t mk_dtype_size(mk_dtype dtype) {
    switch (dtype) {
    case MK_F32: return 4;
    case MK_BF16: return 2;
    }
    return 0;
}

MOEKIT_API const char *mk_dtype_name(mk_dtype dtype) {
    switch (dtype) {
    case MK_F32: return "f32";
    case MK_BF16: return "bf16";
    }
    return "?";
}

MOEKIT_API mk_status mk_convert(void *dst, mk_dtype dst_dtype, const void *src, mk_dtype src_dtype, int64_t n) {
    mki_clear_error();
    if (mk_dtype_size(dst_dtype) == 0)
        return mki_error(MK_EINVAL, "mk_convert: dst_dtype = %d is not MK_F32 or MK_BF16", (int)dst_dtype);
    if (mk_dtype_size(src_dtype) == 0)
        return mki_error(MK_EINVAL, "mk_convert: src_dtype = %d is not MK_F32 or MK_BF16", (int)src_dtype);
    if (n < 0) return mki_error(MK_EINVAL, "mk_convert: n = %lld must be >= 0", (long long)n);
    if (n == 0) return MK_OK;
    if (!dst) return mki_error(MK_EINVAL, "mk_convert: dst = NULL");
    if (!src) return mki_error(MK_EINVAL, "mk_convert: src = NULL");
    size_t dsz = mk_dtype_size(dst_dtype), ssz = mk_dtype_size(src_dtype);
    if ((uint64_t)n > SIZE_MAX / (dsz > ssz ? dsz : ssz))
        return mki_error(MK_EINVAL, "mk_convert: n = %lld overflows size_t", (long long)n);
    const char *d = dst, *s = src;
    if (d < s + (size_t)n * ssz && s < d + (size_t)n * dsz)
        return mki_error(MK_EINVAL, "mk_convert: dst and src overlap");
    if (dst_dtype == src_dtype) {
        memcpy(dst, src, (size_t)n * dsz);
    } else if (dst_dtype == MK_BF16) {
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = mki_f32_to_bf16(((const float *)src)[i]);
    } else {
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = mki_bf16_to_f32(((const uint16_t *)src)[i]);
    }
    return MK_OK;
}
