/* 32-bit division on the RP2040's hardware divider (datasheet 2.3.1.5), in place of libgcc's
   shift-and-subtract loops: the compiler calls these for / and % on a Cortex-M0+, which has
   no divide instruction. The pico-sdk does the same for the SDK firmware (pico_divider), so
   the benchmark counts what a board runs. A division is written to the SIO's dividend and
   divisor registers and its quotient and remainder can be read 8 cycles later; nothing
   interrupts this firmware, so no state need be saved around it. */
#include <stdint.h>

#define SIO_DIV ((volatile uint32_t *)0xD0000060u)
enum { UDIVIDEND, UDIVISOR, SDIVIDEND, SDIVISOR, QUOTIENT, REMAINDER };

/* Four taken branches, two cycles each: the divider's 8 cycles. */
#define WAIT_8_CYCLES() __asm__ volatile("b 1f\n1: b 1f\n1: b 1f\n1: b 1f\n1:" ::: "memory")

/* The run-time ABI returns a quotient and remainder pair in r0 and r1: a 64-bit value. */
static uint64_t result(void) {
    uint32_t quotient = SIO_DIV[QUOTIENT];
    return (uint64_t)SIO_DIV[REMAINDER] << 32 | quotient;
}

uint64_t __aeabi_uidivmod(uint32_t dividend, uint32_t divisor) {
    SIO_DIV[UDIVIDEND] = dividend;
    SIO_DIV[UDIVISOR] = divisor;
    WAIT_8_CYCLES();
    return result();
}

uint64_t __aeabi_idivmod(int32_t dividend, int32_t divisor) {
    SIO_DIV[SDIVIDEND] = (uint32_t)dividend;
    SIO_DIV[SDIVISOR] = (uint32_t)divisor;
    WAIT_8_CYCLES();
    return result();
}

uint32_t __aeabi_uidiv(uint32_t dividend, uint32_t divisor) {
    SIO_DIV[UDIVIDEND] = dividend;
    SIO_DIV[UDIVISOR] = divisor;
    WAIT_8_CYCLES();
    return SIO_DIV[QUOTIENT];
}

int32_t __aeabi_idiv(int32_t dividend, int32_t divisor) {
    SIO_DIV[SDIVIDEND] = (uint32_t)dividend;
    SIO_DIV[SDIVISOR] = (uint32_t)divisor;
    WAIT_8_CYCLES();
    return (int32_t)SIO_DIV[QUOTIENT];
}
