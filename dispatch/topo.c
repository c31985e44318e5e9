/*
 * topo.c: CPU topology (hwloc 2.x), thread binding, and the cached mk_cpu_info.
 *
 * The hwloc topology is loaded once (pthread_once) and only read afterwards, which hwloc documents as safe from
 * any number of threads. hwloc is never trusted blindly: missing information reads as zeros (0 cores on some VMs
 * and synthetic topologies, caches of size 0), so
 *   - 0 cores                -> the cores are the available PUs;
 *   - a cache of size 0      -> sysconf(_SC_LEVEL{1D,2,3}_CACHE_SIZE), then 48K / 1M / 32M;
 *   - hwloc failing to load  -> sched_getaffinity / sysconf(_SC_NPROCESSORS_ONLN) and the same cache fallbacks.
 * "Available" means: in hwloc's allowed cpuset (cgroup cpusets) AND in sched_getaffinity (taskset, numactl), and
 * the counts are then capped by the cgroup v2 CPU quota (cpu.max, e.g. docker --cpus=2), which hwloc ignores.
 */
#include "internal.h"

#include <hwloc.h>
#include <hwloc/glibc-sched.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Not in internal.h: used by topo.c itself and by tests/test_dispatch.c (which declares them). */
MKI_HIDDEN int mki_parse_cpu_max(const char *text);
MKI_HIDDEN int mki_cgroup_quota_cpus(const char *cgroup_root, const char *self_cgroup_path);

#define FALLBACK_L1D ((int64_t)48 << 10)
#define FALLBACK_L2 ((int64_t)1 << 20)
#define FALLBACK_L3 ((int64_t)32 << 20)

/* ---- the topology, loaded once -------------------------------------------------------------------------------- */
static pthread_once_t g_topo_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t g_topo;  /* NULL when hwloc could not be used */
static hwloc_bitmap_t g_avail;   /* available PUs: allowed cpuset AND sched_getaffinity */
static hwloc_obj_t *g_targets;   /* available cores (objects intersecting g_avail), or available PUs if no cores */
static int g_n_targets;
static int g_targets_are_cores;
static int g_can_bind;

static void topo_load(void) {
    /* ABI check recommended by hwloc: the major API version of the library must match the header's. */
    if ((hwloc_get_api_version() >> 16) != (HWLOC_API_VERSION >> 16)) return;

    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0) return;
    hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_icache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
#if HWLOC_API_VERSION >= 0x00020800
    hwloc_topology_set_flags(t, HWLOC_TOPOLOGY_FLAG_NO_DISTANCES | HWLOC_TOPOLOGY_FLAG_NO_MEMATTRS |
                                    HWLOC_TOPOLOGY_FLAG_NO_CPUKINDS);
#endif
#if HWLOC_API_VERSION >= 0x00020100
    /* The I/O plugins load libOpenCL/libGL/libpciaccess and cost tens of ms; we need none of them. */
    hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "opencl");
    hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "gl");
    hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
#endif
    if (hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return;
    }

    hwloc_bitmap_t avail = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t));
    if (avail == NULL) {
        hwloc_topology_destroy(t);
        return;
    }
    hwloc_bitmap_and(avail, avail, hwloc_topology_get_topology_cpuset(t));
    /* The affinity mask only means something for the machine we run on (not for HWLOC_SYNTHETIC/XML). */
    if (hwloc_topology_is_thissystem(t)) {
        cpu_set_t mask;
        CPU_ZERO(&mask);
        if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
            hwloc_bitmap_t aff = hwloc_bitmap_alloc(), both = hwloc_bitmap_alloc();
            if (aff != NULL && both != NULL && hwloc_cpuset_from_glibc_sched_affinity(t, aff, &mask, sizeof mask) == 0) {
                hwloc_bitmap_and(both, avail, aff);
                if (!hwloc_bitmap_iszero(both)) hwloc_bitmap_copy(avail, both);
            }
            hwloc_bitmap_free(aff);
            hwloc_bitmap_free(both);
        }
    }
    if (hwloc_bitmap_iszero(avail)) hwloc_bitmap_copy(avail, hwloc_topology_get_topology_cpuset(t));

    int n_core_objs = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    int n_pu_objs = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    int cap = (n_core_objs > 0 ? n_core_objs : 0) + (n_pu_objs > 0 ? n_pu_objs : 0) + 1;
    hwloc_obj_t *targets = calloc((size_t)cap, sizeof *targets);
    int n = 0, are_cores = 0;
    if (targets != NULL) {
        for (int i = 0; i < n_core_objs; i++) {
            hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, (unsigned)i);
            if (o != NULL && o->cpuset != NULL && hwloc_bitmap_intersects(o->cpuset, avail)) targets[n++] = o;
        }
        are_cores = n > 0;
        if (n == 0) { /* hwloc reports no cores (VM, synthetic "pack:1 pu:4"): the PUs stand for cores */
            for (int i = 0; i < n_pu_objs; i++) {
                hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_PU, (unsigned)i);
                if (o != NULL && o->cpuset != NULL && hwloc_bitmap_intersects(o->cpuset, avail)) targets[n++] = o;
            }
        }
    }

    const struct hwloc_topology_support *sup = hwloc_topology_get_support(t);
    g_can_bind = sup != NULL && sup->cpubind != NULL && sup->cpubind->set_thisthread_cpubind;
    g_targets = targets;
    g_n_targets = n;
    g_targets_are_cores = are_cores;
    g_avail = avail;
    g_topo = t;
}

