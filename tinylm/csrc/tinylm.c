/* tinylm runtime: a Llama-style model from a .bin file, in integer arithmetic.

   Read top to bottom: fixed-point helpers, loading and checking the file, the forward pass,
   sampling, the tokenizer. tinylm/engine.py is the same computation in NumPy, line for line;
   the tests hold the two to identical logits.

   Numbers: activations are Q16 (value * 2^16) in int32, saturated to +-2^30 so that every
   product below fits in int64. Shifts of negative numbers are arithmetic (floor), as on every
   compiler we build with. No floating point is used except for float32 (--bits 32) models. */
#include "tinylm.h"

/* float32 (--bits 32) models: on a CPU without an FPU every multiply would be a soft-float
   call, so such builds leave them out (define TLM_FLOAT_WEIGHTS to choose). */
#ifndef TLM_FLOAT_WEIGHTS
#if defined(__SOFTFP__) || defined(__XTENSA_SOFT_FLOAT__) || defined(__riscv_float_abi_soft)
#define TLM_FLOAT_WEIGHTS 0
#else
#define TLM_FLOAT_WEIGHTS 1
#endif
#endif

#define LIMIT (1 << 30)
#define ONE (1 << 16)
#define HEADER_SIZE 128u
#define ENTRY_SIZE 32u
#define TOKENIZER_HEAD 28u
#define F32 0
#define Q8 1
#define Q4 2
#define RAW 3
#define N_LAYER_TENSORS 9
#define LOG2E_Q30 1549082005
static const int64_t EXP2_POLY[5] = {1073737660, -744134529, 257037730, -57108570, 7342532};

/* ---- fixed point ---------------------------------------------------------------------- */

static int32_t sat(int64_t v) { return v > LIMIT ? LIMIT : v < -LIMIT ? -LIMIT : (int32_t)v; }

static int64_t rshift_round(int64_t v, int s) {   /* v / 2^s, half up; |v| < 2^62 */
    if (s > 62) s = 62;
    return s > 0 ? (v + ((int64_t)1 << (s - 1))) >> s : v;
}

/* v * 2^-s rounded and saturated; a negative s is a left shift. */
static int32_t scale_sat(int64_t v, int s) {
    if (s >= 0) return sat(rshift_round(v, s));
    int l = -s > 31 ? 31 : -s;
    if (v > (LIMIT >> l)) return LIMIT;
    if (v < -(LIMIT >> l)) return -LIMIT;
    return (int32_t)(v * ((int64_t)1 << l));
}

static int bit_length(uint64_t a) { int n = 0; while (a) { n++; a >>= 1; } return n; }

static int64_t div_round(int64_t num, int64_t den) {   /* half away from zero; den > 0 */
    int64_t q = ((num < 0 ? -num : num) + den / 2) / den;
    return num < 0 ? -q : q;
}

static uint64_t isqrt(uint64_t v) {
    uint64_t root = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= root + bit) { v -= root + bit; root = (root >> 1) + bit; }
        else root >>= 1;
        bit >>= 2;
    }
    return root;
}

/* e^(z / 2^16) in Q30 for Q16 z in [-2^31, 0]: as 2^-(n + f) = (2^-f) >> n, 2^-f by a
   degree-4 polynomial (error 4e-6). No table, no float: the same on every target. */
static int64_t exp_neg(int64_t z) {
    int64_t y = -((z * LOG2E_Q30) >> 30);
    int64_t n = y >> 16, f = y & 0xFFFF, p = EXP2_POLY[4];
    for (int i = 3; i >= 0; i--) p = EXP2_POLY[i] + ((p * f) >> 16);
    return n < 31 ? p >> n : 0;
}

/* float32 (as its bits) to Q16, half away from zero, saturated; done on the bits so that
   float-free targets need no soft-float here. */
static int32_t q16_from_f32(uint32_t bits) {
    int e = (int)((bits >> 23) & 0xFF), s = 134 - e;
    uint64_t man = (bits & 0x7FFFFF) | 0x800000, mag;
    if (e == 0xFF) mag = LIMIT;                       /* inf, nan */
    else if (e == 0) mag = 0;                         /* zero, subnormals: far below 2^-16 */
    else if (s <= 0) mag = s < -7 ? LIMIT : man << -s;
    else mag = s > 40 ? 0 : (man + ((uint64_t)1 << (s - 1))) >> s;
    if (mag > LIMIT) mag = LIMIT;
    return bits >> 31 ? -(int32_t)mag : (int32_t)mag;
}

/* A vector as int8 values with one scale m * 2^k (m in 8..15): the smallest with 127 * scale
   >= max|v|. q = v / scale is computed as v * round(2^24 / m) >> (24 + k): a multiply, not a
   division, per element. The values go to int16 slots: int16 x int16 products summed in
   pairs are one instruction on most SIMD units. */
