/* The portable kernels, in C: the specification. Every other kernel file is held to the
   logits of this one (tests/test_two_cores.py on the host; the emulators' tests hold the
   RP2040 and RV32 builds to the NumPy engine, which is this arithmetic too), and a CPU without
   a kernel file of its own (the Xtensa ESP32 and ESP32-S3) runs it. int8 rows go through the
   pair kernel, whose packed sums come from the C below; the entry points (tlm_product_rows,
   tlm_exp_weights) are at the end of kernels_pairs.h, shared with kernels_rv32im.c. */
#include "kernels_pairs.h"

/* The pair kernel (kernels_pairs.h), shaped for a core such as rv32's, which has no
   register-plus-register addressing and no multiply-add: three pointers (the two rows, the
   input) step together, each input word loaded once serves both rows, and a step takes two
   words, so one branch and three increments serve 16 MACs. It is one loop, the ends of
   groups met at its top, not a loop per group: gcc keeps the pointers of a loop per group
   twice over and spills them around it. */
static inline int32_t pair_product(uint32_t w, int32_t x02, int32_t x13) {
    uint32_t u = w ^ 0x80808080u;
    return ((int32_t)((u & 0x00FF00FFu) * (uint32_t)x02) >> 16) +
           ((int32_t)((u >> 8 & 0x00FF00FFu) * (uint32_t)x13) >> 16);
}

void tlm_pair_sums(const uint8_t *restrict rows, const int32_t *restrict x,
                   int32_t *restrict sums, uint32_t group_words, uint32_t words, uint32_t stride,
                   uint32_t pairs) {
    const int32_t *x_end = x + 2 * (size_t)words;
    size_t group_step = 2 * (size_t)group_words;       /* two int32 of x per word */
    for (; pairs; pairs--, rows += 2 * (size_t)stride) {
        const uint32_t *row0 = (const uint32_t *)(const void *)rows;
        const uint32_t *row1 = (const uint32_t *)(const void *)(rows + stride);
        const int32_t *in = x, *group_end = x;
        int32_t sum0 = 0, sum1 = 0;
        for (;;) {
            if (in == group_end) {                      /* a group ends, or the rows begin */
                if (in != x) {
                    *sums++ = sum0;
                    *sums++ = sum1;
                }
                if (in == x_end) break;
                group_end = (size_t)(x_end - in) > group_step ? in + group_step : x_end;
                sum0 = sum1 = 0;
                if ((group_end - in) & 2) {             /* an odd number of words: one first */
                    sum0 = pair_product(*row0++, in[0], in[1]);
                    sum1 = pair_product(*row1++, in[0], in[1]);
                    in += 2;
                    continue;
                }
            }
            int32_t x02 = in[0], x13 = in[1], y02 = in[2], y13 = in[3];
            sum0 += pair_product(row0[0], x02, x13) + pair_product(row0[1], y02, y13);
            sum1 += pair_product(row1[0], x02, x13) + pair_product(row1[1], y02, y13);
            in += 4, row0 += 2, row1 += 2;
        }
    }
}
