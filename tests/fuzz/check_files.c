/* Load each .bin named on the command line and print one line: "ok" or the loader's message.
   A file that loads also generates a few tokens. Built with ASan and UBSan by
   tests/test_badfiles.py, so that a bad file that crashes or misbehaves fails the test. */
#include <stdio.h>
#include <stdlib.h>

#include "tinylm.h"

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
            size_t need = tlm_arena_size(&m, 16);
            void *arena_block = malloc(need + 16);
            void *arena = (void *)(((uintptr_t)arena_block + 15) & ~(uintptr_t)15);
            tlm_state s;
            tlm_sampler smp;
            uint32_t ids[16];
            int32_t n = tlm_encode(&m, (const uint8_t *)"Once upon", 9, 1, ids, 16);
            tlm_sampler_init(&smp, 52000, 5, 60000, 1);
            if (tlm_init(&s, &m, arena, need, 16) || n < 1 || tlm_start(&s, ids, (uint32_t)n))
                return 3;
            for (int k = 0; k < 4 && tlm_next(&s, &smp) >= 0; k++) {}
            free(arena_block);
        }
        free(block);
    }
    return 0;
}
