/* LD_PRELOAD helper for run_bootrom_tool.py: inside its private mount namespace /sys is a small
 * tmpfs describing one fake USB device (0E8D:0003 with a ttyACM0 child). libudev refuses
 * directories that are not sysfs (it checks statfs f_type), so report SYSFS_MAGIC for paths
 * under /sys. Only the tool started in that namespace loads this; nothing else changes. */
#define _GNU_SOURCE
#define _LARGEFILE64_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#define SYSFS_MAGIC 0x62656572
#define TMPFS_MAGIC 0x01021994

static int under_sys(const char *p) { return p && strncmp(p, "/sys", 4) == 0 && (p[4] == '/' || p[4] == 0); }

int fstatfs(int fd, struct statfs *buf) {
    static int (*real)(int, struct statfs *);
    if (!real) real = dlsym(RTLD_NEXT, "fstatfs");
    int r = real(fd, buf);
    if (r == 0 && buf->f_type == TMPFS_MAGIC) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        if (n > 0) { path[n] = 0; if (under_sys(path)) buf->f_type = SYSFS_MAGIC; }
    }
    return r;
}

int statfs(const char *p, struct statfs *buf) {
    static int (*real)(const char *, struct statfs *);
    if (!real) real = dlsym(RTLD_NEXT, "statfs");
    int r = real(p, buf);
    if (r == 0 && buf->f_type == TMPFS_MAGIC && under_sys(p)) buf->f_type = SYSFS_MAGIC;
    return r;
}

int fstatfs64(int fd, struct statfs64 *buf) {
    static int (*real)(int, struct statfs64 *);
    if (!real) real = dlsym(RTLD_NEXT, "fstatfs64");
    int r = real(fd, buf);
    if (r == 0 && buf->f_type == TMPFS_MAGIC) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        if (n > 0) { path[n] = 0; if (under_sys(path)) buf->f_type = SYSFS_MAGIC; }
    }
    return r;
}

int statfs64(const char *p, struct statfs64 *buf) {
    static int (*real)(const char *, struct statfs64 *);
    if (!real) real = dlsym(RTLD_NEXT, "statfs64");
    int r = real(p, buf);
    if (r == 0 && buf->f_type == TMPFS_MAGIC && under_sys(p)) buf->f_type = SYSFS_MAGIC;
    return r;
}
