/* What the device loop keeps in SRAM (tlm_server_place in serve.c), on the host: for each SRAM
   size given, the model is served from a copy of the file that stands for the flash, with
   that much memory; then the bytes placed in SRAM are spoiled in the "flash", and the logits of
   STEPS greedy tokens from <bos> are compared with those of the model read in place. Prints a
   line per size, "CONTEXT START END same": the plan (the context, and the bytes of the file
   in SRAM), or where the logits first differ. Built and run by tests/test_sram_weights.py:

       sram_split MODEL STEPS CONTEXT SIZE... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

uint8_t *tlm_host_read(const char *path, size_t *size, void **block, const char **error);

static void out(void *ctx, const uint8_t *bytes, uint32_t n) { (void)ctx, (void)bytes, (void)n; }
static int in(void *ctx) { return (void)ctx, -1; }
static uint32_t micros(void *ctx) { return (void)ctx, 0; }

static void *aligned(size_t size, void **block) {
    *block = malloc(size + 16);
    return *block ? (void *)(((uintptr_t)*block + 15) & ~(uintptr_t)15) : NULL;
}

/* The logits of `steps` greedy tokens from <bos>, one row per step */
static int32_t *greedy(tlm_state *s, uint32_t steps) {
    uint32_t vocab = s->m->vocab_size, token = s->m->bos_id;
    int32_t *rows = malloc(sizeof(int32_t) * vocab * steps);
    for (uint32_t step = 0; rows && step < steps; step++) {
        int32_t *logits = tlm_forward(s, token);
        if (!logits) return free(rows), NULL;
        memcpy(rows + (size_t)step * vocab, logits, sizeof(int32_t) * vocab);
        token = 0;
        for (uint32_t i = 1; i < vocab; i++)
            if (logits[i] > logits[token]) token = i;
    }
    return rows;
}

int main(int argc, char **argv) {
    size_t size;
    void *file_block, *block;
    const char *error;
    uint8_t *file = argc >= 4 ? tlm_host_read(argv[1], &size, &file_block, &error) : NULL;
    if (!file) return 2;
    uint32_t steps = (uint32_t)atoi(argv[2]), context = (uint32_t)atoi(argv[3]);
    tlm_io io = {out, in, micros, NULL};
    static tlm_server in_place, placed;
    uint8_t *arena = aligned(1 << 24, &block);
    tlm_server_init(&in_place, &io, "test", file, size, "memory", "-", arena, 1 << 24);
    if (in_place.model_code || tlm_init(&in_place.state, &in_place.model, arena, 1 << 24, steps))
        return 3;
    int32_t *expected = greedy(&in_place.state, steps);
    uint32_t vocab = in_place.model.vocab_size;
    for (int k = 4; k < argc; k++) {
        size_t memory_size = (size_t)atol(argv[k]);
        void *flash_block, *memory_block;
        uint8_t *flash = aligned(size, &flash_block), *memory = aligned(memory_size, &memory_block);
        memcpy(flash, file, size);
        tlm_server_init(&placed, &io, "test", flash, size, "flash", "-", memory, memory_size);
        tlm_server_place(&placed, memory, memory_size, context);
        const tlm_model *m = &placed.model;
        int whole = placed.model_bytes == memory;
        uint32_t start = whole ? 0 : m->copy_start, end = whole ? m->file_size : m->copy_end;
        memset(flash + start, 0x55, end - start);
        int32_t *got = placed.model_code ? NULL : greedy(&placed.state, steps);
        uint32_t step = 0;
        while (got && step < steps && !memcmp(got + (size_t)step * vocab,
                                              expected + (size_t)step * vocab, 4 * vocab))
            step++;
        printf("%u %u %u ", placed.state.context, start, end);
        if (got && step == steps) printf("same\n");
        else printf("differs at step %u\n", step);
        free(got);
        free(flash_block);
        free(memory_block);
    }
    return 0;
}
