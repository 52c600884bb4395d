/* tinylm on an RP2040 board, with the pico-sdk: the device loop (tinylm/runtime/csrc/serve.c, the
   protocol of docs/protocol.md) over USB CDC and UART0 at once, with the model that
   `tinylm flash rp2040` put at flash offset 1 MiB (docs/flashing.md), and the work of a token
   (a matrix's rows, attention's heads, the sampler's weights: tlm_state.run_both) shared
   between the two cores. This file is only the port, the clock, the model's place and the
   second core.

   The SRAM the firmware leaves is one static pool, SRAM_POOL_BYTES: the runtime's arena for
   TLM_CONTEXT tokens (0: the model's, or the longest that fits; cmake -DTLM_CONTEXT=N), and
   before it a copy of the model when both fit, else of what weights fit (tlm_server_place;
   tinylm/boards/memplan.py plans with the same figures). */
#include <stdint.h>

#include "hardware/clocks.h"
#include "hardware/regs/addressmap.h"
#include "hardware/sync.h"
#include "pico/multicore.h"
#include "pico/stdlib.h"
#include "serve.h"

#define MODEL_FLASH_OFFSET 0x100000u    /* 1 MiB: the firmware below, the model above */
#define MODEL_IN_FLASH ((const uint8_t *)(XIP_BASE + MODEL_FLASH_OFFSET))
#define MODEL_ROOM ((size_t)PICO_FLASH_SIZE_BYTES - MODEL_FLASH_OFFSET)   /* from the board */
#define IDLE_WAIT_US 0xFFFFFFFFu    /* between lines: wait for a byte (71 minutes, then again) */
#ifndef TLM_CONTEXT
#define TLM_CONTEXT 0
#endif

/* 264 KiB of SRAM less 26 KiB for the stacks (the two 4 KiB scratch banks), the server's state
   and the SDK's data: see tinylm/boards/memplan.py for how the reserve was measured. */
#define SRAM_POOL_BYTES (238u * 1024u)

static uint8_t pool[SRAM_POOL_BYTES] __attribute__((aligned(16)));

/* ---- the port: pico stdio, which is USB CDC and UART0 (GP0/GP1, 115200 baud) together ---- */

static void port_write(void *ctx, const uint8_t *bytes, uint32_t n) {
    (void)ctx;
    /* raw: the protocol's lines end in LF; stdio's usual LF to CR LF step is not needed */
    while (n--) putchar_raw(*bytes++);
}

static int port_poll(void *ctx) {
    (void)ctx;
    int c = getchar_timeout_us(0);
    return c < 0 ? -1 : c;
}

static uint32_t port_micros(void *ctx) {
    (void)ctx;
    return time_us_32();
}

/* ---- the second core: runs part 1 of each task while core 0 runs part 0 ---- */

static void (*core1_task)(void *arg, uint32_t part);
static void *core1_arg;

static void core1_loop(void) {
    for (;;) {
        multicore_fifo_pop_blocking();          /* a task is waiting */
        core1_task(core1_arg, 1);
        multicore_fifo_push_blocking(0);        /* done */
    }
}

static void run_on_both_cores(void *ctx, void (*task)(void *arg, uint32_t part), void *arg) {
    (void)ctx;
    core1_task = task;
    core1_arg = arg;
    __dmb();    /* the task is in memory before core 1 hears of it */
    multicore_fifo_push_blocking(1);
    task(arg, 0);
    multicore_fifo_pop_blocking();
}

int main(void) {
    static tlm_server server;
    const tlm_io io = {port_write, port_poll, port_micros, NULL};
    set_sys_clock_khz(133000, true);    /* first: the UART's baud divisor follows the clock */
    stdio_init_all();
    multicore_launch_core1(core1_loop);
    tlm_server_init(&server, &io, "rp2040", MODEL_IN_FLASH, MODEL_ROOM, "flash 0x10100000",
                    "tinylm flash rp2040", pool, sizeof pool);
    tlm_server_place(&server, pool, sizeof pool, TLM_CONTEXT);
    server.state.run_both = run_on_both_cores;
    tlm_server_hello(&server);    /* USB drops it if no host listens yet; hosts send 0x05 */
    for (;;) {
        int c = getchar_timeout_us(IDLE_WAIT_US);
        if (c >= 0) tlm_server_byte(&server, (uint8_t)c);
    }
}
