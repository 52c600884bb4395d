/* tinylm on the ESP32, ESP32-S3 and ESP32-C3 (ESP-IDF v5): the serial line protocol
   (docs/protocol.md) on the console port, with the model from the flash partition "model",
   where `tinylm flash esp32` writes it (docs/flashing.md).

   This file is only the board's side: the port, the clock, where the model and the arena go,
   and the second core. The protocol is tinylm/runtime/csrc/serve.c and the model tinylm/runtime/csrc/tinylm.c,
   the same code every other board runs. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "esp_err.h"
#include "esp_heap_caps.h"
#include "esp_partition.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sdkconfig.h"
#if CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG
#include "driver/usb_serial_jtag.h"
#elif CONFIG_ESP_CONSOLE_UART
#include "driver/uart.h"
#else
#error "the protocol runs on the console: set it to UART or USB Serial/JTAG in menuconfig"
#endif

#include "serve.h"

#define MODEL_PARTITION "model"
#define PORT_BUFFER 1024              /* bytes each way between the port and this task */
#define SYSTEM_RESERVE (16 * 1024)    /* internal RAM left to ESP-IDF after arena and model */
#define ALIGNMENT 16                  /* what the runtime needs of the model and the arena */

static tlm_server server;

/* ---- the console port: UART0 through a USB-serial chip, or the chip's own USB ---- */

#if CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG
static void port_open(void) {
    usb_serial_jtag_driver_config_t config = USB_SERIAL_JTAG_DRIVER_CONFIG_DEFAULT();
    config.rx_buffer_size = config.tx_buffer_size = PORT_BUFFER;
    ESP_ERROR_CHECK(usb_serial_jtag_driver_install(&config));
}

static int port_read(uint8_t *c, TickType_t wait) {
    return usb_serial_jtag_read_bytes(c, 1, wait) == 1;
}

static void port_write(void *ctx, const uint8_t *bytes, uint32_t n) {
    (void)ctx;
    usb_serial_jtag_write_bytes(bytes, n, portMAX_DELAY);
}
#else
#define CONSOLE_UART ((uart_port_t)CONFIG_ESP_CONSOLE_UART_NUM)

/* The boot code has already set the console UART's pins and baud rate (115200); the driver
   adds the buffers and the interrupt. */
static void port_open(void) {
    ESP_ERROR_CHECK(uart_driver_install(CONSOLE_UART, PORT_BUFFER, PORT_BUFFER, 0, NULL, 0));
}

static int port_read(uint8_t *c, TickType_t wait) {
    return uart_read_bytes(CONSOLE_UART, c, 1, wait) == 1;
}

static void port_write(void *ctx, const uint8_t *bytes, uint32_t n) {
    (void)ctx;
    uart_write_bytes(CONSOLE_UART, bytes, n);
}
#endif

static int port_poll(void *ctx) {
    uint8_t c;
    (void)ctx;
    return port_read(&c, 0) ? c : -1;
}

static uint32_t micros(void *ctx) {
    (void)ctx;
    return (uint32_t)esp_timer_get_time();
}

/* ---- the second core: half of every matrix (tlm_state.run_both) ---- */

#if portNUM_PROCESSORS > 1
typedef struct {
    TaskHandle_t worker, caller;
    void (*task)(void *arg, uint32_t part);
    void *arg;
} second_core;

static second_core core1;

/* On core 1: wait for a half, do it, say so. Blocking (not spinning) lets core 1's idle task
   run between matrices. */
static void core1_loop(void *param) {
    second_core *c = param;
    for (;;) {
        ulTaskNotifyTake(pdTRUE, portMAX_DELAY);
        c->task(c->arg, 1);
        xTaskNotifyGive(c->caller);
    }
}

static void run_both(void *ctx, void (*task)(void *arg, uint32_t part), void *arg) {
    second_core *c = ctx;
    c->task = task;
    c->arg = arg;
    xTaskNotifyGive(c->worker);
    task(arg, 0);
    ulTaskNotifyTake(pdTRUE, portMAX_DELAY);   /* until core 1 has done its half */
}

/* Before the arena and the model take the internal RAM: the task's stack comes from it.
   Returns 0 when the task could not be made; the runtime then does both halves here. */
static int start_core1(void) {
    core1.caller = xTaskGetCurrentTaskHandle();
    return xTaskCreatePinnedToCore(core1_loop, "tinylm core 1", 4096, &core1,
                                   uxTaskPriorityGet(NULL), &core1.worker, 1) == pdPASS;
}

static void use_core1(tlm_state *state) {
    state->run_both = run_both;
    state->run_both_ctx = &core1;
}
#endif

/* ---- memory ---- */

/* ALIGNMENT-aligned memory of these capabilities, or NULL if it would leave ESP-IDF less than
   SYSTEM_RESERVE bytes of internal RAM. MALLOC_CAP_8BIT: part of the ESP32's internal RAM
   (IRAM) takes only 32-bit reads and writes. */
static void *take(size_t size, uint32_t caps) {
    void *block = heap_caps_aligned_alloc(ALIGNMENT, size, caps | MALLOC_CAP_8BIT);
    if (block && heap_caps_get_free_size(MALLOC_CAP_INTERNAL) < SYSTEM_RESERVE) {
        heap_caps_free(block);
        return NULL;
    }
    return block;
}

