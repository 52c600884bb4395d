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

/* Every token reads every weight. From flash, reads go through a small cache (16 KB on the
   RP2040) that a larger model streams through at the flash chip's pace; RAM has no such wait.
   So a firmware may copy the model to the start of its RAM when it fits there beside the arena
   for the model's whole context. Returns the copy (and moves *memory and *memory_size past it,
   keeping 16-byte alignment), or `model` itself when it does not fit or is not a usable model
   (tlm_server_init then says why). */
const uint8_t *tlm_copy_model_if_it_fits(const uint8_t *model, size_t model_room,
                                         uint8_t **memory, size_t *memory_size);

/* Sends the @ready line, or the @error line when there is no usable model. */
void tlm_server_hello(tlm_server *s);

/* Feeds one received byte to the line reader; a complete line is answered before this returns
   (reading io.poll between tokens for a cancel). A chat model takes each line as a question,
   wrapped in its turn, and its answer ends at its end of reply. */
void tlm_server_byte(tlm_server *s, uint8_t c);

#endif