static void quantize_int8(int16_t *q, const int32_t *v, uint32_t n, int32_t *m_out,
                          int32_t *k_out) {
    int64_t a = 0, m;
    for (uint32_t j = 0; j < n; j++) {
        int64_t x = v[j] < 0 ? -(int64_t)v[j] : v[j];
        if (x > a) a = x;
    }
    int k = bit_length((uint64_t)a) - 12;
    if (k < -10) k = -10;
    for (;;) {
        int64_t num = k < 0 ? a << -k : a, den = k < 0 ? 127 : (int64_t)127 << k;
        m = (num + den - 1) / den;
        if (m <= 15) break;
        k++;
    }
    if (m < 8) m = 8;
    int64_t reciprocal = (((int64_t)1 << 25) / m + 1) / 2;
    for (uint32_t j = 0; j < n; j++) {
        int64_t r = rshift_round(v[j] * reciprocal, 24 + k);
        q[j] = (int16_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    *m_out = (int32_t)m;
    *k_out = k;
}

/* The same for the key/value cache, stored as int8 with the scale as one byte:
   (k + 10) << 3 | (m - 8). tmp: n int16. */
static uint8_t quantize_code(int8_t *q, const int32_t *v, uint32_t n, int16_t *tmp) {
    int32_t m, k;
    quantize_int8(tmp, v, n, &m, &k);
    for (uint32_t j = 0; j < n; j++) q[j] = (int8_t)tmp[j];
    return (uint8_t)(((k + 10) << 3) | (m - 8));
}

/* Queries as int16 with a power-of-two scale: v ~ q * 2^e. */
static int quantize_pow2(int16_t *q, const int32_t *v, uint32_t n) {
    int64_t a = 0;
    for (uint32_t j = 0; j < n; j++) {
        int64_t x = v[j] < 0 ? -(int64_t)v[j] : v[j];
        if (x > a) a = x;
    }
    int e = bit_length((uint64_t)a) - 15;
    for (uint32_t j = 0; j < n; j++) {
        int64_t r = e > 0 ? rshift_round(v[j], e) : (int64_t)v[j] * ((int64_t)1 << -e);
        q[j] = (int16_t)(r > 32767 ? 32767 : r < -32767 ? -32767 : r);
    }
    return e;
}

/* ---- reading the file (little-endian, so also on a big-endian host) ---------------------- */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint32_t crc32(const uint8_t *p, uint32_t n) {
    static const uint32_t nibble[16] = {
        0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158,
        0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4,
        0xA00AE278, 0xBDBDF21C};
    uint32_t crc = 0xFFFFFFFF;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 15];
        crc = (crc >> 4) ^ nibble[crc & 15];
    }
    return ~crc;
}

/* One section table entry. */
typedef struct {
    uint32_t kind, layer, dtype, offset, size, rows, cols;
    int32_t shift;
} entry;

static entry get_entry(const tlm_model *m, uint32_t i) {
    const uint8_t *p = m->table + ENTRY_SIZE * i;
    entry e = {rd16(p), rd16(p + 2), p[4], rd32(p + 8), rd32(p + 12), rd32(p + 16),
               rd32(p + 20), (int32_t)rd32(p + 24)};
    return e;
}

/* Sections come in this order: tokenizer, rope, tok_emb, 9 per layer, final_norm, lm_head. */
static uint32_t n_required(const tlm_model *m) {
    return 4 + N_LAYER_TENSORS * m->n_layers + !m->tie_embeddings;
}

static void expected_id(const tlm_model *m, uint32_t i, uint32_t *kind, uint32_t *layer) {
    *layer = 0;
    if (i < 3) *kind = i + 1;                                    /* tokenizer, rope, tok_emb */
    else if (i < 3 + N_LAYER_TENSORS * m->n_layers) {
        *kind = 16 + (i - 3) % N_LAYER_TENSORS;
        *layer = (i - 3) / N_LAYER_TENSORS;
    } else *kind = i - N_LAYER_TENSORS * m->n_layers + 1;        /* final_norm 4, lm_head 5 */
}

static uint64_t tensor_size(uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t group) {
    if (dtype == F32) return 4 * rows * cols;
    uint64_t values = rows * (dtype == Q8 ? cols : (cols + 1) / 2);
    return ((values + 15) & ~(uint64_t)15) + 2 * rows * ((cols + group - 1) / group);
}

static const char *check_tokenizer(tlm_model *m, const uint8_t *p, uint32_t size) {
    if (size < TOKENIZER_HEAD) return "bad tokenizer: section too short";
    uint32_t n_vocab = rd32(p);
    m->n_merges = rd32(p + 4);
    m->n_chars = rd32(p + 8);
    m->n_specials = rd32(p + 12);
    m->bos_id = rd32(p + 16);
    m->eos_id = rd32(p + 20);
    m->split_rule = p[24];
    m->dummy_prefix = p[25];
    if (n_vocab != m->vocab_size || m->n_specials > n_vocab || m->n_merges > (1u << 24) ||
        m->n_chars > n_vocab)
        return "bad tokenizer: counts";
    uint64_t words = 256 + (uint64_t)m->n_specials + n_vocab + 1 + 4 * (uint64_t)m->n_merges +
                     2 * (uint64_t)m->n_chars;
    if (size < TOKENIZER_HEAD + 4 * words) return "bad tokenizer: section too short";
    m->byte_ids = (const uint32_t *)(p + TOKENIZER_HEAD);
    m->specials = m->byte_ids + 256;
    m->offsets = m->specials + m->n_specials;
    m->merges = m->offsets + n_vocab + 1;
    m->chars = m->merges + 4 * m->n_merges;
    m->pieces = p + TOKENIZER_HEAD + 4 * words;
    if (m->offsets[0] != 0) return "bad tokenizer: piece offsets";
    for (uint32_t i = 0; i < n_vocab; i++)
        if (m->offsets[i + 1] < m->offsets[i]) return "bad tokenizer: piece offsets";
    if (TOKENIZER_HEAD + 4 * words + m->offsets[n_vocab] > size)
        return "bad tokenizer: piece offsets";
    /* every id in the tables must be a token (byte_ids and specials are adjacent) */
    int bad = m->bos_id >= n_vocab || m->eos_id >= n_vocab || m->split_rule > 1 ||
              m->dummy_prefix > 1;
    for (uint32_t i = 0; i < 256 + m->n_specials; i++) bad |= m->byte_ids[i] >= n_vocab;
    for (uint32_t i = 0; i < m->n_merges; i++)
        for (int j = 0; j < 3; j++) bad |= m->merges[4 * i + j] >= n_vocab;
    for (uint32_t i = 0; i < m->n_chars; i++) bad |= m->chars[2 * i + 1] >= n_vocab;
    if (bad) return "bad tokenizer: id out of range";
    for (uint32_t i = 1; i < m->n_merges; i++) {
        const uint32_t *a = m->merges + 4 * (i - 1), *b = a + 4;
        if (a[0] > b[0] || (a[0] == b[0] && a[1] >= b[1]))
            return "bad tokenizer: merges or characters not sorted";
    }
    for (uint32_t i = 1; i < m->n_chars; i++)
        if (m->chars[2 * i] <= m->chars[2 * i - 2])
            return "bad tokenizer: merges or characters not sorted";
    return NULL;
}

