/* tinylm runtime: a Llama-style model from a .bin file, in integer arithmetic.

   Read top to bottom: fixed-point helpers, loading and checking the file, the forward pass,
   sampling, the tokenizer. tinylm/engine.py is the same computation in NumPy, line for line;
   the tests hold the two to identical logits.

   Numbers: activations are Q16 (value * 2^16) in int32, saturated to +-2^30. The work of a
   token is 32-bit arithmetic, for CPUs whose only fast multiply is 32 x 32 -> 32 bits (each
   step notes the bounds that keep it in range); 64-bit values appear in loading, once per
   layer and in the sampler. Shifts of negative numbers are arithmetic (floor), as on every
   compiler we build with. No floating point is used except for float32 (--bits 32) models. */
#include "kernels.h"   /* the loops that each CPU runs its own way, and what they share */

/* float32 (--bits 32) models: on a CPU without an FPU every multiply would be a soft-float
   call, so the builds for such CPUs leave them out with -DTLM_FLOAT_WEIGHTS=0. */
#ifndef TLM_FLOAT_WEIGHTS
#define TLM_FLOAT_WEIGHTS 1
#endif

#define ONE (1 << 16)
#define HEADER_SIZE 128u
#define ENTRY_SIZE 32u
#define TOKENIZER_HEAD 28u
#define F32 0
#define Q8 1
#define Q4 2
#define RAW 3
#define N_LAYER_TENSORS 9
#define MAX_OPTIONAL_SECTIONS 1024   /* after the required ones (docs/format.md) */
#define INPUT_TOP 63          /* matrix inputs are rounded to -63..63: see matvec */
#define CACHE_TOP 127         /* keys and values to -127..127 */
#define LOG2E_MINUS_1_Q16 29012
/* 2^(-i/64) in Q30, rounded, i = 0..64 (tinylm/fixedpoint.py computes the same) */
static const int32_t EXP2_TABLE[65] = {
    1073741824, 1062175491, 1050733751, 1039415261, 1028218693, 1017142735, 1006186087,
    995347464, 984625594, 974019220, 963527098, 953147997, 942880699, 932724001, 922676710,
    912737649, 902905651, 893179563, 883558244, 874040567, 864625413, 855311680, 846098274,
    836984114, 827968132, 819049271, 810226483, 801498734, 792865000, 784324269, 775875538,
    767517817, 759250125, 751071493, 742980960, 734977579, 727060411, 719228525, 711481005,
    703816941, 696235434, 688735596, 681316545, 673977412, 666717336, 659535466, 652430958,
    645402981, 638450708, 631573326, 624770026, 618040012, 611382493, 604796689, 598281827,
    591837143, 585461881, 579155293, 572916640, 566745190, 560640218, 554601009, 548626854,
    542717053, 536870912};

/* ---- fixed point ----------------------------------------------------------------------
   (rshift_round and scale_sat, which the kernels use too, are in kernels.h) */

static int32_t sat(int64_t v) { return v > LIMIT ? LIMIT : v < -LIMIT ? -LIMIT : (int32_t)v; }

static int bit_length(uint32_t a) {   /* a binary search: a bit at a time cost up to 32 steps */
    int n = 0;
    if (a >> 16) n += 16, a >>= 16;
    if (a >> 8) n += 8, a >>= 8;
    if (a >> 4) n += 4, a >>= 4;
    if (a >> 2) n += 2, a >>= 2;
    if (a >> 1) n += 1, a >>= 1;
    return n + (int)a;
}

/* a * b / 2^16 for |a|, |b| <= 2^30, rounded half away from zero and saturated: the 64-bit
   product of the magnitudes from four 16 x 16-bit pieces, each below 2^30. */
static inline int32_t mul_q16(int32_t a, int32_t b) {
    uint32_t x = a < 0 ? 0u - (uint32_t)a : (uint32_t)a, y = b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
    uint32_t xh = x >> 16, xl = x & 0xFFFF, yh = y >> 16, yl = y & 0xFFFF;
    if (xh * yh >= (1u << 14)) return (a < 0) != (b < 0) ? -LIMIT : LIMIT;
    uint32_t r = (xh * yh << 16) + xh * yl + xl * yh + ((xl * yl + (1u << 15)) >> 16);
    if (r > LIMIT) r = LIMIT;
    return (a < 0) != (b < 0) ? -(int32_t)r : (int32_t)r;
}

static int32_t div_round(int32_t num, int32_t den) {   /* half away from zero; den > 0 */
    int32_t q = ((num < 0 ? -num : num) + den / 2) / den;
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

static uint32_t isqrt32(uint32_t v) {
    uint32_t root = 0, bit = 1u << 30;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= root + bit) { v -= root + bit; root = (root >> 1) + bit; }
        else root >>= 1;
        bit >>= 2;
    }
    return root;
}

/* e^(z / 2^16) in Q30 for Q16 z <= 0: with -z log2(e) = n + f, 2^-(n + f) = 2^-f >> n, and
   2^-f from a table of 2^(-i/64), linearly between its entries (relative error below 2e-5).
   In 32 bits: -z log2(e) = -z + (-z)(log2(e) - 1), that product in 16-bit halves
   (-z <= 2^21 above EXP_FLOOR). No float: the same on every target. */
static inline int32_t exp_neg(int32_t z) {
    if (z < EXP_FLOOR) return 0;
    uint32_t m = (uint32_t)-z;
    uint32_t y = m + (m >> 16) * LOG2E_MINUS_1_Q16 + ((m & 0xFFFF) * LOG2E_MINUS_1_Q16 >> 16);
    uint32_t n = y >> 16, i = y >> 10 & 63, r = y & 1023;
    const int32_t *entry = EXP2_TABLE + i;   /* both entries from one address */
    int32_t step = (entry[0] - entry[1]) >> 4;   /* < 2^20: step * r < 2^30 */
    int32_t p = entry[0] - ((step * (int32_t)r) >> 6);
    return n < 31 ? p >> n : 0;
}

