/* The kernels: the innermost loops of a token, which each CPU runs its own way. tinylm.c
   does the arithmetic of the model and calls them; one kernel file implements them, chosen by
   the build (tinylm/runtime/build.py KERNELS says which for which CPU):

       kernels_portable.c   portable C: the specification, every other file is held to its
                            logits
       kernels_simd.c       CPUs with SIMD (hosts): int8 rows as plain dots, vectorized
       kernels_armv6m.c     Cortex-M0+ (RP2040): assembly
       kernels_rv32im.c     RV32IM (ESP32-C3): assembly

   Where a CPU has nothing faster they share the portable C of kernels_portable.h and
   kernels_pairs.h (the rows around the pair kernel). This header is what tinylm.c and the
   kernels have in common: a matrix product's description, the fixed-point rounding of its
   outputs, and the two compiler attributes the runtime uses. */
#ifndef TINYLM_KERNELS_H
#define TINYLM_KERNELS_H

#include "tinylm.h"

/* A loop that needs the registers to itself (see attention_head): a function of its own */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* The host's hottest integer loops (the int8 rows, attention's key dots and value sums), built
   twice on x86-64 Linux: for AVX2 and for the baseline x86-64 (SSE2), the program taking the
   first that its CPU has when it starts (an ifunc). The baseline lacks a 32-bit vector
   multiply (pmulld) and int8-to-int16 widening loads, which these loops are made of; every
   x86-64 since 2013-2015 has AVX2. The same integer arithmetic either way, so the same logits.
   Elsewhere (other CPUs, C libraries without ifuncs, clang, which does not take the
   attribute beside noinline) one build, as before. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    defined(__GLIBC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define LIMIT (1 << 30)
#define EXP_FLOOR (-(1 << 21))   /* e^z rounds to 0 in Q30 below z = -21.5 */

/* v / 2^s rounded half up, s >= 0, as floor(v / 2^(s-1) + 1) / 2, which cannot overflow;
   past s = 31 it is 0 for every int32. */
static inline int32_t rshift_round(int32_t v, int s) {
    if (s <= 0) return v;
    if (s > 31) return 0;
    return ((v >> (s - 1)) + 1) >> 1;
}

/* v * 2^-s rounded and saturated; a negative s is a left shift. */
static inline int32_t scale_sat(int32_t v, int s) {
    if (s >= 0) {   /* in 32 bits: sat's int64 compares cost a CPU without them dearly */
        int32_t r = rshift_round(v, s);
        return r > LIMIT ? LIMIT : r < -LIMIT ? -LIMIT : r;
    }
    int l = -s > 31 ? 31 : -s;
    if (v > (LIMIT >> l)) return LIMIT;
    if (v < -(LIMIT >> l)) return -LIMIT;
    return v * (1 << l);
}

/* Element j of a row of int4 values: low nibble first; (n ^ 8) - 8 sign-extends it. */
static inline int int4_at(const uint8_t *row, uint32_t j) {
    int nib = j & 1 ? row[j >> 1] >> 4 : row[j >> 1] & 15;
    return (nib ^ 8) - 8;
}

/* A vector rounded to integers in -top..top with one scale m * 2^k (find_scale in tinylm.c) */
typedef struct {
    int32_t m, k, reciprocal, top;
} int8_scale;

typedef struct {
    const int32_t *x;               /* Q16 */
    int8_scale scale;               /* of the int8 values in s->xq and, packed, s->scratch */
    int packed;                     /* 8 or 4: packed for that kernel in s->scratch too */
} input;

#define PAIR_SUMS 256               /* group sums per call of the pair kernel */

/* y = W x, as matvec in tinylm.c sets it up */
typedef struct {
    const tlm_state *s;
    const input *in;
    const uint8_t *w;               /* rows of int8 or int4 values */
    const uint16_t *scales;         /* [rows][n_groups] */
    int32_t *y;
    uint32_t rows, cols, row_bytes, group, n_groups;
    int group_shift, sum_shift, out_shift, pairs, nibbles;   /* which kernel */
} product;

/* ---- the interface: every kernel file defines these ------------------------------------- */

/* 1 when this CPU's int8 rows take their input packed in pairs for the pair kernel (matvec in
   tinylm.c), 0 when they take the int16 values of s->xq as they are. */
extern const int tlm_packed_pairs;

/* Rows first..end-1 of the product: y[i] for each. */
void tlm_product_rows(const product *p, uint32_t first, uint32_t end);

/* Attention's loops over the positions of the cache (attention_head in tinylm.c), functions
   of their own: inside the loop over the positions, compilers run out of registers.
   w[t] = q . k_t for the keys of `positions` positions (head_dim hd), stride bytes apart: */
void tlm_key_dots(int32_t *restrict w, const int32_t *restrict q, const int8_t *restrict k,
                  uint32_t hd, size_t stride, uint32_t positions);
/* sums[d] = sum_t w[t] v_t[d] over the values of `positions` positions, stride bytes apart: */
void tlm_value_sums(int32_t *restrict sums, const int32_t *restrict w,
                    const int8_t *restrict v, uint32_t hd, size_t stride, uint32_t positions);

/* The weights to sample from, in place of the logits: e^(logit - top) in Q30 (the nearest
   entry of table, 2^(-i/64) in Q30 for i = 0..64; see exp_neg_coarse), logits within
   +-2^30; returns their total, summed in 32-bit pieces (cheaper than a 64-bit sum). */
uint64_t tlm_exp_weights(int32_t *logits, uint32_t n, int32_t top, const int32_t *table);

#endif
