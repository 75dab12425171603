/*
 * buggy_checker: a tiny famfs superblock + log reader written for the external-target self-test.
 * It is NOT famfs code. It has six deliberate, documented bugs, each a distinct finding:
 *   BUG 1 (heap overflow read)   next_index is trusted: entries past the file (the log region is
 *                                read into a heap buffer that ends where the file ends) are read.
 *   BUG 2 (stack overflow write) a FILE entry's fmap_nextents is trusted when its extents are
 *                                copied into a 16-slot stack array.
 *   BUG 3 (stack overflow write) an entry of unknown type is copied whole (544 bytes) into a
 *                                buffer sized for the payload (520 bytes).
 *   BUG 4 (stack overflow write) the combination: an INTERLEAVED file entry with exactly 3 strips
 *                                takes a "fast path" that indexes a 4-slot table by chunk_size in
 *                                2 MiB units; a chunk of 8 MiB or more writes past it. chunk_size
 *                                matters only there (other strip counts, simple extents: no bug).
 *   BUG 5 (assertion)            a simple extent of length 0 is asserted impossible.
 *   BUG 6 (assertion)            an ADD_DAXDEV index of 64 or more is asserted impossible.
 * Contract (see README "External targets"): argv[1..] are image files; for each it prints
 * "file PATH" per file it found, and it exits 0 if every image was accepted, 1 if one was refused.
 * With --batch it reads image paths from stdin, one per line, and answers "ok" or "reject" per path.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ext { uint64_t devindex, offset, len; };

#define NOINLINE __attribute__((noinline))

/* Keeps a buffer's stores: clang drops a memcpy into a stack array nothing reads, and the bug
 * with it. */
static NOINLINE void consume(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static NOINLINE void stripe3_fast_path(const unsigned char *e) {
    uint64_t strip_end[4];
    uint64_t chunk = *(const uint64_t *)(e + 144);
    uint64_t slot = chunk >> 21;                          /* chunk size in 2 MiB units: 1..3 expected */
    if (slot > 7) slot = 7;
    for (int s = 0; s < 4; s++) strip_end[s] = 0;
    strip_end[slot] = *(const uint64_t *)(e + 152 + 16);  /* BUG 4: slot 4..7 is past the table */
    consume(strip_end);
}

static NOINLINE void check_extents(const unsigned char *e, uint32_t n) {
    for (uint32_t k = 0; k < n && k < 16; k++)
        assert(*(const uint64_t *)(e + 136 + 24 * k + 16) != 0);   /* BUG 5 */
}

static NOINLINE void check_daxdev(const unsigned char *e) {
    uint32_t index = *(const uint32_t *)(e + 16 + 24);
    assert(index < 64);                                   /* BUG 6 */
}

static int check(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    unsigned char sb[200];
    fseek(f, 0, SEEK_SET);
    if (size < 200 || fread(sb, 1, 200, f) != 200 || *(uint64_t *)sb != 0x87b282ffULL) { fclose(f); return 1; }
    uint64_t log_off = *(uint64_t *)(sb + 16);
    if (log_off + 48 > (uint64_t)size) { fclose(f); return 1; }
    long log_size = size - (long)log_off;                   /* the log region, through the file's end */
    unsigned char *img = malloc(log_size);
    fseek(f, (long)log_off, SEEK_SET);
    if (fread(img, 1, log_size, f) != (size_t)log_size) { fclose(f); free(img); return 1; }
    fclose(f);
    unsigned char *log = img;
    if (*(uint64_t *)log != 0xbadcafef00dULL) { free(img); return 1; }
    uint64_t next_index = *(uint64_t *)(log + 40);            /* BUG 1: not checked against the log */
    if (next_index > 4096) next_index = 4096;
    for (uint64_t i = 0; i < next_index; i++) {
        unsigned char *e = log + 48 + 544 * i;
        uint32_t type = *(uint32_t *)(e + 8);
        if (type == 0 && *(uint32_t *)(e + 120) == 1) {    /* an interleaved file */
            uint64_t nstrips = *(uint64_t *)(e + 136);
            if (nstrips == 3) stripe3_fast_path(e);
            char name[81] = {0};
            memcpy(name, e + 16 + 24, 80);
            if (name[0]) printf("file %s\n", name);
        } else if (type == 0) {
            struct ext exts[16];
            uint32_t n = *(uint32_t *)(e + 16 + 112);          /* BUG 2: nextents trusted */
            if (n > 64) n = 64;
            for (uint32_t k = 0; k < n; k++)
                memcpy(&exts[k], e + 16 + 120 + 24 * (k % 16), sizeof exts[k]);
            consume(exts);
            check_extents(e, n);
            char name[81] = {0};
            memcpy(name, e + 16 + 24, 80);
            if (name[0]) printf("file %s\n", name);
        } else if (type == 3) {
            check_daxdev(e);
        } else if (type > 3) {
            unsigned char payload[520];
            memcpy(payload, e, 544);                          /* BUG 3: the whole entry copied */
            consume(payload);
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
