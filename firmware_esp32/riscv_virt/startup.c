/* Start-up on qemu's `virt` machine: set the global and stack pointers, clear .bss, run main,
   then end qemu through the SiFive test device with main's result as its exit status (memset
   and memcpy are in tinylm/runtime/csrc/freestanding.c). */
#include <stdint.h>

#define TEST_DEVICE ((volatile uint32_t *)0x100000u)
#define TEST_PASS 0x5555u                /* qemu exits with status 0 */
#define TEST_FAIL 0x3333u                /* ... or with the status in the upper 16 bits */

extern uint32_t __bss_start[], __bss_end[];
int main(void);
void start(void);

/* gp must be set without relaxation: relaxed, `la gp` would be made relative to gp itself. */
__asm__(".section .text.start, \"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        ".option push\n"
        ".option norelax\n"
        "    la gp, __global_pointer$\n"
        ".option pop\n"
        "    la sp, __stack_top\n"
        "    j start\n");

void start(void) {
    for (uint32_t *p = __bss_start; p < __bss_end; p++) *p = 0;
    int status = main();
    *TEST_DEVICE = status == 0 ? TEST_PASS : TEST_FAIL | (uint32_t)status << 16;
    for (;;) __asm__ volatile("wfi");
}
