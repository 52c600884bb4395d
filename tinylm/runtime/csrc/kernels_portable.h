/* The portable C kernels, as static functions: kernels_portable.c is made of them and the
   pair kernel in C (with kernels_pairs.h), and the kernel file of another CPU takes from here
   the ones it has nothing faster for (each file compiles its own copy, inlined where it is
   used). The arithmetic is matvec's, in tinylm.c. Attention's loops, which every CPU takes,
   are defined here whole (at the end). */
#ifndef TINYLM_KERNELS_PORTABLE_H
#define TINYLM_KERNELS_PORTABLE_H

#include "kernels.h"

#define LOG2E_Q15 47274u

/* The int4 kernel, in C: eight weights are one word, nibble k column k; with u = w + 8 in
   0..15 (w ^ 0x88888888) and X_k = x_k 2^16 + x_(k+4) (prepare_input),
       (u_k + u_(k+4) 2^16) X_k = u_k x_(k+4) + (u_k x_k + u_(k+4) x_(k+4)) 2^16 (mod 2^32).
   The low parts are below 15 * 63 and the high ones below 2 * 15 * 63 in size, so a group of
   up to 32 columns (16 such products) adds up in one word and a rounded shift takes out
   sum u x exactly; sum w x = that - 8 sum x, the group's correction. */
static inline int32_t nibble_sum(uint32_t w, const int32_t *x) {
    uint32_t u = w ^ 0x88888888u;
    return (int32_t)((u & 0x000F000Fu) * (uint32_t)x[0] + (u >> 4 & 0x000F000Fu) * (uint32_t)x[1] +
                     (u >> 8 & 0x000F000Fu) * (uint32_t)x[2] +
                     (u >> 12 & 0x000F000Fu) * (uint32_t)x[3]);
}

static inline void nibble_rows(const product *p, uint32_t first, uint32_t end) {
    const int32_t *packed = p->s->scratch, *correction = packed + p->cols / 2;
    uint32_t words = p->group / 8;
    for (uint32_t i = first; i < end; i++) {
        const uint32_t *row = (const uint32_t *)(const void *)(p->w + (size_t)i * p->row_bytes);
        const uint16_t *scales = p->scales + (size_t)i * p->n_groups;
        int32_t total = 0;
        for (uint32_t g = 0, k = 0; g < p->n_groups; g++) {
            uint32_t end_k = k + words < p->cols / 8 ? k + words : p->cols / 8;
            int32_t sum = 0;
            for (; k < end_k; k++) sum += nibble_sum(row[k], packed + 4 * k);
            int32_t dot = ((sum + (1 << 15)) >> 16) + correction[g] +
                          ((1 << p->group_shift) >> 1);
            total += ((dot >> p->group_shift) * (int32_t)scales[g]) >> p->sum_shift;
        }
        p->y[i] = scale_sat(total * p->in->scale.m, p->out_shift);
    }
}

/* One group's term of a row's total: its packed sum plus the correction (which holds the
   rounding), cut to 15 bits, times the group's scale, cut by sum_shift */
static inline int32_t group_term(int32_t sum, int32_t correction, int32_t scale,
                                 int group_shift, int sum_shift) {
    return (((sum + correction) >> group_shift) * scale) >> sum_shift;
}

/* Rows first..end-1 of an int8 matrix without the pair kernel: each group's plain dot over
   s->xq, whose correction is just the rounding, two rows at a time so that they share the
   loads of the input (a last odd row goes with itself). */
static inline void int8_rows(const product *p, uint32_t first, uint32_t end) {
    const int16_t *xq = p->s->xq;
    uint32_t cols = p->cols, group = p->group, n_groups = p->n_groups;
    int group_shift = p->group_shift, sum_shift = p->sum_shift;
    int32_t rounding = (1 << group_shift) >> 1, xm = p->in->scale.m;
    for (uint32_t i = first; i < end; i += 2) {
        uint32_t second = i + 1 < end;
        const int8_t *row0 = (const int8_t *)(p->w + (size_t)i * cols);
        const int8_t *row1 = row0 + second * cols;
        const uint16_t *scales0 = p->scales + (size_t)i * n_groups;
        const uint16_t *scales1 = scales0 + second * n_groups;
        int32_t total0 = 0, total1 = 0;
        for (uint32_t g = 0, j = 0; g < n_groups; g++) {
            uint32_t end_j = j + group < cols ? j + group : cols;
            int32_t dot0 = 0, dot1 = 0;
            for (; j < end_j; j++) {
                dot0 += row0[j] * xq[j];
                dot1 += row1[j] * xq[j];
            }
            total0 += group_term(dot0, rounding, scales0[g], group_shift, sum_shift);
            total1 += group_term(dot1, rounding, scales1[g], group_shift, sum_shift);
        }
        p->y[i] = scale_sat(total0 * xm, p->out_shift);
        p->y[i + second] = scale_sat(total1 * xm, p->out_shift);
    }
}

/* Rows first..end-1 of an int4 matrix whose input is not packed (nibble_rows), two weights a
   byte */
