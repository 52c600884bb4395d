/* Kernels for the Cortex-M0+ (ARMv6-M: the RP2040), in assembly: the pair kernel, rows of 64
   columns four at a time and other pairs of rows in one pass each, and the sampler's weights.
   The rest is the portable C of kernels_pairs.h and kernels_portable.h. */
#define OWN_ENTRY_POINTS   /* below: tlm_product_rows, tlm_exp_weights */
#include "kernels_pairs.h"

const int tlm_packed_pairs = 1;

/* The assembly kernels go where pico-sdk's linker script puts code to be copied to SRAM at
   boot (.time_critical*), so that on a board they do not share the 16 KB XIP cache with the
   weights streaming through it (the bare-metal image is all in SRAM anyway). */
#define ARM_KERNEL_SECTION ".pushsection .time_critical.tinylm, \"ax\", %progbits\n"
#define ARM_KERNEL_END(name) " .size " name ", .-" name "\n .popsection\n"

/* The pair kernel (kernels_pairs.h): two rows share each load of the input, 28 cycles per
   word of both rows, eight MACs; groups of 8 words (32 columns) unrolled. Low registers: r0
   row 0, r1 and r3 the halves of a weight word, r2 the input, r4/r5 X02/X13, r6 0x00FF00FF,
   r7 0x80808080; high: r8/r9 the sums, r10 row 1, r11 where the loop ends, r12 the output,
   lr the input's end. On the stack from sp + 36: x, bytes of x per group, words, stride,
   pairs left. */
#define PAIR_PRODUCTS /* r1, a word of a row -> its two shifted products, in r1 and r3 */     \
    "eors r1, r7\n lsrs r3, r1, #8\n ands r3, r6\n ands r1, r6\n muls r1, r4, r1\n"         \
    "muls r3, r5, r3\n asrs r1, r1, #16\n asrs r3, r3, #16\n"
#define PAIR_HALF(sum) PAIR_PRODUCTS "add " sum ", r1\n add " sum ", r3\n"
#define PAIR_WORD(k)                                                                       \
    "ldmia r2!, {r4, r5}\n ldr r1, [r0, #" #k "]\n" PAIR_HALF("r8")                        \
    "mov r1, r10\n ldr r1, [r1, #" #k "]\n" PAIR_HALF("r9")
