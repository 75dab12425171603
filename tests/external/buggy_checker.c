/*
 * buggy_checker: a tiny famfs superblock + log reader written for the external-target self-test.
 * It is NOT famfs code. It has three deliberate, documented bugs, each a distinct sanitizer report:
 *   BUG 1 (heap overflow read)   next_index is trusted: entries past the file are read.
 *   BUG 2 (stack overflow write) a FILE entry's fmap_nextents is trusted when its extents are
 *                                copied into a 16-slot stack array.
 *   BUG 3 (stack overflow write) an entry of unknown type is copied whole (544 bytes) into a
 *                                buffer sized for the payload (520 bytes).
 * Contract (see README "External targets"): argv[1..] are image files; for each it prints
 * "file PATH" per file it found, and it exits 0 if every image was accepted, 1 if one was refused.
 * With --batch it reads image paths from stdin, one per line, and answers "ok" or "reject" per path.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ext { uint64_t devindex, offset, len; };

static int check(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *img = malloc(size > 0 ? size : 1);
    if (fread(img, 1, size, f) != (size_t)size) { fclose(f); free(img); return 1; }
    fclose(f);
    if (size < 200 || *(uint64_t *)img != 0x87b282ffULL) { free(img); return 1; }
    uint64_t log_off = *(uint64_t *)(img + 16);
    if (log_off + 48 > (uint64_t)size) { free(img); return 1; }
    unsigned char *log = img + log_off;
    if (*(uint64_t *)log != 0xbadcafef00dULL) { free(img); return 1; }
    uint64_t next_index = *(uint64_t *)(log + 40);            /* BUG 1: not checked against the log */
    if (next_index > 4096) next_index = 4096;
    for (uint64_t i = 0; i < next_index; i++) {
        unsigned char *e = log + 48 + 544 * i;
        uint32_t type = *(uint32_t *)(e + 8);
        if (type == 0) {
            struct ext exts[16];
            uint32_t n = *(uint32_t *)(e + 16 + 112);          /* BUG 2: nextents trusted */
            if (n > 64) n = 64;
            for (uint32_t k = 0; k < n; k++)
                memcpy(&exts[k], e + 16 + 120 + 24 * (k % 16), sizeof exts[k]);
            char name[81] = {0};
            memcpy(name, e + 16 + 24, 80);
            if (name[0]) printf("file %s\n", name);
            (void)exts;
        } else if (type > 3) {
            unsigned char payload[520];
            memcpy(payload, e, 544);                          /* BUG 3: the whole entry copied */
            (void)payload;
        }
    }
    free(img);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--batch") == 0) {
        char line[4096];
        setvbuf(stdout, NULL, _IOLBF, 0);
        while (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\n")] = 0;
            printf("%s\n", check(line) ? "reject" : "ok");
        }
        return 0;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= check(argv[i]);
    return rc;
}
