/* tinylm device loop: the serial line protocol (docs/protocol.md) on top of the runtime, shared
   by every firmware (RP2040 bare metal and pico-sdk, ESP-IDF) and by the host build that
   serves a pseudo-terminal in the tests. A firmware supplies only the port and the clock:

       static tlm_server server;
       tlm_io io = {my_write, my_poll, my_micros, NULL};
       tlm_server_init(&server, &io, "rp2040", model_bytes, model_room, "flash 0x10100000",
                       "tinylm flash rp2040", arena, arena_bytes);
       tlm_server_hello(&server);                     // @ready, or @error no-model / bad-model
       for (;;) { int c = my_poll(NULL); if (c >= 0) tlm_server_byte(&server, (uint8_t)c); }

   No dynamic memory: the server holds the 256-byte line buffer and the runtime's state. */
#ifndef TINYLM_SERVE_H
#define TINYLM_SERVE_H

#include "tinylm.h"

#define TLM_MAX_LINE 255

typedef struct {
    void (*write)(void *ctx, const uint8_t *bytes, uint32_t n);   /* blocks until queued */
    int (*poll)(void *ctx);          /* a received byte if one is waiting, else -1; never blocks */
    uint32_t (*micros)(void *ctx);   /* a free-running microsecond clock (wraps at 2^32) */
    void *ctx;
} tlm_io;

typedef struct {
    tlm_io io;
    const char *board;               /* for @ready, e.g. "rp2040" */
    tlm_model model;
    tlm_state state;
    tlm_sampler sampler;
    const char *model_code;          /* NULL when the model is usable, else the @error code ... */
    const char *model_error;         /* ... and the message */
    const char *where, *how_to_flash;   /* "flash 0x10100000", "tinylm flash rp2040" */
    const uint8_t *model_bytes;
    size_t model_room;               /* bytes readable at model_bytes */
    const char *weights;             /* for @ready, where the weights are read from ("sram",
                                        "flash"); NULL (tlm_server_init's choice) leaves it out */
    uint32_t sram_weights;           /* bytes of the file copied to SRAM (tlm_server_place) */
    /* sampling for every answer; tlm_server_init sets `tinylm run`'s defaults */
    uint32_t temperature_q16, top_k, top_p_q16, max_tokens;
    uint64_t seed;                   /* the sampler is reseeded with it for every prompt */
    /* the line reader */
    uint8_t line[TLM_MAX_LINE + 1];
    uint32_t length, dropped;
    int discarding, last_was_cr;
    uint32_t ids[TLM_MAX_LINE + 4];  /* <bos>, a chat turn's two markers, at most one token
                                        per byte and a dummy prefix */
} tlm_server;

/* Checks the model (no-model when its magic is missing, bad-model when tlm_load refuses it),
   and gives it the longest context, up to the model's, whose arena fits. Sends nothing. */
void tlm_server_init(tlm_server *s, const tlm_io *io, const char *board, const void *model,
                     size_t model_room, const char *where, const char *how_to_flash,
                     void *arena, size_t arena_size);

/* What a firmware keeps in `memory` bytes of its SRAM for a model read from flash, where every
   token's reads go through a small cache (16 KB on the RP2040) that a larger model streams
   through at the flash chip's pace; SRAM has no such wait. The runtime's arena for `context`
   tokens (0, or a context whose arena does not fit: the model's, or else the longest that
   fits), and before it a copy of bytes copy_start..copy_end-1 of the file: the whole file when
   it fits beside the arena (then context 0 is the model's), else the longest run of the
   sections every token reads (tlm_token_section) that fits in the rest, or none (0, 0).
   tinylm/boards/memplan.py plans the same (docs/flashing.md). */
typedef struct {
    uint32_t context, copy_start, copy_end;
} tlm_sram_plan;

tlm_sram_plan tlm_plan_sram(const tlm_model *m, size_t memory, uint32_t context);

/* After tlm_server_init with the model in flash: puts in `memory` (16-byte aligned) what
   tlm_plan_sram plans, and the state's arena after it (set tlm_state's run_both after this).
   @ready then says weights=sram (the whole model copied) or weights=flash, and sram_weights=
   the bytes of the file in SRAM. Nothing when there is no usable model. */
void tlm_server_place(tlm_server *s, uint8_t *memory, size_t memory_size, uint32_t context);

/* Sends the @ready line, or the @error line when there is no usable model. */
void tlm_server_hello(tlm_server *s);

/* Feeds one received byte to the line reader; a complete line is answered before this returns
   (reading io.poll between tokens for a cancel). A chat model takes each line as a question,
   wrapped in its turn, and its answer ends at its end of reply. */
void tlm_server_byte(tlm_server *s, uint8_t c);

#endif
