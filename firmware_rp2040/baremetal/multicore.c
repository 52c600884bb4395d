/* The RP2040's second core without the SDK: launched with the bootrom's handshake over the
   inter-core FIFOs (datasheet 2.8.2; pico-sdk's multicore_launch_core1 does the same), then
   running part 1 of each task of tlm_state.run_both while core 0 runs part 0. The cores talk
   as pico-sdk's multicore_fifo_push_blocking and _pop_blocking do: a word written to the
   FIFO and an event (SEV) after it; a reader with nothing to read waits for an event (WFE),
   asleep. */
#include "multicore.h"

#define REG(address) (*(volatile uint32_t *)(address))
#define SIO 0xD0000000u
#define FIFO_ST (SIO + 0x050)
#define FIFO_WR (SIO + 0x054)
#define FIFO_RD (SIO + 0x058)
#define FIFO_VLD (1u << 0)          /* a word to read */
#define FIFO_RDY (1u << 1)          /* room to write */

extern void (*const vectors[16])(void);
extern uint32_t __core1_stack_top[];

static void sev(void) { __asm__ volatile("sev"); }
static void wfe(void) { __asm__ volatile("wfe"); }

/* The task is in memory before the other core hears of it (the FIFO's word follows). */
static void memory_barrier(void) { __asm__ volatile("dmb" ::: "memory"); }

static void push(uint32_t word) {
    while (!(REG(FIFO_ST) & FIFO_RDY)) wfe();
    REG(FIFO_WR) = word;
    sev();
}

static uint32_t pop(void) {
    while (!(REG(FIFO_ST) & FIFO_VLD)) wfe();
    return REG(FIFO_RD);
}

static void (*task_of_core1)(void *arg, uint32_t part);
static void *argument_of_core1;

static void core1_main(void) {
    for (;;) {
        pop();                          /* a task */
        memory_barrier();
        task_of_core1(argument_of_core1, 1);
        memory_barrier();
        push(0);                        /* done */
    }
}

void launch_core1(void) {
    /* the vector table, stack pointer and entry point (with the Thumb bit) after 0, 0, 1;
       core 1 echoes each word, and anything else starts the sequence over */
    const uint32_t sequence[6] = {0, 0, 1, (uint32_t)vectors, (uint32_t)__core1_stack_top,
                                  (uint32_t)core1_main};
    for (uint32_t i = 0; i < 6;) {
        if (sequence[i] == 0) {         /* a 0 follows an empty FIFO, and wakes core 1 */
            while (REG(FIFO_ST) & FIFO_VLD) (void)REG(FIFO_RD);
            sev();
        }
        push(sequence[i]);
        i = pop() == sequence[i] ? i + 1 : 0;
    }
}

void run_on_both_cores(void *ctx, void (*task)(void *arg, uint32_t part), void *arg) {
    (void)ctx;
    task_of_core1 = task;
    argument_of_core1 = arg;
    memory_barrier();
    push(1);
    task(arg, 0);
    pop();
    memory_barrier();
}