/* ---- cgroup v2 CPU quota --------------------------------------------------------------------------------------- */
/* "max 100000" -> 0 (no limit); "200000 100000" -> 2; "150000 100000" -> 2 (rounded up); garbage -> 0. */
int mki_parse_cpu_max(const char *text) {
    if (text == NULL) return 0;
    while (*text == ' ' || *text == '\t') text++;
    if (strncmp(text, "max", 3) == 0) return 0;
    char *end;
    long long quota = strtoll(text, &end, 10);
    if (end == text || quota <= 0) return 0;
    long long period = 100000; /* the kernel default when the period is omitted */
    const char *p = end;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != '\0' && *p != '\n') {
        period = strtoll(p, &end, 10);
        if (end == p || period <= 0) return 0;
    }
    long long cpus = (quota + period - 1) / period;
    if (cpus < 1) cpus = 1;
    return cpus > 1 << 20 ? 1 << 20 : (int)cpus;
}

static int read_cpu_max(const char *dir) {
    char path[4096], buf[128];
    if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path) return 0;
    FILE *f = fopen(path, "re");
    if (f == NULL) return 0;
    int cpus = 0;
    if (fgets(buf, sizeof buf, f) != NULL) cpus = mki_parse_cpu_max(buf);
    fclose(f);
    return cpus;
}

/* The smallest cpu.max limit on the way from this process's cgroup up to the root of the cgroup2 mount, in CPUs
 * (rounded up), or 0 when there is none. self_cgroup_path is /proc/self/cgroup (line "0::/path"). Inside a
 * container with a cgroup namespace the path is "/" and the mount root is the container's own cgroup. */
int mki_cgroup_quota_cpus(const char *cgroup_root, const char *self_cgroup_path) {
    char rel[2048] = "";
    FILE *f = fopen(self_cgroup_path, "re");
    if (f != NULL) {
        char line[2048];
        while (fgets(line, sizeof line, f) != NULL) {
            if (strncmp(line, "0::", 3) == 0) {
                size_t n = strcspn(line + 3, "\n");
                if (n >= sizeof rel) n = sizeof rel - 1;
                memcpy(rel, line + 3, n);
                rel[n] = '\0';
                break;
            }
        }
        fclose(f);
    }
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s%s", cgroup_root, rel) >= (int)sizeof dir) return 0;
    size_t root_len = strlen(cgroup_root);
    int best = 0;
    for (;;) {
        size_t len = strlen(dir);
        while (len > root_len && dir[len - 1] == '/') dir[--len] = '\0';
        int q = read_cpu_max(dir);
        if (q > 0 && (best == 0 || q < best)) best = q;
        if (len <= root_len) break;
        char *slash = strrchr(dir + root_len, '/');
        if (slash == NULL) dir[root_len] = '\0';
        else *slash = '\0';
    }
    return best;
}

/* ---- the topology fields of mk_cpu_info ------------------------------------------------------------------------ */
static int64_t sysconf_size(int name) {
    long v = sysconf(name);
    return v > 0 ? (int64_t)v : 0;
}

