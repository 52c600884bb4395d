/* tinylm on the RP2040 without the SDK: the serial line protocol (docs/protocol.md) on UART0,
   with the model read in place from XIP flash at 0x10100000 (docs/flashing.md).

   Built as a RAM image (ram.ld) for the emulator runner (emulator/run.js) and the RP2040
   benchmark: `tinylm bench --target rp2040`, tinylm/emulate_rp2040.py. Sampling is fixed at
   build time (TLM_SEED, TLM_MAX_TOKENS) and matches `tinylm run --engine c` defaults:
   temperature 1, top-p 0.9, no top-k, the sampler reseeded for every prompt. */
#include <stdint.h>

#include "tinylm.h"

#ifndef TLM_SEED
#define TLM_SEED 0
#endif
#ifndef TLM_MAX_TOKENS
#define TLM_MAX_TOKENS 128
#endif

#define MAX_LINE 255
#define MODEL_ADDRESS 0x10100000u
#define FLASH_END 0x10200000u           /* a 2 MB flash, as on the Pico */
#define TEMPERATURE_Q16 65536u
#define TOP_P_Q16 58982u                /* 0.9 in Q16, rounded as tinylm.sampler.to_q16 */

#define REG(address) (*(volatile uint32_t *)(address))
#define CLEAR(address) REG((address) + 0x3000)   /* the atomic bit-clear alias */

/* Peripherals (RP2040 datasheet, chapter 2 and 4.2) */
#define RESETS 0x4000C000u
#define RESET_DONE (RESETS + 0x8)
#define RESET_IO_BANK0 (1u << 5)
#define RESET_PADS_BANK0 (1u << 8)
#define RESET_UART0 (1u << 22)
#define CLK_PERI_CTRL 0x40008048u
#define CLK_ENABLE (1u << 11)           /* AUXSRC 0: clk_peri runs from clk_sys */
#define GPIO_CTRL(n) (0x40014004u + 8 * (n))
#define FUNC_UART 2
#define TIMERAWL 0x40054028u            /* microseconds since reset, low 32 bits */
#define UART0 0x40034000u
#define UART_DR (UART0 + 0x00)
#define UART_FR (UART0 + 0x18)
#define UART_IBRD (UART0 + 0x24)
#define UART_FBRD (UART0 + 0x28)
#define UART_LCR_H (UART0 + 0x2C)
#define UART_CR (UART0 + 0x30)
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)

extern uint8_t __arena_start[], __arena_end[];

/* ---- UART0 (PL011) on GP0 (TX) and GP1 (RX) ---- */

static void uart_init(void) {
    REG(CLK_PERI_CTRL) = CLK_ENABLE;
    CLEAR(RESETS) = RESET_IO_BANK0 | RESET_PADS_BANK0 | RESET_UART0;
    uint32_t needed = RESET_IO_BANK0 | RESET_PADS_BANK0 | RESET_UART0;
    while ((REG(RESET_DONE) & needed) != needed) {
    }
    /* 115200 baud from a 125 MHz clk_peri: 125e6 / (16 * 115200) = 67 + 52/64 */
    REG(UART_IBRD) = 67;
    REG(UART_FBRD) = 52;
    REG(UART_LCR_H) = 3u << 5 | 1u << 4;    /* 8 bits, FIFOs on; latches the divisor */
    REG(UART_CR) = 1u << 0 | 1u << 8 | 1u << 9;     /* enable, TX, RX */
    REG(GPIO_CTRL(0)) = FUNC_UART;
    REG(GPIO_CTRL(1)) = FUNC_UART;
}

static int uart_ready(void) { return !(REG(UART_FR) & FR_RXFE); }

static uint8_t uart_getc(void) {
    while (!uart_ready()) {
    }
    return (uint8_t)REG(UART_DR);
}

static void uart_putc(uint8_t c) {
    while (REG(UART_FR) & FR_TXFF) {
    }
    REG(UART_DR) = c;
}

static void put(const char *s) {
    while (*s) uart_putc((uint8_t)*s++);
}

static void put_u32(uint32_t v) {
    char digits[11], *p = digits + sizeof digits;
    *--p = 0;
    do *--p = (char)('0' + v % 10); while (v /= 10);
    put(p);
}

static void put_hex32(uint32_t v) {
    put("0x");
    for (int shift = 28; shift >= 0; shift -= 4)
        uart_putc((uint8_t)"0123456789abcdef"[v >> shift & 15]);
}

/* Microseconds; a difference of two is right across the 32-bit wrap (every 71 minutes). */
static uint32_t now_us(void) { return REG(TIMERAWL); }

/* ---- the model ---- */

static tlm_model model;
static tlm_state state;
static tlm_sampler sampler;
static const char *model_code;      /* why no model is usable: an @error code ... */
static const char *model_error;     /* ... and the runtime's message for a bad-model */

