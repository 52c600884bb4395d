/* Start-up of the bare-metal RAM image: the vector table and the reset handler (memset and
   memcpy are in tinylm/runtime/csrc/freestanding.c). */
#include <stdint.h>

extern uint32_t __bss_start[], __bss_end[], __stack_top[];
int main(void);

void reset_handler(void);

/* A fault has no one to report to on a bare UART protocol: stop where a debugger can look. */
static void fault_handler(void) {
    for (;;) __asm__ volatile("bkpt #0");
}

/* Initial stack pointer, reset, then the exceptions up to SysTick; no interrupt is enabled.
   Core 1 takes the same table (multicore.c). */
__attribute__((section(".vectors"), used))
void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, reset_handler, fault_handler, fault_handler,
};

void reset_handler(void) {
    /* The loader copies the image but need not clear what lies past it. */
    for (uint32_t *p = __bss_start; p < __bss_end; p++) *p = 0;
    main();
    for (;;) __asm__ volatile("wfi");
}