/* Checks in the order of binformat.parse_bin, with the same messages. */
const char *tlm_load(tlm_model *m, const void *data, size_t size) {
    const uint8_t *p = (const uint8_t *)data;
    uint16_t one = 1;
    static const tlm_model empty;
    *m = empty;
    if (*(const uint8_t *)&one != 1) return "this runtime needs a little-endian CPU";
    if ((uintptr_t)p % 16) return "the model must be 16-byte aligned in memory";
    if (size < HEADER_SIZE) return "truncated: shorter than the header";
    if (p[0] != 'T' || p[1] != 'L' || p[2] != 'M' || p[3] != 'B')
        return "not a tinylm .bin (bad magic)";
    if (rd16(p + 4) != 1) return "unsupported format version (this reader knows version 1)";
    uint32_t header_size = rd16(p + 6), file_size = rd32(p + 8);
    if (header_size < HEADER_SIZE || header_size % 16) return "bad header size";
    if (size < file_size) return "truncated: the file is shorter than its header says";
    if (file_size < header_size) return "bad file size in header";
    if (crc32(p + 16, file_size - 16) != rd32(p + 12)) return "CRC mismatch: the file is damaged";
    m->file = p;
    m->file_size = file_size;
    static const uint32_t max[8] = {65535, 8192, 255, 256, 256, 256, 32768, 65535};
    uint32_t dims[8];   /* in header order: vocab_size dim n_layers n_heads n_kv_heads ... */
    for (int i = 0; i < 8; i++) {
        dims[i] = rd32(p + 16 + 4 * i);
        if (dims[i] < 1 || dims[i] > max[i]) return "bad config: a dimension is out of range";
    }
    m->vocab_size = dims[0], m->dim = dims[1], m->n_layers = dims[2], m->n_heads = dims[3];
    m->n_kv_heads = dims[4], m->head_dim = dims[5], m->hidden_dim = dims[6];
    m->max_seq_len = dims[7];
    if (m->n_heads % m->n_kv_heads || m->head_dim % 2) return "bad config: heads";
    m->tie_embeddings = rd32(p + 48);
    uint64_t eps = rd64(p + 52), theta = rd64(p + 60);
    int eps_exp = (int)(eps >> 52 & 0x7FF), theta_exp = (int)(theta >> 52 & 0x7FF);
    if (m->tie_embeddings > 1 || eps >> 63 || eps == 0 || eps_exp >= 1023 || theta >> 63 ||
        theta == 0 || (theta_exp == 0x7FF && theta << 12))
        return "bad config: flags, norm_eps or rope_theta";
    m->bits = p[68];
    m->group_size = rd16(p + 70);
    if ((m->bits != 4 && m->bits != 8 && m->bits != 32) ||
        (m->bits != 32 && (m->group_size < 1 || m->group_size > 256)))
        return "bad quantization type or group size";
    if (m->bits == 32 && !TLM_FLOAT_WEIGHTS)
        return "this build has no float32 weights (no FPU): quantize to 8 or 4 bits";
    {   /* epsilon * 2^32, rounded half up, from the bits of the double */
        uint64_t man = (eps & (((uint64_t)1 << 52) - 1)) | (eps_exp ? (uint64_t)1 << 52 : 0);
        int s = 1043 - (eps_exp ? eps_exp : 1);
        m->eps_q32 = s > 63 ? 0 : (int64_t)((man + ((uint64_t)1 << (s - 1))) >> s);
    }
    uint32_t n_sections = rd32(p + 72), table_offset = rd32(p + 76);
    uint64_t table_end = table_offset + (uint64_t)ENTRY_SIZE * n_sections;
    if (table_offset < header_size || table_offset % 16 || table_end > file_size)
        return "section table outside the file";
    m->table = p + table_offset;
    for (uint32_t i = 0; i < n_sections; i++) {
        entry e = get_entry(m, i);
        if (e.offset % 16 || e.offset < table_end || e.offset > file_size ||
            e.size > file_size - e.offset)
            return "section past the end of the file or misaligned";
    }
    if (n_sections < n_required(m)) return "missing section";
    for (uint32_t i = 0; i < n_required(m); i++) {
        entry e = get_entry(m, i);
        uint32_t kind, layer;
        expected_id(m, i, &kind, &layer);
        if (e.kind != kind || e.layer != layer) return "section table out of order";
    }
    for (uint32_t i = 0; i < n_sections; i++)
        for (uint32_t j = i + 1; j < n_sections; j++) {
            entry a = get_entry(m, i), b = get_entry(m, j);
            if (a.offset < b.offset + b.size && b.offset < a.offset + a.size)
                return "sections overlap";
        }
    uint32_t q_dim = m->n_heads * m->head_dim, kv_dim = m->n_kv_heads * m->head_dim;
    for (uint32_t i = 2; i < n_required(m); i++) {
        entry e = get_entry(m, i);
        uint32_t rows = 1, cols = m->dim, k = e.kind - 16;
        if (e.kind == 3 || e.kind == 5) rows = m->vocab_size;
        if (e.kind >= 16) {
            static const int shape[N_LAYER_TENSORS] = {0, 1, 2, 2, 3, 0, 4, 5, 4};
            switch (shape[k]) {   /* 0 norm, 1 wq, 2 wk/wv, 3 wo, 4 w1/w3, 5 w2 */
            case 1: rows = q_dim; break;
            case 2: rows = kv_dim; break;
            case 3: rows = m->dim, cols = q_dim; break;
            case 4: rows = m->hidden_dim; break;
            case 5: rows = m->dim, cols = m->hidden_dim; break;
            }
        }
        int is_vector = e.kind == 4 || (e.kind >= 16 && (k == 0 || k == 5));
        /* bits 4 and 8 allow int4 and int8 matrices (the embedding stays int8 at 4 bits) */
        int float_only = is_vector || m->bits == 32;
        if ((float_only ? e.dtype != F32 : e.dtype != Q8 && e.dtype != Q4) || e.rows != rows ||
            e.cols != cols || e.size != tensor_size(e.dtype, rows, cols, m->group_size))
            return "tensor type, shape or size does not match the config";
        if (e.shift < 0 || e.shift > 62) return "bad scale shift";
    }
    entry rope = get_entry(m, 1), tok = get_entry(m, 0);
    if (rope.dtype != RAW || rope.size != 4 * m->max_seq_len * (m->head_dim / 2))
        return "rope table has the wrong size";
    m->rope = (const int16_t *)(p + rope.offset);
    return check_tokenizer(m, p + tok.offset, tok.size);
}

