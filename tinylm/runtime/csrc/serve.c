/* tinylm device loop (serve.h): the line protocol of docs/protocol.md over a port given as
   three functions. Freestanding C99: no C library, no dynamic memory, no floating point. */
#include "serve.h"

#define CANCEL 0x03
#define HELLO 0x05
#define TEMPERATURE_Q16 65536u      /* `tinylm run`'s defaults: temperature 1, */
#define TOP_P_Q16 58982u            /* top-p 0.9 (in Q16, rounded as tinylm.runtime.sampler.to_q16), */
#define MAX_TOKENS 256u             /* 256 tokens, seed 0, no top-k */

/* ---- output ---- */

static void put_bytes(tlm_server *s, const uint8_t *bytes, uint32_t n) {
    if (n) s->io.write(s->io.ctx, bytes, n);
}

static void put(tlm_server *s, const char *text) {
    uint32_t n = 0;
    while (text[n]) n++;
    put_bytes(s, (const uint8_t *)text, n);
}

static void put_u32(tlm_server *s, uint32_t v) {
    char digits[11], *p = digits + sizeof digits;
    *--p = 0;
    do *--p = (char)('0' + v % 10); while (v /= 10);
    put(s, p);
}

static void put_hex32(tlm_server *s, uint32_t v) {
    char text[11] = "0x";
    for (int i = 0; i < 8; i++) text[2 + i] = "0123456789abcdef"[v >> (28 - 4 * i) & 15];
    text[10] = 0;
    put(s, text);
}

/* Token text inside an @text line: only the line's own end may be a raw LF. Runs of plain
   bytes go out in one write. */
static void put_escaped(tlm_server *s, const uint8_t *text, uint32_t len) {
    uint32_t run = 0;
    for (uint32_t i = 0; i < len; i++) {
        const char *escape = text[i] == '\\' ? "\\\\" : text[i] == '\n' ? "\\n"
                           : text[i] == '\r' ? "\\r" : 0;
        if (!escape) continue;
        put_bytes(s, text + run, i - run);
        put(s, escape);
        run = i + 1;
    }
    put_bytes(s, text + run, len - run);
}

/* ---- the model ---- */

void tlm_server_init(tlm_server *s, const tlm_io *io, const char *board, const void *model,
                     size_t model_room, const char *where, const char *how_to_flash,
                     void *arena, size_t arena_size) {
    const uint8_t *bytes = (const uint8_t *)model;
    s->io = *io;
    s->board = board;
    s->where = where;
    s->how_to_flash = how_to_flash;
    s->model_bytes = bytes;
    s->model_room = model_room;
    s->weights = 0;
    s->sram_weights = 0;
    s->model_code = s->model_error = 0;
    s->temperature_q16 = TEMPERATURE_Q16;
    s->top_k = 0;
    s->top_p_q16 = TOP_P_Q16;
    s->max_tokens = MAX_TOKENS;
    s->seed = 0;
    s->length = s->dropped = 0;
    s->discarding = s->last_was_cr = 0;
    if (model_room < 4 || bytes[0] != 'T' || bytes[1] != 'L' || bytes[2] != 'M' ||
        bytes[3] != 'B') {
        s->model_code = "no-model";
        return;
    }
    const char *error = tlm_load(&s->model, model, model_room);
    if (!error) {
        uint32_t context = s->model.max_seq_len;
        while (context > 1 && tlm_arena_size(&s->model, context) > arena_size) context--;
        error = tlm_init(&s->state, &s->model, arena, arena_size, context);
    }
    if (error) {
        s->model_code = "bad-model";
        s->model_error = error;
    }
}

