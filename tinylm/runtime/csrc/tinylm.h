/* tinylm runtime: runs a tinylm .bin (docs/format.md) in integer arithmetic, in place.

   The model file is used where it lies (RAM, an mmap, or XIP flash): nothing is copied and
   nothing is allocated. The caller gives one block of memory, the arena, for the activations
   and the int8 key/value cache; tlm_arena_size says how large it must be.

       tlm_model model;
       const char *err = tlm_load(&model, file_bytes, file_size);     // NULL: fine
       size_t need = tlm_arena_size(&model, context);
       tlm_state state;
       err = tlm_init(&state, &model, arena, arena_bytes, context);
       uint32_t ids[64];
       int32_t n = tlm_encode(&model, text, text_len, TLM_BOS, ids, 64);
       tlm_sampler sampler;
       tlm_sampler_init(&sampler, 0, 0, 1 << 16, seed);               // greedy
       tlm_start(&state, ids, n);
       for (int32_t t, prev = ids[n - 1]; (t = tlm_next(&state, &sampler)) >= 0; prev = t) {
           uint32_t len;
           const uint8_t *piece = tlm_piece(&model, prev, t, &len);   // print len bytes
       }

   Logits are Q16 fixed point (value * 65536). Temperature and top-p are passed in Q16 too.
   Needs a little-endian CPU and a 16-byte-aligned model. C99 with only <stddef.h> and
   <stdint.h>, so it builds freestanding, with the kernel file of the CPU (kernels.h). A build
   for a CPU without an FPU leaves float32 models out (-DTLM_FLOAT_WEIGHTS=0). */
#ifndef TINYLM_H
#define TINYLM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *file;
    uint32_t file_size;
    uint32_t vocab_size, dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim, max_seq_len;
    uint32_t tie_embeddings, bits, group_size;
    /* a single-turn chat model (chat 1): the ids that open the user's turn and the reply, and
       the one that ends the reply (docs/format.md); all 0 for a text model */
    uint32_t chat, chat_user, chat_assistant, chat_end;
    int64_t eps_q32;                 /* RMSNorm epsilon * 2^32 */
    const uint8_t *table;            /* section table: tokenizer, rope, tok_emb, layers, ... */
    const int16_t *rope;             /* [max_seq_len][head_dim / 2] (cos, sin) in Q14 */
    /* tokenizer, in place (see docs/format.md) */
    uint32_t n_merges, n_chars, n_specials, bos_id, eos_id, split_rule, dummy_prefix;
    const uint32_t *byte_ids, *specials, *offsets, *merges, *chars;
    const uint8_t *pieces;
    /* Optional, for a model in slow memory (set after tlm_load): bytes copy_start..copy_end-1
       of the file are read from `copy`, a copy of them in faster memory, 16-byte aligned;
       tlm_token_section says which are worth it (a firmware's choice: serve.c). */
    const uint8_t *copy;
    uint32_t copy_start, copy_end;
} tlm_model;

typedef struct {
    const tlm_model *m;
    uint32_t context, pos;           /* pos: tokens fed so far */
    int32_t *x, *h, *q, *a, *b, *logits, *scratch;
    int16_t *xq;                     /* a matrix's input, rounded to int8 values */
    int8_t *kcache, *vcache;         /* [layer][position][kv head][head_dim] */
    uint8_t *kscale, *vscale;        /* one scale code per [layer][position][kv head] */
    int32_t inv_sqrt_head_dim;       /* 1 / sqrt(head_dim) in Q15, folded into q */
    int32_t pending;                 /* token sampled last, to feed next; -1 none */
    /* Optional, for a CPU with two cores (set after tlm_init): runs task(arg, 0) and
       task(arg, 1) at the same time, one per core, and returns when both are done; each does
       half of a matrix's rows. NULL (the default): both halves here, one after the other. */
    void (*run_both)(void *ctx, void (*task)(void *arg, uint32_t part), void *arg);
    void *run_both_ctx;
} tlm_state;

typedef struct {
    uint32_t temperature_q16, top_k, top_p_q16;
    uint64_t rng;
} tlm_sampler;

const char *tlm_load(tlm_model *m, const void *data, size_t size);
/* The sections every token reads whole, consecutive in the file: the norms and matrices, and
   the embedding table when it is also the output matrix (else a token reads one row of it).
   The i-th as its bytes [*start, *end) in the file; 0 when there are fewer. */
int tlm_token_section(const tlm_model *m, uint32_t i, uint32_t *start, uint32_t *end);
/* The arena's bytes for `context` tokens (0: the model's); SIZE_MAX when this CPU's address
   space cannot hold it (a long context on a 32-bit CPU). */
size_t tlm_arena_size(const tlm_model *m, uint32_t context);
const char *tlm_init(tlm_state *s, const tlm_model *m, void *arena, size_t arena_size,
                     uint32_t context);

/* Forget the tokens fed so far (a new text). */
void tlm_reset(tlm_state *s);

/* Feed one token at the next position; returns its logits (vocab_size, Q16), or NULL when
   the context is full or the token is out of range. */
int32_t *tlm_forward(tlm_state *s, uint32_t token);

void tlm_sampler_init(tlm_sampler *smp, uint32_t temperature_q16, uint32_t top_k,
                      uint32_t top_p_q16, uint64_t seed);
/* Pick a token from logits (which it overwrites with probabilities). */
uint32_t tlm_sample(tlm_sampler *smp, int32_t *logits, uint32_t vocab_size, uint16_t *order);

/* Streaming generation: tlm_start feeds a prompt (n >= 1 tokens); each tlm_next returns one
   new token, or -1 at <eos>/<bos>, a chat model's end of reply, or when the context is full. */
int tlm_start(tlm_state *s, const uint32_t *prompt, uint32_t n);
int32_t tlm_next(tlm_state *s, tlm_sampler *smp);

/* Text to token ids: with TLM_BOS, <bos> first; with TLM_CHAT_TURN, a chat model's question
   as it was trained, <bos> user text assistant (a text model: <bos> text). Returns the count,
   or -1 if max_ids is too small. Decoding: the bytes of token id after token prev (prev = -1
   at the start). */
#define TLM_BOS 1
#define TLM_CHAT_TURN 2
int32_t tlm_encode(const tlm_model *m, const uint8_t *text, uint32_t len, int wrap,
                   uint32_t *ids, uint32_t max_ids);
const uint8_t *tlm_piece(const tlm_model *m, int32_t prev, uint32_t id, uint32_t *len);

#endif