#define PAIR_STORE                                                                         \
    " mov r4, r12\n mov r1, r8\n mov r3, r9\n stmia r4!, {r1, r3}\n mov r12, r4\n"          \
    " movs r1, #0\n mov r8, r1\n mov r9, r1\n"
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_pair_sums\n"
    ".type tlm_pair_sums, %function\n .thumb_func\n"
    "tlm_pair_sums:\n"
    " push {r1, r3}\n push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n"
    " mov r7, r11\n push {r4-r7}\n"
    " mov r12, r2\n ldr r6, =0x00FF00FF\n ldr r7, =0x80808080\n"
    " ldr r4, [sp, #44]\n lsls r4, r4, #3\n ldr r1, [sp, #36]\n adds r1, r1, r4\n"
    " mov lr, r1\n"                                                 /* the input's end */
    " ldr r4, [sp, #44]\n ldr r5, [sp, #40]\n cmp r5, r4\n blo 30f\n"  /* one group of */
    " lsls r5, r4, #30\n bne 30f\n b 19f\n"                         /* 4k words: below */
    "30:"
    " ldr r4, [sp, #40]\n lsls r4, r4, #3\n str r4, [sp, #40]\n"    /* bytes per group */
    "0: ldr r2, [sp, #36]\n ldr r1, [sp, #48]\n adds r1, r1, r0\n mov r10, r1\n"
    " ldr r4, [sp, #40]\n mov r1, r2\n cmp r4, #64\n bne 1f\n"   /* 8-word groups: up to */
    " ldr r5, [sp, #44]\n lsrs r5, r5, #3\n lsls r5, r5, #6\n adds r1, r1, r5\n" /* the last */
    "1: mov r11, r1\n movs r1, #0\n mov r8, r1\n mov r9, r1\n"
    "2: cmp r2, r11\n bne 3f\n b 4f\n"
    "3:\n" PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12) PAIR_WORD(16) PAIR_WORD(20)
    PAIR_WORD(24) PAIR_WORD(28) " adds r0, r0, #32\n movs r1, #32\n add r10, r1\n"
    PAIR_STORE " b 2b\n"
    "4: cmp r2, lr\n bne 12f\n b 7f\n"                     /* other groups: word by word */
    "12:"
    " ldr r4, [sp, #40]\n adds r4, r4, r2\n cmp r4, lr\n bls 5f\n mov r4, lr\n"
    "5: mov r11, r4\n"
    "6: mov r1, r11\n subs r1, r1, r2\n cmp r1, #32\n bhs 11f\n b 9f\n" /* 4 words at */
    "11:\n"                                                              /* a time */
    PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12)
    " adds r0, r0, #16\n movs r1, #16\n add r10, r1\n b 6b\n"
    "9: cmp r2, r11\n beq 10f\n"                                       /* then one by one */
    PAIR_WORD(0) " adds r0, r0, #4\n movs r1, #4\n add r10, r1\n b 9b\n"
    "10:" PAIR_STORE " b 4b\n"
    "7: mov r0, r10\n ldr r1, [sp, #44]\n lsls r1, r1, #2\n subs r0, r0, r1\n" /* next pair: */
    " ldr r1, [sp, #48]\n adds r0, r0, r1\n"                    /* row 1's end - words + stride */
    " ldr r1, [sp, #52]\n subs r1, r1, #1\n str r1, [sp, #52]\n beq 8f\n b 0b\n"
    "8: pop {r4-r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
    " pop {r4-r7}\n pop {r3}\n add sp, #8\n bx r3\n .ltorg\n"
    /* rows of one group of 4k words: no group bookkeeping; the slot of words then holds
       how far the next pair's row 0 is from this row 0's end */
    "19: ldr r5, [sp, #48]\n lsls r5, r5, #1\n lsls r4, r4, #2\n subs r5, r5, r4\n"
    " str r5, [sp, #44]\n movs r1, #0\n mov r8, r1\n mov r9, r1\n"
    "20: ldr r2, [sp, #36]\n ldr r1, [sp, #48]\n adds r1, r1, r0\n mov r10, r1\n"
    "21:\n" PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12)
    " adds r0, r0, #16\n movs r1, #16\n add r10, r1\n cmp r2, lr\n bne 21b\n" PAIR_STORE
    " ldr r1, [sp, #44]\n adds r0, r0, r1\n"
    " ldr r1, [sp, #52]\n subs r1, r1, #1\n str r1, [sp, #52]\n beq 22f\n b 20b\n"
    "22: b 8b\n"
    ARM_KERNEL_END("tlm_pair_sums"));

/* Rows of 64 columns, two groups of 8 words (most matrices of a model 64 wide), four rows at
   a time, the whole product in one pass: each load of the input serves four rows, each
   group's sums are scaled while they are in registers, and the outputs are written. Rows 0
   and 1 are r0 + k and r0 + 64 + k, rows 2 and 3 the same from r10 = r0 + 128 (one more
   cycle each: a high register). With c_g group g's correction (after the 32 words of packed
   input) and s_rg row r's scale (a quad's 8 are adjacent, row by row):
       total_r = sum_g ((sum_rg + c_g) >> 3) s_rg >> 6      (group_shift 3, sum_shift 6)
       y_r = (((total_r xm) >> down) + 1) >> 1            (scale_sat, out_shift = down + 1)
   Registers: r0 row 0, r2 the input, r1/r3 the halves of a weight word, r4/r5 X02/X13, r6
   0x00FF00FF, r7 0x80808080; high: r8/r9/r11/r12 the rows' sums, r10 row 2, lr the quad's
   scales. The first group's terms wait on the stack (sp + 0..12); at the end the totals
   are made in r0-r3, whose row pointers can be made again from r10. Locals: y at sp + 16,
   x at sp + 20; arguments from sp + 60: the rows' end, xm, down. 53 cycles a word of the
   four rows (16 MACs), about 125 a quad for the rest. */
void tlm_quads64(const uint8_t *rows, const int32_t *x, int32_t *y, const uint16_t *scales,
                 const uint8_t *rows_end, int32_t xm, int32_t down);
#define QUAD_WORD(k, op) /* word k of the four rows; op "mov" for a group's first word */   \
    "ldmia r2!, {r4, r5}\n ldr r1, [r0, #" #k "]\n" PAIR_PRODUCTS op " r8, r1\n add r8, r3\n"  \
    "ldr r1, [r0, #64+" #k "]\n" PAIR_PRODUCTS op " r9, r1\n add r9, r3\n"                   \
    "mov r1, r10\n ldr r1, [r1, #" #k "]\n" PAIR_PRODUCTS op " r11, r1\n add r11, r3\n"      \
    "mov r1, r10\n ldr r1, [r1, #64+" #k "]\n" PAIR_PRODUCTS op " r12, r1\n add r12, r3\n"
