/* tinylm runtime: a Llama-style model from a .bin file, in integer arithmetic.

   Read top to bottom: fixed-point helpers, loading and checking the file, the forward pass,
   sampling, the tokenizer. tinylm/engine.py is the same computation in NumPy, line for line;
   the tests hold the two to identical logits.

   Numbers: activations are Q16 (value * 2^16) in int32, saturated to +-2^30. The work of a
   token is 32-bit arithmetic, for CPUs whose only fast multiply is 32 x 32 -> 32 bits (each
   step notes the bounds that keep it in range); 64-bit values appear in loading, once per
   layer and in the sampler. Shifts of negative numbers are arithmetic (floor), as on every
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

/* A loop that needs the registers to itself (see key_dots): a function of its own */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
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
#define INPUT_TOP 63          /* matrix inputs are rounded to -63..63: see matvec */
#define CACHE_TOP 127         /* keys and values to -127..127 */
#define LOG2E_MINUS_1_Q16 29012
#define LOG2E_Q15 47274u
#define EXP_FLOOR (-(1 << 21))   /* e^z rounds to 0 in Q30 below z = -21.5 */
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

/* ---- fixed point ---------------------------------------------------------------------- */

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

/* v / 2^s rounded half up, s >= 0, as floor(v / 2^(s-1) + 1) / 2, which cannot overflow;
   past s = 31 it is 0 for every int32. */
static int32_t rshift_round(int32_t v, int s) {
    if (s <= 0) return v;
    if (s > 31) return 0;
    return ((v >> (s - 1)) + 1) >> 1;
}

/* v * 2^-s rounded and saturated; a negative s is a left shift. */
static inline int32_t scale_sat(int32_t v, int s) {
    if (s >= 0) {   /* in 32 bits: sat's int64 compares cost a CPU without them dearly */
        int32_t r = rshift_round(v, s);
        return r > LIMIT ? LIMIT : r < -LIMIT ? -LIMIT : r;
    }
    int l = -s > 31 ? 31 : -s;
    if (v > (LIMIT >> l)) return LIMIT;
    if (v < -(LIMIT >> l)) return -LIMIT;
    return v * (1 << l);
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

/* e^(z / 2^16) in Q30 for Q16 z <= 0 to within 0.6%: -z log2(e) rounded to 1/64 in one
   multiply ((-z >> 5) < 2^16, log2(e) in Q15), then the nearest table entry, no
   interpolation. The sampler takes one per vocabulary entry and needs only their ratios. */
static inline int32_t exp_neg_coarse(int32_t z) {
    if (z < EXP_FLOOR) return 0;
    uint32_t k = (((uint32_t)-z >> 5) * LOG2E_Q15 + (1u << 19)) >> 20, n = k >> 6;
    return n < 31 ? EXP2_TABLE[k & 63] >> n : 0;
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
typedef struct {
    int32_t m, k, reciprocal, top;
} int8_scale;

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
    TAKE(scratch, int32_t, scratch / 4);
    TAKE(xq, int16_t, widest);
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
    uint64_t root = isqrt((uint64_t)m->head_dim << 40);   /* sqrt(head_dim) 2^20 */
    s->inv_sqrt_head_dim = (int32_t)((((uint64_t)1 << 35) + root / 2) / root);
    return NULL;
}

/* ---- the forward pass ------------------------------------------------------------------- */

/* Element j of a row of int4 values: low nibble first; (n ^ 8) - 8 sign-extends it. */
static int int4_at(const uint8_t *row, uint32_t j) {
    int nib = j & 1 ? row[j >> 1] >> 4 : row[j >> 1] & 15;
    return (nib ^ 8) - 8;
}

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
   has a kernel of its own, nibble_rows.) */

typedef struct {
    const int32_t *x;               /* Q16 */
    int8_scale scale;               /* of the int8 values in s->xq and, packed, s->scratch */
    int packed;                     /* 8 or 4: packed for that kernel in s->scratch too */
} input;

typedef struct {
    const tlm_state *s;
    const input *in;
    const uint8_t *w;               /* rows of int8 or int4 values */
    const uint16_t *scales;         /* [rows][n_groups] */
    int32_t *y;
    uint32_t rows, cols, row_bytes, group, n_groups;
    int group_shift, sum_shift, out_shift, pairs, nibbles;   /* which kernel */
} product;

#define PAIR_SUMS 256               /* group sums per call of the pair kernel */

/* The pair kernel: for `pairs` pairs of rows (rows 2p and 2p + 1 of `rows`, stride bytes
   apart; stride 0 pairs a row with itself), sums[(p n_groups + g) 2 + r] is row r's packed
   sum (above) over group g of the words (4 columns each) of the packed input x;
   group_words per group, the last one may be shorter. */
#if defined(__ARM_ARCH_6M__)
/* The assembly kernels go where pico-sdk's linker script puts code to be copied to SRAM at
   boot (.time_critical*), so that on a board they do not share the 16 KB XIP cache with the
   weights streaming through it (the bare-metal image is all in SRAM anyway). */
#define ARM_KERNEL_SECTION ".pushsection .time_critical.tinylm, \"ax\", %progbits\n"
#define ARM_KERNEL_END(name) " .size " name ", .-" name "\n .popsection\n"

/* Cortex-M0+: two rows share each load of the input, 28 cycles per word of both rows, eight
   MACs; groups of 8 words (32 columns) unrolled. Low registers: r0 row 0, r1 and r3 the
   halves of a weight word, r2 the input, r4/r5 X02/X13, r6 0x00FF00FF, r7 0x80808080; high:
   r8/r9 the sums, r10 row 1, r11 where the loop ends, r12 the output, lr the input's end.
   On the stack from sp + 36: x, bytes of x per group, words, stride, pairs left. */
void tlm_pair_sums(const uint8_t *rows, const int32_t *x, int32_t *sums, uint32_t group_words,
                   uint32_t words, uint32_t stride, uint32_t pairs);
#define PAIR_PRODUCTS /* r1, a word of a row -> its two shifted products, in r1 and r3 */     \
    "eors r1, r7\n lsrs r3, r1, #8\n ands r3, r6\n ands r1, r6\n muls r1, r4, r1\n"         \
    "muls r3, r5, r3\n asrs r1, r1, #16\n asrs r3, r3, #16\n"
#define PAIR_HALF(sum) PAIR_PRODUCTS "add " sum ", r1\n add " sum ", r3\n"
#define PAIR_WORD(k)                                                                       \
    "ldmia r2!, {r4, r5}\n ldr r1, [r0, #" #k "]\n" PAIR_HALF("r8")                        \
    "mov r1, r10\n ldr r1, [r1, #" #k "]\n" PAIR_HALF("r9")
