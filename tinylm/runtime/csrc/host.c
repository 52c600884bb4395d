/* Host platform layer: read a .bin into memory, give the runtime an arena, and (built with
   -DTLM_HOST_MAIN) a command line that streams generated text:

       tinylm-host MODEL.bin [-p PROMPT] [-n MAX_TOKENS] [-t TEMPERATURE] [-k TOP_K]
                   [-P TOP_P] [-s SEED] [-c CONTEXT]

   Python (tinylm/runtime/c_engine.py) loads the same code as a shared library through ctypes, and
   serve_host.c reads its model with tlm_host_read. On a microcontroller, firmware does what
   tlm_host_open does with its flash and a static array. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinylm.h"

typedef struct {
    tlm_model model;
    tlm_state state;
    tlm_sampler sampler;
    void *file_block, *arena_block;
} tlm_host;

static void *alloc16(size_t n, void **block) {   /* 16-byte aligned, without C11 */
    *block = malloc(n + 16);
    return *block ? (void *)(((uintptr_t)*block + 15) & ~(uintptr_t)15) : NULL;
}

void tlm_host_close(tlm_host *h) {
    if (!h) return;
    free(h->file_block);
    free(h->arena_block);
    free(h);
}

/* The whole file in a fresh 16-byte-aligned block (the runtime's need), its size in *size;
   NULL and *error set on failure. free(*block) frees it. */
uint8_t *tlm_host_read(const char *path, size_t *size, void **block, const char **error) {
    FILE *f = fopen(path, "rb");
    long length = -1;
    uint8_t *data = NULL;
    *block = NULL;
    *error = "cannot open the model file";
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0) length = ftell(f);
    *error = "cannot read the model file";
    if (length >= 0 && fseek(f, 0, SEEK_SET) == 0) data = alloc16((size_t)length, block);
    if (data && fread(data, 1, (size_t)length, f) != (size_t)length) data = NULL;
    fclose(f);
    if (!data) {
        free(*block);
        *block = NULL;
        return NULL;
    }
    *size = (size_t)length;
    return data;
}

/* Returns NULL and sets *error on failure (the runtime's message, or the system's). */
tlm_host *tlm_host_open(const char *path, uint32_t context, const char **error) {
    tlm_host *h = calloc(1, sizeof *h);
    size_t size = 0;
    uint8_t *data = NULL;
    *error = "out of memory";
    if (!h || !(data = tlm_host_read(path, &size, &h->file_block, error))) goto fail;
    if ((*error = tlm_load(&h->model, data, size)) != NULL) goto fail;
    size_t need = tlm_arena_size(&h->model, context);
    void *arena = alloc16(need, &h->arena_block);
    *error = "out of memory";
    if (!arena) goto fail;
    if ((*error = tlm_init(&h->state, &h->model, arena, need, context)) != NULL) goto fail;
    return h;
fail:
    tlm_host_close(h);
    return NULL;
}

tlm_model *tlm_host_model(tlm_host *h) { return &h->model; }
tlm_state *tlm_host_state(tlm_host *h) { return &h->state; }
tlm_sampler *tlm_host_sampler(tlm_host *h) { return &h->sampler; }
uint32_t tlm_host_vocab_size(tlm_host *h) { return h->model.vocab_size; }
uint32_t tlm_host_context(tlm_host *h) { return h->state.context; }

#ifdef TLM_HOST_MAIN
#include <time.h>

static double now(void) { return (double)clock() / CLOCKS_PER_SEC; }

int main(int argc, char **argv) {
    const char *prompt = "", *error;
    long max_tokens = 256, top_k = 0, context = 0;
    double temperature = 1.0, top_p = 0.9;
    unsigned long long seed = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.bin [-p PROMPT] [-n MAX_TOKENS] [-t TEMPERATURE] "
                        "[-k TOP_K] [-P TOP_P] [-s SEED] [-c CONTEXT]\n", argv[0]);
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *v = argv[i + 1];
        switch (argv[i][1]) {
        case 'p': prompt = v; break;
        case 'n': max_tokens = strtol(v, NULL, 10); break;
        case 't': temperature = strtod(v, NULL); break;
        case 'k': top_k = strtol(v, NULL, 10); break;
        case 'P': top_p = strtod(v, NULL); break;
        case 's': seed = strtoull(v, NULL, 10); break;
        case 'c': context = strtol(v, NULL, 10); break;
        default: fprintf(stderr, "error: unknown option %s\n", argv[i]); return 2;
        }
    }
    tlm_host *h = tlm_host_open(argv[1], (uint32_t)context, &error);
    if (!h) {
        fprintf(stderr, "error: %s: %s\n", argv[1], error);
        return 1;
    }
    uint32_t room = h->state.context, *ids = malloc(room * sizeof *ids);
    int32_t n = ids ? tlm_encode(&h->model, (const uint8_t *)prompt, (uint32_t)strlen(prompt), 1,
                                 ids, room) : -1;
    if (n < 0 || (uint32_t)n >= room) {
        fprintf(stderr, "error: the prompt does not fit in the context of %u tokens\n", room);
        return 1;
    }
    /* the same Q16 rounding as sampler.to_q16 */
    tlm_sampler_init(&h->sampler, (uint32_t)(temperature * 65536 + 0.5), (uint32_t)top_k,
                     (uint32_t)(top_p * 65536 + 0.5), seed);
    double start = now();
    tlm_start(&h->state, ids, (uint32_t)n);
    fputs(prompt, stdout);
    long count = 0;
    for (int32_t t, prev = (int32_t)ids[n - 1]; count < max_tokens &&
         (t = tlm_next(&h->state, &h->sampler)) >= 0; prev = t, count++) {
        uint32_t len;
        const uint8_t *piece = tlm_piece(&h->model, prev, (uint32_t)t, &len);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    double seconds = now() - start;
    printf("\n");
    fprintf(stderr, "%ld tokens (+%d prompt) in %.3f s: %.1f tok/s; arena %lu bytes\n", count, n,
            seconds, (count + n) / (seconds > 0 ? seconds : 1e-9),
            (unsigned long)tlm_arena_size(&h->model, h->state.context));
    free(ids);
    tlm_host_close(h);
    return 0;
}
#endif