/* ---- memory ----------------------------------------------------------------------------- */

/* Carve the arena into buffers (or, with base NULL, just add up their sizes). */
static size_t layout(tlm_state *s, const tlm_model *m, uint8_t *base, uint32_t context) {
    size_t used = 0;
    uint32_t q_dim = m->n_heads * m->head_dim, kv_dim = m->n_kv_heads * m->head_dim;
    uint32_t widest = m->dim > m->hidden_dim ? m->dim : m->hidden_dim;
    uint32_t hidden = m->hidden_dim > kv_dim ? m->hidden_dim : kv_dim;   /* also holds k, v */
    uint32_t scratch = 4 * context > 2 * m->vocab_size ? 4 * context : 2 * m->vocab_size;
    if (q_dim > widest) widest = q_dim;
#define TAKE(field, type, count)                                                        \
    do {                                                                                \
        if (base) s->field = (type *)(void *)(base + used);                             \
        used += ((size_t)(count) * sizeof(type) + 15) & ~(size_t)15;                    \
    } while (0)
    TAKE(x, int32_t, m->dim);
    TAKE(h, int32_t, widest);
    TAKE(q, int32_t, q_dim);
    TAKE(a, int32_t, hidden);
    TAKE(b, int32_t, hidden);
    TAKE(logits, int32_t, m->vocab_size);
    TAKE(acc, int64_t, m->head_dim);
    TAKE(scratch, int32_t, scratch / 4);
    TAKE(xq, int16_t, widest);
    TAKE(q16, int16_t, q_dim);
    TAKE(kcache, int8_t, (size_t)m->n_layers * context * kv_dim);
    TAKE(vcache, int8_t, (size_t)m->n_layers * context * kv_dim);
    TAKE(kscale, uint8_t, (size_t)m->n_layers * context * m->n_kv_heads);
    TAKE(vscale, uint8_t, (size_t)m->n_layers * context * m->n_kv_heads);
#undef TAKE
    return used;
}

size_t tlm_arena_size(const tlm_model *m, uint32_t context) {
    if (context == 0 || context > m->max_seq_len) context = m->max_seq_len;
    return layout(NULL, m, NULL, context);
}

const char *tlm_init(tlm_state *s, const tlm_model *m, void *arena, size_t arena_size,
                     uint32_t context) {
    if (context == 0 || context > m->max_seq_len) context = m->max_seq_len;
    if ((uintptr_t)arena % 16) return "the arena must be 16-byte aligned";
    if (arena_size < tlm_arena_size(m, context)) return "the arena is too small";
    static const tlm_state empty;
    *s = empty;
    s->m = m;
    s->context = context;
    s->pending = -1;
    layout(s, m, (uint8_t *)arena, context);
    return NULL;
}

/* ---- the forward pass ------------------------------------------------------------------- */

/* Element j of a row of int4 values: low nibble first; (n ^ 8) - 8 sign-extends it. */
static int int4_at(const uint8_t *row, uint32_t j) {
    int nib = j & 1 ? row[j >> 1] >> 4 : row[j >> 1] & 15;
    return (nib ^ 8) - 8;
}

