/* The ESP-IDF calls of firmware_esp32/main/main.c, done on the host, so that the firmware runs
   as a program in the tests (tests/test_firmware_glue.py): the console is stdin and stdout,
   the model partition a file, the second core a thread, and the two heaps (internal RAM,
   PSRAM) counters with the sizes a test gives. Set in the environment:

       IDF_MODEL_PARTITION  a file with the partition's bytes (unset: the table has no "model")
       IDF_INTERNAL_RAM     bytes of internal RAM free at app_main
       IDF_PSRAM            bytes of PSRAM (0 or unset: none)
       IDF_DATA_WINDOW      the most esp_partition_mmap maps (unset: any size)

   It stands in for ESP-IDF's behaviour as far as main.c relies on it, nothing more. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver/uart.h"
#include "driver/usb_serial_jtag.h"
#include "esp_heap_caps.h"
#include "esp_partition.h"
#include "esp_timer.h"
#include "freertos/task.h"

#define ESP_ERR_NO_MEM 0x101
#define ESP_ERR_INVALID_SIZE 0x104

void app_main(void);

static size_t setting(const char *name) {
    const char *value = getenv(name);
    return value ? (size_t)strtoull(value, NULL, 0) : 0;
}

void _esp_error_check_failed(esp_err_t rc, const char *file, int line, const char *function,
                             const char *expression) {
    fprintf(stderr, "ESP_ERROR_CHECK failed: %#x at %s:%d in %s: %s\n", (unsigned)rc, file,
            line, function, expression);
    abort();
}

int64_t esp_timer_get_time(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* ---- the heaps: one block of each kind of memory, counted, not placed ---- */

#define MAX_BLOCKS 16

static struct { void *block; size_t size; int psram; } blocks[MAX_BLOCKS];
static size_t used[2];                    /* internal, PSRAM */

static size_t room(int psram) {
    size_t limit = setting(psram ? "IDF_PSRAM" : "IDF_INTERNAL_RAM");
    return limit > used[psram] ? limit - used[psram] : 0;
}

/* Takes internal RAM for the system's own buffers and stacks; 0 when there is too little. */
static int use_internal(size_t size) {
    if (size > room(0)) return 0;
    used[0] += size;
    return 1;
}

void *heap_caps_aligned_alloc(size_t alignment, size_t size, uint32_t caps) {
    int psram = !(caps & MALLOC_CAP_INTERNAL) && (caps & MALLOC_CAP_SPIRAM);
    void *block = NULL;
    if (!(caps & MALLOC_CAP_8BIT) || size > room(psram)) return NULL;
    for (int i = 0; i < MAX_BLOCKS; i++) {
        if (blocks[i].block) continue;
        if (posix_memalign(&block, alignment, size ? size : 1) != 0) return NULL;
        blocks[i].block = block;
        blocks[i].size = size;
        blocks[i].psram = psram;
        used[psram] += size;
        return block;
    }
    return NULL;
}

void heap_caps_free(void *block) {
    for (int i = 0; i < MAX_BLOCKS; i++) {
        if (!block || blocks[i].block != block) continue;
        used[blocks[i].psram] -= blocks[i].size;
        blocks[i].block = NULL;
        free(block);
    }
}

size_t heap_caps_get_free_size(uint32_t caps) {
    return room(!(caps & MALLOC_CAP_INTERNAL) && (caps & MALLOC_CAP_SPIRAM));
}

size_t heap_caps_get_largest_free_block(uint32_t caps) { return heap_caps_get_free_size(caps); }

/* ---- the model partition ---- */

static esp_partition_t model_partition = {NULL, ESP_PARTITION_TYPE_DATA,
                                          ESP_PARTITION_SUBTYPE_DATA_UNDEFINED, 0x110000, 0,
                                          0x1000, "model", false};
static uint8_t *partition_bytes;

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype,
                                                const char *label) {
    const char *path = getenv("IDF_MODEL_PARTITION");
    FILE *file;
    long size;
    if (type != ESP_PARTITION_TYPE_DATA || subtype != ESP_PARTITION_SUBTYPE_ANY ||
        strcmp(label, "model") != 0 || !path || !(file = fopen(path, "rb")))
        return NULL;
    fseek(file, 0, SEEK_END);
    size = ftell(file);
    rewind(file);
    /* the flash mapping starts on a 64 KiB page */
    if (size <= 0 || posix_memalign((void **)&partition_bytes, 0x10000, (size_t)size) != 0 ||
        fread(partition_bytes, 1, (size_t)size, file) != (size_t)size) {
        fclose(file);
        return NULL;
    }
    fclose(file);
    model_partition.size = (uint32_t)size;
    return &model_partition;
}

esp_err_t esp_partition_read(const esp_partition_t *partition, size_t src_offset, void *dst,
                             size_t size) {
    if (src_offset > partition->size || size > partition->size - src_offset)
        return ESP_ERR_INVALID_SIZE;
    memcpy(dst, partition_bytes + src_offset, size);
    return ESP_OK;
}

esp_err_t esp_partition_mmap(const esp_partition_t *partition, size_t offset, size_t size,
                             esp_partition_mmap_memory_t memory, const void **out_ptr,
                             esp_partition_mmap_handle_t *out_handle) {
    size_t window = setting("IDF_DATA_WINDOW");
    if (offset > partition->size || size > partition->size - offset ||
        memory != ESP_PARTITION_MMAP_DATA)
        return ESP_ERR_INVALID_SIZE;
    if (window && size > window) return ESP_ERR_NO_MEM;
    *out_ptr = partition_bytes + offset;
    *out_handle = 1;
    return ESP_OK;
}