#define PAIR_STORE                                                                         \
    " mov r4, r12\n mov r1, r8\n mov r3, r9\n stmia r4!, {r1, r3}\n mov r12, r4\n"          \
    " movs r1, #0\n mov r8, r1\n mov r9, r1\n"
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_pair_sums\n"
    ".type tlm_pair_sums, %function\n .thumb_func\n"
    "tlm_pair_sums:\n"
    " push {r1, r3}\n push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n"
    " mov r7, r11\n push {r4-r7}\n"
    " mov r12, r2\n ldr r6, =0x00FF00FF\n ldr r7, =0x80808080\n"
    " ldr r4, [sp, #44]\n lsls r4, r4, #3\n ldr r1, [sp, #36]\n adds r1, r1, r4\n"
    " mov lr, r1\n"                                                 /* the input's end */
    " ldr r4, [sp, #44]\n ldr r5, [sp, #40]\n cmp r5, r4\n blo 30f\n"  /* one group of */
    " lsls r5, r4, #30\n bne 30f\n b 19f\n"                         /* 4k words: below */
    "30:"
    " ldr r4, [sp, #40]\n lsls r4, r4, #3\n str r4, [sp, #40]\n"    /* bytes per group */
    "0: ldr r2, [sp, #36]\n ldr r1, [sp, #48]\n adds r1, r1, r0\n mov r10, r1\n"
    " ldr r4, [sp, #40]\n mov r1, r2\n cmp r4, #64\n bne 1f\n"   /* 8-word groups: up to */
    " ldr r5, [sp, #44]\n lsrs r5, r5, #3\n lsls r5, r5, #6\n adds r1, r1, r5\n" /* the last */
    "1: mov r11, r1\n movs r1, #0\n mov r8, r1\n mov r9, r1\n"
    "2: cmp r2, r11\n bne 3f\n b 4f\n"
    "3:\n" PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12) PAIR_WORD(16) PAIR_WORD(20)
    PAIR_WORD(24) PAIR_WORD(28) " adds r0, r0, #32\n movs r1, #32\n add r10, r1\n"
    PAIR_STORE " b 2b\n"
    "4: cmp r2, lr\n bne 12f\n b 7f\n"                     /* other groups: word by word */
    "12:"
    " ldr r4, [sp, #40]\n adds r4, r4, r2\n cmp r4, lr\n bls 5f\n mov r4, lr\n"
    "5: mov r11, r4\n"
    "6: mov r1, r11\n subs r1, r1, r2\n cmp r1, #32\n bhs 11f\n b 9f\n" /* 4 words at */
    "11:\n"                                                              /* a time */
    PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12)
    " adds r0, r0, #16\n movs r1, #16\n add r10, r1\n b 6b\n"
    "9: cmp r2, r11\n beq 10f\n"                                       /* then one by one */
    PAIR_WORD(0) " adds r0, r0, #4\n movs r1, #4\n add r10, r1\n b 9b\n"
    "10:" PAIR_STORE " b 4b\n"
    "7: mov r0, r10\n ldr r1, [sp, #44]\n lsls r1, r1, #2\n subs r0, r0, r1\n" /* next pair: */
    " ldr r1, [sp, #48]\n adds r0, r0, r1\n"                    /* row 1's end - words + stride */
    " ldr r1, [sp, #52]\n subs r1, r1, #1\n str r1, [sp, #52]\n beq 8f\n b 0b\n"
    "8: pop {r4-r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
    " pop {r4-r7}\n pop {r3}\n add sp, #8\n bx r3\n .ltorg\n"
    /* rows of one group of 4k words: no group bookkeeping; the slot of words then holds
       how far the next pair's row 0 is from this row 0's end */
    "19: ldr r5, [sp, #48]\n lsls r5, r5, #1\n lsls r4, r4, #2\n subs r5, r5, r4\n"
    " str r5, [sp, #44]\n movs r1, #0\n mov r8, r1\n mov r9, r1\n"
    "20: ldr r2, [sp, #36]\n ldr r1, [sp, #48]\n adds r1, r1, r0\n mov r10, r1\n"
    "21:\n" PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12)
    " adds r0, r0, #16\n movs r1, #16\n add r10, r1\n cmp r2, lr\n bne 21b\n" PAIR_STORE
    " ldr r1, [sp, #44]\n adds r0, r0, r1\n"
    " ldr r1, [sp, #52]\n subs r1, r1, #1\n str r1, [sp, #52]\n beq 22f\n b 20b\n"
    "22: b 8b\n"
    ARM_KERNEL_END("tlm_pair_sums"));

/* Rows of 64 columns, two groups of 8 words (most matrices of a model 64 wide), four rows at
   a time, the whole product in one pass: each load of the input serves four rows, each
   group's sums are scaled while they are in registers, and the outputs are written. Rows 0
   and 1 are r0 + k and r0 + 64 + k, rows 2 and 3 the same from r10 = r0 + 128 (one more
   cycle each: a high register). With c_g group g's correction (after the 32 words of packed
   input) and s_rg row r's scale (a quad's 8 are adjacent, row by row):
       total_r = sum_g ((sum_rg + c_g) >> 3) s_rg >> 6      (group_shift 3, sum_shift 6)
       y_r = (((total_r xm) >> down) + 1) >> 1            (scale_sat, out_shift = down + 1)
   Registers: r0 row 0, r2 the input, r1/r3 the halves of a weight word, r4/r5 X02/X13, r6
   0x00FF00FF, r7 0x80808080; high: r8/r9/r11/r12 the rows' sums, r10 row 2, lr the quad's
   scales. The first group's terms wait on the stack (sp + 0..12); at the end the totals
   are made in r0-r3, whose row pointers can be made again from r10. Locals: y at sp + 16,
   x at sp + 20; arguments from sp + 60: the rows' end, xm, down. 53 cycles a word of the
   four rows (16 MACs), about 125 a quad for the rest. */
void tlm_quads64(const uint8_t *rows, const int32_t *x, int32_t *y, const uint16_t *scales,
                 const uint8_t *rows_end, int32_t xm, int32_t down);
#define QUAD_WORD(k, op) /* word k of the four rows; op "mov" for a group's first word */   \
    "ldmia r2!, {r4, r5}\n ldr r1, [r0, #" #k "]\n" PAIR_PRODUCTS op " r8, r1\n add r8, r3\n"  \
    "ldr r1, [r0, #64+" #k "]\n" PAIR_PRODUCTS op " r9, r1\n add r9, r3\n"                   \
    "mov r1, r10\n ldr r1, [r1, #" #k "]\n" PAIR_PRODUCTS op " r11, r1\n add r11, r3\n"      \
    "mov r1, r10\n ldr r1, [r1, #64+" #k "]\n" PAIR_PRODUCTS op " r12, r1\n add r12, r3\n"
