/* Load each .bin named on the command line and print one line: "ok" or the loader's message.
   A file that loads also generates a few tokens, with the longest context whose arena fits in
   a board's 160 KiB, chosen as the firmware's device loop chooses it. Built with ASan and UBSan
   (also as a 32-bit program) by tests/test_badfiles.py, so that a bad file that crashes or
   misbehaves fails the test. */
#include <stdio.h>
#include <stdlib.h>

#include "tinylm.h"

#define BOARD_ARENA (160u << 10)

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) return 2;
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        void *block = malloc((size_t)size + 16);
        uint8_t *data = (uint8_t *)(((uintptr_t)block + 15) & ~(uintptr_t)15);
        if (fread(data, 1, (size_t)size, f) != (size_t)size) return 2;
        fclose(f);
        tlm_model m;
        const char *error = tlm_load(&m, data, (size_t)size);
        printf("%s\n", error ? error : "ok");
        if (!error) {
            uint32_t context = m.max_seq_len;
            while (context > 1 && tlm_arena_size(&m, context) > BOARD_ARENA) context--;
            size_t need = tlm_arena_size(&m, context);
            void *arena_block = malloc(need + 16);
            void *arena = (void *)(((uintptr_t)arena_block + 15) & ~(uintptr_t)15);
            tlm_state s;
            tlm_sampler smp;
            uint32_t ids[16];
            /* a chat model's question in its turn; a text model's prompt after <bos> */
            int32_t n = tlm_encode(&m, (const uint8_t *)"Once upon", 9, TLM_CHAT_TURN, ids, 16);
            tlm_sampler_init(&smp, 52000, 5, 60000, 1);
            if (tlm_init(&s, &m, arena, need, context) || n < 1) return 3;
            if ((uint32_t)n < context) {     /* a context cut that short may not hold it */
                if (tlm_start(&s, ids, (uint32_t)n)) return 3;
                for (int k = 0; k < 4 && tlm_next(&s, &smp) >= 0; k++) {}
            }
            free(arena_block);
        }
        free(block);
    }
    return 0;
}
