/* Tests of the checkpoint module: the part format byte by byte against a
 * hand-built buffer, the optimizer and iterator states little-endian, a
 * round trip through files, every refusal with its exact message and the
 * output untouched, keep-K pruning, and finding the newest valid set past
 * a damaged one. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "paramd/ckpt.h"
#include "paramd/data.h"
#include "paramd/error.h"
#include "paramd/optim.h"
#include "paramd/rng.h"
#include "optim_cfg.h"

/* ---- helpers ------------------------------------------------------------ */

static uint32_t crc(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* The tiny state of the layout test. */
static unsigned char optim_bytes[3] = {0xaa, 0xbb, 0xcc};
static unsigned char iter0[2] = {0x01, 0x02};
static unsigned char *iters[1] = {iter0};
static size_t iter_sizes[1] = {2};
static float params[2] = {1.0f, -2.0f};
static int64_t stale[2] = {3, 1};
static pd_ckpt_worker workers[1] = {{5, 4, 1, 0}};
static float best[2] = {0.5f, 2.0f};
static unsigned char local_optim[2] = {0xdd, 0xee};
static pd_ckpt_wstate wstates[1] = {{5, 0x0a0b, 3, 3, {1, 2, 3, 4}, local_optim, 2}};

static pd_ckpt_part tiny(void)
{
    return (pd_ckpt_part){
        .part = 0, .nparts = 1, .layout_hash = 0x0102030405060708ull,
        .config_hash = 0x1112131415161718ull, .optim_kind = PD_OPT_MOMENTUM, .updates = 7,
        .version = 9, .lo = 2, .hi = 4, .examples = 0x0a0b, .params = params, .optim = optim_bytes,
        .optim_size = 3, .niters = 1, .iter = iters, .iter_size = iter_sizes, .sent = 5,
        .applied = 4, .dropped = 1, .bad = 0, .nstale = 2, .stale = stale, .nworkers = 1,
        .worker = workers, .wall_s = 1.5, .pause_sum = 0.25, .pause_max = 0.125, .pauses = 2,
        .dropped_stale = 1, .dropped_late = 0, .dropped_at_stop = 0, .stale_sum = 3,
        .stale_max = 1, .applied_mix = 0x2122232425262728ull, .best_loss = 0.5,
        .best_update = 6, .bad_evals = 1, .last_eval = 7, .nbest = 2, .best = best,
        .nwstates = 1, .wstate = wstates,
    };
}

/* A byte appender for hand-built buffers. */
typedef struct bytes { unsigned char b[1024]; size_t n; } bytes;
static void put(bytes *o, const void *p, size_t n) { memcpy(o->b + o->n, p, n); o->n += n; }
static void u8s(bytes *o, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        o->b[o->n++] = (unsigned char)va_arg(ap, int);
    va_end(ap);
}
static void u32(bytes *o, uint32_t v) { for (int k = 0; k < 4; k++) o->b[o->n++] = (unsigned char)(v >> 8 * k); }
static void u64(bytes *o, uint64_t v) { for (int k = 0; k < 8; k++) o->b[o->n++] = (unsigned char)(v >> 8 * k); }

/* Section header + payload; the crc over the payload bytes. */
static void section(bytes *o, const char *tag, const bytes *payload)
{
    put(o, tag, 4);
    u32(o, crc(payload->b, payload->n));
    u64(o, payload->n);
    put(o, payload->b, payload->n);
}

/* got[0, n) are want's bytes, else the first that differs fails. */
static void assert_bytes(const unsigned char *got, size_t n, const bytes *want)
{
    assert_int_equal(n, want->n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want->b[i])
            fail_msg("byte %zu: got 0x%02x, want 0x%02x", i, got[i], want->b[i]);
}

/* want: the six sections six[0, n6) with a seventh after them (tag,
 * payload), the header saying 7 sections and its crc redone. */
static void with_section(bytes *want, const unsigned char *six, size_t n6, const char *tag,
                         const bytes *payload)
{
    put(want, six, n6);
    want->b[12] = 7;                       /* sections */
    uint32_t c = crc(want->b, 32);
    for (int k = 0; k < 4; k++)
        want->b[32 + k] = (unsigned char)(c >> 8 * k);
    section(want, tag, payload);
}

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_ckpt.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    if (!d)
        return -1;
    struct dirent *de;
    char path[512];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
            continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, de->d_name);
        unlink(path);
    }
    closedir(d);
    return rmdir(tmpdir);
}