#define QUAD_GROUP(k) /* the 8 words of a group from word k */                            \
    QUAD_WORD(k, "mov") QUAD_WORD(k + 4, "add") QUAD_WORD(k + 8, "add")                   \
    QUAD_WORD(k + 12, "add") QUAD_WORD(k + 16, "add") QUAD_WORD(k + 20, "add")           \
    QUAD_WORD(k + 24, "add") QUAD_WORD(k + 28, "add")
#define QUAD_TERM(out, tmp, sum, s) /* a row's term of a group: c_g in r4, scales at r5 */  \
    "mov " out ", " sum "\n adds " out ", r4\n asrs " out ", " out ", #3\n"                  \
    "ldrh " tmp ", [r5, #" #s "]\n muls " out ", " tmp ", " out "\n asrs " out ", " out ", #6\n"
#define QUAD_TOTAL(out, tmp, sum, s, t) /* the second group's term plus the first's */    \
    QUAD_TERM(out, tmp, sum, s) "ldr " tmp ", [sp, #" #t "]\n adds " out ", " tmp "\n"
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_quads64\n"
    ".type tlm_quads64, %function\n .thumb_func\n"
    "tlm_quads64:\n"
    " push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n mov r7, r11\n push {r4-r7}\n"
    " sub sp, #24\n str r2, [sp, #16]\n str r1, [sp, #20]\n mov lr, r3\n mov r2, r1\n"
    " movs r1, #128\n adds r1, r0\n mov r10, r1\n"
    " ldr r6, =0x00FF00FF\n ldr r7, =0x80808080\n b 1f\n .ltorg\n"
    "1:\n" QUAD_GROUP(0)
    " ldr r4, [r2, #64]\n mov r5, lr\n"                 /* the first group's terms, kept */
    QUAD_TERM("r1", "r3", "r8", 0) " str r1, [sp, #0]\n" QUAD_TERM("r1", "r3", "r9", 4)
    " str r1, [sp, #4]\n" QUAD_TERM("r1", "r3", "r11", 8) " str r1, [sp, #8]\n"
    QUAD_TERM("r1", "r3", "r12", 12) " str r1, [sp, #12]\n"
    QUAD_GROUP(32)
    " ldr r4, [r2, #4]\n mov r5, lr\n"                           /* the totals in r0-r3 */
    QUAD_TOTAL("r0", "r1", "r8", 2, 0) QUAD_TOTAL("r1", "r2", "r9", 6, 4)
    QUAD_TOTAL("r2", "r3", "r11", 10, 8) QUAD_TOTAL("r3", "r4", "r12", 14, 12)
    " ldr r4, [sp, #64]\n muls r0, r4, r0\n muls r1, r4, r1\n muls r2, r4, r2\n"  /* outputs */
    " muls r3, r4, r3\n ldr r4, [sp, #68]\n asrs r0, r4\n asrs r1, r4\n asrs r2, r4\n"
    " asrs r3, r4\n adds r0, #1\n adds r1, #1\n adds r2, #1\n adds r3, #1\n asrs r0, r0, #1\n"
    " asrs r1, r1, #1\n asrs r2, r2, #1\n asrs r3, r3, #1\n ldr r4, [sp, #16]\n"
    " stmia r4!, {r0-r3}\n str r4, [sp, #16]\n"
    " mov r0, r10\n adds r0, #128\n mov r1, r0\n adds r1, #128\n mov r10, r1\n" /* next */
    " adds r5, #16\n mov lr, r5\n ldr r2, [sp, #20]\n"
    " ldr r4, [sp, #60]\n cmp r0, r4\n beq 2f\n b 1b\n"
    "2: add sp, #24\n pop {r4-r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
    " pop {r4-r7, pc}\n"
    ARM_KERNEL_END("tlm_quads64"));

/* Pairs of rows of any number of words in groups of 8 (32 columns; the last group 1 to 8
   words), the whole product in one pass. Row 0 is read with ldmia (it advances by itself)
   and row 1 at r0 + r10 (its stride less 4), so the 8 word blocks are identical and
   position-free: a group of t words enters at block 8 - t (Duff's device), and no pointer
   needs fixing between groups. Each group's sums start at its correction, so its terms are
       ((sum_rg + c_g) >> 3) s_rg >> sum_shift
   and the outputs are tlm_quads64's. 28 cycles a word of both rows (row 1's address takes
   one more), 34 a group for its correction, terms and loop, about 45 a pair. Registers: r0
   row 0, r2 the input, r1/r3 the halves of a weight word, r4/r5 X02/X13, r6 0x00FF00FF, r7
   0x80808080; high: r8/r9 the sums, r10 row 1 from row 0, r11/r12 the totals, lr row 0's
   scale of the group. Locals from sp: y, corrections - x/16, where the last group's input
   starts, the address of its entry block, x, 2 n_groups (row 1's scales from row 0's).
   Arguments from sp + 60: the rows' end, bytes of a row, the corrections, xm, down,
   sum_shift, words of the last group. */
void tlm_rows_wide(const uint8_t *rows, const int32_t *x, int32_t *y, const uint16_t *scales,
                   const uint8_t *rows_end, uint32_t row_bytes, const int32_t *corrections,
                   int32_t xm, int32_t down, int32_t sum_shift, uint32_t last_words);
#define WIDE_BLOCK /* one word of both rows: 24 instructions, 48 bytes */                 \
    "ldmia r2!, {r4, r5}\n ldmia r0!, {r1}\n" PAIR_PRODUCTS "add r8, r1\n add r8, r3\n"     \
    "mov r1, r10\n ldr r1, [r0, r1]\n" PAIR_PRODUCTS "add r9, r1\n add r9, r3\n"
