/* The two memory functions GCC emits calls to (struct copies, zeroing arrays) even in code
   that calls neither, for the bare-metal programs that have no C library: the RP2040 image
   (firmware_rp2040/baremetal) and the RV32 machine of the ESP32-C3 benchmark
   (firmware_esp32/riscv_virt). Built with -fno-builtin -fno-tree-loop-distribute-patterns, so
   that these loops are not themselves turned back into calls to memset and memcpy. */
#include <stddef.h>
#include <stdint.h>

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
