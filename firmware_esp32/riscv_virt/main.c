/* An instruction-count benchmark of the runtime on one rv32imc core (the ESP32-C3's
   instruction set), run by qemu with `-icount shift=0`, where minstret counts exactly the
   instructions retired.

   tinylm/boards/emulate_riscv.py loads a request block (below) and a model into RAM with qemu's
   `-device loader`; the program encodes the prompt, feeds it, generates, and reads minstret
   before and after the prompt and after each token. The readings are kept in memory while
   generating and printed on the UART only at the end, so printing costs nothing measured.
   Output, one item a line:

       prompt ID ID ...        the prompt's token ids, <bos> first
       start HEX               minstret before the prompt is fed
       fed HEX                 ... after it
       token ID HEX            a generated token and minstret after it, once per token
       stop length|end         the token limit was reached, or <eos>, <bos> or a full context

   or `error MESSAGE`, and qemu exits with status 1. */
#include <stdint.h>

#include "tinylm.h"

#define MAX_IDS 4096                        /* prompt tokens, and generated tokens */
#define REQUEST_MAGIC 0x524d4c54u           /* "TLMR", little-endian */

typedef struct {                            /* laid out by emulate_riscv.REQUEST */
    uint32_t magic, model_size, max_tokens;
    uint32_t temperature_q16, top_k, top_p_q16;
    uint32_t seed_low, seed_high;
    uint32_t prompt_size;
    uint8_t prompt[];
} request;

extern uint8_t __arena_start[], __arena_end[], __request[], __model[];

/* ---- the ns16550 UART of the virt machine ---- */

#define UART_THR ((volatile uint8_t *)0x10000000u)
#define UART_LSR ((volatile uint8_t *)0x10000005u)
#define LSR_THR_EMPTY 0x20u

static void put_char(char c) {
    while (!(*UART_LSR & LSR_THR_EMPTY)) {
    }
    *UART_THR = (uint8_t)c;
}

static void put(const char *s) {
    while (*s) put_char(*s++);
}

static void put_u32(uint32_t v) {
    char digits[11], *p = digits + sizeof digits;
    *--p = 0;
    do *--p = (char)('0' + v % 10); while (v /= 10);
    put(p);
}

static void put_hex64(uint64_t v) {
    put(" 0x");
    for (int shift = 60; shift >= 0; shift -= 4) put_char("0123456789abcdef"[v >> shift & 15]);
}

/* ---- the measurement ---- */

/* One CSR read. The CSR instructions are the Zicsr extension, which GCC 12 wants named;
   naming it here, not in -march, keeps the rv32imc libgcc that Debian's multilib has. */
#define READ_CSR(name, value) \
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrr %0, " name "\n.option pop" \
                     : "=r"(value))

/* minstret as 64 bits: on rv32 two CSRs, read high, low, high until the high half holds. */
static uint64_t instructions_retired(void) {
    uint32_t high, low, again;
    do {
        READ_CSR("minstreth", high);
        READ_CSR("minstret", low);
        READ_CSR("minstreth", again);
    } while (high != again);
    return (uint64_t)high << 32 | low;
}

static tlm_model model;
static tlm_state state;
static tlm_sampler sampler;
static uint32_t prompt_ids[MAX_IDS], token_ids[MAX_IDS];
static uint64_t retired_after[MAX_IDS];

static int fail(const char *message) {
    put("error ");
    put(message);
    put("\n");
    return 1;
}

int main(void) {
    const request *r = (const request *)__request;
    if (r->magic != REQUEST_MAGIC) return fail("no request block (load one with -device loader)");
    if (r->max_tokens > MAX_IDS) return fail("at most 4096 tokens can be generated");
    const char *error = tlm_load(&model, __model, r->model_size);
    if (!error)
        error = tlm_init(&state, &model, __arena_start, (size_t)(__arena_end - __arena_start), 0);
    if (error) return fail(error);

    int32_t n = tlm_encode(&model, r->prompt, r->prompt_size, 1, prompt_ids, MAX_IDS);
    if (n < 0) return fail("the prompt has more tokens than the program keeps");
    put("prompt");
    for (int32_t i = 0; i < n; i++) {
        put(" ");
        put_u32(prompt_ids[i]);
    }
    put("\n");
    tlm_sampler_init(&sampler, r->temperature_q16, r->top_k, r->top_p_q16,
                     (uint64_t)r->seed_high << 32 | r->seed_low);
    uint32_t limit = r->max_tokens, made = 0;

    uint64_t start = instructions_retired();
    if (tlm_start(&state, prompt_ids, (uint32_t)n) != 0)
        return fail("the prompt does not fit in the model's context");
    uint64_t fed = instructions_retired();
    for (int32_t token; made < limit && (token = tlm_next(&state, &sampler)) >= 0; made++) {
        token_ids[made] = (uint32_t)token;
        retired_after[made] = instructions_retired();
    }

    put("start");
    put_hex64(start);
    put("\nfed");
    put_hex64(fed);
    put("\n");
    for (uint32_t i = 0; i < made; i++) {
        put("token ");
        put_u32(token_ids[i]);
        put_hex64(retired_after[i]);
        put("\n");
    }
    put(made == limit ? "stop length\n" : "stop end\n");
    return 0;
}
