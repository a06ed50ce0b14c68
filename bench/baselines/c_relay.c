/*
 * A minimal MJPEG relay in C: the floor camserver's fan-out is measured against
 * (bench/peers.py compiles it with the system's gcc; a baseline only, never shipped).
 *
 * One thread, epoll, non-blocking sockets. It reads the camera's multipart stream over one
 * connection (de-chunked: the ESP32's esp_http_server always answers chunked), cuts it into whole parts (from one boundary line to the next) and writes each
 * whole part to every viewer with one send(). A viewer whose socket cannot take a whole part
 * keeps the rest pending (a shared, reference-counted part: no copy) and skips the parts
 * that come meanwhile, as camserver does with a slow viewer.
 *
 *   c_relay LISTEN_PORT CAMERA_HOST CAMERA_PORT CAMERA_PATH
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_BUFFER (8 * 1024 * 1024)

struct part {
    int refs;
    size_t len;
    char data[];
};

struct viewer {
    int streaming;       /* its request was read and the header sent */
    struct part *pending; /* the part it is still sending, or NULL */
    size_t sent;          /* bytes of pending already sent */
};

static struct viewer *viewers[MAX_FD];
static int epfd;
static char boundary[128];
static size_t boundary_len;
static unsigned long parts_relayed, parts_skipped;
static int top_fd; /* the highest viewer fd so far: relay() looks no further */

/* A case-insensitive search for needle in the first len bytes of hay. */
static char *strcasestr_n(char *hay, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(hay + i, needle, n) == 0) return hay + i;
    return NULL;
}

/* The body's chunked framing taken off: each chunk's payload from raw to body. Returns the
 * raw bytes consumed. */
static size_t dechunk(const char *raw, size_t have, char *body, size_t *body_len, size_t cap) {
    size_t used = 0;
    for (;;) {
        const char *line_end = memmem(raw + used, have - used, "\r\n", 2);
        if (!line_end) return used;
        size_t size = strtoul(raw + used, NULL, 16);
        size_t head = (size_t)(line_end - (raw + used)) + 2;
        if (have - used < head + size + 2) return used;
        if (*body_len + size > cap) *body_len = 0; /* no boundary in 8 MB: start over */
        memcpy(body + *body_len, raw + used + head, size);
        *body_len += size;
        used += head + size + 2;
    }
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) die("fcntl");
}

static void release(struct part *p) {
    if (p && --p->refs == 0) free(p);
}

