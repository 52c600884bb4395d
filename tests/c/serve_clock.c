/* The device loop (serve.c) with a clock that advances 300 microseconds at every reading:
   answers one line and prints what it sent. A host makes tokens in less than a millisecond,
   so @done's rate must come from microseconds, not milliseconds. Built and run by
   tests/test_serve_c.py. */
#include <stdio.h>
#include <stdlib.h>

#include "serve.h"

uint8_t *tlm_host_read(const char *path, size_t *size, void **block, const char **error);

static const char typed[] = "hello\n";
static unsigned next;
static uint32_t now;

static void out(void *ctx, const uint8_t *bytes, uint32_t n) {
    (void)ctx;
    fwrite(bytes, 1, n, stdout);
}

static int in(void *ctx) {
    (void)ctx;
    return next < sizeof typed - 1 ? (unsigned char)typed[next++] : -1;
}

static uint32_t micros(void *ctx) {
    (void)ctx;
    return now += 300;
}

int main(int argc, char **argv) {
    size_t size;
    void *block;
    const char *error;
    uint8_t *model = argc == 2 ? tlm_host_read(argv[1], &size, &block, &error) : NULL;
    if (!model) return 2;
    static tlm_server server;
    static uint8_t arena[1 << 20] __attribute__((aligned(16)));
    tlm_io io = {out, in, micros, NULL};
    tlm_server_init(&server, &io, "test", model, size, "memory", "-", arena, sizeof arena);
    server.max_tokens = 5;
    for (int c; (c = in(NULL)) >= 0;) tlm_server_byte(&server, (uint8_t)c);
    free(block);
    return 0;
}
