/* LD_PRELOAD shim for the benchmark's Garage: sets TCP_NODELAY on every accepted socket.
 *
 * Garage does not set it, so a small response written in two pieces waits for the client's
 * delayed ACK (about 40 ms per request on Linux). That stall belongs to the test server, not
 * to the systems measured, and it would dominate every small-file figure. Built by
 * bench/run.sh with `cc -shared -fPIC`; used only when BENCH_NODELAY=1 (the default). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int set_nodelay(int fd) {
    int one = 1;
    if (fd >= 0) /* fails harmlessly on non-TCP sockets */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    return set_nodelay(real(fd, addr, len));
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    return set_nodelay(real(fd, addr, len, flags));
}