/* y = W x for a tensor of the section table; x is Q16 (n = W's columns), y Q16. */
static void matvec(tlm_state *s, int32_t *y, uint32_t section, const int32_t *x) {
    const tlm_model *m = s->m;
    entry e = get_entry(m, section);
    const uint8_t *w = m->file + e.offset;
#if TLM_FLOAT_WEIGHTS
    if (e.dtype == F32) {   /* float weights: add up in order, as the NumPy reference */
        for (uint32_t i = 0; i < e.rows; i++) {
            const float *row = (const float *)(const void *)w + (size_t)i * e.cols;
            float acc = 0.0f;
            for (uint32_t j = 0; j < e.cols; j++)
                acc += row[j] * ((float)x[j] * (1.0f / ONE));
            union { float f; uint32_t bits; } sum = {acc};
            y[i] = q16_from_f32(sum.bits);
        }
        return;
    }
#endif
    int32_t xm, xk;
    quantize_int8(s->xq, x, e.cols, &xm, &xk);
    uint32_t group = m->group_size, n_groups = (e.cols + group - 1) / group;
    uint32_t row_bytes = e.dtype == Q8 ? e.cols : (e.cols + 1) / 2;
    const uint16_t *scales = (const uint16_t *)(const void *)(w + ((
        (size_t)e.rows * row_bytes + 15) & ~(size_t)15));
    const int16_t *restrict xq = s->xq;
    for (uint32_t i = 0; i < e.rows; i++) {
        const uint8_t *row = w + (size_t)i * row_bytes;
        const uint16_t *row_scales = scales + (size_t)i * n_groups;
        int64_t acc = 0;
        for (uint32_t g = 0, j = 0; g < n_groups; g++) {
            uint32_t end = j + group < e.cols ? j + group : e.cols;
            int32_t dot = 0;   /* |dot| <= 127 * 127 * 256: an int32 per group */
            if (e.dtype == Q8) {
                const int8_t *r = (const int8_t *)row;
                /* four per pass: a Cortex-M0+ spends as much on the loop as on a product */
                for (; j + 4 <= end; j += 4)
                    dot += r[j] * xq[j] + r[j + 1] * xq[j + 1] + r[j + 2] * xq[j + 2] +
                           r[j + 3] * xq[j + 3];
                for (; j < end; j++) dot += (int16_t)r[j] * xq[j];
            } else {           /* int4, two per byte: whole bytes in the middle */
                for (; j < end && (j & 1); j++) dot += int4_at(row, j) * xq[j];
                for (; j + 1 < end; j += 2) {
                    int b = row[j >> 1];
                    dot += (((b & 15) ^ 8) - 8) * xq[j] + (((b >> 4) ^ 8) - 8) * xq[j + 1];
                }
                for (; j < end; j++) dot += int4_at(row, j) * xq[j];
            }
            acc += (int64_t)dot * row_scales[g];
        }
        y[i] = scale_sat(acc * xm, e.shift - xk);
    }
}

static void rmsnorm(tlm_state *s, int32_t *out, const int32_t *x, uint32_t section) {
    const tlm_model *m = s->m;
    const uint8_t *w = m->file + get_entry(m, section).offset;
    int64_t a = 0, sum = 0;
    for (uint32_t j = 0; j < m->dim; j++) {
        int64_t v = x[j] < 0 ? -(int64_t)x[j] : x[j];
        if (v > a) a = v;
    }
    /* shift x down to 20 bits so the sum of squares fits in int64 for any dim */
    int shift = bit_length((uint64_t)a) - 20;
    if (shift < 0) shift = 0;
    for (uint32_t j = 0; j < m->dim; j++) sum += (int64_t)(x[j] >> shift) * (x[j] >> shift);
    int64_t mean = sum / m->dim + (m->eps_q32 >> (2 * shift));
    int64_t root = (int64_t)isqrt((uint64_t)mean);
    int64_t inv = ((int64_t)1 << 46) / (root > 0 ? root : 1);   /* 2^46 / (rms 2^(16-shift)) */
    for (uint32_t j = 0; j < m->dim; j++) {
        int64_t normalized = rshift_round((int64_t)(x[j] >> shift) * inv, 30);
        out[j] = scale_sat(normalized * q16_from_f32(rd32(w + 4 * j)), 16);
    }
}

/* Rotate pairs (v[2i], v[2i+1]) of each head by the angles of position pos. */
static void rope(const tlm_model *m, int32_t *v, uint32_t n_heads, uint32_t pos) {
    const int16_t *table = m->rope + (size_t)pos * m->head_dim;
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t i = 0; i < m->head_dim / 2; i++) {
            int32_t *pair = v + h * m->head_dim + 2 * i;
            int64_t c = table[2 * i], sn = table[2 * i + 1], x0 = pair[0], x1 = pair[1];
            pair[0] = sat(rshift_round(x0 * c - x1 * sn, 14));
            pair[1] = sat(rshift_round(x0 * sn + x1 * c, 14));
        }
}

/* sum a[d] b[d]: in blocks of 8 that compilers turn into a few SIMD instructions */
static int32_t dot_i16_i8(const int16_t *restrict a, const int8_t *restrict b, uint32_t n) {
    int32_t sum = 0;
    uint32_t d = 0;
    for (; d + 8 <= n; d += 8)
        sum += a[d] * b[d] + a[d + 1] * b[d + 1] + a[d + 2] * b[d + 2] + a[d + 3] * b[d + 3] +
               a[d + 4] * b[d + 4] + a[d + 5] * b[d + 5] + a[d + 6] * b[d + 6] +
               a[d + 7] * b[d + 7];
    for (; d < n; d++) sum += a[d] * b[d];
    return sum;
}

