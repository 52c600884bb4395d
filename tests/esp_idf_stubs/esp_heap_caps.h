/* esp_heap_caps.h (ESP-IDF v5.x): the capability-based heap. */
#ifndef ESP_HEAP_CAPS_H
#define ESP_HEAP_CAPS_H

#include <stddef.h>
#include <stdint.h>

#define MALLOC_CAP_8BIT (1 << 2)        /* byte-addressable */
#define MALLOC_CAP_SPIRAM (1 << 10)     /* external PSRAM */
#define MALLOC_CAP_INTERNAL (1 << 11)   /* on-chip RAM */

void *heap_caps_aligned_alloc(size_t alignment, size_t size, uint32_t caps);
void heap_caps_free(void *ptr);
size_t heap_caps_get_free_size(uint32_t caps);
size_t heap_caps_get_largest_free_block(uint32_t caps);

#endif
