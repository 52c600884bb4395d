/* The pico-sdk calls of firmware_rp2040/main.c, done on the host, so that the firmware runs as
   a program in the tests (tests/test_firmware_glue_rp2040.py): stdio is stdin and stdout, the
   XIP flash a 2 MiB mapping at XIP_BASE filled from a file, and core 1 a thread, with the two
   inter-core FIFOs between them. Set in the environment:

       PICO_FLASH    a file with the flash's first bytes (the rest reads as erased, 0xFF)

   At exit it writes to stderr how many tasks core 1 ran. It stands in for the pico-sdk's
   behaviour as far as main.c relies on it, nothing more. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hardware/clocks.h"
#include "hardware/regs/addressmap.h"
#include "hardware/sync.h"
#include "pico/multicore.h"
#include "pico/stdlib.h"

#define PICO_ERROR_TIMEOUT (-1)

/* ---- the flash, mapped where the RP2040 maps it, before main runs ---- */

__attribute__((constructor)) static void map_flash(void) {
    const char *path = getenv("PICO_FLASH");
    uint8_t *flash = mmap((void *)(uintptr_t)XIP_BASE, PICO_FLASH_SIZE_BYTES,
                          PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                          MAP_FIXED_NOREPLACE, -1, 0);
    if (flash != (uint8_t *)(uintptr_t)XIP_BASE) {
        perror("mapping the flash at XIP_BASE");
        exit(2);
    }
    memset(flash, 0xFF, PICO_FLASH_SIZE_BYTES);
    FILE *file = path ? fopen(path, "rb") : NULL;
    if (file) {
        size_t n = fread(flash, 1, PICO_FLASH_SIZE_BYTES, file);
        (void)n;
        fclose(file);
    }
    mprotect(flash, PICO_FLASH_SIZE_BYTES, PROT_READ);
}

bool set_sys_clock_khz(uint32_t freq_khz, bool required) {
    (void)freq_khz, (void)required;
    return true;
}

/* ---- stdio: stdin and stdout ---- */

bool stdio_init_all(void) { return true; }

/* A byte from stdin, waiting up to timeout_us. The program ends when it waits for a byte after
   the end of stdin (an answer under way, which polls with no wait, is finished first). */
int getchar_timeout_us(uint32_t timeout_us) {
    static int ended;
    struct pollfd input = {0, POLLIN, 0};
    unsigned char c;
    if (!ended && poll(&input, 1, timeout_us ? -1 : 0) > 0) {
        if (read(0, &c, 1) == 1) return c;
        ended = 1;                  /* readable, and nothing to read: the end of stdin */
    }
    if (ended && timeout_us) exit(0);
    return PICO_ERROR_TIMEOUT;
}

int putchar_raw(int c) {
    putchar(c);
    if (c == '\n') fflush(stdout);
    return c;
}

uint32_t time_us_32(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint32_t)((uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000);
}

/* ---- core 1: a thread; the SIO's two FIFOs, 8 words each way ---- */

typedef struct {
    uint32_t words[8];
    unsigned head, count;
} fifo;

static fifo to_core[2];           /* indexed by the core that pops */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static __thread int this_core;    /* 0 for main's thread */
static unsigned core1_tasks;

static void report(void) { fprintf(stderr, "core 1 ran %u tasks\n", core1_tasks); }

void __dmb(void) { __sync_synchronize(); }

static void *core1_thread(void *entry) {
    this_core = 1;
    ((void (*)(void))entry)();
    return NULL;
}

void multicore_launch_core1(void (*entry)(void)) {
    pthread_t thread;
    atexit(report);
    if (pthread_create(&thread, NULL, core1_thread, (void *)entry) != 0) abort();
}

void multicore_fifo_push_blocking(uint32_t data) {
    fifo *f = &to_core[!this_core];
    pthread_mutex_lock(&lock);
    while (f->count == 8) pthread_cond_wait(&changed, &lock);
    f->words[(f->head + f->count++) % 8] = data;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

uint32_t multicore_fifo_pop_blocking(void) {
    fifo *f = &to_core[this_core];
    pthread_mutex_lock(&lock);
    while (f->count == 0) pthread_cond_wait(&changed, &lock);
    uint32_t data = f->words[f->head];
    f->head = (f->head + 1) % 8;
    f->count--;
    if (this_core == 1) core1_tasks++;     /* core 1 pops once per task it is given */
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return data;
}