/* float32 (as its bits) to Q16, half away from zero, saturated; done on the bits so that
   float-free targets need no soft-float here. */
static int32_t q16_from_f32(uint32_t bits) {
    int e = (int)((bits >> 23) & 0xFF), s = 134 - e;
    uint32_t man = (bits & 0x7FFFFF) | 0x800000, mag;   /* 24 bits */
    if (e == 0xFF) mag = LIMIT;                       /* inf, nan */
    else if (e == 0) mag = 0;                         /* zero, subnormals: far below 2^-16 */
    else if (s <= 0) mag = s < -7 ? LIMIT : man << -s;
    else mag = s > 24 ? 0 : (man + (1u << (s - 1))) >> s;   /* past 24: below one half */
    if (mag > LIMIT) mag = LIMIT;
    return bits >> 31 ? -(int32_t)mag : (int32_t)mag;
}

/* Rounding a vector to integers in -top..top with one scale m * 2^k (m in 8..15): the
   smallest with top * scale >= max|v|. Then |v| < 2^(11 + k), so u = v * 2^(5 - k) has 16
   bits and q = u * round(2^18 / m) >> 23 stays in 32 bits: a multiply, not a division, per
   element. */
static int8_scale find_scale(const int32_t *v, uint32_t n, int32_t top) {
    uint32_t a = 0, m;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t x = v[j] < 0 ? 0u - (uint32_t)v[j] : (uint32_t)v[j];
        if (x > a) a = x;
    }
    int k = bit_length(a) - 12;
    if (k < -10) k = -10;
    for (;;) {   /* with k < 0, a < 2^(12 + k): a << -k < 2^12 */
        uint32_t num = k < 0 ? a << -k : a, den = k < 0 ? (uint32_t)top : (uint32_t)top << k;
        m = (num + den - 1) / den;
        if (m <= 15) break;
        k++;
    }
    if (m < 8) m = 8;
    int8_scale s = {(int32_t)m, k, (int32_t)(((1u << 19) / m + 1) / 2), top};
    return s;
}

static int32_t to_int8(int32_t v, int8_scale s) {
    int32_t u = s.k >= 5 ? rshift_round(v, s.k - 5) : v * (1 << (5 - s.k));
    int32_t q = rshift_round(u * s.reciprocal, 23);
    return q > s.top ? s.top : q < -s.top ? -s.top : q;
}

/* The key/value cache: int8 with the scale as one byte, (k + 10) << 3 | (m - 8). */
static uint8_t quantize_code(int8_t *q, const int32_t *v, uint32_t n) {
    int8_scale s = find_scale(v, n, CACHE_TOP);
    for (uint32_t j = 0; j < n; j++) q[j] = (int8_t)to_int8(v[j], s);
    return (uint8_t)(((s.k + 10) << 3) | (s.m - 8));
}

