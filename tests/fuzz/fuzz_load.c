/* libFuzzer harness: load a .bin and generate a few tokens, under ASan and UBSan.

   Most random changes to a file only break its CRC; so for inputs whose last byte is odd,
   the harness rewrites the CRC to match, and the mutations reach every later check, the
   tokenizer and the forward pass. Build and run: tests/test_fuzz.py. */
#include <stdlib.h>
#include <string.h>

#include "tinylm.h"

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1));
    }
    return ~crc;
}

static uint8_t arena[1 << 20] __attribute__((aligned(16)));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *file = malloc(size + 16), *copy = (uint8_t *)(((uintptr_t)file + 15) & ~(uintptr_t)15);
    memcpy(copy, data, size);
    if (size >= 16 && (data[size - 1] & 1)) {
        uint32_t file_size = copy[8] | copy[9] << 8 | copy[10] << 16 | (uint32_t)copy[11] << 24;
        if (file_size >= 16 && file_size <= size) {
            uint32_t crc = crc32(copy + 16, file_size - 16);
            for (int i = 0; i < 4; i++) copy[12 + i] = (uint8_t)(crc >> (8 * i));
        }
    }
    tlm_model m;
    tlm_state s;
    tlm_sampler smp;
    if (!tlm_load(&m, copy, size) && tlm_arena_size(&m, 16) <= sizeof arena &&
        !tlm_init(&s, &m, arena, sizeof arena, 16)) {
        uint32_t ids[16];   /* a chat model's question in its turn, a text model's after <bos> */
        int32_t n = tlm_encode(&m, (const uint8_t *)"Hi, \xc3\xa9t\xc3\xa9 42!", 12,
                               data[0] & 8 ? TLM_BOS : TLM_CHAT_TURN, ids, 16);
        tlm_sampler_init(&smp, data[0] & 2 ? 0 : 60000, data[0] & 4 ? 3 : 0, 58000, size);
        if (n > 0 && n < 16 && tlm_start(&s, ids, (uint32_t)n) == 0) {
            int32_t prev = (int32_t)ids[n - 1], t;
            while ((t = tlm_next(&s, &smp)) >= 0) {
                uint32_t len;
                tlm_piece(&m, prev, (uint32_t)t, &len);
                prev = t;
            }
        }
    }
    free(file);
    return 0;
}