static void attention(tlm_state *s, uint32_t layer, int32_t *out) {
    const tlm_model *m = s->m;
    uint32_t hd = m->head_dim, kv_heads = m->n_kv_heads, group = m->n_heads / kv_heads;
    size_t base_pos = (size_t)layer * s->context;
    int32_t *restrict w = s->scratch;
    int64_t *restrict acc = s->acc;
    {   /* fold 1/sqrt(head_dim) into q, then round q to int16 per head */
        int64_t root = (int64_t)isqrt((uint64_t)hd << 40);
        int64_t inv_sqrt = (((int64_t)1 << 50) + root / 2) / root;
        for (uint32_t j = 0; j < m->n_heads * hd; j++)
            s->q[j] = (int32_t)rshift_round(s->q[j] * inv_sqrt, 30);
    }
    for (uint32_t h = 0; h < m->n_heads; h++) {
        uint32_t kv = h / group;
        int e_q = quantize_pow2(s->q16 + h * hd, s->q + h * hd, hd);
        const int16_t *restrict qh = s->q16 + h * hd;
        int32_t top = -LIMIT;
        int top_exp = -64;
        for (uint32_t t = 0; t <= s->pos; t++) {
            size_t slot = (base_pos + t) * kv_heads + kv;
            int32_t dot = dot_i16_i8(qh, s->kcache + slot * hd, hd);
            uint8_t code = s->kscale[slot];
            w[t] = scale_sat((int64_t)dot * (8 + (code & 7)), 16 - e_q - ((code >> 3) - 10));
            if (w[t] > top) top = w[t];
            int v_exp = (s->vscale[slot] >> 3) - 10;
            if (v_exp > top_exp) top_exp = v_exp;
        }
        int64_t total = 0;
        for (uint32_t t = 0; t <= s->pos; t++) {   /* Q16 weights, the top one 1 */
            int64_t z = (int64_t)w[t] - top;
            /* below e^-12 the weight rounds to 0 (exp_neg < 2^13 there): skip the exp */
            w[t] = z < -((int64_t)12 << 16) ? 0 : (int32_t)(exp_neg(z) >> 14);
            total += w[t];
        }
        /* out = sum_t w_t v_t / sum_t w_t, with v_t = v8 * m_t 2^k_t: in units of 2^base, where
           base is 16 below the largest k, each term is an integer; the rare positions whose
           scale is further below are rounded, term by term. Keeps int64 safe. */
        int base = top_exp - 16;
        for (uint32_t d = 0; d < hd; d++) acc[d] = 0;
        for (uint32_t t = 0; t <= s->pos; t++) {
            size_t slot = (base_pos + t) * kv_heads + kv;
            const int8_t *restrict v = s->vcache + slot * hd;
            uint8_t code = s->vscale[slot];
            int rel = (code >> 3) - 10 - base;
            int64_t factor = (int64_t)w[t] * (8 + (code & 7));
            if (factor == 0) continue;
            if (rel >= 0) {
                factor *= (int64_t)1 << rel;
                for (uint32_t d = 0; d < hd; d += 2) {   /* head_dim is even */
                    acc[d] += factor * v[d];
                    acc[d + 1] += factor * v[d + 1];
                }
            } else {
                for (uint32_t d = 0; d < hd; d++) acc[d] += rshift_round(factor * v[d], -rel);
            }
        }
        for (uint32_t d = 0; d < hd; d++)
            out[h * hd + d] = scale_sat(div_round(acc[d], total), -base);
    }
}

static void swiglu(int32_t *a, const int32_t *b, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) {
        int64_t x = a[j];
        int64_t sig = ((int64_t)1 << 60) / (((int64_t)1 << 30) + exp_neg(x < 0 ? x : -x));
        if (x < 0) sig = ((int64_t)1 << 30) - sig;
        a[j] = scale_sat(rshift_round(x * sig, 30) * b[j], 16);
    }
}

static void add(int32_t *x, const int32_t *y, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) x[j] = sat((int64_t)x[j] + y[j]);
}

