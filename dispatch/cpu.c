/*
 * cpu.c: instruction-set feature detection.
 *
 * x86-64: cpuid + xgetbv. A feature that needs OS support for its register state (AVX: XMM+YMM, XCR0 bits 1-2;
 * AVX-512: also opmask, ZMM_Hi256 and Hi16_ZMM, XCR0 bits 5-7) is reported only when CPUID.1:ECX.OSXSAVE is set
 * and XCR0 enables that state. aarch64: getauxval(AT_HWCAP). Other targets: everything 0, the ref table is used.
 *
 * Only the feature fields of mk_cpu_info (vendor, brand, family, model and the ISA flags) are written here; the
 * topology fields belong to topo.c.
 */
#include "internal.h"

#include <string.h>

/* Resets the fields this file owns, so that a feature never leaks from an earlier fill. */
static void clear_features(mk_cpu_info *info) {
    memset(info->vendor, 0, sizeof info->vendor);
    memset(info->brand, 0, sizeof info->brand);
    info->family = info->model = 0;
    info->sse42 = info->avx = info->avx2 = info->fma = info->f16c = 0;
    info->avx512f = info->avx512bw = info->avx512vl = info->avx512dq = 0;
    info->avx512_bf16 = info->avx512_vnni = info->avx_vnni = 0;
    info->neon = 0;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static int cpuid(unsigned leaf, unsigned subleaf, unsigned r[4]) {
    /* __get_cpuid_count checks the maximum leaf of the range (basic or extended) before executing cpuid. */
    if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3])) {
        r[0] = r[1] = r[2] = r[3] = 0;
        return 0;
    }
    return 1;
}

/* xgetbv with ecx = 0, encoded directly so this file needs no -mxsave. Call only when OSXSAVE is set. */
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

#define BIT(reg, n) ((int)(((reg) >> (n)) & 1u))

static void trim_copy(char *dst, size_t cap, const char *src) {
    while (*src == ' ') src++;
    size_t n = strlen(src);
    while (n > 0 && src[n - 1] == ' ') n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void mki_cpu_detect_features(mk_cpu_info *info) {
    unsigned r[4];
    clear_features(info);

    /* leaf 0: maximum basic leaf and vendor ("AuthenticAMD", "GenuineIntel"): ebx, edx, ecx */
    if (!cpuid(0, 0, r)) return;
    unsigned max_leaf = r[0];
    char vendor[13];
    memcpy(vendor + 0, &r[1], 4);
    memcpy(vendor + 4, &r[3], 4);
    memcpy(vendor + 8, &r[2], 4);
    vendor[12] = '\0';
    trim_copy(info->vendor, sizeof info->vendor, vendor);

    /* leaf 1: family/model and the SSE/AVX-era feature bits */
    unsigned ecx1 = 0;
    if (max_leaf >= 1 && cpuid(1, 0, r)) {
        unsigned eax = r[0];
        ecx1 = r[2];
        int family = (int)((eax >> 8) & 0xf), model = (int)((eax >> 4) & 0xf);
        if (family == 0xf) family += (int)((eax >> 20) & 0xff);
        if (family == 0x6 || family >= 0xf) model += (int)(((eax >> 16) & 0xf) << 4);
        info->family = family;
        info->model = model;
    }

    int osxsave = BIT(ecx1, 27);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6;        /* XMM | YMM */
    int os_avx512 = (xcr0 & 0xe6) == 0xe6;   /* XMM | YMM | opmask | ZMM_Hi256 | Hi16_ZMM */

    info->sse42 = BIT(ecx1, 20);
    info->avx = BIT(ecx1, 28) && os_avx;
    info->fma = BIT(ecx1, 12) && os_avx;
    info->f16c = BIT(ecx1, 29) && os_avx;

    /* leaf 7 subleaf 0: AVX2, AVX-512 foundation and friends; subleaf 1: AVX-512 BF16, AVX-VNNI */
    if (max_leaf >= 7 && cpuid(7, 0, r)) {
        unsigned max_sub = r[0], ebx = r[1], ecx = r[2];
        info->avx2 = BIT(ebx, 5) && os_avx;
        info->avx512f = BIT(ebx, 16) && os_avx512;
        info->avx512dq = BIT(ebx, 17) && os_avx512;
        info->avx512bw = BIT(ebx, 30) && os_avx512;
        info->avx512vl = BIT(ebx, 31) && os_avx512;
        info->avx512_vnni = BIT(ecx, 11) && os_avx512;
        if (max_sub >= 1 && cpuid(7, 1, r)) {
            info->avx_vnni = BIT(r[0], 4) && os_avx;
            info->avx512_bf16 = BIT(r[0], 5) && os_avx512;
        }
    }
    /* The AVX-512 extensions are meaningless without the foundation. */
    if (!info->avx512f) info->avx512dq = info->avx512bw = info->avx512vl = info->avx512_vnni = info->avx512_bf16 = 0;

    /* brand string: extended leaves 0x80000002..4, 48 bytes, NUL-terminated, often padded with spaces */
    if (cpuid(0x80000000u, 0, r) && r[0] >= 0x80000004u) {
        char brand[49];
        for (unsigned i = 0; i < 3; i++) {
            cpuid(0x80000002u + i, 0, r);
            memcpy(brand + 16 * i, r, 16);
        }
        brand[48] = '\0';
        trim_copy(info->brand, sizeof info->brand, brand);
    }
}

#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif

void mki_cpu_detect_features(mk_cpu_info *info) {
    clear_features(info);
    unsigned long hwcap = getauxval(AT_HWCAP);
    info->neon = (hwcap & HWCAP_ASIMD) != 0;
    strncpy(info->vendor, "arm", sizeof info->vendor - 1);
    strncpy(info->brand, "aarch64", sizeof info->brand - 1);
}

#else

void mki_cpu_detect_features(mk_cpu_info *info) {
    clear_features(info); /* unknown architecture: no SIMD features, the ref table only */
}

#endif