/* The names in tmpdir, sorted, joined by ' '. */
static void listing(char *out, size_t cap)
{
    struct dirent **list;
    int n = scandir(tmpdir, &list, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (list[i]->d_name[0] != '.') {
            if (out[0])
                strncat(out, " ", cap - strlen(out) - 1);
            strncat(out, list[i]->d_name, cap - strlen(out) - 1);
        }
        free(list[i]);
    }
    free(list);
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static unsigned char buf[1 << 16];
    *size = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static void write_all(const char *path, const unsigned char *b, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static void part_path(char *out, uint64_t t, int part)
{
    snprintf(out, 256, "%s/ckpt-%012llu.%d.pdck", tmpdir, (unsigned long long)t, part);
}

/* A tiny part at update t with params[0] = t. */
static void save_at(uint64_t t, int keep)
{
    pd_ckpt_part p = tiny();
    float th[2] = {(float)t, 0};
    p.updates = t;
    p.params = th;
    assert_int_equal(pd_ckpt_save(tmpdir, &p, keep), PD_OK);
}

/* ---- the format, byte by byte --------------------------------------------- */

static void test_layout_bytes(void **state)
{
    (void)state;
    bytes want = {.n = 0}, s;
    put(&want, "PDCKPT\r\n", 8);
    u32(&want, 5);                       /* format version */
    u32(&want, 6);                       /* sections */
    u64(&want, 0x0102030405060708ull);   /* layout hash */
    u64(&want, 0x1112131415161718ull);   /* config hash */
    u32(&want, crc(want.b, 32));
    u32(&want, 0);

    s.n = 0;                              /* META */
    u32(&s, 0); u32(&s, 1); u32(&s, 1 /* momentum */); u32(&s, 0);
    u64(&s, 7); u64(&s, 9); u64(&s, 2); u64(&s, 4); u8s(&s, 8, 0x0b, 0x0a, 0, 0, 0, 0, 0, 0);
    section(&want, "META", &s);
    s.n = 0;                              /* PARM: 1.0f, -2.0f */
    u8s(&s, 8, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0);
    section(&want, "PARM", &s);
    s.n = 0;
    u8s(&s, 3, 0xaa, 0xbb, 0xcc);
    section(&want, "OPTM", &s);
    s.n = 0;
    u32(&s, 1); u32(&s, 0); u64(&s, 2); u8s(&s, 2, 0x01, 0x02);
    section(&want, "ITER", &s);
    s.n = 0;
    u64(&s, 5); u64(&s, 4); u64(&s, 1); u64(&s, 0);
    u64(&s, 2); u64(&s, 3); u64(&s, 1);
    u64(&s, 1); u64(&s, 5); u64(&s, 4); u64(&s, 1); u64(&s, 0);
    section(&want, "CNTR", &s);
    s.n = 0;                              /* RUNS: f64 as their bit patterns */
    u64(&s, 0x3ff8000000000000ull);       /* wall 1.5 s */
    u64(&s, 0x3fd0000000000000ull);       /* pauses: sum 0.25 s */
    u64(&s, 0x3fc0000000000000ull);       /* max 0.125 s */
    u64(&s, 2);                           /* two of them */
    u64(&s, 1); u64(&s, 0); u64(&s, 0);   /* dropped stale, late, at the stop */
    u64(&s, 3); u64(&s, 1);               /* staleness sum, max */
    u64(&s, 0x2122232425262728ull);       /* applied-set fingerprint */
    u64(&s, 0x3fe0000000000000ull);       /* best validation loss 0.5 */
    u64(&s, 6); u64(&s, 1); u64(&s, 7);   /* its update, evaluations since, last */
    u64(&s, 2);                           /* best parameters: 0.5f, 2.0f */
    u8s(&s, 8, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x40);
    u64(&s, 1);                           /* one worker state */
    u64(&s, 5); u8s(&s, 8, 0x0b, 0x0a, 0, 0, 0, 0, 0, 0); u64(&s, 3); u64(&s, 3);
    u64(&s, 1); u64(&s, 2); u64(&s, 3); u64(&s, 4);
    u64(&s, 2); u8s(&s, 2, 0xdd, 0xee);
    section(&want, "RUNS", &s);
    assert_int_equal(want.n, 40 + 16 + 56 + 16 + 8 + 16 + 3 + 16 + 18 + 16 + 96 + 16 + 210);

    pd_ckpt_part p = tiny();
    unsigned char *got;
    size_t size;
    assert_int_equal(pd_ckpt_encode(&p, &got, &size), PD_OK);
    assert_bytes(got, size, &want);
    free(got);
}

/* A batch method's part: the same bytes with 7 sections in the header
 * and a BTCH section after RUNS; decoded back whole. */
static void test_layout_batch(void **state)
{
    (void)state;
    pd_ckpt_part p = tiny();
    unsigned char *six, *seven;
    size_t n6, n7;
    assert_int_equal(pd_ckpt_encode(&p, &six, &n6), PD_OK);
    unsigned char bt[3] = {0x31, 0x32, 0x33};
    p.batch = bt;
    p.batch_size = 3;
    assert_int_equal(pd_ckpt_encode(&p, &seven, &n7), PD_OK);
    bytes want = {.n = 0}, s = {.n = 0};
    u8s(&s, 3, 0x31, 0x32, 0x33);
    with_section(&want, six, n6, "BTCH", &s);
    assert_int_equal(n7, n6 + 16 + 3);
    assert_bytes(seven, n7, &want);
    pd_ckpt_part got;
    assert_int_equal(pd_ckpt_decode("f.pdck", seven, n7, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_int_equal(got.batch_size, 3);
    assert_memory_equal(got.batch, bt, 3);
    pd_ckpt_part_free(&got);
    assert_int_equal(pd_ckpt_decode("f.pdck", six, n6, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_int_equal(got.batch_size, 0);
    assert_null(got.batch);
    pd_ckpt_part_free(&got);
    free(seven);
    free(six);
}

static void expect_refused(const unsigned char *buf, size_t size, uint64_t lh, uint64_t ch,
                           const char *msg);
static void assert_same(const pd_ckpt_part *a, const pd_ckpt_part *b);

/* A traced async run's part 0: a TRCE section after RUNS (after BTCH when
 * both are there, as the header comment orders them): u64 records, u64
 * hash; decoded back. Optional sections out of order are refused. */
static void test_layout_trace(void **state)
{
    (void)state;
    pd_ckpt_part p = tiny();
    unsigned char *six, *seven, *eight;
    size_t n6, n7, n8;
    assert_int_equal(pd_ckpt_encode(&p, &six, &n6), PD_OK);
    p.traced = true;
    p.trace_records = 0x0102;
    p.trace_hash = 0xa1a2a3a4a5a6a7a8ull;
    assert_int_equal(pd_ckpt_encode(&p, &seven, &n7), PD_OK);
    bytes want = {.n = 0}, s = {.n = 0};
    u64(&s, 0x0102);
    u64(&s, 0xa1a2a3a4a5a6a7a8ull);
    with_section(&want, six, n6, "TRCE", &s);
    assert_int_equal(n7, n6 + 16 + 16);
    assert_bytes(seven, n7, &want);
    pd_ckpt_part got;
    assert_int_equal(pd_ckpt_decode("f.pdck", seven, n7, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_true(got.traced);
    assert_int_equal(got.trace_records, 0x0102);
    assert_true(got.trace_hash == 0xa1a2a3a4a5a6a7a8ull);
    assert_int_equal(got.batch_size, 0);
    pd_ckpt_part_free(&got);
    assert_int_equal(pd_ckpt_decode("f.pdck", six, n6, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_false(got.traced);
    pd_ckpt_part_free(&got);

    /* Both: BTCH, then TRCE. */
    unsigned char bt[1] = {0x77};
    p.batch = bt;
    p.batch_size = 1;
    assert_int_equal(pd_ckpt_encode(&p, &eight, &n8), PD_OK);
    assert_int_equal(n8, n7 + 16 + 1);
    assert_int_equal(eight[12], 8);
    assert_memory_equal(eight + n6, "BTCH", 4);
    assert_memory_equal(eight + n6 + 16 + 1, "TRCE", 4);
    assert_int_equal(pd_ckpt_decode("f.pdck", eight, n8, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_true(got.traced && got.batch_size == 1 && got.batch[0] == 0x77);
    assert_int_equal(got.trace_records, 0x0102);
    pd_ckpt_part_free(&got);
    /* TRCE before BTCH: the sections swapped (their crcs still match). */
    unsigned char *sw = malloc(n8);
    assert_non_null(sw);
    memcpy(sw, eight, n6);
    memcpy(sw + n6, eight + n6 + 17, 32);
    memcpy(sw + n6 + 32, eight + n6, 17);
    char msg[160];
    snprintf(msg, sizeof msg, "f.pdck: optional: section 7 at byte %zu has another tag "
             "(damaged)", n6 + 32);
    expect_refused(sw, n8, p.layout_hash, p.config_hash, msg);
    free(sw);
    free(eight);
    free(seven);
    free(six);
}

/* Part 0 of a run that lost workers: a LOST section after RUNS (after TRCE
 * when both are there): u64 N, then per entry u32 worker, u32 rank, i64
 * last update, i64 update, f64 wall seconds, i64 requests that arrived,
 * i64 the update it rejoined at (-1: not); decoded back. An entry naming a
 * worker CNTR does not have, a worker lost twice without rejoining, an
 * empty list and a length that does not hold its entries are damage. */
static void test_layout_lost(void **state)
{
    (void)state;
    pd_ckpt_part p = tiny();
    unsigned char *six, *seven, *eight;
    size_t n6, n7, n8;
    assert_int_equal(pd_ckpt_encode(&p, &six, &n6), PD_OK);
    pd_ckpt_lost lost[2] = {{0, 3, 40, 52, 2.5, 17, 60}, {0, 3, 70, 71, 4.0, 30, -1}};
    p.nlost = 2;
    p.lost = lost;
    assert_int_equal(pd_ckpt_encode(&p, &seven, &n7), PD_OK);
    bytes want = {.n = 0}, s = {.n = 0};
    u64(&s, 2);
    u32(&s, 0); u32(&s, 3); u64(&s, 40); u64(&s, 52);
    u64(&s, 0x4004000000000000ull);       /* 2.5 s */
    u64(&s, 17); u64(&s, 60);
    u32(&s, 0); u32(&s, 3); u64(&s, 70); u64(&s, 71);
    u64(&s, 0x4010000000000000ull);       /* 4.0 s */
    u64(&s, 30); u64(&s, UINT64_MAX);     /* -1: not rejoined */
    with_section(&want, six, n6, "LOST", &s);
    assert_int_equal(n7, n6 + 16 + 8 + 2 * 48);
    assert_bytes(seven, n7, &want);
    pd_ckpt_part got;
    assert_int_equal(pd_ckpt_decode("f.pdck", seven, n7, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_same(&p, &got);
    pd_ckpt_part_free(&got);
    assert_int_equal(pd_ckpt_decode("f.pdck", six, n6, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_int_equal(got.nlost, 0);
    assert_null(got.lost);
    pd_ckpt_part_free(&got);

    /* With TRCE: TRCE, then LOST. */
    p.traced = true;
    p.trace_records = 9;
    assert_int_equal(pd_ckpt_encode(&p, &eight, &n8), PD_OK);
    assert_int_equal(eight[12], 8);
    assert_memory_equal(eight + n6, "TRCE", 4);
    assert_memory_equal(eight + n6 + 32, "LOST", 4);
    assert_int_equal(pd_ckpt_decode("f.pdck", eight, n8, p.layout_hash, p.config_hash, &got),
                     PD_OK);
    assert_true(got.traced && got.nlost == 2 && got.lost[1].sent == 30);
    pd_ckpt_part_free(&got);
    free(eight);
    p.traced = false;

    /* Damage that passes the crc (a writer bug or a forged file). */
    pd_ckpt_lost bad[2];
    char msg[200];
    memcpy(bad, lost, sizeof bad);
    bad[1].worker = 1;   /* CNTR has one worker */
    p.lost = bad;
    assert_int_equal(pd_ckpt_encode(&p, &eight, &n8), PD_OK);
    expect_refused(eight, n8, p.layout_hash, p.config_hash,
                   "f.pdck: LOST: entry 1: worker 1 of 1, 30 sent, rejoined at -1 (damaged)");
    free(eight);
    memcpy(bad, lost, sizeof bad);
    bad[0].rejoined = -1;   /* lost twice, never back in between */
    assert_int_equal(pd_ckpt_encode(&p, &eight, &n8), PD_OK);
    expect_refused(eight, n8, p.layout_hash, p.config_hash,
                   "f.pdck: LOST: worker 0 lost twice without rejoining (damaged)");
    free(eight);
    /* A LOST payload one byte short of its entries, its crcs redone. */
    bytes cut = {.n = 0}, t = {.n = 0};
    put(&t, s.b, s.n - 1);
    with_section(&cut, six, n6, "LOST", &t);
    snprintf(msg, sizeof msg, "f.pdck: LOST: %zu bytes do not hold the entries they announce "
             "(damaged)", s.n - 1);
    expect_refused(cut.b, cut.n, p.layout_hash, p.config_hash, msg);
    /* N = 0: no section is written for no lost workers. */
    cut.n = t.n = 0;
    u64(&t, 0);
    with_section(&cut, six, n6, "LOST", &t);
    expect_refused(cut.b, cut.n, p.layout_hash, p.config_hash,
                   "f.pdck: LOST: 8 bytes do not hold the entries they announce (damaged)");
    free(seven);
    free(six);
}

/* The optimizer state: little-endian header and floats. */
static void test_optim_state_le(void **state)
{
    (void)state;
    pd_optim_config oc = test_optim_config(PD_OPT_MOMENTUM);
    oc.lr = 0.5;
    pd_optim *o;
    assert_int_equal(pd_optim_create(&oc, 2, 4, 1, &o), PD_OK);
    float th[4] = {0}, g[4] = {0, 0, 1, 2};
    pd_optim_step st = pd_optim_prepare(o, 1, 1, 0);
    pd_optim_apply(o, &st, th, g, 2, 4);   /* v = -0.5 g = -0.5, -1 */
    unsigned char got[40];
    assert_int_equal(pd_optim_state_size(o), 40);
    assert_int_equal(pd_optim_save(o, got, sizeof got), PD_OK);
    const unsigned char want[40] = {
        'P', 'D', 'O', 'S', 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
        2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
        0x00, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x80, 0xbf};
    assert_memory_equal(got, want, sizeof want);
    pd_optim_destroy(&o);
}

/* The iterator state: little-endian header, rng words and order. */
static void test_iter_state_le(void **state)
{
    (void)state;
    pd_dataset ds = {.n = 3};
    pd_iter *it;
    assert_int_equal(pd_iter_create(&ds, 2, PD_SHUFFLE_NONE, false, 1, 0, &it), PD_OK);
    const size_t *rows;
    size_t n;
    assert_true(pd_iter_next(it, &rows, &n));
    unsigned char got[152];
    assert_int_equal(pd_iter_state_size(it), 152);
    assert_int_equal(pd_iter_save(it, got, sizeof got), PD_OK);
    bytes want = {.n = 0};
    put(&want, "PDIT", 4);
    u32(&want, 1);
    u64(&want, 3); u64(&want, 2);         /* n, batch */
    u32(&want, 0); u32(&want, 0); u32(&want, 0); u32(&want, 0);
    u64(&want, 0); u64(&want, 2); u64(&want, 3);   /* epoch, cursor, m */
    pd_rng r = pd_rng_make(1, PD_STREAM_SHUFFLE, 0);
    for (int k = 0; k < 4; k++)
        u64(&want, r.s[k]);
    for (int k = 0; k < 4; k++)
        u64(&want, 0);
    u64(&want, 0); u64(&want, 1); u64(&want, 2);
    assert_int_equal(want.n, 152);
    assert_memory_equal(got, want.b, 152);
    pd_iter_destroy(&it);
}

/* ---- round trip ---------------------------------------------------------- */

static void assert_same(const pd_ckpt_part *a, const pd_ckpt_part *b)
{
    assert_int_equal(a->part, b->part);
    assert_int_equal(a->nparts, b->nparts);
    assert_int_equal(a->layout_hash, b->layout_hash);
    assert_int_equal(a->config_hash, b->config_hash);
    assert_int_equal(a->optim_kind, b->optim_kind);
    assert_int_equal(a->updates, b->updates);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->lo, b->lo);
    assert_int_equal(a->hi, b->hi);
    assert_int_equal(a->examples, b->examples);
    assert_memory_equal(a->params, b->params, 4 * (a->hi - a->lo));
    assert_int_equal(a->optim_size, b->optim_size);
    assert_memory_equal(a->optim, b->optim, a->optim_size);
    assert_int_equal(a->niters, b->niters);
    for (size_t w = 0; w < a->niters; w++) {
        assert_int_equal(a->iter_size[w], b->iter_size[w]);
        assert_memory_equal(a->iter[w], b->iter[w], a->iter_size[w]);
    }
    assert_int_equal(a->sent, b->sent);
    assert_int_equal(a->applied, b->applied);
    assert_int_equal(a->dropped, b->dropped);
    assert_int_equal(a->bad, b->bad);
    assert_int_equal(a->nstale, b->nstale);
    assert_memory_equal(a->stale, b->stale, 8 * a->nstale);
    assert_int_equal(a->nworkers, b->nworkers);
    assert_memory_equal(a->worker, b->worker, sizeof *a->worker * a->nworkers);
    assert_true(a->wall_s == b->wall_s && a->pause_sum == b->pause_sum &&
                a->pause_max == b->pause_max && a->best_loss == b->best_loss);
    assert_int_equal(a->pauses, b->pauses);
    assert_int_equal(a->dropped_stale, b->dropped_stale);
    assert_int_equal(a->dropped_late, b->dropped_late);
    assert_int_equal(a->dropped_at_stop, b->dropped_at_stop);
    assert_int_equal(a->stale_sum, b->stale_sum);
    assert_int_equal(a->stale_max, b->stale_max);
    assert_int_equal(a->applied_mix, b->applied_mix);
    assert_int_equal(a->best_update, b->best_update);
    assert_int_equal(a->bad_evals, b->bad_evals);
    assert_int_equal(a->last_eval, b->last_eval);
    assert_int_equal(a->nbest, b->nbest);
    assert_memory_equal(a->best, b->best, 4 * a->nbest);
    assert_int_equal(a->nwstates, b->nwstates);
    for (size_t w = 0; w < a->nwstates; w++) {
        const pd_ckpt_wstate *x = &a->wstate[w], *y = &b->wstate[w];
        assert_int_equal(x->seq, y->seq);
        assert_int_equal(x->examples, y->examples);
        assert_int_equal(x->local_t, y->local_t);
        assert_int_equal(x->stale_sum, y->stale_sum);
        assert_memory_equal(x->rng, y->rng, sizeof x->rng);
        assert_int_equal(x->optim_size, y->optim_size);
        assert_memory_equal(x->optim, y->optim, x->optim_size);
    }
    assert_int_equal(a->nlost, b->nlost);
    for (size_t i = 0; i < a->nlost; i++) {
        const pd_ckpt_lost *x = &a->lost[i], *y = &b->lost[i];
        assert_int_equal(x->worker, y->worker);
        assert_int_equal(x->rank, y->rank);
        assert_int_equal(x->last_update, y->last_update);
        assert_int_equal(x->update, y->update);
        assert_true(x->wall_s == y->wall_s);
        assert_int_equal(x->sent, y->sent);
        assert_int_equal(x->rejoined, y->rejoined);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    pd_ckpt_part p = tiny(), got;
    assert_int_equal(pd_ckpt_save(tmpdir, &p, 2), PD_OK);
    char names[512];
    listing(names, sizeof names);
    assert_string_equal(names, "ckpt-000000000007.0.pdck ckpt-000000000007.manifest");
    assert_int_equal(pd_ckpt_find(tmpdir, 0, p.layout_hash, p.config_hash, NULL, &got), PD_OK);
    assert_same(&p, &got);
    pd_ckpt_part_free(&got);

    /* Empty arrays: no iterators, counters or histogram, an empty range. */
    pd_ckpt_part e = {.nparts = 1, .updates = 8, .lo = 5, .hi = 5};
    assert_int_equal(pd_ckpt_save(tmpdir, &e, 2), PD_OK);
    assert_int_equal(pd_ckpt_find(tmpdir, 0, 0, 0, NULL, &got), PD_OK);
    assert_same(&e, &got);
    pd_ckpt_part_free(&got);
}

/* ---- refusals ------------------------------------------------------------- */

/* decode(buf) is refused with exactly `msg` and *out is untouched. */
static void expect_refused(const unsigned char *buf, size_t size, uint64_t lh, uint64_t ch,
                           const char *msg)
{
    pd_ckpt_part out, before;
    memset(&out, 0x5a, sizeof out);
    memcpy(&before, &out, sizeof out);
    pd_err_clear();
    assert_int_equal(pd_ckpt_decode("f.pdck", buf, size, lh, ch, &out), PD_EINPUT);
    assert_string_equal(pd_err_msg(), msg);
    assert_memory_equal(&out, &before, sizeof out);
}

static void test_refusals(void **state)
{
    (void)state;
    pd_ckpt_part p = tiny();
    unsigned char *good, b[1024];
    size_t size;
    const uint64_t lh = p.layout_hash, ch = p.config_hash;
    assert_int_equal(pd_ckpt_encode(&p, &good, &size), PD_OK);
    char msg[256];

    memcpy(b, good, size);
    b[0] = 'X';
    expect_refused(b, size, lh, ch, "f.pdck: header: bad magic (not a paramd checkpoint part)");

    /* Version 4 (no carried local optimizer; the same bytes otherwise),
     * with a header crc that matches it: read as version 5 is. */
    memcpy(b, good, size);
    b[8] = 4;
    uint32_t c = crc(b, 32);
    for (int k = 0; k < 4; k++)
        b[32 + k] = (unsigned char)(c >> 8 * k);
    pd_ckpt_part v4, v5;
    assert_int_equal(pd_ckpt_decode("f.pdck", b, size, lh, ch, &v4), PD_OK);
    assert_int_equal(pd_ckpt_decode("f.pdck", good, size, lh, ch, &v5), PD_OK);
    assert_same(&v4, &v5);
    pd_ckpt_part_free(&v4);
    pd_ckpt_part_free(&v5);
    /* Version 3 (no LOST section) and 6 (a later paramd's): refused. */
    for (unsigned v = 3; v <= 6; v += 3) {
        memcpy(b, good, size);
        b[8] = (unsigned char)v;
        c = crc(b, 32);
        for (int k = 0; k < 4; k++)
            b[32 + k] = (unsigned char)(c >> 8 * k);
        snprintf(msg, sizeof msg, "f.pdck: header: format version %u, this build reads versions "
                 "4 to 5 (a checkpoint of another paramd version)", v);
        expect_refused(b, size, lh, ch, msg);
    }

    memcpy(b, good, size);
    b[8] = 1;   /* the same without fixing the crc */
    snprintf(msg, sizeof msg, "f.pdck: header: crc32 0x%08x, stored 0x%08x (damaged)",
             (unsigned)crc(b, 32), (unsigned)crc(good, 32));
    expect_refused(b, size, lh, ch, msg);

    /* A flipped byte in each section's payload. */
    const char *tags[6] = {"META", "PARM", "OPTM", "ITER", "CNTR", "RUNS"};
    size_t at = 40;
    for (int k = 0; k < 6; k++) {
        size_t len = (size_t)good[at + 8] | (size_t)good[at + 9] << 8;
        memcpy(b, good, size);
        b[at + 16 + len - 1] ^= 0x10;
        snprintf(msg, sizeof msg, "f.pdck: %s: crc32 0x%08x, stored 0x%08x (damaged)", tags[k],
                 (unsigned)crc(b + at + 16, len), (unsigned)crc(good + at + 16, len));
        expect_refused(b, size, lh, ch, msg);
        at += 16 + len;
    }
    assert_int_equal(at, size);

    /* A META range whose 4 (hi - lo) wraps around to the PARM length (a
     * forged file with valid crcs; found by fuzzing): refused, not read. */
    memcpy(b, good, size);
    uint64_t hi = 2 + (1ull << 62) + 2;   /* 4 (hi - lo) = 8 mod 2^64 */
    for (int k = 0; k < 8; k++)
        b[40 + 16 + 40 + k] = (unsigned char)(hi >> 8 * k);
    c = crc(b + 56, 56);
    for (int k = 0; k < 4; k++)
        b[40 + 4 + k] = (unsigned char)(c >> 8 * k);
    expect_refused(b, size, lh, ch, "f.pdck: PARM: 8 bytes, [2, 4611686018427387908) holds "
                   "4611686018427387906 parameters (damaged)");

    expect_refused(good, size - 1, lh, ch,
                   "f.pdck: RUNS: 210 bytes announced, 209 left in the file (truncated)");
    expect_refused(good, 40 + 16 + 56 + 10, lh, ch,
                   "f.pdck: PARM: file ends at byte 122, inside the section header (truncated)");
    expect_refused(good, 39, lh, ch,
                   "f.pdck: header: 39 bytes, shorter than the 40-byte header (truncated)");
    memcpy(b, good, size);
    b[size] = 0;
    expect_refused(b, size + 1, lh, ch, "f.pdck: RUNS: 1 bytes after the last section (damaged)");
    expect_refused(good, size, lh + 1, ch,
                   "f.pdck: header: model layout hash 0x0102030405060708, this run's is "
                   "0x0102030405060709 (a different model)");
    expect_refused(good, size, lh, 7,
                   "f.pdck: header: config hash 0x1112131415161718, this run's is "
                   "0x0000000000000007 (a key listed in paramd/ckpt.h or the number of "
                   "workers changed)");
    free(good);
}

/* A set of two parts is valid only with both parts and its manifest. */
static void test_manifest_parts(void **state)
{
    (void)state;
    pd_ckpt_part p0 = tiny(), p1 = tiny(), got;
    p0.nparts = p1.nparts = 2;
    p1.part = 1;
    p0.updates = p1.updates = 5;
    pd_ckpt_id ids[2];
    assert_int_equal(pd_ckpt_write_part(tmpdir, &p0, &ids[0]), PD_OK);
    assert_int_equal(pd_ckpt_write_part(tmpdir, &p1, &ids[1]), PD_OK);
    char want[512], path[256];
    bool damaged = false;

    /* Parts without their manifest: not a checkpoint yet. */
    pd_err_clear();
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 1, p0.layout_hash, p0.config_hash, &got, &damaged),
                     PD_EINPUT);
    snprintf(want, sizeof want, "%s/ckpt-000000000005.manifest: No such file or directory",
             tmpdir);
    assert_string_equal(pd_err_msg(), want);
    assert_true(damaged);

    assert_int_equal(pd_ckpt_write_manifest(tmpdir, 5, 2, ids), PD_OK);
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 1, p0.layout_hash, p0.config_hash, &got, NULL),
                     PD_OK);
    assert_same(&p1, &got);
    pd_ckpt_part_free(&got);

    /* Part 1 missing: part 0 is refused too (the set is damaged). */
    part_path(path, 5, 1);
    assert_int_equal(unlink(path), 0);
    damaged = false;
    pd_err_clear();
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 0, p0.layout_hash, p0.config_hash, &got, &damaged),
                     PD_EINPUT);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    assert_string_equal(pd_err_msg(), want);
    assert_true(damaged);

    /* Another number of servers: a mismatch, not damage. */
    pd_err_clear();
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 2, p0.layout_hash, p0.config_hash, &got, &damaged),
                     PD_EINPUT);
    snprintf(want, sizeof want, "%s/ckpt-000000000005.manifest: manifest: 2 parts, this run "
             "reads part 2 (another number of servers)", tmpdir);
    assert_string_equal(pd_err_msg(), want);
    assert_false(damaged);

    /* A manifest with a flipped byte. */
    snprintf(path, sizeof path, "%s/ckpt-000000000005.manifest", tmpdir);
    size_t size;
    unsigned char *m = read_all(path, &size);
    assert_int_equal(size, 24 + 2 * 16 + 8);
    m[24] ^= 1;
    write_all(path, m, size);
    pd_err_clear();
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 0, p0.layout_hash, p0.config_hash, &got, &damaged),
                     PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "ckpt-000000000005.manifest: manifest: crc32 0x"));
    assert_non_null(strstr(pd_err_msg(), "(damaged)"));

    /* A manifest of format version 3 (its crc matching): another paramd's,
     * refused, not taken for damage. */
    m[24] ^= 1;
    m[8] = 3;
    uint32_t c = crc(m, size - 8);
    for (int k = 0; k < 4; k++)
        m[size - 8 + k] = (unsigned char)(c >> 8 * k);
    write_all(path, m, size);
    pd_err_clear();
    damaged = true;
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 0, p0.layout_hash, p0.config_hash, &got, &damaged),
                     PD_EINPUT);
    snprintf(want, sizeof want, "%s/ckpt-000000000005.manifest: manifest: format version 3, "
             "this build reads versions 4 to 5 (a checkpoint of another paramd version)", tmpdir);
    assert_string_equal(pd_err_msg(), want);
    assert_false(damaged);
    /* Version 4: read, so the read goes on to the parts (part 1 is gone). */
    m[8] = 4;
    c = crc(m, size - 8);
    for (int k = 0; k < 4; k++)
        m[size - 8 + k] = (unsigned char)(c >> 8 * k);
    write_all(path, m, size);
    pd_err_clear();
    assert_int_equal(pd_ckpt_read(tmpdir, 5, 0, p0.layout_hash, p0.config_hash, &got, &damaged),
                     PD_EINPUT);
    part_path(want, 5, 1);
    assert_string_equal(pd_err_msg(), strcat(want, ": No such file or directory"));
    assert_true(damaged);
}

/* ---- keep K, newest valid ------------------------------------------------- */

static void test_keep(void **state)
{
    (void)state;
    for (uint64_t t = 1; t <= 5; t++)
        save_at(t, 2);
    char names[512];
    listing(names, sizeof names);
    assert_string_equal(names, "ckpt-000000000004.0.pdck ckpt-000000000004.manifest "
                               "ckpt-000000000005.0.pdck ckpt-000000000005.manifest");
    /* A newer part without its manifest (a write cut short) removes nothing
     * and is left alone. */
    pd_ckpt_part p = tiny();
    p.updates = 6;
    assert_int_equal(pd_ckpt_write_part(tmpdir, &p, NULL), PD_OK);
    assert_int_equal(pd_ckpt_prune(tmpdir, 2), PD_OK);
    listing(names, sizeof names);
    assert_string_equal(names, "ckpt-000000000004.0.pdck ckpt-000000000004.manifest "
                               "ckpt-000000000005.0.pdck ckpt-000000000005.manifest "
                               "ckpt-000000000006.0.pdck");
    /* Its manifest comes: now 4 goes. */
    save_at(6, 2);
    listing(names, sizeof names);
    assert_string_equal(names, "ckpt-000000000005.0.pdck ckpt-000000000005.manifest "
                               "ckpt-000000000006.0.pdck ckpt-000000000006.manifest");
}

static uint64_t find_updates(FILE *warn)
{
    pd_ckpt_part got;
    pd_ckpt_part p = tiny();
    assert_int_equal(pd_ckpt_find(tmpdir, 0, p.layout_hash, p.config_hash, warn, &got), PD_OK);
    uint64_t t = got.updates;
    assert_true(got.params[0] == (float)t);
    pd_ckpt_part_free(&got);
    return t;
}

static void test_newest_valid(void **state)
{
    (void)state;
    pd_ckpt_part p = tiny(), got;
    char want[1024], path[256];
    pd_err_clear();
    assert_int_equal(pd_ckpt_find(tmpdir, 0, 1, 2, NULL, &got), PD_EINPUT);
    snprintf(want, sizeof want, "%s: no checkpoint to resume from", tmpdir);
    assert_string_equal(pd_err_msg(), want);

    for (uint64_t t = 1; t <= 3; t++)
        save_at(t, 3);
    assert_int_equal(find_updates(NULL), 3);

    /* Damage the newest one's parameters: skipped with one warning line. */
    part_path(path, 3, 0);
    size_t size;
    unsigned char *b = read_all(path, &size);
    unsigned char good[1024];
    memcpy(good, b, size);
    b[40 + 16 + 56 + 16] ^= 0x01;   /* first PARM byte */
    write_all(path, b, size);
    char *text = NULL;
    size_t len = 0;
    FILE *warn = open_memstream(&text, &len);
    assert_non_null(warn);
    assert_int_equal(find_updates(warn), 2);
    fclose(warn);
    snprintf(want, sizeof want, "paramd: warning: skipping damaged checkpoint: %s: PARM: "
             "crc32 0x%08x, stored 0x%08x (damaged)\n", path, (unsigned)crc(b + 128, 8),
             (unsigned)crc(good + 128, 8));
    assert_string_equal(text, want);
    free(text);

    /* Truncated instead: skipped too. */
    write_all(path, good, size - 5);
    warn = open_memstream(&text, &len);
    assert_int_equal(find_updates(warn), 2);
    fclose(warn);
    snprintf(want, sizeof want, "paramd: warning: skipping damaged checkpoint: %s: file: "
             "%zu bytes, the manifest says %zu (truncated)\n", path, size - 5, size);
    assert_string_equal(text, want);
    free(text);

    /* Every set damaged: refused, naming the newest reason. */
    for (uint64_t t = 1; t <= 2; t++) {
        char mp[256];
        snprintf(mp, sizeof mp, "%s/ckpt-%012llu.manifest", tmpdir, (unsigned long long)t);
        assert_int_equal(unlink(mp), 0);
    }
    warn = open_memstream(&text, &len);
    pd_err_clear();
    assert_int_equal(pd_ckpt_find(tmpdir, 0, p.layout_hash, p.config_hash, warn, &got),
                     PD_EINPUT);
    fclose(warn);
    free(text);
    snprintf(want, sizeof want, "%s: no valid checkpoint (3 damaged; newest: %s: file: "
             "%zu bytes, the manifest says %zu (truncated))", tmpdir, path, size - 5, size);
    assert_string_equal(pd_err_msg(), want);

    /* A newest valid set of another model: refused, not skipped. */
    save_at(4, 5);
    pd_err_clear();
    assert_int_equal(pd_ckpt_find(tmpdir, 0, 99, p.config_hash, NULL, &got), PD_EINPUT);
    part_path(path, 4, 0);
    snprintf(want, sizeof want, "%s: header: model layout hash 0x0102030405060708, this run's "
             "is 0x0000000000000063 (a different model)", path);
    assert_string_equal(pd_err_msg(), want);
}

/* The hashes follow the documented text; a listed key changes it, an
 * unlisted one does not. */
static void test_hashes(void **state)
{
    (void)state;
    pd_tensor_info t[2] = {{"W1", 3, 2, 0, true}, {"b1", 3, 1, 6, false}};
    const char *text = "W1 3 2 0\nb1 3 1 6\n";
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = text; *c; c++)
        h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    assert_int_equal(pd_ckpt_layout_hash(t, 2), h);

    pd_config a, b;
    pd_config_defaults(&a);
    b = a;
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&a, 3));
    b.training.epochs += 5;
    b.training.max_updates = 17;
    b.checkpoint.keep = 9;
    snprintf(b.run.out_dir, sizeof b.run.out_dir, "elsewhere");
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    snprintf(b.model.init_from, sizeof b.model.init_from, "runs/a");
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    /* Added keys: their defaults leave the hash as it was, a change counts. */
    b.data.delimiter = PD_DELIM_TAB;
    assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&b, 2));
    b = a;
    snprintf(b.data.classes, sizeof b.data.classes, "dog,cat");
    uint64_t dog_cat = pd_ckpt_config_hash(&b, 2);
    assert_true(pd_ckpt_config_hash(&a, 2) != dog_cat);
    snprintf(b.data.classes, sizeof b.data.classes, "cat,dog");
    assert_true(pd_ckpt_config_hash(&b, 2) != dog_cat);
    b = a;
    b.optimizer.lr *= 2;
    assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&b, 2));
    /* dc_lambda counts under dc only (without dc the hash is as before). */
    b = a;
    b.optimizer.dc_lambda = 7;
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    a.optimizer.staleness_compensation = b.optimizer.staleness_compensation = PD_SCOMP_DC;
    assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&b, 2));
    b.optimizer.dc_lambda = a.optimizer.dc_lambda;
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    /* dc_decay under the adaptive dc only; vsgd's keys under vsgd only;
     * batch_examples when set (each was in no hash before). */
    b.optimizer.dc_decay = 0.5;
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    a.optimizer.dc_lambda_adaptive = b.optimizer.dc_lambda_adaptive = true;
    assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&b, 2));
    pd_config_defaults(&a);
    b = a;
    b.optimizer.vsgd_slow = 10;
    b.optimizer.vsgd_row_layers = 3;
    b.optimizer.vsgd_memory = 100;
    assert_int_equal(pd_ckpt_config_hash(&a, 2), pd_ckpt_config_hash(&b, 2));
    a.optimizer.name = b.optimizer.name = PD_OPT_VSGD;
    for (int k = 0; k < 4; k++) {
        b = a;
        if (k == 0)
            b.optimizer.vsgd_slow = 10;
        else if (k == 1)
            b.optimizer.vsgd_row_layers = 3;
        else if (k == 2)
            b.optimizer.vsgd_bound_layers = 1;
        else
            b.optimizer.vsgd_memory = 100;
        assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&b, 2));
    }
    b = a;
    b.optimizer.batch_examples = 1000;
    assert_true(pd_ckpt_config_hash(&a, 2) != pd_ckpt_config_hash(&b, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_bytes),
        cmocka_unit_test(test_layout_batch),
        cmocka_unit_test(test_layout_trace),
        cmocka_unit_test(test_layout_lost),
        cmocka_unit_test(test_optim_state_le),
        cmocka_unit_test(test_iter_state_le),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_hashes),
        cmocka_unit_test_setup_teardown(test_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_manifest_parts, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_keep, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_newest_valid, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
