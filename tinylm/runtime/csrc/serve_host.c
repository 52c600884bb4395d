/* The device loop (serve.c) on this computer, as a board would run it: the protocol of
   docs/protocol.md on standard input and output, which `tinylm serve` (tinylm/boards/host_board.py)
   connects to the master side of a pseudo-terminal, so that `tinylm chat` talks to it as to a
   board on a serial port:

       tinylm-serve MODEL.bin [-s SEED] [-n MAX_TOKENS] [-c CONTEXT]  <PORT >PORT

   Built with host.c (reading the file), serve.c, tinylm.c and a kernel file. POSIX. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

uint8_t *tlm_host_read(const char *path, size_t *size, void **block, const char **error);

/* The port: bytes read from it wait here until the device loop takes them. */
typedef struct {
    int in, out;
    uint8_t buffer[256];
    ssize_t next, end;
} port;

static void port_write(void *ctx, const uint8_t *bytes, uint32_t n) {
    port *p = ctx;
    while (n) {
        ssize_t done = write(p->out, bytes, n);
        if (done < 0 && errno == EINTR) continue;
        if (done <= 0) return;          /* nothing listens: the bytes are lost, as on a UART */
        bytes += done;
        n -= (uint32_t)done;
    }
}

/* The next byte, waiting for it if `wait`; -1 if there is none, -2 once the port is closed. */
static int port_byte(port *p, int wait) {
    if (p->next == p->end) {
        struct pollfd ready = {p->in, POLLIN, 0};
        if (poll(&ready, 1, wait ? -1 : 0) <= 0) return errno == EINTR || !wait ? -1 : -2;
        p->end = read(p->in, p->buffer, sizeof p->buffer);
        p->next = 0;
        if (p->end <= 0) {
            int closed = p->end == 0 || errno != EINTR;
            p->end = 0;
            return closed ? -2 : -1;
        }
    }
    return p->buffer[p->next++];
}

static int port_poll(void *ctx) {
    int c = port_byte(ctx, 0);
    return c < 0 ? -1 : c;
}

static uint32_t clock_micros(void *ctx) {
    struct timespec t;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u);
}

int main(int argc, char **argv) {
    static tlm_server server;
    static port p = {STDIN_FILENO, STDOUT_FILENO, {0}, 0, 0};
    const tlm_io io = {port_write, port_poll, clock_micros, &p};
    unsigned long long seed = 0;
    long max_tokens = 256, context = 0;
    const char *error;
    size_t size = 0;
    void *file_block;
    if (argc < 2 || argc % 2) {
        fprintf(stderr, "usage: %s MODEL.bin [-s SEED] [-n MAX_TOKENS] [-c CONTEXT]\n", argv[0]);
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *v = argv[i + 1];
        switch (argv[i][1]) {
        case 's': seed = strtoull(v, NULL, 10); break;
        case 'n': max_tokens = strtol(v, NULL, 10); break;
        case 'c': context = strtol(v, NULL, 10); break;
        default: fprintf(stderr, "error: unknown option %s\n", argv[i]); return 2;
        }
    }
    uint8_t *model = tlm_host_read(argv[1], &size, &file_block, &error);
    if (!model) {
        fprintf(stderr, "error: %s: %s\n", argv[1], error);
        return 1;
    }
    /* An arena for the whole context (or -c), as a board gives it all the RAM it has left.
       An unusable model gets none: the device loop reports it, as a board would. */
    tlm_model probe;
    size_t arena_size = tlm_load(&probe, model, size) ? 0
                        : tlm_arena_size(&probe, (uint32_t)context);
    void *arena = NULL;
    if (posix_memalign(&arena, 16, arena_size ? arena_size : 16) != 0) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    tlm_server_init(&server, &io, "host", model, size, argv[1], "tinylm quantize", arena,
                    arena_size);
    server.seed = seed;
    server.max_tokens = (uint32_t)max_tokens;
    server.weights = "ram";
    tlm_server_hello(&server);
    for (int c; (c = port_byte(&p, 1)) != -2;)
        if (c >= 0) tlm_server_byte(&server, (uint8_t)c);
    free(arena);
    free(file_block);
    return 0;
}