#define QUAD_GROUP(k) /* the 8 words of a group from word k */                            \
    QUAD_WORD(k, "mov") QUAD_WORD(k + 4, "add") QUAD_WORD(k + 8, "add")                   \
    QUAD_WORD(k + 12, "add") QUAD_WORD(k + 16, "add") QUAD_WORD(k + 20, "add")           \
    QUAD_WORD(k + 24, "add") QUAD_WORD(k + 28, "add")
#define QUAD_TERM(out, tmp, sum, s) /* a row's term of a group: c_g in r4, scales at r5 */  \
    "mov " out ", " sum "\n adds " out ", r4\n asrs " out ", " out ", #3\n"                  \
    "ldrh " tmp ", [r5, #" #s "]\n muls " out ", " tmp ", " out "\n asrs " out ", " out ", #6\n"
#define QUAD_TOTAL(out, tmp, sum, s, t) /* the second group's term plus the first's */    \
    QUAD_TERM(out, tmp, sum, s) "ldr " tmp ", [sp, #" #t "]\n adds " out ", " tmp "\n"
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_quads64\n"
    ".type tlm_quads64, %function\n .thumb_func\n"
    "tlm_quads64:\n"
    " push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n mov r7, r11\n push {r4-r7}\n"
    " sub sp, #24\n str r2, [sp, #16]\n str r1, [sp, #20]\n mov lr, r3\n mov r2, r1\n"
    " movs r1, #128\n adds r1, r0\n mov r10, r1\n"
    " ldr r6, =0x00FF00FF\n ldr r7, =0x80808080\n b 1f\n .ltorg\n"
    "1:\n" QUAD_GROUP(0)
    " ldr r4, [r2, #64]\n mov r5, lr\n"                 /* the first group's terms, kept */
    QUAD_TERM("r1", "r3", "r8", 0) " str r1, [sp, #0]\n" QUAD_TERM("r1", "r3", "r9", 4)
    " str r1, [sp, #4]\n" QUAD_TERM("r1", "r3", "r11", 8) " str r1, [sp, #8]\n"
    QUAD_TERM("r1", "r3", "r12", 12) " str r1, [sp, #12]\n"
    QUAD_GROUP(32)
    " ldr r4, [r2, #4]\n mov r5, lr\n"                           /* the totals in r0-r3 */
    QUAD_TOTAL("r0", "r1", "r8", 2, 0) QUAD_TOTAL("r1", "r2", "r9", 6, 4)
    QUAD_TOTAL("r2", "r3", "r11", 10, 8) QUAD_TOTAL("r3", "r4", "r12", 14, 12)
    " ldr r4, [sp, #64]\n muls r0, r4, r0\n muls r1, r4, r1\n muls r2, r4, r2\n"  /* outputs */
    " muls r3, r4, r3\n ldr r4, [sp, #68]\n asrs r0, r4\n asrs r1, r4\n asrs r2, r4\n"
    " asrs r3, r4\n adds r0, #1\n adds r1, #1\n adds r2, #1\n adds r3, #1\n asrs r0, r0, #1\n"
    " asrs r1, r1, #1\n asrs r2, r2, #1\n asrs r3, r3, #1\n ldr r4, [sp, #16]\n"
    " stmia r4!, {r0-r3}\n str r4, [sp, #16]\n"
    " mov r0, r10\n adds r0, #128\n mov r1, r0\n adds r1, #128\n mov r10, r1\n" /* next */
    " adds r5, #16\n mov lr, r5\n ldr r2, [sp, #20]\n"
    " ldr r4, [sp, #60]\n cmp r0, r4\n beq 2f\n b 1b\n"
    "2: add sp, #24\n pop {r4-r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
    " pop {r4-r7, pc}\n"
    ARM_KERNEL_END("tlm_quads64"));

/* Pairs of rows of any number of words in groups of 8 (32 columns; the last group 1 to 8
   words), the whole product in one pass. Row 0 is read with ldmia (it advances by itself)
   and row 1 at r0 + r10 (its stride less 4), so the 8 word blocks are identical and
   position-free: a group of t words enters at block 8 - t (Duff's device), and no pointer
   needs fixing between groups. Each group's sums start at its correction, so its terms are
       ((sum_rg + c_g) >> 3) s_rg >> sum_shift
   and the outputs are tlm_quads64's. 28 cycles a word of both rows (row 1's address takes
   one more), 34 a group for its correction, terms and loop, about 45 a pair. Registers: r0
   row 0, r2 the input, r1/r3 the halves of a weight word, r4/r5 X02/X13, r6 0x00FF00FF, r7
   0x80808080; high: r8/r9 the sums, r10 row 1 from row 0, r11/r12 the totals, lr row 0's
   scale of the group. Locals from sp: y, corrections - x/16, where the last group's input
   starts, the address of its entry block, x, 2 n_groups (row 1's scales from row 0's).
   Arguments from sp + 60: the rows' end, bytes of a row, the corrections, xm, down,
   sum_shift, words of the last group. */
