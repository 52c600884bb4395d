/* Declarations only (see ../README.md): hardware/clocks.h (pico/stdlib.h in SDK 1.x). */
#ifndef HARDWARE_CLOCKS_H
#define HARDWARE_CLOCKS_H

#include <stdbool.h>
#include <stdint.h>

bool set_sys_clock_khz(uint32_t freq_khz, bool required);

#endif