#define WIDE_CORRECTION /* group g's input starts at x + 64 g: its correction is at */      \
    /* (corrections - x/16) + r2/16, x being 16-byte aligned; the sums start at it */    \
    " lsrs r4, r2, #4\n ldr r5, [sp, #4]\n ldr r5, [r5, r4]\n mov r8, r5\n mov r9, r5\n"
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_rows_wide\n"
    ".type tlm_rows_wide, %function\n .thumb_func\n"
    "tlm_rows_wide:\n"
    " push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n mov r7, r11\n push {r4-r7}\n"
    " sub sp, #24\n str r2, [sp, #0]\n str r1, [sp, #16]\n mov lr, r3\n"
    " lsrs r3, r1, #4\n ldr r4, [sp, #68]\n subs r4, r3\n str r4, [sp, #4]\n"
    " ldr r4, [sp, #64]\n subs r5, r4, #4\n mov r10, r5\n"          /* row 1 from row 0 */
    " ldr r5, [sp, #84]\n lsls r4, r4, #1\n lsls r3, r5, #3\n subs r4, r3\n" /* 8 words */
    " lsrs r3, r4, #5\n adds r3, #2\n str r3, [sp, #20]\n"    /* 2 n_groups: row 1's scales */
    " adds r4, r1\n str r4, [sp, #8]\n"                    /* the last group's input */
    " movs r4, #8\n subs r4, r5\n movs r3, #48\n muls r4, r3, r4\n adr r3, 5f\n adds r4, r3\n"
    " adds r4, #1\n str r4, [sp, #12]\n"                        /* block 8 - last_words */
    " ldr r6, =0x00FF00FF\n ldr r7, =0x80808080\n b 1f\n .ltorg\n"
    " .balign 4\n nop\n"                       /* (never run: it puts block 0 at 4k) */
    "4:" WIDE_CORRECTION                                               /* a whole group */
    "5:\n" WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK WIDE_BLOCK
    WIDE_BLOCK
    " mov r1, r8\n asrs r1, r1, #3\n mov r3, r9\n asrs r3, r3, #3\n"   /* the terms */
    " mov r5, lr\n ldrh r4, [r5]\n muls r1, r4, r1\n"
    " ldr r4, [sp, #20]\n ldrh r4, [r5, r4]\n muls r3, r4, r3\n"
    " ldr r4, [sp, #80]\n asrs r1, r4\n asrs r3, r4\n add r11, r1\n add r12, r3\n"
    " adds r5, #2\n mov lr, r5\n"
    " ldr r4, [sp, #8]\n cmp r2, r4\n bhs 3f\n b 4b\n"                /* the next group */
    "3: bne 6f\n" WIDE_CORRECTION " ldr r4, [sp, #12]\n bx r4\n"    /* the last group */
    "6: ldr r4, [sp, #72]\n mov r1, r11\n muls r1, r4, r1\n mov r3, r12\n"  /* outputs */
    " muls r3, r4, r3\n ldr r4, [sp, #76]\n asrs r1, r4\n asrs r3, r4\n adds r1, #1\n"
    " adds r3, #1\n asrs r1, r1, #1\n asrs r3, r3, #1\n ldr r4, [sp, #0]\n"
    " stmia r4!, {r1, r3}\n str r4, [sp, #0]\n"
    " ldr r4, [sp, #64]\n adds r0, r4\n"           /* the next pair: rows and scales */
    " mov r5, lr\n ldr r4, [sp, #20]\n adds r5, r4\n mov lr, r5\n"
    " ldr r4, [sp, #60]\n cmp r0, r4\n beq 7f\n"
    "1: ldr r2, [sp, #16]\n movs r1, #0\n mov r11, r1\n mov r12, r1\n b 4b\n"   /* a pair */
    "7: add sp, #24\n pop {r4-r7}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n mov r11, r7\n"
    " pop {r4-r7, pc}\n"
    ARM_KERNEL_END("tlm_rows_wide"));
#elif defined(__riscv) && __riscv_xlen == 32
/* RV32IM (ESP32-C3): one instruction a cycle, 31 registers, no register-plus-register
   addressing. A word of both rows takes 24 instructions: the input's two words loaded once,
   then per row a load, xor, shift, two ands, two muls, two shifts and two adds. Groups of
   8 words (32 columns) are unrolled whole, 197 instructions: the first word sets the sums,
   four increments, two stores and a branch serve the group (a short last group goes word
   by word). Other group sizes go 4 words a step, after the words beyond a multiple of 4.
   a0/a7 the two rows, a1 x, a2 the output, a3 bytes of x per group, a4 the input's end,
   a5 from a row's end to the next pair's, a6 pairs left, t0 the input, t1 where the
   unrolled steps end, t2 0x00FF00FF, t3 0x80808080, t4/t5 the sums, t6/s0 X02/X13,
   s1/s2 the two products. */
void tlm_pair_sums(const uint8_t *rows, const int32_t *x, int32_t *sums, uint32_t group_words,
                   uint32_t words, uint32_t stride, uint32_t pairs);
#define PAIR_PRODUCTS(row, k)                                                              \
    "lw s1, " #k "(" row ")\n xor s1, s1, t3\n srli s2, s1, 8\n and s1, s1, t2\n"          \
    "and s2, s2, t2\n mul s1, s1, t6\n mul s2, s2, s0\n srai s1, s1, 16\n srai s2, s2, 16\n"
#define PAIR_ADD(sum) "add " sum ", " sum ", s1\n add " sum ", " sum ", s2\n"
#define PAIR_LOAD_X(k) "lw t6, 2*" #k "(t0)\n lw s0, 2*" #k "+4(t0)\n"
#define PAIR_WORD(k)                                                                       \
    PAIR_LOAD_X(k) PAIR_PRODUCTS("a0", k) PAIR_ADD("t4") PAIR_PRODUCTS("a7", k) PAIR_ADD("t5")
#define PAIR_FIRST_WORD                                                                    \
    PAIR_LOAD_X(0) PAIR_PRODUCTS("a0", 0) "add t4, s1, s2\n"                               \
    PAIR_PRODUCTS("a7", 0) "add t5, s1, s2\n"
#define PAIR_STEP(bytes) /* of the rows; twice as many of x */                             \
    " addi a0, a0, " #bytes "\n addi a7, a7, " #bytes "\n addi t0, t0, 2*" #bytes "\n"