void tlm_rows_wide(const uint8_t *rows, const int32_t *x, int32_t *y, const uint16_t *scales,
                   const uint8_t *rows_end, uint32_t row_bytes, const int32_t *corrections,
                   int32_t xm, int32_t down, int32_t sum_shift, uint32_t last_words);
#define WIDE_BLOCK /* one word of both rows: 24 instructions, 48 bytes */                 \
    "ldmia r2!, {r4, r5}\n ldmia r0!, {r1}\n" PAIR_PRODUCTS "add r8, r1\n add r8, r3\n"     \
    "mov r1, r10\n ldr r1, [r0, r1]\n" PAIR_PRODUCTS "add r9, r1\n add r9, r3\n"
#define WIDE_CORRECTION /* group g's input starts at x + 64 g: its correction is at */      \
    /* (corrections - x/16) + r2/16, x being 16-byte aligned; the sums start at it */    \
    " lsrs r4, r2, #4\n ldr r5, [sp, #4]\n ldr r5, [r5, r4]\n mov r8, r5\n mov r9, r5\n"
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_rows_wide\n"
    ".type tlm_rows_wide, %function\n .thumb_func\n"
    "tlm_rows_wide:\n"
    " push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n mov r7, r11\n push {r4-r7}\n"
    " sub sp, #24\n str r2, [sp, #0]\n str r1, [sp, #16]\n mov lr, r3\n"
    " lsrs r3, r1, #4\n ldr r4, [sp, #68]\n subs r4, r3\n str r4, [sp, #4]\n"
    " ldr r4, [sp, #64]\n subs r5, r4, #4\n mov r10, r5\n"          /* row 1 from row 0 */
    " ldr r5, [sp, #84]\n lsls r4, r4, #1\n lsls r3, r5, #3\n subs r4, r3\n" /* 8 words */
    " lsrs r3, r4, #5\n adds r3, #2\n str r3, [sp, #20]\n"    /* 2 n_groups: row 1's scales */
    " adds r4, r1\n str r4, [sp, #8]\n"                    /* the last group's input */
    " movs r4, #8\n subs r4, r5\n movs r3, #48\n muls r4, r3, r4\n adr r3, 5f\n adds r4, r3\n"
    " adds r4, #1\n str r4, [sp, #12]\n"                        /* block 8 - last_words */
    " ldr r6, =0x00FF00FF\n ldr r7, =0x80808080\n b 1f\n .ltorg\n"
    " .balign 4\n nop\n"                       /* (never run: it puts block 0 at 4k) */
    "4:" WIDE_CORRECTION                                               /* a whole group */
    "5:\n" WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK
    WIDE_BLOCK
    " mov r1, r8\n asrs r1, r1, #3\n mov r3, r9\n asrs r3, r3, #3\n"   /* the terms */
    " mov r5, lr\n ldrh r4, [r5]\n muls r1, r4, r1\n"
    " ldr r4, [sp, #20]\n ldrh r4, [r5, r4]\n muls r3, r4, r3\n"
    " ldr r4, [sp, #80]\n asrs r1, r4\n asrs r3, r4\n add r11, r1\n add r12, r3\n"
    " adds r5, #2\n mov lr, r5\n"
    " ldr r4, [sp, #8]\n cmp r2, r4\n bhs 3f\n b 4b\n"                /* the next group */
    "3: bne 6f\n" WIDE_CORRECTION " ldr r4, [sp, #12]\n bx r4\n"    /* the last group */
    "6: ldr r4, [sp, #72]\n mov r1, r11\n muls r1, r4, r1\n mov r3, r12\n"  /* outputs */
    " muls r3, r4, r3\n ldr r4, [sp, #76]\n asrs r1, r4\n asrs r3, r4\n adds r1, #1\n"
    " adds r3, #1\n asrs r1, r1, #1\n asrs r3, r3, #1\n ldr r4, [sp, #0]\n"
    " stmia r4!, {r1, r3}\n str r4, [sp, #0]\n"
    " ldr r4, [sp, #64]\n adds r0, r4\n"           /* the next pair: rows and scales */
    " mov r5, lr\n ldr r4, [sp, #20]\n adds r5, r4\n mov lr, r5\n"
    " ldr r4, [sp, #60]\n cmp r0, r4\n beq 7f\n"
    "1: ldr r2, [sp, #16]\n movs r1, #0\n mov r11, r1\n mov r12, r1\n b 4b\n"   /* a pair */
    "7: add sp, #24\n pop {r4-r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
    " pop {r4-r7, pc}\n"
    ARM_KERNEL_END("tlm_rows_wide"));