/* The arena (activations and key/value cache, written at every token) goes first, for the
   model's whole context: into internal RAM, else PSRAM; else into the internal RAM there is,
   and tlm_server_init gives the model the longest context that fits. */
static void *place_arena(size_t want, size_t *size) {
    void *arena = take(want, MALLOC_CAP_INTERNAL);
    if (!arena) arena = take(want, MALLOC_CAP_SPIRAM);
    *size = want;
    if (!arena) {
        /* the largest block less what take() must leave free, and the heap's own overhead */
        size_t largest = heap_caps_get_largest_free_block(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT);
        size_t keep = SYSTEM_RESERVE + 1024;
        *size = largest > keep ? largest - keep : 0;
        arena = *size ? take(*size, MALLOC_CAP_INTERNAL) : NULL;
    }
    if (!arena) *size = 0;
    return arena;
}

/* Then the model, read-only, is copied where it is read fastest if it fits: internal RAM,
   else PSRAM (the same cache as the flash mapping, but 4 or 8 data lines where flash in the
   default DIO mode has 2, at the flash's clock: sdkconfig.defaults.<chip>). Returns the
   @ready line's weights= value. */
static const char *place_model(const void **model, size_t size) {
    const char *where = "sram";
    uint8_t *copy = take(size, MALLOC_CAP_INTERNAL);
    if (!copy) {
        copy = take(size, MALLOC_CAP_SPIRAM);
        where = "psram";
    }
    if (!copy) return "flash";
    memcpy(copy, *model, size);
    *model = copy;
    return where;
}

/* ---- the model partition ---- */

/* How much of the partition to map: the model's own size from its header (docs/format.md),
   since the data window is only 4 MB on the ESP32 and the partition may be larger; without a
   model, its first bytes, enough for the no-model message. */
static size_t model_length(const esp_partition_t *partition) {
    uint8_t header[12];
    uint32_t file_size;
    if (esp_partition_read(partition, 0, header, sizeof header) != ESP_OK ||
        memcmp(header, "TLMB", 4) != 0)
        return sizeof header;
    memcpy(&file_size, header + 8, sizeof file_size);
    if (file_size < sizeof header) return sizeof header;
    return file_size < partition->size ? file_size : partition->size;   /* tlm_load: truncated */
}

/* The model, mapped and then copied where place_model says, with its arena. */
typedef struct {
    const void *bytes;
    size_t room;                /* bytes readable there (0: nothing mapped) */
    void *arena;
    size_t arena_size;
    const char *weights;        /* for @ready: sram, psram or flash */
    const char *error;          /* why a model that is there cannot be used, or NULL */
} placed_model;

static placed_model place(const esp_partition_t *partition) {
    placed_model placed = {NULL, model_length(partition), NULL, 0, "flash", NULL};
    esp_partition_mmap_handle_t mapping;
    tlm_model model;            /* loaded here for its sizes; tlm_server_init checks it again */
    if (esp_partition_mmap(partition, 0, placed.room, ESP_PARTITION_MMAP_DATA, &placed.bytes,
                           &mapping) != ESP_OK) {
        placed.bytes = NULL;
        placed.room = 0;
        placed.error = "the model is larger than the flash the chip can map for data (4 MB on "
                       "the ESP32, less the firmware's own constants)";
    } else if (tlm_load(&model, placed.bytes, placed.room) == NULL) {
        placed.arena = place_arena(tlm_arena_size(&model, model.max_seq_len), &placed.arena_size);
        placed.weights = place_model(&placed.bytes, model.file_size);
    }
    return placed;
}

void app_main(void) {
    static char flash_address[24];
    const tlm_io io = {port_write, port_poll, micros, NULL};
    const char *where = "partition " MODEL_PARTITION, *how_to_flash = "tinylm flash esp32";
    placed_model model = {NULL, 0, NULL, 0, "flash", NULL};
    port_open();
#if portNUM_PROCESSORS > 1
    int two_cores = start_core1();
#endif
    const esp_partition_t *partition = esp_partition_find_first(
        ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_ANY, MODEL_PARTITION);
    if (partition) {
        snprintf(flash_address, sizeof flash_address, "flash 0x%lx",
                 (unsigned long)partition->address);
        where = flash_address;
        model = place(partition);
    } else {
        how_to_flash = "a firmware built with tinylm/boards/esp32_partitions.csv (this one "
                       "has no model partition), then tinylm flash esp32";
    }
    tlm_server_init(&server, &io, CONFIG_IDF_TARGET, model.bytes, model.room, where,
                    how_to_flash, model.arena, model.arena_size);
    if (model.error) {
        server.model_code = "bad-model";
        server.model_error = model.error;
    }
    server.weights = model.weights;
#if portNUM_PROCESSORS > 1
    if (two_cores) use_core1(&server.state);
#endif
    tlm_server_hello(&server);
    for (;;) {
        uint8_t c;
        if (port_read(&c, portMAX_DELAY)) tlm_server_byte(&server, c);
    }
}