#define PAIR_STORE " sw t4, 0(a2)\n sw t5, 4(a2)\n addi a2, a2, 8\n"
#define PAIR_NEXT " add a0, a0, a5\n add a7, a7, a5\n addi a6, a6, -1\n"
__asm__(
    ".text\n .balign 4\n .globl tlm_pair_sums\n .type tlm_pair_sums, @function\n"
    "tlm_pair_sums:\n"
    " beqz a6, 9f\n addi sp, sp, -16\n sw s0, 0(sp)\n sw s1, 4(sp)\n sw s2, 8(sp)\n"
    " slli t0, a4, 2\n srli t1, a4, 3\n slli t1, t1, 6\n add t1, t1, a1\n" /* 8-word groups' end */
    " slli a4, a4, 3\n add a4, a4, a1\n slli a3, a3, 3\n add a7, a0, a5\n"
    " slli a5, a5, 1\n sub a5, a5, t0\n"               /* two strides less a row */
    " li t2, 0x00FF00FF\n li t3, 0x80808080\n li t0, 64\n bne a3, t0, 20f\n"
    /* groups of 8 words, then the last group's words one by one */
    "10: mv t0, a1\n beq t0, t1, 12f\n"
    "11:\n" PAIR_FIRST_WORD PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12) PAIR_WORD(16)
    PAIR_WORD(20) PAIR_WORD(24) PAIR_WORD(28) PAIR_STEP(32) PAIR_STORE " bne t0, t1, 11b\n"
    "12: beq t0, a4, 14f\n li t4, 0\n li t5, 0\n"
    "13:\n" PAIR_WORD(0) PAIR_STEP(4) " bne t0, a4, 13b\n" PAIR_STORE
    "14:\n" PAIR_NEXT " bnez a6, 10b\n j 8f\n"
    /* other groups: the words beyond a multiple of 4 one by one, then 4 at a time */
    "20: mv t0, a1\n"
    "21: add t1, t0, a3\n bltu t1, a4, 22f\n mv t1, a4\n"
    "22: li t4, 0\n li t5, 0\n j 24f\n"
    "23:\n" PAIR_WORD(0) PAIR_STEP(4)
    "24: sub s1, t1, t0\n andi s1, s1, 24\n bnez s1, 23b\n beq t0, t1, 26f\n"
    "25:\n" PAIR_WORD(0) PAIR_WORD(4) PAIR_WORD(8) PAIR_WORD(12) PAIR_STEP(16)
    " bne t0, t1, 25b\n"
    "26:" PAIR_STORE " bne t0, a4, 21b\n" PAIR_NEXT " bnez a6, 20b\n"
    "8: lw s0, 0(sp)\n lw s1, 4(sp)\n lw s2, 8(sp)\n addi sp, sp, 16\n"
    "9: ret\n"
    " .size tlm_pair_sums, .-tlm_pair_sums\n");
#else
/* Portable C, shaped for rv32 (ESP32-C3), which has no register-plus-register addressing and
   no multiply-add: three pointers (the two rows, the input) step together, each input word
   loaded once serves both rows, and a step takes two words, so one branch and three
   increments serve 16 MACs. It is one loop, the ends of groups met at its top, not a loop per
   group: gcc keeps the pointers of a loop per group twice over and spills them around it. */
static inline int32_t pair_product(uint32_t w, int32_t x02, int32_t x13) {
    uint32_t u = w ^ 0x80808080u;
    return ((int32_t)((u & 0x00FF00FFu) * (uint32_t)x02) >> 16) +
           ((int32_t)((u >> 8 & 0x00FF00FFu) * (uint32_t)x13) >> 16);
}

static void tlm_pair_sums(const uint8_t *restrict rows, const int32_t *restrict x,
                          int32_t *restrict sums, uint32_t group_words, uint32_t words,
                          uint32_t stride, uint32_t pairs) {
    const int32_t *x_end = x + 2 * (size_t)words;
    size_t group_step = 2 * (size_t)group_words;       /* two int32 of x per word */
    for (; pairs; pairs--, rows += 2 * (size_t)stride) {
        const uint32_t *row0 = (const uint32_t *)(const void *)rows;
        const uint32_t *row1 = (const uint32_t *)(const void *)(rows + stride);
        const int32_t *in = x, *group_end = x;
        int32_t sum0 = 0, sum1 = 0;
        for (;;) {
            if (in == group_end) {                      /* a group ends, or the rows begin */
                if (in != x) {
                    *sums++ = sum0;
                    *sums++ = sum1;
                }
                if (in == x_end) break;
                group_end = (size_t)(x_end - in) > group_step ? in + group_step : x_end;
                sum0 = sum1 = 0;
                if ((group_end - in) & 2) {             /* an odd number of words: one first */
                    sum0 = pair_product(*row0++, in[0], in[1]);
                    sum1 = pair_product(*row1++, in[0], in[1]);
                    in += 2;
                    continue;
                }
            }
            int32_t x02 = in[0], x13 = in[1], y02 = in[2], y13 = in[3];
            sum0 += pair_product(row0[0], x02, x13) + pair_product(row0[1], y02, y13);
            sum1 += pair_product(row1[0], x02, x13) + pair_product(row1[1], y02, y13);
            in += 4, row0 += 2, row1 += 2;
        }
    }
}
#endif

/* CPUs with SIMD (the host) skip the pair kernel. Two products per multiply is what makes a
   32-bit core fast; a vector unit does 8 or 16 plain int8 x int16 products an instruction,
   which the compiler makes of int8_rows' dot over s->xq, so the host neither packs the input
   nor takes the packing out again. The sums are the same (-DTLM_PORTABLE_PAIRS builds the
   host with the portable kernel; tests/test_two_cores.py holds both to the same logits). */
#if (defined(__SSE2__) || defined(__ARM_NEON)) && !defined(TLM_PORTABLE_PAIRS)
#define PAIR_KERNEL 0
#else
#define PAIR_KERNEL 1
#endif

/* Bits to cut from a group's dot so that it has 15: |dot| <= top * 63 * group_size. */
static int group_shift(uint32_t dtype, uint32_t group) {
    int bits = bit_length((dtype == Q8 ? 127u : 8u) * INPUT_TOP * group) - 15;
    return bits > 0 ? bits : 0;
}

/* Round the input once for every matrix that takes it (the matrix of `section` and those
   of its type after it): int16 slots in s->xq and, when the matrix is int8 (with the pair
   kernel) or int4 and the shapes allow, packed for its kernel in s->scratch, followed by the
   groups' corrections (packed is then 8, or 4). */
