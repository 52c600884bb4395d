/* The int8 rows through the pair kernel (matvec in tinylm.c), in portable C around the kernel
   itself, tlm_pair_sums, which each file that includes this defines: in C (kernels_portable.c)
   or in assembly (kernels_rv32im.c); and, at the end, the entry points both files share. */
#ifndef TINYLM_KERNELS_PAIRS_H
#define TINYLM_KERNELS_PAIRS_H

#include "kernels_portable.h"

/* The pair kernel: for `pairs` pairs of rows (rows 2p and 2p + 1 of `rows`, stride bytes
   apart; stride 0 pairs a row with itself), sums[(p n_groups + g) 2 + r] is row r's packed
   sum (matvec in tinylm.c) over group g of the words (4 columns each) of the packed input x;
   group_words per group, the last one may be shorter. */
void tlm_pair_sums(const uint8_t *rows, const int32_t *x, int32_t *sums, uint32_t group_words,
                   uint32_t words, uint32_t stride, uint32_t pairs);

/* Rows first.. (count of them: pairs, or 1 row with itself) through the pair kernel, then
   their groups scaled and added up, a pair at a time. */
static void pair_rows(const product *p, uint32_t first, uint32_t count, int32_t *sums) {
    const int32_t *correction = p->s->scratch + p->cols / 2;
    uint32_t n_groups = p->n_groups, second = count > 1;   /* the pair's second row */
    int group_shift = p->group_shift, sum_shift = p->sum_shift, out_shift = p->out_shift;
    int32_t xm = p->in->scale.m, *y = p->y + first;
    const uint16_t *scales = p->scales + (size_t)first * n_groups;
    tlm_pair_sums(p->w + (size_t)first * p->row_bytes, p->s->scratch, sums, p->group / 4,
                  p->cols / 4, second ? p->row_bytes : 0, (count + 1) / 2);
    if (n_groups == 1 && out_shift > 0 && out_shift < 32) {
        /* rows no wider than a group (small models): no group loop, row r's sum is sums[r]
           (a row with itself: sums[0]), and scale_sat is rshift_round, as the product is
           below 2^30 (see matvec) */
        int32_t c = correction[0];
        int down = out_shift - 1;
        for (uint32_t r = 0; r < count; r++)
            y[r] = (((group_term(sums[r], c, scales[r], group_shift, sum_shift) * xm) >> down) +
                    1) >> 1;
        return;
    }
    for (uint32_t r = 0; r < count; r += 2) {
        int32_t total0 = 0, total1 = 0;
        for (uint32_t g = 0; g < n_groups; g++) {
            total0 += group_term(sums[2 * g], correction[g], scales[g], group_shift, sum_shift);
            total1 += group_term(sums[2 * g + 1], correction[g], scales[second * n_groups + g],
                                 group_shift, sum_shift);
        }
        y[0] = scale_sat(total0 * xm, out_shift);
        y[second] = scale_sat(total1 * xm, out_shift);
        sums += 2 * n_groups;
        scales += 2 * n_groups;
        y += 2;
    }
}

/* Rows first..end-1 of an int8 matrix whose input is packed in pairs: through the pair
   kernel, as many pairs at a time as sums (PAIR_SUMS of them, on the caller's stack, which
   lets the compiler inline this) holds. */
static void packed_rows(const product *p, uint32_t first, uint32_t end, int32_t *sums) {
    uint32_t i = first;
    for (uint32_t chunk = PAIR_SUMS / p->n_groups & ~1u; i + 1 < end;) {
        uint32_t count = end - i < chunk ? (end - i) & ~1u : chunk;
        pair_rows(p, i, count, sums);
        i += count;
    }
    if (i < end) pair_rows(p, i, 1, sums);   /* a last odd row goes with itself */
}

/* The entry points of kernels_portable.c and kernels_rv32im.c, which differ only in their pair
   kernel (a build links one kernel file; kernels_armv6m.c, which has entry points of its own,
   defines OWN_ENTRY_POINTS before it includes this): rows first..end-1, int4 rows through the
   nibble kernel and int8 rows two at a time through the pair kernel when the input is packed,
   else int8 rows by plain dots and int4 rows byte by byte; and the softmax weights in C. */
#ifndef OWN_ENTRY_POINTS
const int tlm_packed_pairs = 1;

void tlm_product_rows(const product *p, uint32_t first, uint32_t end) {
    if (p->nibbles) nibble_rows(p, first, end);
    else if (p->pairs) {
        int32_t sums[PAIR_SUMS];
        packed_rows(p, first, end, sums);
    } else if (p->row_bytes == p->cols) int8_rows(p, first, end);
    else int4_rows(p, first, end);
}

uint64_t tlm_exp_weights(int32_t *logits, uint32_t n, int32_t top, const int32_t *table) {
    return exp_weights(logits, n, top, table);
}
#endif

#endif
