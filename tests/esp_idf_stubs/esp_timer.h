/* esp_timer.h (ESP-IDF v5.x): microseconds since boot. */
#ifndef ESP_TIMER_H
#define ESP_TIMER_H

#include <stdint.h>

int64_t esp_timer_get_time(void);

#endif
