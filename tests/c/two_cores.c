/* The two-core hook (tlm_state.run_both) on one core: runs a .bin greedily from <bos> twice,
   once with no hook and once through a run_both that does the second half of each task (a
   matrix's rows, a layer's attention heads) before the first, and prints "same TOKENS CALLS
   SUM SAMPLED" when every logit of every step agrees (CALLS: how often the hook ran; SUM: a
   checksum of all the logits, to compare builds), else where they first differ. Then it
   samples TOKENS tokens with tlm_next (temperature 1, top-p 0.9; the sampler's weights are a
   task too), from <bos> again whenever one state ends its text, and SAMPLED counts those
   whose token and weights agree, and whose sampling went through the hook. Built and run by
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
    unsigned long forward_calls = calls;
    tlm_sampler smp_one, smp_two;
    tlm_sampler_init(&smp_one, 1 << 16, 0, 58982, 7);
    tlm_sampler_init(&smp_two, 1 << 16, 0, 58982, 7);
    uint32_t sampled = 0, bos = m.bos_id, tasks_per_forward = 8 * m.n_layers + 1, ended = 1;
    for (uint32_t step = 0; step < steps; step++) {
        if (ended || two.pos + 1 >= two.context) {   /* (a full context would not sample) */
            if (tlm_start(&one, &bos, 1) || tlm_start(&two, &bos, 1)) return 3;
            ended = 0;
        }
        uint32_t pos = two.pos;
        unsigned long before = calls;
        int32_t a = tlm_next(&one, &smp_one), b = tlm_next(&two, &smp_two);
        int agree = a == b && one.pos == two.pos &&
                    calls - before == (two.pos - pos) * tasks_per_forward + 1;
        for (uint32_t i = 0; i < m.vocab_size; i++) agree &= one.logits[i] == two.logits[i];
        sampled += (uint32_t)agree;
        ended = a < 0;   /* <eos> or <bos>: from <bos> again */
    }
    printf("same %u %lu %u %u\n", steps, forward_calls, sum, sampled);
    for (int i = 0; i < 3; i++) free(blocks[i]);
    return 0;
}