tlm_sram_plan tlm_plan_sram(const tlm_model *m, size_t memory, uint32_t context) {
    size_t whole = (m->file_size + 15u) & ~(size_t)15;
    tlm_sram_plan plan = {context && context <= m->max_seq_len ? context : m->max_seq_len, 0, 0};
    if (whole <= memory && tlm_arena_size(m, plan.context) <= memory - whole) {
        plan.copy_end = m->file_size;
        return plan;
    }
    while (plan.context > 1 && tlm_arena_size(m, plan.context) > memory) plan.context--;
    /* what the arena leaves, in whole 16 bytes: a copy takes its bytes rounded up to 16 */
    size_t arena = tlm_arena_size(m, plan.context);
    size_t room = arena < memory ? (memory - arena) & ~(size_t)15 : 0;
    /* the runs of sections first..j that fit, for each j: the longest (the first of equals) */
    uint32_t first = 0, from = 0, start, end, unused;
    for (uint32_t j = 0; tlm_token_section(m, j, &start, &end); j++) {
        if (first == j) from = start;
        while (first <= j && end - from > room)
            if (++first <= j) tlm_token_section(m, first, &from, &unused);
        if (first <= j && end - from > plan.copy_end - plan.copy_start)
            plan.copy_start = from, plan.copy_end = end;
    }
    return plan;
}

void tlm_server_place(tlm_server *s, uint8_t *memory, size_t memory_size, uint32_t context) {
    if (s->model_code) return;
    tlm_model *m = &s->model;
    tlm_sram_plan plan = tlm_plan_sram(m, memory_size, context);
    uint32_t n = plan.copy_end - plan.copy_start;
    for (uint32_t i = 0; i < n; i++) memory[i] = m->file[plan.copy_start + i];
    if (n == m->file_size) {   /* all of it: the model is the copy */
        tlm_load(m, memory, n);
        s->model_bytes = memory;
        s->model_room = n;
        s->weights = "sram";
    } else {
        m->copy = memory;
        m->copy_start = plan.copy_start;
        m->copy_end = plan.copy_end;
        s->weights = "flash";
    }
    s->sram_weights = n;
    size_t used = (n + 15u) & ~(size_t)15;
    tlm_init(&s->state, m, memory + used, memory_size - used, plan.context);
}