/* Queries rounded in place to integers of `bits` bits with a power-of-two scale: v ~ q 2^e. */
static int quantize_pow2(int32_t *v, uint32_t n, int bits) {
    uint32_t a = 0;
    int32_t top = (1 << (bits - 1)) - 1;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t x = v[j] < 0 ? 0u - (uint32_t)v[j] : (uint32_t)v[j];
        if (x > a) a = x;
    }
    int e = bit_length(a) - (bits - 1);
    for (uint32_t j = 0; j < n; j++) {
        int32_t r = e > 0 ? rshift_round(v[j], e) : v[j] * (1 << -e);
        v[j] = r > top ? top : r < -top ? -top : r;
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

/* Read as words (a dozen entries a token): tlm_load refuses a model that is not 16-byte
   aligned before it reads the table, which starts 16-byte aligned in the file, and the CPU is
   little-endian (tinylm.h). */
static entry get_entry(const tlm_model *m, uint32_t i) {
    const uint32_t *w = (const uint32_t *)(const void *)(m->table + ENTRY_SIZE * i);
    entry e = {w[0] & 0xFFFF, w[0] >> 16, w[1] & 0xFF, w[2], w[3], w[4], w[5], (int32_t)w[6]};
    return e;
}

/* Sections come in this order: tokenizer, rope, tok_emb, 9 per layer, final_norm, lm_head. */
static uint32_t n_required(const tlm_model *m) {
    return 4 + N_LAYER_TENSORS * m->n_layers + !m->tie_embeddings;
}

/* A section's bytes: in the copy of them a firmware made (tlm_model.copy), else in the file */
static const uint8_t *section_data(const tlm_model *m, entry e) {
    uint32_t at = e.offset - m->copy_start;
    return at < m->copy_end - m->copy_start ? m->copy + at : m->file + e.offset;
}

int tlm_token_section(const tlm_model *m, uint32_t i, uint32_t *start, uint32_t *end) {
    uint32_t section = i + 3 - m->tie_embeddings;   /* from tok_emb (2), or layer 0 (3) */
    if (section >= n_required(m)) return 0;
    entry e = get_entry(m, section);
    *start = e.offset, *end = e.offset + e.size;
    return 1;
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
    m->chat = rd32(p + 80);   /* the chat turn: token ids, or all 0 for a text model */
    m->chat_user = rd32(p + 84), m->chat_assistant = rd32(p + 88), m->chat_end = rd32(p + 92);
    uint32_t limit = m->chat ? m->vocab_size : 1;   /* a text model's ids are all 0 */
    if (m->chat > 1 || m->chat_user >= limit || m->chat_assistant >= limit || m->chat_end >= limit)
        return "bad chat turn: flag or token ids";
    {   /* epsilon * 2^32, rounded half up, from the bits of the double */
        uint64_t man = (eps & (((uint64_t)1 << 52) - 1)) | (eps_exp ? (uint64_t)1 << 52 : 0);
        int s = 1043 - (eps_exp ? eps_exp : 1);
        m->eps_q32 = s > 63 ? 0 : (int64_t)((man + ((uint64_t)1 << (s - 1))) >> s);
    }
    uint32_t n_sections = rd32(p + 72), table_offset = rd32(p + 76);
    if (n_sections > n_required(m) + MAX_OPTIONAL_SECTIONS) return "too many sections";
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
    /* Sections follow the table's order, so one pass finds any overlap. */
    for (uint64_t i = 0, previous_end = table_end; i < n_sections; i++) {
        entry e = get_entry(m, (uint32_t)i);
        if (e.offset < previous_end) return "sections overlap or are not in the table's order";
        previous_end = (uint64_t)e.offset + e.size;
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
    const char *error = check_tokenizer(m, p + tok.offset, tok.size);
    if (error) return error;
    /* the matrix kernel takes an int8 value as value + 128 in 1..255 (matvec): -128 is
       outside the format and would break it */
    for (uint32_t i = 2; i < n_required(m); i++) {
        entry e = get_entry(m, i);
        for (uint32_t j = 0; e.dtype == Q8 && j < e.rows * e.cols; j++)
            if (p[e.offset + j] == 0x80) return "bad int8 weight: -128 (the values are -127..127)";
    }
    return NULL;
}

/* ---- memory ----------------------------------------------------------------------------- */

/* Words of s->scratch: a weight per position for each half of the heads (attention_heads),
   the sampler's order of the vocabulary (uint16), or a matrix's packed input. */
static uint32_t scratch_words(const tlm_model *m, uint32_t context) {
    return 2 * context > m->vocab_size / 2 ? 2 * context : m->vocab_size / 2;
}

/* Carve the arena into buffers (or, with base NULL, just add up their sizes). The sum is
   64-bit: a file's largest shapes and context need gigabytes, more than a 32-bit size_t. */
static uint64_t layout(tlm_state *s, const tlm_model *m, uint8_t *base, uint32_t context) {
    uint64_t used = 0;
    uint32_t q_dim = m->n_heads * m->head_dim, kv_dim = m->n_kv_heads * m->head_dim;
    uint32_t widest = m->dim > m->hidden_dim ? m->dim : m->hidden_dim;
    uint32_t hidden = m->hidden_dim > kv_dim ? m->hidden_dim : kv_dim;   /* also holds k, v */
    if (q_dim > widest) widest = q_dim;
#define TAKE(field, type, count)                                                        \
    do {                                                                                \
        if (base) s->field = (type *)(void *)(base + (size_t)used);                     \
        used += ((uint64_t)(count) * sizeof(type) + 15) & ~(uint64_t)15;                \
    } while (0)
    TAKE(x, int32_t, m->dim);
    TAKE(h, int32_t, widest);
    TAKE(q, int32_t, q_dim);
    TAKE(a, int32_t, hidden);
    TAKE(b, int32_t, hidden);
    TAKE(logits, int32_t, m->vocab_size);
    TAKE(scratch, int32_t, scratch_words(m, context));
    TAKE(xq, int16_t, widest);
    TAKE(kcache, int8_t, (uint64_t)m->n_layers * context * kv_dim);
    TAKE(vcache, int8_t, (uint64_t)m->n_layers * context * kv_dim);
    TAKE(kscale, uint8_t, (uint64_t)m->n_layers * context * m->n_kv_heads);
    TAKE(vscale, uint8_t, (uint64_t)m->n_layers * context * m->n_kv_heads);
#undef TAKE
    return used;
}

size_t tlm_arena_size(const tlm_model *m, uint32_t context) {
    if (context == 0 || context > m->max_seq_len) context = m->max_seq_len;
    uint64_t size = layout(NULL, m, NULL, context);
    return size > SIZE_MAX ? SIZE_MAX : (size_t)size;   /* SIZE_MAX: more than can be had */
}

const char *tlm_init(tlm_state *s, const tlm_model *m, void *arena, size_t arena_size,
                     uint32_t context) {
    if (context == 0 || context > m->max_seq_len) context = m->max_seq_len;
    if ((uintptr_t)arena % 16) return "the arena must be 16-byte aligned";
    if (layout(NULL, m, NULL, context) > SIZE_MAX)
        return "the arena for this context is larger than this CPU can address";
    if (arena_size < tlm_arena_size(m, context)) return "the arena is too small";
    static const tlm_state empty;
    *s = empty;
    s->m = m;
    s->context = context;
    s->pending = -1;
    layout(s, m, (uint8_t *)arena, context);
    uint64_t root = isqrt((uint64_t)m->head_dim << 40);   /* sqrt(head_dim) 2^20 */
    s->inv_sqrt_head_dim = (int32_t)((((uint64_t)1 << 35) + root / 2) / root);
    return NULL;
}

/* ---- the forward pass ------------------------------------------------------------------- */

/* ---- matrix times vector ----------------------------------------------------------------

   y = W x with W int8 or int4, cut into groups of group_size columns, each with a uint16
   scale s: x is rounded to q in -63..63 with one scale xm 2^xk (find_scale), then
       y_i = sum_g s_ig dot_ig xm 2^(xk - shift),   dot_ig = sum over the group of w_ij q_j.
   All in 32 bits: |dot| < 127 * 63 * group_size is rounded by group_shift bits to 15 bits,
   so that times its scale it stays below 2^31, and each such term is cut by sum_shift bits
   more, so that their sum times xm stays below 2^30. (A group of 32 int8 columns loses 3 bits
   of its dot: 1/8 of a unit, where rounding x to 63 steps errs by tens of units.)

   The int8 kernel makes one multiply do two products. Four weights are one word; with
   u = w + 128 in 1..255 (w ^ 0x80808080; tlm_load refuses -128) and the inputs packed once
   per vector as X02 = x0 2^16 + x2 and X13 = x1 2^16 + x3,
       (u0 + u2 2^16) X02 = u0 x2 + (u0 x0 + u2 x2) 2^16   (mod 2^32).
   |u0 x2| <= 255 * 63 < 2^15 and |u0 x0 + u2 x2| < 2^15, so the arithmetic shift >> 16 gives
   u0 x0 + u2 x2, less 1 when x2 < 0 (u0 x2 < 0, as u0 >= 1). Hence
       sum w x = sum of the shifted products - 128 sum x + #(x2 < 0) + #(x3 < 0),
   where the last terms depend on x alone: one `correction` per group, computed once. (int4
   has a kernel of its own, nibble_rows.) The rows are the kernels' (kernels.h); matvec
   describes the product to them. */

/* Bits to cut from a group's dot so that it has 15: |dot| <= top * 63 * group_size. */
static int group_shift(uint32_t dtype, uint32_t group) {
    int bits = bit_length((dtype == Q8 ? 127u : 8u) * INPUT_TOP * group) - 15;
    return bits > 0 ? bits : 0;
}

/* Round the input once for every matrix that takes it (the matrix of `section` and those
   of its type after it): int16 slots in s->xq and, when the matrix is int8 (and this CPU's
   kernels take pairs: tlm_packed_pairs) or int4 and the shapes allow, packed for its kernel
   in s->scratch, followed by the groups' corrections (packed is then 8, or 4). */
static input prepare_input(tlm_state *s, const int32_t *x, uint32_t section) {
    const tlm_model *m = s->m;
    entry e = get_entry(m, section);
    uint32_t group = m->group_size, cols = e.cols, bits = e.dtype == Q8 ? 8 : 4;
    uint32_t n_groups = e.dtype != F32 ? (cols + group - 1) / group : 0;
    uint32_t room = scratch_words(m, s->context);
    input in = {x, find_scale(x, cols, INPUT_TOP), 0};
    const int16_t *q = s->xq;
    for (uint32_t j = 0; j < cols; j++) s->xq[j] = (int16_t)to_int8(x[j], in.scale);
    if (!n_groups || cols / 2 + n_groups > room) return in;
    int32_t *packed = s->scratch, *correction = packed + cols / 2;
    if (bits == 8 && cols % 4 == 0 && group % 4 == 0 && tlm_packed_pairs) {
        in.packed = 8;
        for (uint32_t g = 0; g < n_groups; g++)   /* with the rounding of group_shift */
            correction[g] = (1 << group_shift(Q8, group)) >> 1;
        for (uint32_t g = 0, j = 0; g < n_groups; g++)   /* (no division per word) */
            for (uint32_t end = j + group < cols ? j + group : cols; j < end; j += 4) {
                packed[j / 2] = q[j] * 65536 + q[j + 2];
                packed[j / 2 + 1] = q[j + 1] * 65536 + q[j + 3];
                correction[g] += (q[j + 2] < 0) + (q[j + 3] < 0) -
                                 128 * (q[j] + q[j + 1] + q[j + 2] + q[j + 3]);
            }
    } else if (bits == 4 && cols % 8 == 0 && group % 8 == 0 && group <= 32) {
        in.packed = 4;
        for (uint32_t g = 0; g < n_groups; g++) correction[g] = 0;
        for (uint32_t j = 0; j < cols; j += 8)
            for (uint32_t k = 0; k < 4; k++) {
                packed[j / 2 + k] = q[j + k] * 65536 + q[j + k + 4];
                correction[j / group] -= 8 * (q[j + k] + q[j + k + 4]);
            }
    }
    return in;
}

/* task(arg, 0) and task(arg, 1): at once on two cores (tlm_state.run_both), else in turn. */
static void on_both_cores(tlm_state *s, void (*task)(void *arg, uint32_t part), void *arg) {
    if (s->run_both) s->run_both(s->run_both_ctx, task, arg);
    else task(arg, 0), task(arg, 1);
}

/* The two halves of the rows, split at a multiple of 4 so that quads and pairs stay whole. */
static void product_half(void *arg, uint32_t part) {
    const product *p = (const product *)arg;
    uint32_t half = (p->rows / 2 + 2) & ~3u;
    tlm_product_rows(p, part ? half : 0, part ? p->rows : half);
}

/* y = W x for a tensor of the section table; x as prepared by prepare_input, y Q16. */
static void matvec(tlm_state *s, int32_t *y, uint32_t section, const input *in) {
    const tlm_model *m = s->m;
    entry e = get_entry(m, section);
    const uint8_t *w = section_data(m, e);
#if TLM_FLOAT_WEIGHTS
    if (e.dtype == F32) {   /* float weights: add up in order, as the NumPy reference */
        for (uint32_t i = 0; i < e.rows; i++) {
            const float *row = (const float *)(const void *)w + (size_t)i * e.cols;
            float acc = 0.0f;
            for (uint32_t j = 0; j < e.cols; j++)
                acc += row[j] * ((float)in->x[j] * (1.0f / ONE));
            union { float f; uint32_t bits; } sum = {acc};
            y[i] = q16_from_f32(sum.bits);
        }
        return;
    }
#endif
    product p = {s, in, w, NULL, y, e.rows, e.cols, e.dtype == Q8 ? e.cols : (e.cols + 1) / 2,
                 m->group_size, (e.cols + m->group_size - 1) / m->group_size, 0, 0, 0, 0, 0};
    p.scales = (const uint16_t *)(const void *)(w + (((size_t)e.rows * p.row_bytes + 15) &
                                                     ~(size_t)15));
    p.group_shift = group_shift(e.dtype, p.group);
    p.sum_shift = 5 + bit_length(p.n_groups - 1);
    p.out_shift = e.shift - in->scale.k - p.group_shift - p.sum_shift;
    p.pairs = in->packed == 8 && e.dtype == Q8 && (uintptr_t)w % 4 == 0 &&
              p.n_groups <= PAIR_SUMS / 2;
    p.nibbles = in->packed == 4 && e.dtype == Q4 && (uintptr_t)w % 4 == 0;
    on_both_cores(s, product_half, &p);
}

/* RMSNorm in 32 bits: x shifted down to `bits` bits so that dim squares add up below 2^31;
   1/rms as round(2^(16 + p) / root) with p small enough that |x| / rms <= sqrt(dim) times it
   stays below 2^31. */
static void rmsnorm(const tlm_model *m, int32_t *out, const int32_t *x, uint32_t section) {
    /* float32 weights, as words (sections are 16-byte aligned), converted as they are used:
       a copy in Q16 would cost the arena 4 dim bytes per norm */
    entry e = get_entry(m, section);
    const uint32_t *weight = (const uint32_t *)(const void *)section_data(m, e);
    uint32_t a = 0, sum = 0;
    int dim_bits = bit_length(m->dim), bits = (31 - dim_bits) / 2, p = 13 - (dim_bits + 1) / 2;
    for (uint32_t j = 0; j < m->dim; j++) {
        uint32_t v = x[j] < 0 ? 0u - (uint32_t)x[j] : (uint32_t)x[j];
        if (v > a) a = v;
    }
    int shift = bit_length(a) - bits;
    if (shift < 0) shift = 0;
    for (uint32_t j = 0; j < m->dim; j++) sum += (uint32_t)((x[j] >> shift) * (x[j] >> shift));
    /* epsilon * 2^32 < 2^32 (tlm_load), in the units of the shifted squares */
    uint32_t eps = 2 * shift > 31 ? 0 : (uint32_t)m->eps_q32 >> 2 * shift;
    uint32_t mean = sum / m->dim, root;
    mean = mean > 0xFFFFFFFFu - eps ? 0xFFFFFFFFu : mean + eps;
    root = isqrt32(mean);
    if (root == 0) root = 1;
    int32_t inv = (int32_t)(((1u << (16 + p)) + root / 2) / root);
    for (uint32_t j = 0; j < m->dim; j++) {
        int32_t normalized = rshift_round((x[j] >> shift) * inv, p);
        out[j] = mul_q16(normalized, q16_from_f32(weight[j]));
    }
}

/* Rotate pairs (v[2i], v[2i+1]) of each head by the angles of position pos: Q14 cos and sin,
   v split at bit 15 so that every product fits 32 bits (|c|, |s| <= 2^15), the rounding
   exactly that of the 64-bit a c - b s. */
static int32_t rotate(int32_t a, int32_t b, int32_t c, int32_t sn) {
    int64_t high = (int64_t)((a >> 15) * c) - (b >> 15) * sn;
    int32_t low = (a & 0x7FFF) * c - (b & 0x7FFF) * sn;   /* |low| < 2^31 - 2^16 */
    return sat(2 * high + ((low + (1 << 13)) >> 14));
}

static void rope(const tlm_model *m, int32_t *v, uint32_t n_heads, uint32_t pos) {
    const int16_t *table = m->rope + (size_t)pos * m->head_dim;
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t i = 0; i < m->head_dim / 2; i++) {
            int32_t *pair = v + h * m->head_dim + 2 * i, x0 = pair[0], x1 = pair[1];
            int32_t c = table[2 * i], sn = table[2 * i + 1];
            pair[0] = rotate(x0, x1, c, sn);
            pair[1] = rotate(x1, -x0, c, sn);
        }
}

/* Bits of the rounded queries: |q . k| * 15 < 2^31 needs 2^(bits - 1) * 127 * 15 * head_dim
   below it, so 16 bits up to head_dim 32, one less for each doubling beyond. */
static int query_bits(uint32_t head_dim) {
    int extra = bit_length(head_dim - 1) - 5;
    return extra > 0 ? 16 - extra : 16;
}

/* Head h of the attention of the current position over the cache (its query rotated and
   scaled: attention_heads), reading kv head kv: the weighted sum of the values into
   out[h * head_dim ...]; w holds a weight per position. A function of its own: inlined, its
   loops over the positions got worse registers (6,000 more cycles a token on a Cortex-M0+). */
NOINLINE static void attention_head(tlm_state *s, uint32_t layer, uint32_t h, uint32_t kv,
                                    int32_t *out, int32_t *restrict w) {
    const tlm_model *m = s->m;
    uint32_t hd = m->head_dim, kv_heads = m->n_kv_heads;
    size_t base_pos = (size_t)layer * s->context;
    uint32_t positions = s->pos + 1;   /* in a register: the stores below could alias s */
    size_t stride = (size_t)kv_heads * hd;   /* from a position's key or value to the next */
    int32_t *qh = s->q + h * hd;
    int e_q = quantize_pow2(qh, hd, query_bits(hd));
    int32_t top = -LIMIT;
    int top_exp = -64;
    tlm_key_dots(w, qh, s->kcache + (base_pos * kv_heads + kv) * hd, hd, stride, positions);
    /* the positions' scale codes, kv_heads apart */
    const uint8_t *k_codes = s->kscale + base_pos * kv_heads + kv;
    const uint8_t *v_codes = s->vscale + base_pos * kv_heads + kv;
    for (uint32_t t = 0; t < positions; t++) {
        uint8_t code = k_codes[t * kv_heads];
        int32_t score = scale_sat(w[t] * (8 + (code & 7)), 16 - e_q - ((code >> 3) - 10));
        w[t] = score;
        if (score > top) top = score;
        int v_exp = (v_codes[t * kv_heads] >> 3) - 10;
        if (v_exp > top_exp) top_exp = v_exp;
    }
    uint32_t total = 0, norm = 0;
    for (uint32_t t = 0; t < positions; t++) {   /* Q16 weights, the top one 65535 */
        int32_t z = w[t] - top;
        /* below e^-12 the weight rounds to 0 (exp_neg < 2^13 there): skip the exp */
        w[t] = z < -(12 << 16) ? 0 : exp_neg(z) >> 14;
        total += (uint32_t)w[t];
    }
    /* weights cut to 15 bits of their total, norm < 2^16: then each sum below, of
       weight * m * v8 <= norm * 15 * 127, stays under 2^28 */
    int cut = bit_length(total) - 15;
    /* out = sum_t w_t v_t / norm, v_t = v8 m_t 2^k_t, summed in units of 2^top_exp: the
       factor w_t m_t of a smaller k_t is rounded to them (kept in w) */
    for (uint32_t t = 0; t < positions; t++) {
        uint8_t code = v_codes[t * kv_heads];
        int32_t weight = rshift_round(w[t], cut);
        norm += (uint32_t)weight;
        w[t] = rshift_round(weight * (8 + (code & 7)), top_exp - ((code >> 3) - 10));
    }
    if (norm == 0) norm = 1;   /* only past 2^15 positions */
    int32_t *sums = out + h * hd;
    tlm_value_sums(sums, w, s->vcache + (base_pos * kv_heads + kv) * hd, hd, stride, positions);
    for (uint32_t d = 0; d < hd; d++)   /* 3 bits below the unit: far finer than the
                                           cache's own steps of 8..15 units */
        sums[d] = scale_sat(div_round(sums[d] * 8, (int32_t)norm), 3 - top_exp);
}

typedef struct {
    tlm_state *s;
    uint32_t layer;
    int32_t *out;
} heads;

/* The first half of the heads, or the rest, each half with its own weights in s->scratch:
   their queries rotated, with 1/sqrt(head_dim) folded in, then each head's attention. */
static void attention_heads(void *arg, uint32_t part) {
    const heads *a = (const heads *)arg;
    tlm_state *s = a->s;
    const tlm_model *m = s->m;
    uint32_t n = m->n_heads, first = part ? n / 2 : 0, end = part ? n : n / 2;
    uint32_t hd = m->head_dim, group = n / m->n_kv_heads;
    int32_t inv_sqrt = s->inv_sqrt_head_dim, *q = s->q;
    rope(m, q + first * hd, end - first, s->pos);
    for (uint32_t j = first * hd; j < end * hd; j++)   /* q in 15-bit halves */
        q[j] = (q[j] >> 15) * inv_sqrt + rshift_round((q[j] & 0x7FFF) * inv_sqrt, 15);
    for (uint32_t h = first; h < end; h++)
        attention_head(s, a->layer, h, h / group, a->out, s->scratch + part * s->context);
}

/* 1 / (1 + i/64) in Q16, rounded, i = 0..65: sigmoid without a division */
#define RECIPROCAL(i) ((65536 * 128 + 64 + (i)) / (2 * (64 + (i))))
#define RECIPROCALS(i)                                                                   \
    RECIPROCAL(i), RECIPROCAL(i + 1), RECIPROCAL(i + 2), RECIPROCAL(i + 3),              \
        RECIPROCAL(i + 4), RECIPROCAL(i + 5), RECIPROCAL(i + 6), RECIPROCAL(i + 7)
static const int32_t RECIPROCAL_TABLE[66] = {
    RECIPROCALS(0), RECIPROCALS(8), RECIPROCALS(16), RECIPROCALS(24), RECIPROCALS(32),
    RECIPROCALS(40), RECIPROCALS(48), RECIPROCALS(56), RECIPROCAL(64), RECIPROCAL(65)};

/* a * sigmoid(a) * b. sigmoid(|a|) = 1 / (1 + e) in Q16, e = e^-|a| in (0, 1]: from the
   table at e's top 6 bits, linearly between entries (error below 1e-4). */
static void swiglu(int32_t *a, const int32_t *b, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) {
        int32_t x = a[j];
        uint32_t e = (uint32_t)exp_neg(x < 0 ? x : -x) >> 14, i = e >> 10, r = e & 1023;
        int32_t step = RECIPROCAL_TABLE[i] - RECIPROCAL_TABLE[i + 1];   /* < 2^10 */
        uint32_t sig = (uint32_t)(RECIPROCAL_TABLE[i] - ((step * (int32_t)r) >> 10));
        if (x < 0) sig = (1u << 16) - sig;
        /* x * sig / 2^16 rounded, in 16-bit halves of x: exact */
        int32_t silu = (x >> 16) * (int32_t)sig +
                       (int32_t)(((uint32_t)(x & 0xFFFF) * sig + (1u << 15)) >> 16);
        a[j] = mul_q16(silu, b[j]);
    }
}