/* ---- the console: stdin and stdout ---- */

/* The program ends when it waits for a byte after the end of stdin (an answer under way when
   stdin ends is finished first). */
static int console_read(void *buf, uint32_t length, TickType_t wait) {
    static int ended;
    struct pollfd input = {0, POLLIN, 0};
    if (wait == 0 && (ended || poll(&input, 1, 0) <= 0)) return 0;
    ssize_t n = ended ? 0 : read(0, buf, length);
    if (n > 0) return (int)n;
    ended = 1;
    if (wait == 0) return 0;
    exit(0);
}

static int console_write(const void *src, size_t size) {
    fwrite(src, 1, size, stdout);
    fflush(stdout);
    return (int)size;
}

esp_err_t uart_driver_install(uart_port_t uart_num, int rx_buffer_size, int tx_buffer_size,
                              int queue_size, QueueHandle_t *uart_queue, int intr_alloc_flags) {
    (void)queue_size, (void)uart_queue, (void)intr_alloc_flags;
    if (uart_num != UART_NUM_0) return ESP_FAIL;
    return use_internal((size_t)rx_buffer_size + (size_t)tx_buffer_size) ? ESP_OK
                                                                          : ESP_ERR_NO_MEM;
}

int uart_read_bytes(uart_port_t uart_num, void *buf, uint32_t length, TickType_t ticks_to_wait) {
    (void)uart_num;
    return console_read(buf, length, ticks_to_wait);
}

int uart_write_bytes(uart_port_t uart_num, const void *src, size_t size) {
    (void)uart_num;
    return console_write(src, size);
}

esp_err_t usb_serial_jtag_driver_install(usb_serial_jtag_driver_config_t *config) {
    return use_internal(config->rx_buffer_size + config->tx_buffer_size) ? ESP_OK
                                                                          : ESP_ERR_NO_MEM;
}

int usb_serial_jtag_read_bytes(void *buf, uint32_t length, uint32_t ticks_to_wait) {
    return console_read(buf, length, ticks_to_wait);
}

int usb_serial_jtag_write_bytes(const void *src, size_t size, uint32_t ticks_to_wait) {
    (void)ticks_to_wait;
    return console_write(src, size);
}

/* ---- tasks: threads, each with a notification count ---- */

struct tskTaskControlBlock {
    pthread_mutex_t lock;
    pthread_cond_t notified;
    uint32_t count;
    TaskFunction_t code;
    void *param;
};

static struct tskTaskControlBlock main_task = {PTHREAD_MUTEX_INITIALIZER,
                                               PTHREAD_COND_INITIALIZER, 0, NULL, NULL};
static __thread TaskHandle_t current = &main_task;

static void *task_thread(void *task) {
    current = task;
    current->code(current->param);
    return NULL;
}

BaseType_t xTaskCreatePinnedToCore(TaskFunction_t pxTaskCode, const char *const pcName,
                                   const uint32_t usStackDepth, void *const pvParameters,
                                   UBaseType_t uxPriority, TaskHandle_t *const pxCreatedTask,
                                   const BaseType_t xCoreID) {
    TaskHandle_t task = calloc(1, sizeof *task);
    pthread_t thread;
    (void)pcName, (void)uxPriority, (void)xCoreID;
    if (!task || !use_internal(usStackDepth)) return 0;     /* the stack: internal RAM */
    pthread_mutex_init(&task->lock, NULL);
    pthread_cond_init(&task->notified, NULL);
    task->code = pxTaskCode;
    task->param = pvParameters;
    if (pxCreatedTask) *pxCreatedTask = task;
    return pthread_create(&thread, NULL, task_thread, task) == 0 ? pdPASS : 0;
}

TaskHandle_t xTaskGetCurrentTaskHandle(void) { return current; }

UBaseType_t uxTaskPriorityGet(TaskHandle_t xTask) {
    (void)xTask;
    return 1;                             /* the main task's priority */
}

BaseType_t xTaskGenericNotify(TaskHandle_t xTaskToNotify, UBaseType_t uxIndexToNotify,
                              uint32_t ulValue, eNotifyAction eAction,
                              uint32_t *pulPreviousNotificationValue) {
    (void)uxIndexToNotify, (void)ulValue, (void)pulPreviousNotificationValue;
    if (eAction != eIncrement) abort();   /* the only action main.c uses */
    pthread_mutex_lock(&xTaskToNotify->lock);
    xTaskToNotify->count++;
    pthread_cond_signal(&xTaskToNotify->notified);
    pthread_mutex_unlock(&xTaskToNotify->lock);
    return pdPASS;
}

uint32_t ulTaskGenericNotifyTake(UBaseType_t uxIndexToWaitOn, BaseType_t xClearCountOnExit,
                                 TickType_t xTicksToWait) {
    uint32_t count;
    (void)uxIndexToWaitOn, (void)xTicksToWait;   /* main.c always waits without a limit */
    pthread_mutex_lock(&current->lock);
    while (current->count == 0) pthread_cond_wait(&current->notified, &current->lock);
    count = current->count;
    current->count = xClearCountOnExit ? 0 : count - 1;
    pthread_mutex_unlock(&current->lock);
    return count;
}

int main(void) {
    app_main();
    return 0;
}