void tlm_server_hello(tlm_server *s) {
    if (s->model_code) {
        put(s, "@error ");
        put(s, s->model_code);
        put(s, " ");
        if (s->model_error) {
            put(s, s->model_error);
        } else {
            put(s, "no model at ");
            put(s, s->where);
            if (s->model_room >= 4) {
                const uint8_t *b = s->model_bytes;
                put(s, " (found ");
                put_hex32(s, (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                             (uint32_t)b[3] << 24);
                put(s, ")");
            }
            put(s, ": flash one with ");
            put(s, s->how_to_flash);
        }
        put(s, "\n");
        return;
    }
    put(s, "@ready proto=1 max_line=");
    put_u32(s, TLM_MAX_LINE);
    put(s, " board=");
    put(s, s->board);
    put(s, " vocab=");
    put_u32(s, s->model.vocab_size);
    put(s, " ctx=");
    put_u32(s, s->state.context);
    put(s, s->model.bits == 4 ? " quant=q4" : s->model.bits == 8 ? " quant=q8" : " quant=f32");
    if (s->model.chat) put(s, " chat=1");   /* each line is a question */
    put(s, " arena=");
    put_u32(s, (uint32_t)tlm_arena_size(&s->model, s->state.context));
    if (s->weights) {
        put(s, " weights=");
        put(s, s->weights);
    }
    if (s->sram_weights) {
        put(s, " sram_weights=");
        put_u32(s, s->sram_weights);
    }
    put(s, "\n");
}

/* ---- answers ---- */

/* Bytes that arrive during an answer: a cancel stops it (the bytes after it stay with the
   port, for the line reader); anything else is dropped. */
static int cancelled(tlm_server *s) {
    int c;
    while ((c = s->io.poll(s->io.ctx)) >= 0)
        if (c == CANCEL) return 1;
    return 0;
}

/* "@done tokens=N ms=T tok_s=R.RR stop=WHY prompt=P prompt_ms=Q". The rate comes from the
   microseconds: a fast host makes a token in well under a millisecond. */
static void put_done(tlm_server *s, uint32_t count, uint32_t us, const char *stop,
                     uint32_t prompt, uint32_t prompt_ms) {
    uint32_t ms = us / 1000 ? us / 1000 : 1;
    uint32_t rate = (uint32_t)((uint64_t)count * 100000000 / (us ? us : 1));   /* tok/s * 100 */
    char decimals[4] = {'.', (char)('0' + rate / 10 % 10), (char)('0' + rate % 10), 0};
    put(s, "@done tokens=");
    put_u32(s, count);
    put(s, " ms=");
    put_u32(s, ms);
    put(s, " tok_s=");
    put_u32(s, rate / 100);
    put(s, decimals);
    put(s, " stop=");
    put(s, stop);
    put(s, " prompt=");
    put_u32(s, prompt);
    put(s, " prompt_ms=");
    put_u32(s, prompt_ms);
    put(s, "\n");
}

static void answer(tlm_server *s, const uint8_t *line, uint32_t len) {
    if (s->model_code) {
        tlm_server_hello(s);
        return;
    }
    uint32_t start = s->io.micros(s->io.ctx);
    int32_t n = tlm_encode(&s->model, line, len, TLM_CHAT_TURN, s->ids,
                           sizeof s->ids / sizeof s->ids[0]);
    if (n < 0 || (uint32_t)n >= s->state.context) {
        put(s, "@error prompt-too-long the prompt does not fit in the context of ");
        put_u32(s, s->state.context);
        put(s, " tokens\n");
        return;
    }
    tlm_sampler_init(&s->sampler, s->temperature_q16, s->top_k, s->top_p_q16, s->seed);
    tlm_start(&s->state, s->ids, (uint32_t)n);
    uint32_t generation = s->io.micros(s->io.ctx);
    put(s, "@text ");
    const char *stop = "length";
    uint32_t count = 0;
    for (int32_t prev = (int32_t)s->ids[n - 1]; count < s->max_tokens; count++) {
        int32_t t = tlm_next(&s->state, &s->sampler);
        if (t < 0) {
            /* tlm_next leaves the last context slot unused */
            stop = s->state.pos + 1 >= s->state.context ? "context" : "eos";
            break;
        }
        uint32_t piece_len;
        const uint8_t *piece = tlm_piece(&s->model, prev, (uint32_t)t, &piece_len);
        put_escaped(s, piece, piece_len);
        prev = t;
        if (cancelled(s)) {
            count++;
            stop = "cancel";
            break;
        }
    }
    put(s, "\n");
    /* Differences of the wrapping clock are right across the wrap. */
    put_done(s, count, s->io.micros(s->io.ctx) - generation, stop, (uint32_t)n,
             (generation - start) / 1000);
}

/* ---- the line reader (docs/protocol.md): a line never goes past line[TLM_MAX_LINE] ---- */

void tlm_server_byte(tlm_server *s, uint8_t c) {
    if (c == CANCEL) {
        s->length = 0;
        s->discarding = 0;
        return;
    }
    if (c == HELLO) {
        tlm_server_hello(s);
        return;
    }
    if (c == '\n' && s->last_was_cr) {
        s->last_was_cr = 0;
        return;
    }
    s->last_was_cr = c == '\r';
    if (c == '\r' || c == '\n') {
        if (s->discarding) {
            put(s, "@error line-too-long the line had ");
            put_u32(s, TLM_MAX_LINE + s->dropped);
            put(s, " bytes; at most ");
            put_u32(s, TLM_MAX_LINE);
            put(s, " fit\n");
            s->discarding = 0;
        } else {
            s->line[s->length] = 0;
            answer(s, s->line, s->length);
        }
        s->length = 0;
        return;
    }
    if (s->discarding) {
        s->dropped++;
    } else if (s->length == TLM_MAX_LINE) {
        s->discarding = 1;
        s->dropped = 1;
    } else {
        s->line[s->length++] = c;
    }
}
