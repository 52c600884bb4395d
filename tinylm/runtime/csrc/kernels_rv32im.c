/* Kernels for RV32IM (the ESP32-C3): the pair kernel in assembly, the rest the portable C
   of kernels_pairs.h and kernels_portable.h. */
#include "kernels_pairs.h"

/* The pair kernel (kernels_pairs.h). RV32IM: one instruction a cycle, 31 registers, no
   register-plus-register addressing. A word of both rows takes 24 instructions: the input's
   two words loaded once, then per row a load, xor, shift, two ands, two muls, two shifts
   and two adds. Groups of 8 words (32 columns) are unrolled whole, 197 instructions: the
   first word sets the sums, four increments, two stores and a branch serve the group (a
   short last group goes word by word). Other group sizes go 4 words a step, after the words
   beyond a multiple of 4. a0/a7 the two rows, a1 x, a2 the output, a3 bytes of x per group,
   a4 the input's end, a5 from a row's end to the next pair's, a6 pairs left, t0 the input,
   t1 where the unrolled steps end, t2 0x00FF00FF, t3 0x80808080, t4/t5 the sums, t6/s0
   X02/X13, s1/s2 the two products. */
#define PAIR_PRODUCTS(row, k)                                                              \
    "lw s1, " #k "(" row ")\n xor s1, s1, t3\n srli s2, s1, 8\n and s1, s1, t2\n"          \
    "and s2, s2, t2\n mul s1, s1, t6\n mul s2, s2, s0\n srai s1, s1, 16\n srai s2, s2, 16\n"
#define PAIR_ADD(sum) "add " sum ", " sum ", s1\n add " sum ", " sum ", s2\n"
#define PAIR_LOAD_X(k) "lw t6, 2*" #k "(t0)\n lw s0, 2*" #k "+4(t0)\n"
#define PAIR_WORD(k)                                                                       \
    PAIR_LOAD_X(k) PAIR_PRODUCTS("a0", k) PAIR_ADD("t4") PAIR_PRODUCTS("a7", k) PAIR_ADD("t5")
#define PAIR_FIRST_WORD                                                                    \
    PAIR_LOAD_X(0) PAIR_PRODUCTS("a0", 0) "add t4, s1, s2\n"                               \
    PAIR_PRODUCTS("a7", 0) "add t5, s1, s2\n"
#define PAIR_STEP(bytes) /* of the rows; twice as many of x */                             \
    " addi a0, a0, " #bytes "\n addi a7, a7, " #bytes "\n addi t0, t0, 2*" #bytes "\n"
#define PAIR_STORE " sw t4, 0(a2)\n sw t5, 4(a2)\n addi a2, a2, 8\n"
#define PAIR_NEXT " add a0, a0, a5\n add a7, a7, a5\n addi a6, a6, -1\n"
__asm__(
    ".text\n .balign 4\n .globl tlm_pair_sums\n .type tlm_pair_sums, @function\n"
    "tlm_pair_sums:\n"
    " beqz a6, 9f\n addi sp, sp, -16\n sw s0, 0(sp)\n sw s1, 4(sp)\n sw s2, 8(sp)\n"
    " slli t0, a4, 2\n srli t1, a4, 3\n slli t1, t1, 6\n add t1, t1, a1\n" /* 8-word groups' end */
    " slli a4, a4, 3\n add a4, a4, a1\n slli a3, a3, 3\n add a7, a0, a5\n"
    " slli a5, a5, 1\n sub a5, a5, t0\n"               /* two strides less a row */
    " li t2, 0x00FF00FF\n li t3, 0x80808080\n li t0, 64\n bne a3, t0, 20f\n"
    /* groups of 8 words, then the last group's words one by one */
    "10: mv t0, a1\n beq t0, t1, 12f\n"
    "11:\n" PAIR_FIRST_WORD PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12) PAIR_WORD(16)
    PAIR_WORD(20) PAIR_WORD(24) PAIR_WORD(28) PAIR_STEP(32) PAIR_STORE " bne t0, t1, 11b\n"
    "12: beq t0, a4, 14f\n li t4, 0\n li t5, 0\n"
    "13:\n" PAIR_WORD(0) PAIR_STEP(4) " bne t0, a4, 13b\n" PAIR_STORE
    "14:\n" PAIR_NEXT " bnez a6, 10b\n j 8f\n"
    /* other groups: the words beyond a multiple of 4 one by one, then 4 at a time */
    "20: mv t0, a1\n"
    "21: add t1, t0, a3\n bltu t1, a4, 22f\n mv t1, a4\n"
    "22: li t4, 0\n li t5, 0\n j 24f\n"
    "23:\n" PAIR_WORD(0) PAIR_STEP(4)
    "24: sub s1, t1, t0\n andi s1, s1, 24\n bnez s1, 23b\n beq t0, t1, 26f\n"
    "25:\n" PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12) PAIR_STEP(16)
    " bne t0, t1, 25b\n"
    "26:" PAIR_STORE " bne t0, a4, 21b\n" PAIR_NEXT " bnez a6, 20b\n"
    "8: lw s0, 0(sp)\n lw s1, 4(sp)\n lw s2, 8(sp)\n addi sp, sp, 16\n"
    "9: ret\n"
    " .size tlm_pair_sums, .-tlm_pair_sums\n");