int32_t *tlm_forward(tlm_state *s, uint32_t token) {
    const tlm_model *m = s->m;
    if (s->pos >= s->context || token >= m->vocab_size) return NULL;
    {   /* embedding row, dequantized to Q16 */
        entry e = get_entry(m, 2);
        const uint8_t *w = m->file + e.offset;
        if (e.dtype == F32) {
            for (uint32_t j = 0; j < m->dim; j++)
                s->x[j] = q16_from_f32(rd32(w + 4 * ((size_t)token * m->dim + j)));
        } else {
            uint32_t row_bytes = e.dtype == Q8 ? m->dim : (m->dim + 1) / 2;
            uint32_t n_groups = (m->dim + m->group_size - 1) / m->group_size;
            const uint8_t *row = w + (size_t)token * row_bytes;
            const uint16_t *scales = (const uint16_t *)(const void *)(w + (((size_t)e.rows *
                row_bytes + 15) & ~(size_t)15)) + (size_t)token * n_groups;
            for (uint32_t j = 0; j < m->dim; j++) {
                int q = e.dtype == Q8 ? (int8_t)row[j] : int4_at(row, j);
                s->x[j] = scale_sat((int64_t)q * scales[j / m->group_size], e.shift - 16);
            }
        }
    }
    for (uint32_t l = 0; l < m->n_layers; l++) {
        uint32_t sec = 3 + N_LAYER_TENSORS * l;   /* attn_norm wq wk wv wo mlp_norm w1 w2 w3 */
        size_t slot = ((size_t)l * s->context + s->pos) * m->n_kv_heads;
        rmsnorm(s, s->h, s->x, sec);
        matvec(s, s->q, sec + 1, s->h);
        matvec(s, s->a, sec + 2, s->h);            /* k and v, through the hidden buffers */
        matvec(s, s->b, sec + 3, s->h);
        rope(m, s->q, m->n_heads, s->pos);
        rope(m, s->a, m->n_kv_heads, s->pos);
        for (uint32_t kv = 0; kv < m->n_kv_heads; kv++) {
            s->kscale[slot + kv] = quantize_code(s->kcache + (slot + kv) * m->head_dim,
                                                 s->a + kv * m->head_dim, m->head_dim, s->xq);
            s->vscale[slot + kv] = quantize_code(s->vcache + (slot + kv) * m->head_dim,
                                                 s->b + kv * m->head_dim, m->head_dim, s->xq);
        }
        attention(s, l, s->h);
        matvec(s, s->a, sec + 4, s->h);
        add(s->x, s->a, m->dim);
        rmsnorm(s, s->h, s->x, sec + 5);
        matvec(s, s->a, sec + 6, s->h);
        matvec(s, s->b, sec + 8, s->h);
        swiglu(s->a, s->b, m->hidden_dim);
        matvec(s, s->h, sec + 7, s->a);
        add(s->x, s->h, m->dim);
    }
    uint32_t final = 3 + N_LAYER_TENSORS * m->n_layers;
    rmsnorm(s, s->h, s->x, final);
    matvec(s, s->logits, m->tie_embeddings ? 2 : final + 1, s->h);
    s->pos++;
    return s->logits;
}

/* ---- sampling (tinylm/sampler.py) ------------------------------------------------------- */

static uint32_t next_u32(uint64_t *state) {   /* xorshift64* */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

void tlm_sampler_init(tlm_sampler *smp, uint32_t temperature_q16, uint32_t top_k,
                      uint32_t top_p_q16, uint64_t seed) {
    smp->temperature_q16 = temperature_q16;
    smp->top_k = top_k;
    smp->top_p_q16 = top_p_q16 < ONE ? top_p_q16 : ONE;   /* keeps top_p * total in 64 bits */
    smp->rng = seed + 0x9E3779B97F4A7C15ULL;
    if (smp->rng == 0) smp->rng = 1;
}

/* order[] sorted by probability, highest first, ties by id: a heap sort, in place. */
static int before(const uint32_t *p, uint16_t a, uint16_t b) {   /* a comes after b */
    return p[a] < p[b] || (p[a] == p[b] && a > b);
}

static void sift(const uint32_t *p, uint16_t *order, uint32_t root, uint32_t n) {
    for (uint32_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && before(p, order[child + 1], order[child])) child++;
        if (!before(p, order[child], order[root])) return;
        uint16_t t = order[root];
        order[root] = order[child];
        order[child] = t;
    }
}

static void sort_by_probability(const uint32_t *p, uint16_t *order, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) order[i] = (uint16_t)i;
    for (uint32_t i = n / 2; i-- > 0;) sift(p, order, i, n);
    for (uint32_t end = n; end-- > 1;) {   /* a min-heap on "before": largest ends first */
        uint16_t t = order[0];
        order[0] = order[end];
        order[end] = t;
        sift(p, order, 0, end);
    }
}

uint32_t tlm_sample(tlm_sampler *smp, int32_t *logits, uint32_t vocab_size, uint16_t *order) {
    uint32_t best = 0, n = vocab_size;
    for (uint32_t i = 1; i < vocab_size; i++)
        if (logits[i] > logits[best]) best = i;
    if (smp->temperature_q16 == 0) return best;
    int64_t top = logits[best], inv_t = ((int64_t)1 << 32) / smp->temperature_q16;
    uint32_t *p = (uint32_t *)logits;
    for (uint32_t i = 0; i < vocab_size; i++) {
        int64_t z = (int64_t)logits[i] - top;
        if (z < -((int64_t)1 << 27)) z = -((int64_t)1 << 27);
        z = (z * inv_t) >> 16;
        p[i] = (uint32_t)exp_neg(z < -((int64_t)1 << 31) ? -((int64_t)1 << 31) : z);
    }
    int sorted = smp->top_k > 0 || smp->top_p_q16 < ONE;
    if (sorted) {
        sort_by_probability(p, order, vocab_size);
        if (smp->top_k > 0 && smp->top_k < n) n = smp->top_k;
        uint64_t total = 0, mass = 0;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < n; i++) total += p[order[i]];
        /* keep a token while the more likely ones hold less than top_p */
        while (kept < n && mass * ONE < (uint64_t)smp->top_p_q16 * total) mass += p[order[kept++]];
        n = kept;
    }
    uint64_t mass = 0;
    for (uint32_t i = 0; i < n; i++) mass += p[sorted ? order[i] : i];
    uint64_t r = (uint64_t)next_u32(&smp->rng) << 32;
    r = (r | next_u32(&smp->rng)) % mass;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = sorted ? order[i] : i;
        if (r < p[id]) return id;
        r -= p[id];
    }
    return best;   /* not reached: r < mass */
}

void tlm_reset(tlm_state *s) {
    s->pos = 0;
    s->pending = -1;
}

int tlm_start(tlm_state *s, const uint32_t *prompt, uint32_t n) {
    tlm_reset(s);
    if (n == 0 || n >= s->context) return -1;
    for (uint32_t i = 0; i < n; i++)
        if (!tlm_forward(s, prompt[i])) return -1;
    return 0;
}