static inline void int4_rows(const product *p, uint32_t first, uint32_t end) {
    const int16_t *restrict xq = p->s->xq;
    for (uint32_t i = first; i < end; i++) {
        const uint8_t *row = p->w + (size_t)i * p->row_bytes;
        const uint16_t *scales = p->scales + (size_t)i * p->n_groups;
        int32_t total = 0;
        for (uint32_t g = 0, j = 0; g < p->n_groups; g++) {
            uint32_t end_j = j + p->group < p->cols ? j + p->group : p->cols;
            int32_t dot = (1 << p->group_shift) >> 1;   /* the rounding */
            for (; j < end_j && (j & 1); j++) dot += int4_at(row, j) * xq[j];
            for (; j + 1 < end_j; j += 2) {   /* whole bytes in the middle */
                int b = row[j >> 1];
                dot += (((b & 15) ^ 8) - 8) * xq[j] + (((b >> 4) ^ 8) - 8) * xq[j + 1];
            }
            for (; j < end_j; j++) dot += int4_at(row, j) * xq[j];
            total += ((dot >> p->group_shift) * (int32_t)scales[g]) >> p->sum_shift;
        }
        p->y[i] = scale_sat(total * p->in->scale.m, p->out_shift);
    }
}

/* e^(z / 2^16) in Q30 for Q16 z <= 0 to within 0.6%: -z log2(e) rounded to 1/64 in one
   multiply ((-z >> 5) < 2^16, log2(e) in Q15), then the nearest table entry, no
   interpolation. The sampler takes one per vocabulary entry and needs only their ratios. */
static inline int32_t exp_neg_coarse(int32_t z, const int32_t *table) {
    if (z < EXP_FLOOR) return 0;
    uint32_t k = (((uint32_t)-z >> 5) * LOG2E_Q15 + (1u << 19)) >> 20, n = k >> 6;
    return n < 31 ? table[k & 63] >> n : 0;
}

/* tlm_exp_weights in C */
static inline uint64_t exp_weights(int32_t *logits, uint32_t n, int32_t top,
                                   const int32_t *table) {
    uint32_t low = 0, carries = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = (uint32_t)exp_neg_coarse(logits[i] - top, table);
        logits[i] = (int32_t)p;
        low += p;
        carries += low < p;
    }
    return (uint64_t)carries << 32 | low;
}

/* Attention's loops (kernels.h), which every CPU runs in this C: defined here whole, once per
   build as each build compiles one kernel file, rather than as static functions for a wrapper
   in each kernel file (inlined into one, gcc gave the Cortex-M0+ loop worse registers: 37,000
   cycles a token more).

   tlm_key_dots: when head_dim is a multiple of 4 the cache rows are word-aligned and a key's
   int8 values are read four to a word: a Cortex-M0+ has byte loads only with a register
   offset, so this takes fewer instructions than a load per value. */
VECTOR_CLONES void tlm_key_dots(int32_t *restrict w, const int32_t *restrict q,
                                const int8_t *restrict k, uint32_t hd, size_t stride,
                                uint32_t positions) {
    if (hd % 4 == 0)
        for (uint32_t t = 0; t < positions; t++, k += stride) {
            int32_t sum = 0;
            for (uint32_t d = 0; d < hd; d += 4) {   /* little-endian: k[d] is the low byte */
                uint32_t word = *(const uint32_t *)(const void *)(k + d);
                sum += q[d] * (int8_t)word + q[d + 1] * (int8_t)(word >> 8) +
                       q[d + 2] * (int8_t)(word >> 16) + q[d + 3] * ((int32_t)word >> 24);
            }
            w[t] = sum;
        }
    else
        for (uint32_t t = 0; t < positions; t++, k += stride) {
            int32_t sum = 0;
            for (uint32_t d = 0; d < hd; d++) sum += q[d] * k[d];
            w[t] = sum;
        }
}

/* tlm_value_sums: four dimensions at a time over all positions, their sums in registers,
   when head_dim is a multiple of 4 (so each position's four int8 values are one aligned
   word), else two. */
VECTOR_CLONES void tlm_value_sums(int32_t *restrict sums, const int32_t *restrict w,
                                  const int8_t *restrict v, uint32_t hd, size_t stride,
                                  uint32_t positions) {
    uint32_t d = 0;
    if (hd % 4 == 0)
        for (; d < hd; d += 4) {
            const int8_t *restrict row = v + d;
            int32_t sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
            for (uint32_t t = 0; t < positions; t++, row += stride) {
                uint32_t word = *(const uint32_t *)(const void *)row;   /* little-endian */
                int32_t weight = w[t];
                sum0 += weight * (int8_t)word;
                sum1 += weight * (int8_t)(word >> 8);
                sum2 += weight * (int8_t)(word >> 16);
                sum3 += weight * ((int32_t)word >> 24);
            }
            sums[d] = sum0, sums[d + 1] = sum1, sums[d + 2] = sum2, sums[d + 3] = sum3;
        }
    for (; d < hd; d += 2) {
        const int8_t *restrict row = v + d;
        int32_t sum0 = 0, sum1 = 0;
        for (uint32_t t = 0; t < positions; t++, row += stride) {
            sum0 += w[t] * row[0];
            sum1 += w[t] * row[1];
        }
        sums[d] = sum0, sums[d + 1] = sum1;
    }
}

#endif
