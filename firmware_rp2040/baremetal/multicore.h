/* The RP2040's second core in the bare-metal firmware (multicore.c). */
#ifndef TINYLM_BAREMETAL_MULTICORE_H
#define TINYLM_BAREMETAL_MULTICORE_H

#include <stdint.h>

/* Starts core 1 from the bootrom, where it waits after reset, on its own stack; it then
   waits for tasks from run_on_both_cores. */
void launch_core1(void);

/* tlm_state.run_both: task(arg, 1) on core 1 while task(arg, 0) runs here; returns when both
   are done. */
void run_on_both_cores(void *ctx, void (*task)(void *arg, uint32_t part), void *arg);

#endif
