/* util.c: mkm_error (the model's side of the library's thread-local message) and the file helpers of json.h. */
#include "internal.h"
#include "json.h"
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mk_status mkm_error(mk_status status, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return mki_error(status, "%s", buf);
}

int mkm_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mkm_is_file(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

char *mkm_path_join(const char *dir, const char *name) {
    size_t a = dir ? strlen(dir) : 0, b = strlen(name);
    char *r = malloc(a + b + 2);
    if (!r) return NULL;
    if (a) {
        memcpy(r, dir, a);
        if (dir[a - 1] != '/') r[a++] = '/';
    }
    memcpy(r + a, name, b + 1);
    return r;
}

mk_status mkm_read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never block on a FIFO */
    if (fd < 0) return mkm_error(MK_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mkm_error(MK_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mkm_error(MK_EIO, "%s: %s", path, S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return mkm_error(MK_EFORMAT, "%s: %lld bytes, larger than the limit of %zu bytes", path,
                         (long long)st.st_size, max_bytes);
    }
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return mkm_error(MK_ENOMEM, "%s: cannot allocate %zu bytes", path, cap + 1);
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            /* the file may have grown since fstat: read one more byte to be sure we reached the end */
            char extra;
            ssize_t r = read(fd, &extra, 1);
            if (r == 0) break;
            if (r < 0 && errno == EINTR) continue;
            free(buf);
            close(fd);
            if (r < 0) return mkm_error(MK_EIO, "%s: read failed: %s", path, strerror(errno));
            return mkm_error(MK_EIO, "%s: the file changed while it was being read", path);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return mkm_error(MK_EIO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break; /* shorter than fstat said: take what there is */
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return MK_OK;
}
