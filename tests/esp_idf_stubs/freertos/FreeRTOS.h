/* freertos/FreeRTOS.h (ESP-IDF v5.x FreeRTOS port): base types and constants. */
#ifndef INC_FREERTOS_H
#define INC_FREERTOS_H

#include <stdint.h>

#include "sdkconfig.h"

typedef int BaseType_t;
typedef unsigned int UBaseType_t;
typedef uint32_t TickType_t;

#define pdTRUE ((BaseType_t)1)
#define pdPASS pdTRUE
#define portMAX_DELAY ((TickType_t)0xffffffffUL)

#ifdef CONFIG_FREERTOS_UNICORE
#define portNUM_PROCESSORS 1
#else
#define portNUM_PROCESSORS 2
#endif

#endif