static void check_model(void) {
    const uint8_t *flash = (const uint8_t *)MODEL_ADDRESS;
    const char *error;
    if (flash[0] != 'T' || flash[1] != 'L' || flash[2] != 'M' || flash[3] != 'B') {
        model_code = "no-model";
        return;
    }
    if ((error = tlm_load(&model, flash, FLASH_END - MODEL_ADDRESS)) == 0) {
        /* the longest context, up to the model's, whose arena fits in the SRAM left */
        uint32_t room = (uint32_t)(__arena_end - __arena_start), context = model.max_seq_len;
        while (context > 1 && tlm_arena_size(&model, context) > room) context--;
        error = tlm_init(&state, &model, __arena_start, room, context);
    }
    if (error) {
        model_code = "bad-model";
        model_error = error;
    }
}

static void send_status(void) {
    if (model_code) {
        put("@error ");
        put(model_code);
        if (model_error) {
            put(" ");
            put(model_error);
        } else {
            put(" no model at flash ");
            put_hex32(MODEL_ADDRESS);
            put(" (found ");
            put_hex32(*(const volatile uint32_t *)MODEL_ADDRESS);
            put("): flash one with tinylm flash rp2040");
        }
        put("\n");
        return;
    }
    put("@ready proto=1 max_line=255 board=rp2040 vocab=");
    put_u32(model.vocab_size);
    put(" ctx=");
    put_u32(state.context);
    put(model.bits == 4 ? " quant=q4" : " quant=q8");
    put(" arena=");
    put_u32((uint32_t)tlm_arena_size(&model, state.context));
    put("\n");
}

/* Token text inside an @text line: only the line's own end may be a raw LF. */
static void put_escaped(const uint8_t *text, uint32_t len) {
    for (uint32_t i = 0; i < len; i++) {
        uint8_t c = text[i];
        if (c == '\\') put("\\\\");
        else if (c == '\n') put("\\n");
        else if (c == '\r') put("\\r");
        else uart_putc(c);
    }
}

/* Bytes that arrive during an answer: a cancel stops it (the bytes after it stay in the FIFO
   for the line reader); anything else is dropped. */
static int cancelled(void) {
    while (uart_ready()) {
        if (uart_getc() == 0x03) return 1;
    }
    return 0;
}

static void answer(const uint8_t *line, uint32_t len) {
    static uint32_t ids[MAX_LINE + 2];  /* <bos> and at most one token per byte */
    if (model_code) {
        send_status();
        return;
    }
    uint32_t start = now_us();
    int32_t n = tlm_encode(&model, line, len, 1, ids, MAX_LINE + 2);
    if (n < 0 || (uint32_t)n >= state.context) {
        put("@error prompt-too-long the prompt does not fit in the context of ");
        put_u32(state.context);
        put(" tokens\n");
        return;
    }
    tlm_reset(&state);
    tlm_sampler_init(&sampler, TEMPERATURE_Q16, 0, TOP_P_Q16, TLM_SEED);
    tlm_start(&state, ids, (uint32_t)n);
    uint32_t generation = now_us();
    put("@text ");
    const char *stop = "length";
    uint32_t count = 0;
    for (int32_t prev = (int32_t)ids[n - 1]; count < TLM_MAX_TOKENS; count++) {
        int32_t t = tlm_next(&state, &sampler);
        if (t < 0) {
            stop = state.pos >= state.context ? "context" : "eos";
            break;
        }
        uint32_t piece_len;
        const uint8_t *piece = tlm_piece(&model, prev, (uint32_t)t, &piece_len);
        put_escaped(piece, piece_len);
        prev = t;
        if (cancelled()) {
            count++;
            stop = "cancel";
            break;
        }
    }
    uint32_t ms = (now_us() - generation) / 1000;
    if (ms == 0) ms = 1;                /* the protocol's tok_s divides by it */
    uint32_t rate = (uint32_t)((uint64_t)count * 100000 / ms);
    put("\n@done tokens=");
    put_u32(count);
    put(" ms=");
    put_u32(ms);
    put(" tok_s=");
    put_u32(rate / 100);
    uart_putc('.');
    uart_putc((uint8_t)('0' + rate / 10 % 10));
    uart_putc((uint8_t)('0' + rate % 10));
    put(" stop=");
    put(stop);
    put(" prompt=");
    put_u32((uint32_t)n);
    put(" prompt_ms=");
    put_u32((generation - start) / 1000);
    put("\n");
}

/* The line reader of docs/protocol.md: a line never goes past line[MAX_LINE]. */
int main(void) {
    static uint8_t line[MAX_LINE + 1];
    uint32_t length = 0, dropped = 0;
    int discarding = 0, last_was_cr = 0;
    uart_init();
    check_model();
    send_status();
    for (;;) {
        uint8_t c = uart_getc();
        if (c == 0x03) {
            length = 0;
            discarding = 0;
            continue;
        }
        if (c == 0x05) {
            send_status();
            continue;
        }
        if (c == '\n' && last_was_cr) {
            last_was_cr = 0;
            continue;
        }
        last_was_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            if (discarding) {
                put("@error line-too-long the line had ");
                put_u32(MAX_LINE + dropped);
                put(" bytes; at most 255 fit\n");
                discarding = 0;
            } else {
                line[length] = 0;
                answer(line, length);
            }
            length = 0;
            continue;
        }
        if (discarding) {
            dropped++;
        } else if (length == MAX_LINE) {
            discarding = 1;
            dropped = 1;
        } else {
            line[length++] = c;
        }
    }
}