static int affinity_count(void) {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        int n = CPU_COUNT(&mask);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void mki_topology_fill(mk_cpu_info *info) {
    pthread_once(&g_topo_once, topo_load);

    int n_cores = 0, n_pus = 0, n_numa = 0, from_hwloc = 0;
    int64_t l1d = 0, l2 = 0, l3 = 0;
    if (g_topo != NULL) {
        hwloc_topology_t t = g_topo;
        n_pus = hwloc_get_nbobjs_inside_cpuset_by_type(t, g_avail, HWLOC_OBJ_PU);
        n_cores = g_targets_are_cores ? g_n_targets : 0;
        n_numa = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
        /* L1d and L2: the caches above the first available core (or PU). */
        for (hwloc_obj_t p = g_n_targets > 0 ? g_targets[0] : NULL; p != NULL; p = p->parent) {
            if (!hwloc_obj_type_is_dcache(p->type) || p->attr == NULL) continue;
            int64_t size = (int64_t)p->attr->cache.size;
            if (size <= 0) continue;
            if (p->attr->cache.depth == 1 && l1d == 0) l1d = size;
            if (p->attr->cache.depth == 2 && l2 == 0) l2 = size;
        }
        /* L3: total over the L3 instances that serve available PUs. */
        int n_l3 = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_L3CACHE);
        for (int i = 0; i < n_l3; i++) {
            hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_L3CACHE, (unsigned)i);
            if (o != NULL && o->attr != NULL && o->cpuset != NULL && hwloc_bitmap_intersects(o->cpuset, g_avail))
                l3 += (int64_t)o->attr->cache.size;
        }
        from_hwloc = n_cores > 0 && n_pus > 0 && l1d > 0 && l2 > 0;
    }

    if (n_pus <= 0) n_pus = affinity_count();
    if (n_cores <= 0) n_cores = n_pus; /* hwloc reported no cores: count PUs as cores */
    if (n_cores > n_pus) n_pus = n_cores;
    int quota = mki_cgroup_quota_cpus("/sys/fs/cgroup", "/proc/self/cgroup");
    if (quota > 0) {
        if (n_cores > quota) n_cores = quota;
        if (n_pus > quota) n_pus = quota;
    }
    if (n_numa <= 0) n_numa = 1;
    if (l1d <= 0) l1d = sysconf_size(_SC_LEVEL1_DCACHE_SIZE);
    if (l1d <= 0) l1d = FALLBACK_L1D;
    if (l2 <= 0) l2 = sysconf_size(_SC_LEVEL2_CACHE_SIZE);
    if (l2 <= 0) l2 = FALLBACK_L2;
    if (l3 <= 0) l3 = sysconf_size(_SC_LEVEL3_CACHE_SIZE);
    if (l3 <= 0) l3 = FALLBACK_L3;

    info->n_cores = n_cores;
    info->n_pus = n_pus;
    info->n_numa_nodes = n_numa;
    info->l1d_bytes = l1d;
    info->l2_bytes = l2;
    info->l3_bytes = l3;
    info->topology_from_hwloc = from_hwloc;
}

/* ---- binding ---------------------------------------------------------------------------------------------------- */
int mki_bind_current_thread(int core) {
    pthread_once(&g_topo_once, topo_load);
    if (g_topo == NULL || !g_can_bind || g_n_targets <= 0) return -1;
    int i = core % g_n_targets;
    if (i < 0) i += g_n_targets;
    hwloc_bitmap_t set = hwloc_bitmap_dup(g_targets[i]->cpuset);
    if (set == NULL) return -1;
    hwloc_bitmap_and(set, set, g_avail);
    if (hwloc_bitmap_iszero(set)) hwloc_bitmap_copy(set, g_targets[i]->cpuset);
    hwloc_bitmap_singlify(set); /* one PU of the core: the thread cannot migrate between its hyperthreads */
    int rc = hwloc_set_cpubind(g_topo, set, HWLOC_CPUBIND_THREAD);
    hwloc_bitmap_free(set);
    return rc == 0 ? 0 : -1;
}

/* ---- the cached description ------------------------------------------------------------------------------------ */
static pthread_once_t g_info_once = PTHREAD_ONCE_INIT;
static mk_cpu_info g_info;

static void info_init(void) {
    memset(&g_info, 0, sizeof g_info);
    mki_cpu_detect_features(&g_info);
    mki_topology_fill(&g_info);
}

const mk_cpu_info *mki_cpu_info(void) {
    pthread_once(&g_info_once, info_init);
    return &g_info;
}

mk_status mk_get_cpu_info(mk_cpu_info *info) {
    mki_clear_error();
    if (info == NULL) return mki_error(MK_EINVAL, "mk_get_cpu_info: info = NULL (expected a pointer to an mk_cpu_info)");
    *info = *mki_cpu_info();
    return MK_OK;
}