/* As generate.py: <bos> or <eos> ends the text; the last context slot stays unused. */
int32_t tlm_next(tlm_state *s, tlm_sampler *smp) {
    const tlm_model *m = s->m;
    if (s->pos == 0) return -1;
    if (s->pending >= 0) {
        if (s->pos + 1 >= s->context || !tlm_forward(s, (uint32_t)s->pending)) return -1;
    }
    uint32_t t = tlm_sample(smp, s->logits, m->vocab_size, (uint16_t *)(void *)s->scratch);
    if (t == m->bos_id || t == m->eos_id) return -1;
    s->pending = (int32_t)t;
    return (int32_t)t;
}

/* ---- tokenizer (docs/tokenizer.md) ------------------------------------------------------ */

/* Pre-split rule 1 classes: 0 letter (and ' and bytes >= 0x80), 1 digit, 2 space, 3 other. */
static int byte_class(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '\'' || c >= 0x80) return 0;
    if (c >= '0' && c <= '9') return 1;
    if (c == ' ' || (c >= 9 && c <= 13)) return 2;
    return 3;
}

/* End of the chunk that starts at i (rule 0: the whole text). */
static uint32_t chunk_end(const tlm_model *m, const uint8_t *t, uint32_t i, uint32_t n) {
    if (m->split_rule == 0) return n;
    if (t[i] == ' ' && i + 1 < n && byte_class(t[i + 1]) != 2) i++;   /* space leads a run */
    int c = byte_class(t[i]);
    while (i < n && byte_class(t[i]) == c &&
           !(c == 2 && t[i] == ' ' && i + 1 < n && byte_class(t[i + 1]) != 2))
        i++;
    return i;
}

static int32_t find_char(const tlm_model *m, uint32_t key) {
    uint32_t lo = 0, hi = m->n_chars;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (m->chars[2 * mid] == key) return (int32_t)m->chars[2 * mid + 1];
        if (m->chars[2 * mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static const uint32_t *find_merge(const tlm_model *m, uint32_t left, uint32_t right) {
    uint32_t lo = 0, hi = m->n_merges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const uint32_t *e = m->merges + 4 * mid;
        if (e[0] == left && e[1] == right) return e;
        if (e[0] < left || (e[0] == left && e[1] < right)) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Initial tokens of one chunk: each UTF-8 character (a byte and up to 3 continuation bytes)
   that is a token, else its bytes; then merge the pair of lowest rank, leftmost first, until
   none is left. Rescanning after each merge is O(n^2) and needs no extra memory. */
static int32_t encode_chunk(const tlm_model *m, const uint8_t *t, uint32_t n, uint32_t *ids,
                            uint32_t room) {
    uint32_t count = 0;
    if (m->dummy_prefix) {
        int32_t space = find_char(m, 0x20000000);
        if (count >= room) return -1;
        ids[count++] = space >= 0 ? (uint32_t)space : m->byte_ids[' '];
    }
    for (uint32_t i = 0; i < n;) {
        uint32_t len = 1, key = (uint32_t)t[i] << 24;
        while (len < 4 && i + len < n && (t[i + len] & 0xC0) == 0x80) {
            key |= (uint32_t)t[i + len] << (24 - 8 * len);
            len++;
        }
        int32_t id = find_char(m, key);
        if (count + (id >= 0 ? 1 : len) > room) return -1;
        if (id >= 0) ids[count++] = (uint32_t)id;
        else
            for (uint32_t k = 0; k < len; k++) ids[count++] = m->byte_ids[t[i + k]];
        i += len;
    }
    for (;;) {
        const uint32_t *best = NULL;
        uint32_t at = 0;
        for (uint32_t i = 0; i + 1 < count; i++) {
            const uint32_t *e = find_merge(m, ids[i], ids[i + 1]);
            if (e && (!best || e[3] < best[3])) best = e, at = i;
        }
        if (!best) return (int32_t)count;
        ids[at] = best[2];
        count--;
        for (uint32_t i = at + 1; i < count; i++) ids[i] = ids[i + 1];
    }
}

int32_t tlm_encode(const tlm_model *m, const uint8_t *text, uint32_t len, int bos,
                   uint32_t *ids, uint32_t max_ids) {
    uint32_t count = 0;
    if (bos) {
        if (max_ids < 1) return -1;
        ids[count++] = m->bos_id;
    }
    for (uint32_t i = 0; i < len;) {
        uint32_t end = chunk_end(m, text, i, len);
        int32_t n = encode_chunk(m, text + i, end - i, ids + count, max_ids - count);
        if (n < 0) return -1;
        count += (uint32_t)n;
        i = end;
    }
    return (int32_t)count;
}

static int is_special(const tlm_model *m, uint32_t id) {
    for (uint32_t i = 0; i < m->n_specials; i++)
        if (m->specials[i] == id) return 1;
    return 0;
}

const uint8_t *tlm_piece(const tlm_model *m, int32_t prev, uint32_t id, uint32_t *len) {
    *len = 0;
    if (id >= m->vocab_size || is_special(m, id)) return m->pieces;
    const uint8_t *piece = m->pieces + m->offsets[id];
    *len = m->offsets[id + 1] - m->offsets[id];
    /* the dummy-prefix space goes at the start of a text: first, or after a special token */
    if (m->dummy_prefix && *len && piece[0] == ' ' && (prev < 0 || is_special(m, (uint32_t)prev))) {
        piece++;
        (*len)--;
    }
    return piece;
}