/* x += y saturated, both within +-2^30: in 32 bits, where only 2^30 + 2^30 would overflow */
static void add(int32_t *x, const int32_t *y, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) {
        int32_t v = x[j] > 0 && y[j] > LIMIT - x[j] ? LIMIT : x[j] + y[j];
        x[j] = v < -LIMIT ? -LIMIT : v;
    }
}

int32_t *tlm_forward(tlm_state *s, uint32_t token) {
    const tlm_model *m = s->m;
    if (s->pos >= s->context || token >= m->vocab_size) return NULL;
    {   /* embedding row, dequantized to Q16 */
        entry e = get_entry(m, 2);
        const uint8_t *w = section_data(m, e);
        if (e.dtype == F32) {
            for (uint32_t j = 0; j < m->dim; j++)
                s->x[j] = q16_from_f32(rd32(w + 4 * ((size_t)token * m->dim + j)));
        } else {
            uint32_t row_bytes = e.dtype == Q8 ? m->dim : (m->dim + 1) / 2;
            uint32_t n_groups = (m->dim + m->group_size - 1) / m->group_size;
            const uint8_t *row = w + (size_t)token * row_bytes;
            const uint16_t *scales = (const uint16_t *)(const void *)(w + (((size_t)e.rows *
                row_bytes + 15) & ~(size_t)15)) + (size_t)token * n_groups;
            for (uint32_t g = 0, j = 0; g < n_groups; g++)
                for (uint32_t end = j + m->group_size < m->dim ? j + m->group_size : m->dim;
                     j < end; j++) {   /* |q * scale| < 2^23 */
                    int q = e.dtype == Q8 ? (int8_t)row[j] : int4_at(row, j);
                    s->x[j] = scale_sat(q * scales[g], e.shift - 16);
                }
        }
    }
    for (uint32_t l = 0; l < m->n_layers; l++) {
        uint32_t sec = 3 + N_LAYER_TENSORS * l;   /* attn_norm wq wk wv wo mlp_norm w1 w2 w3 */
        size_t slot = ((size_t)l * s->context + s->pos) * m->n_kv_heads;
        rmsnorm(m, s->h, s->x, sec);
        input in = prepare_input(s, s->h, sec + 1);
        matvec(s, s->q, sec + 1, &in);
        matvec(s, s->a, sec + 2, &in);            /* k and v, through the hidden buffers */
        matvec(s, s->b, sec + 3, &in);
        rope(m, s->a, m->n_kv_heads, s->pos);   /* the queries' in attention_head */
        for (uint32_t kv = 0; kv < m->n_kv_heads; kv++) {
            s->kscale[slot + kv] = quantize_code(s->kcache + (slot + kv) * m->head_dim,
                                                 s->a + kv * m->head_dim, m->head_dim);
            s->vscale[slot + kv] = quantize_code(s->vcache + (slot + kv) * m->head_dim,
                                                 s->b + kv * m->head_dim, m->head_dim);
        }
        heads attention = {s, l, s->h};
        on_both_cores(s, attention_heads, &attention);
        in = prepare_input(s, s->h, sec + 4);
        matvec(s, s->a, sec + 4, &in);
        add(s->x, s->a, m->dim);
        rmsnorm(m, s->h, s->x, sec + 5);
        in = prepare_input(s, s->h, sec + 6);
        matvec(s, s->a, sec + 6, &in);
        matvec(s, s->b, sec + 8, &in);
        swiglu(s->a, s->b, m->hidden_dim);
        in = prepare_input(s, s->a, sec + 7);
        matvec(s, s->h, sec + 7, &in);
        add(s->x, s->h, m->dim);
    }
    uint32_t final = 3 + N_LAYER_TENSORS * m->n_layers;
    rmsnorm(m, s->h, s->x, final);
    uint32_t head = m->tie_embeddings ? 2 : final + 1;
    input in = prepare_input(s, s->h, head);
    matvec(s, s->logits, head, &in);
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

/* Top-k and top-p without sorting the vocabulary: a quickselect on likelihood (ties: the
   lower id first). select_top rearranges order[0..n) and returns k, the place in order of
   likelihood of the token at which the running total of weights from the most likely on
   (p[id], or 1 each with by_count) first exceeds goal; order[0..k] are then the k + 1 most
   likely, in no particular order, and *total is their weight. All n must weigh more than
   goal. Expected linear time, where a sort took n log n. */
static int less_likely(const uint32_t *p, uint16_t a, uint16_t b) {
    return p[a] < p[b] || (p[a] == p[b] && a > b);
}

static void swap16(uint16_t *order, uint32_t i, uint32_t j) {
    uint16_t t = order[i];
    order[i] = order[j];
    order[j] = t;
}

static uint32_t select_top(const uint32_t *p, uint16_t *order, uint32_t n, uint64_t goal,
                           int by_count, uint64_t *total) {
    uint32_t lo = 0, hi = n;
    uint64_t before = 0;   /* the weight of order[0..lo), all more likely than the rest */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2, last = hi - 1;   /* pivot: median of three, last */
        if (less_likely(p, order[mid], order[lo])) swap16(order, mid, lo);
        if (less_likely(p, order[last], order[mid])) swap16(order, last, mid);
        if (less_likely(p, order[mid], order[lo])) swap16(order, mid, lo);
        swap16(order, mid, last);
        uint16_t pivot = order[last];
        uint32_t store = lo, pivot_p = p[pivot];
        uint64_t more = 0;   /* the weight of those more likely than the pivot */
        for (uint32_t i = lo; i < last; i++) {
            uint16_t id = order[i];
            if (p[id] > pivot_p || (p[id] == pivot_p && id < pivot)) {
                more += p[id];
                order[i] = order[store];
                order[store++] = id;
            }
        }
        if (by_count) more = store - lo;
        swap16(order, store, last);
        uint64_t with_pivot = before + more + (by_count ? 1 : p[pivot]);
        if (before + more > goal) hi = store;
        else if (with_pivot > goal) lo = store, hi = store + 1, before += more;
        else lo = store + 1, before = with_pivot;
    }
    *total = before + (by_count ? 1 : p[order[lo]]);
    return lo;
}