static input prepare_input(tlm_state *s, const int32_t *x, uint32_t section) {
    const tlm_model *m = s->m;
    entry e = get_entry(m, section);
    uint32_t group = m->group_size, cols = e.cols, bits = e.dtype == Q8 ? 8 : 4;
    uint32_t n_groups = e.dtype != F32 ? (cols + group - 1) / group : 0;
    uint32_t scratch_words = (4 * s->context > 2 * m->vocab_size ? 4 * s->context
                                                                : 2 * m->vocab_size) / 4;
    input in = {x, find_scale(x, cols, INPUT_TOP), 0};
    const int16_t *q = s->xq;
    for (uint32_t j = 0; j < cols; j++) s->xq[j] = (int16_t)to_int8(x[j], in.scale);
    if (!n_groups || cols / 2 + n_groups > scratch_words) return in;
    int32_t *packed = s->scratch, *correction = packed + cols / 2;
    if (PAIR_KERNEL && bits == 8 && cols % 4 == 0 && group % 4 == 0) {
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

/* The int4 kernel, in C: eight weights are one word, nibble k column k; with u = w + 8 in
   0..15 (w ^ 0x88888888) and X_k = x_k 2^16 + x_(k+4) (prepare_input),
       (u_k + u_(k+4) 2^16) X_k = u_k x_(k+4) + (u_k x_k + u_(k+4) x_(k+4)) 2^16 (mod 2^32).
   The low parts are below 15 * 63 and the high ones below 2 * 15 * 63 in size, so a group of
   up to 32 columns (16 such products) adds up in one word and a rounded shift takes out
   sum u x exactly; sum w x = that - 8 sum x, the group's correction. */
static int32_t nibble_sum(uint32_t w, const int32_t *x) {
    uint32_t u = w ^ 0x88888888u;
    return (int32_t)((u & 0x000F000Fu) * (uint32_t)x[0] + (u >> 4 & 0x000F000Fu) * (uint32_t)x[1] +
                     (u >> 8 & 0x000F000Fu) * (uint32_t)x[2] +
                     (u >> 12 & 0x000F000Fu) * (uint32_t)x[3]);
}

static void nibble_rows(const product *p, uint32_t first, uint32_t end) {
    const int32_t *packed = p->s->scratch, *correction = packed + p->cols / 2;
    uint32_t words = p->group / 8;
    for (uint32_t i = first; i < end; i++) {
        const uint32_t *row = (const uint32_t *)(const void *)(p->w + (size_t)i * p->row_bytes);
        const uint16_t *scales = p->scales + (size_t)i * p->n_groups;
        int32_t total = 0;
        for (uint32_t g = 0, k = 0; g < p->n_groups; g++) {
            uint32_t end_k = k + words < p->cols / 8 ? k + words : p->cols / 8;
            int32_t sum = 0;
            for (; k < end_k; k++) sum += nibble_sum(row[k], packed + 4 * k);
            int32_t dot = ((sum + (1 << 15)) >> 16) + correction[g] +
                          ((1 << p->group_shift) >> 1);
            total += ((dot >> p->group_shift) * (int32_t)scales[g]) >> p->sum_shift;
        }
        p->y[i] = scale_sat(total * p->in->scale.m, p->out_shift);
    }
}

/* One group's term of a row's total: its packed sum plus the correction (which holds the
   rounding), cut to 15 bits, times the group's scale, cut by sum_shift */
static inline int32_t group_term(int32_t sum, int32_t correction, int32_t scale,
                                 int group_shift, int sum_shift) {
    return (((sum + correction) >> group_shift) * scale) >> sum_shift;
}

/* Rows first.. (count of them: pairs, or 1 row with itself) through the pair kernel, then
   their groups scaled and added up, a pair at a time. */
static void pair_rows(const product *p, uint32_t first, uint32_t count, int32_t *sums) {
    const int32_t *correction = p->s->scratch + p->cols / 2;
    uint32_t n_groups = p->n_groups, second = count > 1;   /* the pair's second row */
    int group_shift = p->group_shift, sum_shift = p->sum_shift, out_shift = p->out_shift;
    int32_t xm = p->in->scale.m, *y = p->y + first;
    const uint16_t *scales = p->scales + (size_t)first * n_groups;
    tlm_pair_sums(p->w + (size_t)first * p->row_bytes, p->s->scratch, sums, p->group / 4,
                  p->cols / 4, second ? p->row_bytes : 0, (count + 1) / 2);
    if (n_groups == 1 && out_shift > 0 && out_shift < 32) {
        /* rows no wider than a group (small models): no group loop, row r's sum is sums[r]
           (a row with itself: sums[0]), and scale_sat is rshift_round, as the product is
           below 2^30 (see matvec) */
        int32_t c = correction[0];
        int down = out_shift - 1;
        for (uint32_t r = 0; r < count; r++)
            y[r] = (((group_term(sums[r], c, scales[r], group_shift, sum_shift) * xm) >> down) +
                    1) >> 1;
        return;
    }
    for (uint32_t r = 0; r < count; r += 2) {
        int32_t total0 = 0, total1 = 0;
        for (uint32_t g = 0; g < n_groups; g++) {
            total0 += group_term(sums[2 * g], correction[g], scales[g], group_shift, sum_shift);
            total1 += group_term(sums[2 * g + 1], correction[g], scales[second * n_groups + g],
                                 group_shift, sum_shift);
        }
        y[0] = scale_sat(total0 * xm, out_shift);
        y[second] = scale_sat(total1 * xm, out_shift);
        sums += 2 * n_groups;
        scales += 2 * n_groups;
        y += 2;
    }
}

/* Rows first..end-1 of an int8 matrix without the pair kernel: each group's plain dot over
   s->xq, whose correction is just the rounding, two rows at a time so that they share the
   loads of the input (a last odd row goes with itself). */
static void int8_rows(const product *p, uint32_t first, uint32_t end) {
    const int16_t *xq = p->s->xq;
    uint32_t cols = p->cols, group = p->group, n_groups = p->n_groups;
    int group_shift = p->group_shift, sum_shift = p->sum_shift;
    int32_t rounding = (1 << group_shift) >> 1, xm = p->in->scale.m;
    for (uint32_t i = first; i < end; i += 2) {
        uint32_t second = i + 1 < end;
        const int8_t *row0 = (const int8_t *)(p->w + (size_t)i * cols);
        const int8_t *row1 = row0 + second * cols;
        const uint16_t *scales0 = p->scales + (size_t)i * n_groups;
        const uint16_t *scales1 = scales0 + second * n_groups;
        int32_t total0 = 0, total1 = 0;
        for (uint32_t g = 0, j = 0; g < n_groups; g++) {
            uint32_t end_j = j + group < cols ? j + group : cols;
            int32_t dot0 = 0, dot1 = 0;
            for (; j < end_j; j++) {
                dot0 += row0[j] * xq[j];
                dot1 += row1[j] * xq[j];
            }
            total0 += group_term(dot0, rounding, scales0[g], group_shift, sum_shift);
            total1 += group_term(dot1, rounding, scales1[g], group_shift, sum_shift);
        }
        p->y[i] = scale_sat(total0 * xm, p->out_shift);
        p->y[i + second] = scale_sat(total1 * xm, p->out_shift);
    }
}

/* Rows first..end-1: two at a time through the pair kernel when the input is packed, else
   int8 rows by plain dots and int4 rows one by one. */
static void product_rows(const product *p, uint32_t first, uint32_t end) {
    const int16_t *restrict xq = p->s->xq;
    if (p->nibbles) {
        nibble_rows(p, first, end);
        return;
    }
    if (p->pairs) {
        int32_t sums[PAIR_SUMS];
        uint32_t i = first;
#if defined(__ARM_ARCH_6M__)
        if (p->group == 32 && p->n_groups > 1 && p->out_shift > 0 && p->out_shift < 32) {
            /* in one assembly pass each: rows of 64 columns four at a time, then the other
               pairs; a last odd row below */
            int32_t xm = p->in->scale.m, down = p->out_shift - 1;
            if (p->cols == 64 && end - i >= 4) {
                uint32_t quads_end = i + ((end - i) & ~3u);
                tlm_quads64(p->w + (size_t)i * 64, p->s->scratch, p->y + i, p->scales + i * 2,
                            p->w + (size_t)quads_end * 64, xm, down);
                i = quads_end;
            }
            if (end - i >= 2) {
                uint32_t pairs_end = i + ((end - i) & ~1u);
                tlm_rows_wide(p->w + (size_t)i * p->cols, p->s->scratch, p->y + i,
                              p->scales + (size_t)i * p->n_groups,
                              p->w + (size_t)pairs_end * p->cols, p->cols,
                              p->s->scratch + p->cols / 2, xm, down, p->sum_shift,
                              (p->cols / 4 - 1) % 8 + 1);
                i = pairs_end;
            }
        }
#endif
        /* as many pairs at a time as the sums buffer holds */
        for (uint32_t chunk = PAIR_SUMS / p->n_groups & ~1u; i + 1 < end;) {
            uint32_t count = end - i < chunk ? (end - i) & ~1u : chunk;
            pair_rows(p, i, count, sums);
            i += count;
        }
        if (i < end) pair_rows(p, i, 1, sums);   /* a last odd row goes with itself */
        return;
    }
    if (p->row_bytes == p->cols) {
        int8_rows(p, first, end);
        return;
    }
    for (uint32_t i = first; i < end; i++) {   /* int4, two per byte */
        const uint8_t *row = p->w + (size_t)i * p->row_bytes;
        const uint16_t *scales = p->scales + (size_t)i * p->n_groups;
        int32_t total = 0;
        for (uint32_t g = 0, j = 0; g < p->n_groups; g++) {
            uint32_t end_j = j + p->group < p->cols ? j + p->group : p->cols;
            int32_t dot = (1 << p->group_shift) >> 1;   /* the rounding */
            for (; j < end_j && (j & 1); j++) dot += int4_at(row, j) * xq[j];
            for (; j + 1 < end_j; j += 2) {   /* whole bytes in the middle */
                int b = row[j >> 1];
                dot += (((b & 15) ^ 8) - 8) * xq[j] + (((b >> 4) ^ 8) - 8) * xq[j + 1];
            }
            for (; j < end_j; j++) dot += int4_at(row, j) * xq[j];
            total += ((dot >> p->group_shift) * (int32_t)scales[g]) >> p->sum_shift;
        }
        p->y[i] = scale_sat(total * p->in->scale.m, p->out_shift);
    }
}

/* The two halves of the rows, split at a multiple of 4 so that quads and pairs stay whole. */
static void product_half(void *arg, uint32_t part) {
    const product *p = (const product *)arg;
    uint32_t half = (p->rows / 2 + 2) & ~3u;
    product_rows(p, part ? half : 0, part ? p->rows : half);
}

/* y = W x for a tensor of the section table; x as prepared by prepare_input, y Q16. */
static void matvec(tlm_state *s, int32_t *y, uint32_t section, const input *in) {
    const tlm_model *m = s->m;
    entry e = get_entry(m, section);
    const uint8_t *w = m->file + e.offset;
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
    if (s->run_both) s->run_both(s->run_both_ctx, product_half, &p);
    else {
        product_half(&p, 0);
        product_half(&p, 1);
    }
}

/* RMSNorm in 32 bits: x shifted down to `bits` bits so that dim squares add up below 2^31;
   1/rms as round(2^(16 + p) / root) with p small enough that |x| / rms <= sqrt(dim) times it
   stays below 2^31. */
static void rmsnorm(const tlm_model *m, int32_t *out, const int32_t *x, uint32_t section) {
    /* float32 weights, as words (sections are 16-byte aligned), converted as they are used:
       a copy in Q16 would cost the arena 4 dim bytes per norm */
    const uint32_t *weight = (const uint32_t *)(const void *)(m->file +
                                                               get_entry(m, section).offset);
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

/* w[t] = q . k_t for the keys of `positions` positions, stride bytes apart. When head_dim
   is a multiple of 4 the cache rows are word-aligned and a key's int8 values are read four to
   a word: a Cortex-M0+ has byte loads only with a register offset, so this takes fewer
   instructions than a load per value. A loop of its own: inside the attention's loop over
   positions the compiler runs out of registers. */
NOINLINE static void key_dots(int32_t *restrict w, const int32_t *restrict q,
                              const int8_t *restrict k, uint32_t hd, size_t stride,
                              uint32_t positions) {
    if (hd % 4 == 0)
        for (uint32_t t = 0; t < positions; t++, k += stride) {
            int32_t sum = 0;
            for (uint32_t d = 0; d < hd; d += 4) {   /* little-endian: k[d] is the low byte */
                uint32_t word = *(const uint32_t *)(const void *)(k + d);
                sum += q[d] * (int8_t)word + q[d + 1] * (int8_t)(word >> 8) +
                       q[d + 2] * (int8_t)(word >> 16) + q[d + 3] * ((int32_t)word >> 24);
            }
            w[t] = sum;
        }
    else
        for (uint32_t t = 0; t < positions; t++, k += stride) {
            int32_t sum = 0;
            for (uint32_t d = 0; d < hd; d++) sum += q[d] * k[d];
            w[t] = sum;
        }
}

/* sums[d] = sum_t w[t] v_t[d] over the values of `positions` positions, stride bytes apart:
   four dimensions at a time over all positions, their sums in registers, when head_dim is a
   multiple of 4 (so each position's four int8 values are one aligned word), else two. */
NOINLINE static void value_sums(int32_t *restrict sums, const int32_t *restrict w,
                                const int8_t *restrict v, uint32_t hd, size_t stride,
                                uint32_t positions) {
    uint32_t d = 0;
    if (hd % 4 == 0)
        for (; d < hd; d += 4) {
            const int8_t *restrict row = v + d;
            int32_t sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
            for (uint32_t t = 0; t < positions; t++, row += stride) {
                uint32_t word = *(const uint32_t *)(const void *)row;   /* little-endian */
                int32_t weight = w[t];
                sum0 += weight * (int8_t)word;
                sum1 += weight * (int8_t)(word >> 8);
                sum2 += weight * (int8_t)(word >> 16);
                sum3 += weight * ((int32_t)word >> 24);
            }
            sums[d] = sum0, sums[d + 1] = sum1, sums[d + 2] = sum2, sums[d + 3] = sum3;
        }
    for (; d < hd; d += 2) {
        const int8_t *restrict row = v + d;
        int32_t sum0 = 0, sum1 = 0;
        for (uint32_t t = 0; t < positions; t++, row += stride) {
            sum0 += w[t] * row[0];
            sum1 += w[t] * row[1];
        }
        sums[d] = sum0, sums[d + 1] = sum1;
    }
}

/* Bits of the rounded queries: |q . k| * 15 < 2^31 needs 2^(bits - 1) * 127 * 15 * head_dim
   below it, so 16 bits up to head_dim 32, one less for each doubling beyond. */
static int query_bits(uint32_t head_dim) {
    int extra = bit_length(head_dim - 1) - 5;
    return extra > 0 ? 16 - extra : 16;
}

static void attention(tlm_state *s, uint32_t layer, int32_t *out) {
    const tlm_model *m = s->m;
    uint32_t hd = m->head_dim, kv_heads = m->n_kv_heads, group = m->n_heads / kv_heads;
    size_t base_pos = (size_t)layer * s->context;
    uint32_t positions = s->pos + 1;   /* in a register: the stores below could alias s */
    size_t stride = (size_t)kv_heads * hd;   /* from a position's key or value to the next */
    int32_t *restrict w = s->scratch;
    {   /* fold 1/sqrt(head_dim) into q, then round q per head */
        int32_t inv_sqrt = s->inv_sqrt_head_dim;
        for (uint32_t j = 0; j < m->n_heads * hd; j++)   /* q in 15-bit halves */
            s->q[j] = (s->q[j] >> 15) * inv_sqrt +
                      rshift_round((s->q[j] & 0x7FFF) * inv_sqrt, 15);
    }
    for (uint32_t h = 0; h < m->n_heads; h++) {
        uint32_t kv = h / group;
        int e_q = quantize_pow2(s->q + h * hd, hd, query_bits(hd));
        const int32_t *qh = s->q + h * hd;
        int32_t top = -LIMIT;
        int top_exp = -64;
        key_dots(w, qh, s->kcache + (base_pos * kv_heads + kv) * hd, hd, stride, positions);
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
        value_sums(sums, w, s->vcache + (base_pos * kv_heads + kv) * hd, hd, stride, positions);
        for (uint32_t d = 0; d < hd; d++)   /* 3 bits below the unit: far finer than the
                                               cache's own steps of 8..15 units */
            sums[d] = scale_sat(div_round(sums[d] * 8, (int32_t)norm), 3 - top_exp);
    }
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
        rope(m, s->q, m->n_heads, s->pos);
        rope(m, s->a, m->n_kv_heads, s->pos);
        for (uint32_t kv = 0; kv < m->n_kv_heads; kv++) {
            s->kscale[slot + kv] = quantize_code(s->kcache + (slot + kv) * m->head_dim,
                                                 s->a + kv * m->head_dim, m->head_dim);
            s->vscale[slot + kv] = quantize_code(s->vcache + (slot + kv) * m->head_dim,
                                                 s->b + kv * m->head_dim, m->head_dim);
        }
        attention(s, l, s->h);
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

/* The weights to sample from, in place of the logits: e^(logit - top) in Q30 (exp_neg_coarse;
   logits within +-2^30); returns their total, summed in 32-bit pieces (cheaper than a 64-bit
   sum). */
#if defined(__ARM_ARCH_6M__)
/* Cortex-M0+: 24 cycles a logit where GCC's code takes 38 (it keeps rematerializing the
   constants). exp_neg_coarse's two tests, z < EXP_FLOOR and n < 31, become one clamp of
   m = top - logit to 2^21 (= -EXP_FLOOR), where n = 46: a register shift by 32 or more gives
   0, as the tests do. r0 the logits, r1 their end, r2 top, r3/r4 work, r5 the total's low
   word, r6 the table, r7 log2(e) in Q15; r8 2^21, r9 2^19 (the rounding), r10 the carries. */
uint64_t tlm_exp_weights(int32_t *logits, uint32_t n, int32_t top, const int32_t *table);
__asm__(
    ARM_KERNEL_SECTION " .syntax unified\n .balign 4\n .global tlm_exp_weights\n"
    ".type tlm_exp_weights, %function\n .thumb_func\n"
    "tlm_exp_weights:\n"
    " push {r4-r7, lr}\n mov r4, r8\n mov r5, r9\n mov r6, r10\n push {r4-r6}\n"
    " lsls r1, r1, #2\n adds r1, r0, r1\n movs r5, #0\n mov r10, r5\n movs r6, r3\n"
    " ldr r7, =47274\n movs r3, #1\n lsls r3, r3, #21\n mov r8, r3\n lsrs r3, r3, #2\n"
    " mov r9, r3\n cmp r0, r1\n beq 9f\n"
    "1: ldr r3, [r0]\n subs r3, r2, r3\n cmp r3, r8\n bls 2f\n mov r3, r8\n"
    "2: lsrs r3, r3, #5\n muls r3, r7, r3\n add r3, r9\n"        /* k = r3 >> 20 */
    " lsls r4, r3, #6\n lsrs r4, r4, #26\n lsls r4, r4, #2\n"    /* (k & 63) * 4 */
    " ldr r4, [r6, r4]\n lsrs r3, r3, #26\n lsrs r4, r4, r3\n"   /* table >> (k >> 6) */
    " stmia r0!, {r4}\n adds r5, r5, r4\n bcc 3f\n mov r3, r10\n adds r3, #1\n mov r10, r3\n"
    "3: cmp r0, r1\n bne 1b\n"
    "9: movs r0, r5\n mov r1, r10\n pop {r4-r6}\n mov r8, r4\n mov r9, r5\n mov r10, r6\n"
    " pop {r4-r7, pc}\n .ltorg\n"
    ARM_KERNEL_END("tlm_exp_weights"));
#endif

static uint64_t exp_weights(int32_t *logits, uint32_t n, int32_t top) {
#if defined(__ARM_ARCH_6M__)
    return tlm_exp_weights(logits, n, top, EXP2_TABLE);
#else
    uint32_t low = 0, carries = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = (uint32_t)exp_neg_coarse(logits[i] - top);
        logits[i] = (int32_t)p;
        low += p;
        carries += low < p;
    }
    return (uint64_t)carries << 32 | low;
#endif
}

uint32_t tlm_sample(tlm_sampler *smp, int32_t *logits, uint32_t vocab_size, uint16_t *order) {
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
    uint64_t mass = exp_weights(logits, vocab_size, top);
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
