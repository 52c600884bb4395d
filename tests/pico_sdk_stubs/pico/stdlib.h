/* Declarations only (see ../README.md): pico/stdlib.h, with pico/stdio.h, hardware/timer.h
   and the board header it brings in. */
#ifndef PICO_STDLIB_H
#define PICO_STDLIB_H

#include <stdbool.h>
#include <stdint.h>

#define PICO_FLASH_SIZE_BYTES (2 * 1024 * 1024)   /* boards/pico.h */

bool stdio_init_all(void);
int getchar_timeout_us(uint32_t timeout_us);
int putchar_raw(int c);
uint32_t time_us_32(void);

#endif