typedef struct {
    int32_t *logits;
    uint32_t n;
    int32_t top;
    uint64_t mass[2];
} exps;

/* The sampler's weights of the first half of the logits, or of the rest */
static void exp_half(void *arg, uint32_t part) {
    exps *e = (exps *)arg;
    uint32_t half = e->n / 2, first = part ? half : 0;
    e->mass[part] = tlm_exp_weights(e->logits + first, (part ? e->n : half) - first, e->top,
                                    EXP2_TABLE);
}

/* tlm_sample, with the exps on both cores of s (NULL: one) */
static uint32_t sample(tlm_state *s, tlm_sampler *smp, int32_t *logits, uint32_t vocab_size,
                       uint16_t *order) {
    uint32_t best = 0, n = vocab_size, temperature = smp->temperature_q16;
    int32_t top = logits[0];
    for (uint32_t i = 1; i < vocab_size; i++)
        if (logits[i] > top) best = i, top = logits[i];
    if (temperature == 0) return best;
    if (temperature != ONE) {   /* z / T in place of z = logit - top, then exps of those */
        int64_t inv_t = ((int64_t)1 << 32) / temperature;
        for (uint32_t i = 0; i < vocab_size; i++) {
            int32_t z = logits[i] - top;
            if (z < -(1 << 27)) z = -(1 << 27);   /* so that z * inv_t fits 64 bits */
            int64_t scaled = (z * inv_t) >> 16;
            logits[i] = scaled < EXP_FLOOR ? EXP_FLOOR - 1 : (int32_t)scaled;
        }
        top = 0;
    }
    uint32_t *p = (uint32_t *)logits;
    exps e = {logits, vocab_size, top, {0, 0}};
    if (s) on_both_cores(s, exp_half, &e);
    else exp_half(&e, 0), exp_half(&e, 1);
    uint64_t mass = e.mass[0] + e.mass[1];
    int sorted = smp->top_k > 0 || smp->top_p_q16 < ONE, by_top_k = 0;
    uint32_t kept = n;
    if (sorted) {
        if (smp->top_k > 0 && smp->top_k < n) {
            for (uint32_t i = 0; i < n; i++) order[i] = (uint16_t)i;
            select_top(p, order, n, smp->top_k - 1, 1, &mass), n = smp->top_k, by_top_k = 1;
            mass = 0;
            for (uint32_t i = 0; i < n; i++) mass += p[order[i]];
        }
        /* keep the most likely tokens up to the first whose mass reaches top_p of the
           total: mass * ONE >= top_p * total, i.e. mass > ceil(top_p * total / ONE) - 1 */
        uint64_t goal = (uint64_t)smp->top_p_q16 * mass, limit = (goal - 1) >> 16;
        kept = 0;
        if (goal) {
            /* A token t is kept only if the weight more likely than it is at most `limit`;
               that weight is at least mass - n p[t], as the n tokens from t on weigh at most
               p[t] each. So the tokens below `least` cannot be kept: dropped before the
               selection (they all come after the kept ones), which then sorts out a few. */
            uint32_t least = (uint32_t)((mass - limit + n - 1) / n), likely = 0;
            if (by_top_k)   /* order holds ids only after top-k */
                for (uint32_t i = 0; i < n; i++) {
                    if (p[order[i]] >= least) order[likely++] = order[i];
                }
            else
                for (uint32_t i = 0; i < n; i++) {
                    if (p[i] >= least) order[likely++] = (uint16_t)i;
                }
            kept = select_top(p, order, likely, limit, 0, &mass) + 1;
        } else mass = 0;
    }
    uint64_t r = (uint64_t)next_u32(&smp->rng) << 32;
    r = (r | next_u32(&smp->rng)) % mass;
    if (sorted)   /* the token, in order of likelihood, at which the running mass passes r */
        return order[select_top(p, order, kept, r, 0, &mass)];
    for (uint32_t i = 0; i < kept; i++) {
        if (r < p[i]) return i;
        r -= p[i];
    }
    return best;   /* not reached: r < mass */
}

