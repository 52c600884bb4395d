/* tinylm on the RP2040 without the SDK: the device loop (tinylm/runtime/csrc/serve.c, the protocol of
   docs/protocol.md) on UART0, with the model that `tinylm flash rp2040` put in flash at
   0x10100000 (docs/flashing.md). This file is only the port, the clock and the model's place.

   Built as a RAM image (ram.ld) for the emulator runner (emulator/run.js) and the RP2040
   benchmark: `tinylm bench --target rp2040`, tinylm/boards/emulate_rp2040.py. Sampling is that of
   `tinylm run`: temperature 1, top-p 0.9, no top-k, the sampler reseeded for every prompt,
   with the seed and the token limit fixed at build time (TLM_SEED, TLM_MAX_TOKENS). The SRAM
   left by the image and the stacks holds the arena for TLM_CONTEXT tokens and, in the rest,
   what weights fit (tlm_server_place). The work of a token is shared between the two cores
   (multicore.c); built with TLM_CORES=1, core 1 stays asleep in the bootrom and core 0 does
   all of it. */
#include <stdint.h>

#include "multicore.h"
#include "serve.h"

#ifndef TLM_SEED
#define TLM_SEED 0
#endif
#ifndef TLM_MAX_TOKENS
#define TLM_MAX_TOKENS 256
#endif
#ifndef TLM_CORES
#define TLM_CORES 2
#endif
#ifndef TLM_CONTEXT
#define TLM_CONTEXT 0                   /* the model's, or the longest that fits: serve.h */
#endif

#define MODEL_ADDRESS 0x10100000u
#define FLASH_END 0x10200000u           /* a 2 MB flash, as on the Pico */

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

/* ---- UART0 (PL011) on GP0 (TX) and GP1 (RX), and the timer: the device loop's port ---- */

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

static void uart_write(void *ctx, const uint8_t *bytes, uint32_t n) {
    (void)ctx;
    while (n--) {
        while (REG(UART_FR) & FR_TXFF) {
        }
        REG(UART_DR) = *bytes++;
    }
}

static int uart_poll(void *ctx) {
    (void)ctx;
    return REG(UART_FR) & FR_RXFE ? -1 : (int)(REG(UART_DR) & 0xFF);
}

static uint32_t timer_micros(void *ctx) {
    (void)ctx;
    return REG(TIMERAWL);
}

int main(void) {
    static tlm_server server;
    const tlm_io io = {uart_write, uart_poll, timer_micros, NULL};
    uint8_t *sram = __arena_start;     /* the model's: the arena, and what weights fit */
    size_t sram_size = (size_t)(__arena_end - __arena_start);
    uart_init();
    tlm_server_init(&server, &io, "rp2040", (const uint8_t *)MODEL_ADDRESS,
                    FLASH_END - MODEL_ADDRESS, "flash 0x10100000", "tinylm flash rp2040", sram,
                    sram_size);
    tlm_server_place(&server, sram, sram_size, TLM_CONTEXT);
    server.seed = TLM_SEED;
    server.max_tokens = TLM_MAX_TOKENS;
    if (TLM_CORES == 2) {
        launch_core1();
        server.state.run_both = run_on_both_cores;
    }
    tlm_server_hello(&server);
    for (;;) {
        int c = uart_poll(NULL);
        if (c >= 0) tlm_server_byte(&server, (uint8_t)c);
    }
}
