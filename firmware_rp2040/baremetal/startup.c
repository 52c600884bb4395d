/* Start-up of the bare-metal RAM image: the vector table, the reset handler, and the two
   memory functions that GCC emits calls to (struct copies and zeroing) when no C library is
   linked. */
#include <stddef.h>
#include <stdint.h>

extern uint32_t __bss_start[], __bss_end[], __stack_top[];
int main(void);

void reset_handler(void);

/* A fault has no one to report to on a bare UART protocol: stop where a debugger can look. */
static void fault_handler(void) {
    for (;;) __asm__ volatile("bkpt #0");
}

/* Initial stack pointer, reset, then the exceptions up to SysTick; no interrupt is enabled. */
__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, reset_handler, fault_handler, fault_handler,
};

void reset_handler(void) {
    /* The loader copies the image but need not clear what lies past it. */
    for (uint32_t *p = __bss_start; p < __bss_end; p++) *p = 0;
    main();
    for (;;) __asm__ volatile("wfi");
}

void *memset(void *dst, int value, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)value;
    return dst;
}

void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}