/* The sampler's weights (kernels.h): 24 cycles a logit where GCC's code takes 38 (it keeps
   rematerializing the constants). exp_neg_coarse's two tests, z < EXP_FLOOR and n < 31,
   become one clamp of m = top - logit to 2^21 (= -EXP_FLOOR), where n = 46: a register
   shift by 32 or more gives 0, as the tests do. r0 the logits, r1 their end, r2 top, r3/r4
   work, r5 the total's low word, r6 the table, r7 log2(e) in Q15; r8 2^21, r9 2^19 (the
   rounding), r10 the carries. */
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_exp_weights\n"
    ".type tlm_exp_weights, %function\n .thumb_func\n"
    "tlm_exp_weights:\n"
    " push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n push {r4-r6}\n"
    " lsls r1, r1, #2\n adds r1, r0, r1\n movs r5, #0\n mov r10, r5\n movs r6, r3\n"
    " ldr r7, =47274\n movs r3, #1\n lsls r3, r3, #21\n mov r8, r3\n lsrs r3, r3, #2\n"
    " mov r9, r3\n cmp r0, r1\n beq 9f\n"
    "1: ldr r3, [r0]\n subs r3, r2, r3\n cmp r3, r8\n bls 2f\n mov r3, r8\n"
    "2: lsrs r3, r3, #5\n muls r3, r7, r3\n add r3, r9\n"        /* k = r3 >> 20 */
    " lsls r4, r3, #6\n lsrs r4, r4, #26\n lsls r4, r4, #2\n"    /* (k & 63) * 4 */
    " ldr r4, [r6, r4]\n lsrs r3, r3, #26\n lsrs r4, r4, r3\n"   /* table >> (k >> 6) */
    " stmia r0!, {r4}\n adds r5, r5, r4\n bcc 3f\n mov r3, r10\n adds r3, #1\n mov r10, r3\n"
    "3: cmp r0, r1\n bne 1b\n"
    "9: movs r0, r5\n mov r1, r10\n pop {r4-r6}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n"
    " pop {r4-r7, pc}\n .ltorg\n"
    ARM_KERNEL_END("tlm_exp_weights"));

/* Rows first..end-1 as kernels_portable.c does them, with the pairs of rows that the assembly
   takes whole done there first. */
void tlm_product_rows(const product *p, uint32_t first, uint32_t end) {
    if (p->nibbles) {
        nibble_rows(p, first, end);
        return;
    }
    if (p->pairs) {
        int32_t sums[PAIR_SUMS];
        uint32_t i = first;
        if (p->group == 32 && p->n_groups > 1 && p->out_shift > 0 && p->out_shift < 32) {
            /* in one assembly pass each: rows of 64 columns four at a time, then the other
               pairs; a last odd row below */
            int32_t xm = p->in->scale.m, down = p->out_shift - 1;
            if (p->cols == 64 && end - i >= 4) {
                uint32_t quads_end = i + ((end - i) & ~3u);
                tlm_quads64(p->w + (size_t)i * 64, p->s->scratch, p->y + i, p->scales + i * 2,
                            p->w + (size_t)quads_end * 64, xm, down);
                i = quads_end;
            }
            if (end - i >= 2) {
                uint32_t pairs_end = i + ((end - i) & ~1u);
                tlm_rows_wide(p->w + (size_t)i * p->cols, p->s->scratch, p->y + i,
                              p->scales + (size_t)i * p->n_groups,
                              p->w + (size_t)pairs_end * p->cols, p->cols,
                              p->s->scratch + p->cols / 2, xm, down, p->sum_shift,
                              (p->cols / 4 - 1) % 8 + 1);
                i = pairs_end;
            }
        }
        packed_rows(p, i, end, sums);
        return;
    }
    if (p->row_bytes == p->cols) int8_rows(p, first, end);
    else int4_rows(p, first, end);
}