static void drop_viewer(int fd) {
    struct viewer *v = viewers[fd];
    if (!v) return;
    release(v->pending);
    free(v);
    viewers[fd] = NULL;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

static void watch(int fd, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

/* Send what is left of the viewer's pending part; 0 when it is all sent. */
static int flush(int fd, struct viewer *v) {
    while (v->sent < v->pending->len) {
        ssize_t n = send(fd, v->pending->data + v->sent, v->pending->len - v->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
            drop_viewer(fd);
            return -1;
        }
        v->sent += (size_t)n;
    }
    release(v->pending);
    v->pending = NULL;
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    return 0;
}

/* One whole part to every viewer: one send() each, the rest kept when the socket is full. */
static void relay(const char *data, size_t len) {
    struct part *p = malloc(sizeof *p + len + 2);
    if (!p) die("malloc");
    p->refs = 1;
    memcpy(p->data, data, len);
    memcpy(p->data + len, "\r\n", 2); /* the line break before the next boundary */
    len += 2;
    p->len = len;
    for (int fd = 0; fd <= top_fd; fd++) {
        struct viewer *v = viewers[fd];
        if (!v || !v->streaming) continue;
        if (v->pending) { /* still sending an older part: skip this one */
            parts_skipped++;
            continue;
        }
        ssize_t n = send(fd, p->data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len) {
            parts_relayed++;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            drop_viewer(fd);
            continue;
        }
        p->refs++;
        v->pending = p;
        v->sent = n > 0 ? (size_t)n : 0;
        parts_relayed++;
        watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    }
    release(p);
}

static int connect_camera(const char *host, int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0 || inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("camera address");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect to the camera");
    char request[512];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
    if (send(fd, request, (size_t)n, 0) != n) die("send the request");
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s LISTEN_PORT CAMERA_HOST CAMERA_PORT CAMERA_PATH\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 4096) < 0) die("listen");
    nonblocking(listener); /* watched once the camera's header named its boundary */

    int camera = connect_camera(argv[2], atoi(argv[3]), argv[4]);
    char *raw = malloc(MAX_BUFFER), *buf = malloc(MAX_BUFFER);
    if (!raw || !buf) die("malloc");
    size_t raw_have = 0, have = 0;
    int header_done = 0, chunked = 0;
    nonblocking(camera);
    watch(camera, EPOLLIN, EPOLL_CTL_ADD);

    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(epfd, events, 256, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int c;
                while ((c = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    viewers[c] = calloc(1, sizeof(struct viewer));
                    if (c > top_fd) top_fd = c;
                    watch(c, EPOLLIN, EPOLL_CTL_ADD);
                }
            } else if (fd == camera) {
                ssize_t n = read(camera, raw + raw_have, MAX_BUFFER - raw_have);
                if (n <= 0) {
                    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                    fprintf(stderr, "camera closed: relayed %lu parts, skipped %lu\n",
                            parts_relayed, parts_skipped);
                    return 0;
                }
                raw_have += (size_t)n;
                if (!header_done) {
                    char *end = memmem(raw, raw_have, "\r\n\r\n", 4);
                    if (!end) continue;
                    size_t head_len = (size_t)(end - raw);
                    char *b = memmem(raw, head_len, "boundary=", 9);
                    if (!b) die("no boundary in the camera's answer");
                    b += 9;
                    size_t len = strcspn(b, "\r\n;");
                    boundary[0] = boundary[1] = '-';
                    if (len + 2 >= sizeof boundary) die("boundary too long");
                    memcpy(boundary + 2, b, len);
                    boundary_len = len + 2;
                    boundary[boundary_len] = 0;
                    chunked = memmem(raw, head_len, "chunked", 7) != NULL;
                    size_t head = head_len + 4;
                    memmove(raw, raw + head, raw_have - head);
                    raw_have -= head;
                    header_done = 1;
                    watch(listener, EPOLLIN, EPOLL_CTL_ADD);
                }
                if (chunked) {
                    size_t used = dechunk(raw, raw_have, buf, &have, MAX_BUFFER);
                    memmove(raw, raw + used, raw_have - used);
                    raw_have -= used;
                } else {
                    if (have + raw_have > MAX_BUFFER) have = 0;
                    memcpy(buf + have, raw, raw_have);
                    have += raw_have;
                    raw_have = 0;
                }
                /* Whole parts: a boundary line, headers, Content-Length bytes of JPEG (as
                 * soon as they are in: no waiting for the next boundary, a frame's worth of
                 * latency); without Content-Length, up to the next boundary. */
                for (;;) {
                    char *start = memmem(buf, have, boundary, boundary_len);
                    if (!start) break;
                    if (start != buf) { /* drop what came before the boundary */
                        memmove(buf, start, have - (size_t)(start - buf));
                        have -= (size_t)(start - buf);
                        start = buf;
                    }
                    char *head_end = memmem(buf, have, "\r\n\r\n", 4);
                    if (!head_end) break;
                    size_t body = (size_t)(head_end - buf) + 4, end = 0;
                    char *cl = strcasestr_n(buf, body, "content-length:");
                    if (cl) {
                        end = body + strtoul(cl + 15, NULL, 10);
                        if (end > have) break;
                    } else {
                        char *next = memmem(buf + boundary_len, have - boundary_len, boundary,
                                            boundary_len);
                        if (!next) break;
                        end = (size_t)(next - buf);
                    }
                    relay(buf, end);
                    memmove(buf, buf + end, have - end);
                    have -= end;
                }
                if (raw_have == MAX_BUFFER) raw_have = 0; /* a chunk over 8 MB: start over */
            } else {
                struct viewer *v = viewers[fd];
                if (!v) continue;
                if (events[i].events & (EPOLLHUP | EPOLLERR)) {
                    drop_viewer(fd);
                    continue;
                }
                if (events[i].events & EPOLLOUT && v->pending) {
                    if (flush(fd, v) < 0) continue;
                }
                if (events[i].events & EPOLLIN) {
                    char request[4096];
                    ssize_t n = read(fd, request, sizeof request);
                    if (n == 0 || (n < 0 && errno != EAGAIN)) {
                        drop_viewer(fd);
                        continue;
                    }
                    if (n > 0 && !v->streaming && memmem(request, (size_t)n, "\r\n\r\n", 4)) {
                        char head[256];
                        int len = snprintf(head, sizeof head,
                                           "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; "
                                           "boundary=%s\r\nCache-Control: no-cache\r\n\r\n",
                                           boundary + 2);
                        if (send(fd, head, (size_t)len, MSG_NOSIGNAL) != len) {
                            drop_viewer(fd);
                            continue;
                        }
                        v->streaming = 1;
                    }
                }
            }
        }
    }
}
