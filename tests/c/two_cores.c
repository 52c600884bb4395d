/* The two-core hook (tlm_state.run_both) on one core: runs a .bin greedily from <bos> twice,
   once with no hook and once through a run_both that does the second half of each matrix's
   rows before the first, and prints "same TOKENS CALLS SUM" when every logit of every step
   agrees (CALLS: how often the hook ran; SUM: a checksum of all the logits, to compare
   builds), else where they first differ. Built and run by
   tests/test_two_cores.py. */
#include <stdio.h>
#include <stdlib.h>

#include "tinylm.h"

static unsigned long calls;

static void reversed(void *ctx, void (*task)(void *arg, uint32_t part), void *arg) {
    (void)ctx;
    calls++;
    task(arg, 1);
    task(arg, 0);
}

static void *aligned(size_t size, void **block) {
    *block = malloc(size + 16);
    return *block ? (void *)(((uintptr_t)*block + 15) & ~(uintptr_t)15) : NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 2;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *blocks[3];
    uint8_t *data = aligned((size_t)size, &blocks[0]);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) return 2;
    fclose(f);
    tlm_model m;
    const char *error = tlm_load(&m, data, (size_t)size);
    uint32_t steps = (uint32_t)atoi(argv[2]);
    size_t need = tlm_arena_size(&m, steps);
    void *arena_one = error ? NULL : aligned(need, &blocks[1]);
    void *arena_two = error ? NULL : aligned(need, &blocks[2]);
    tlm_state one, two;
    if (error || !arena_one || !arena_two || tlm_init(&one, &m, arena_one, need, steps) ||
        tlm_init(&two, &m, arena_two, need, steps)) {
        printf("%s\n", error ? error : "cannot make the states");
        return 1;
    }
    two.run_both = reversed;
    uint32_t token = m.bos_id, sum = 0;
    for (uint32_t step = 0; step < steps; step++) {
        int32_t *a = tlm_forward(&one, token), *b = tlm_forward(&two, token);
        if (!a || !b) return 3;
        token = 0;
        for (uint32_t i = 0; i < m.vocab_size; i++) {
            if (a[i] != b[i]) {
                printf("step %u logit %u: %d != %d\n", step, i, a[i], b[i]);
                return 1;
            }
            if (a[i] > a[token]) token = i;
            sum = sum * 31u + (uint32_t)a[i];
        }
    }
    printf("same %u %lu %u\n", steps, calls, sum);
    for (int i = 0; i < 3; i++) free(blocks[i]);
    return 0;
}