uint32_t tlm_sample(tlm_sampler *smp, int32_t *logits, uint32_t vocab_size, uint16_t *order) {
    return sample(NULL, smp, logits, vocab_size, order);
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

/* As generate.py: <bos>, <eos> or a chat model's end token ends it; the last slot unused. */
int32_t tlm_next(tlm_state *s, tlm_sampler *smp) {
    const tlm_model *m = s->m;
    if (s->pos == 0) return -1;
    if (s->pending >= 0) {
        if (s->pos + 1 >= s->context || !tlm_forward(s, (uint32_t)s->pending)) return -1;
    }
    uint32_t t = sample(s, smp, s->logits, m->vocab_size, (uint16_t *)(void *)s->scratch);
    if (t == m->bos_id || t == m->eos_id || (m->chat && t == m->chat_end)) return -1;
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

int32_t tlm_encode(const tlm_model *m, const uint8_t *text, uint32_t len, int wrap,
                   uint32_t *ids, uint32_t max_ids) {
    uint32_t count = 0, chat = wrap == TLM_CHAT_TURN && m->chat;
    if (max_ids < (wrap != 0) + 2 * chat) return -1;
    if (wrap) ids[count++] = m->bos_id;
    if (chat) ids[count++] = m->chat_user;
    for (uint32_t i = 0; i < len;) {   /* the text leaves room for the reply's marker */
        uint32_t end = chunk_end(m, text, i, len);
        int32_t n = encode_chunk(m, text + i, end - i, ids + count, max_ids - count - chat);
        if (n < 0) return -1;
        count += (uint32_t)n;
        i = end;
    }
    if (chat) ids[count++] = m->chat_assistant;
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
