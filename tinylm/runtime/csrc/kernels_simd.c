/* Kernels for CPUs with SIMD (x86-64 and aarch64: the hosts), which skip the pair kernel. Two
   products per multiply is what makes a 32-bit core fast; a vector unit does 8 or 16 plain
   int8 x int16 products an instruction, which the compiler makes of int8_rows' dots over
   s->xq (kernels_portable.h), so the input is neither packed nor the packing taken out again.
   The sums are the pair kernel's: tests/test_two_cores.py holds this file and
   kernels_portable.c to the same logits. On x86-64 the rows are built for AVX2 too
   (VECTOR_CLONES, kernels.h). */
#include "kernels_portable.h"

const int tlm_packed_pairs = 0;

/* Rows first..end-1: int4 rows through the nibble kernel when the input is packed, else byte
   by byte; int8 rows by plain dots. */
VECTOR_CLONES void tlm_product_rows(const product *p, uint32_t first, uint32_t end) {
    if (p->nibbles) nibble_rows(p, first, end);
    else if (p->row_bytes == p->cols) int8_rows(p, first, end);
    else int4_rows(p, first, end);
}

uint64_t tlm_exp_weights(int32_t *logits, uint32_t n, int32_t top, const int32_t *table) {
    return exp_weights(logits, n, top, table);
}
