/* Data module: every reader variant (IDX raw and gzip'd, CSV, LIBSVM), the
 * exact message for each kind of bad input, hold-out and sharding
 * (partitions, reproducible), normalization against hand-computed numbers,
 * the minibatch iterator, and the real Fashion-MNIST. Fixture files are
 * written into a fresh temporary directory per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "paramd/data.h"
#include "paramd/error.h"

#define ALL (PD_PART_TRAIN | PD_PART_VALID | PD_PART_TEST)
#define FMNIST "/usr/share/datasets/fashion-mnist/"

static char dir[64];

/* ---- helpers ---- */

/* dir/name, in one of a few rotating buffers. */
static const char *P(const char *name)
{
    static char buf[8][PD_PATH_MAX];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, PD_PATH_MAX, "%s/%s", dir, name);
    return b;
}

static void put_bytes(const char *name, const void *b, size_t n, bool gz)
{
    if (gz) {
        gzFile f = gzopen(P(name), "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, b, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
        return;
    }
    FILE *f = fopen(P(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void put(const char *name, const char *text)
{
    put_bytes(name, text, strlen(text), false);
}

/* An IDX file: big-endian magic and dims, then n data bytes. */
static void put_idx(const char *name, bool gz, uint32_t magic, const uint32_t *dims, int ndim,
                    const uint8_t *data, size_t n)
{
    uint8_t *b = malloc(4 + 4 * (size_t)ndim + n);
    uint32_t v[4] = {magic};
    for (int i = 0; i < ndim; i++)
        v[i + 1] = dims[i];
    for (int i = 0; i <= ndim; i++)
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(v[i] >> (24 - 8 * k));
    memcpy(b + 4 + 4 * ndim, data, n);
    put_bytes(name, b, 4 + 4 * (size_t)ndim + n, gz);
    free(b);
}

static void put_images(const char *name, bool gz, uint32_t n, uint32_t r, uint32_t c,
                       const uint8_t *pix, size_t bytes)
{
    uint32_t dims[3] = {n, r, c};
    put_idx(name, gz, 0x803, dims, 3, pix, bytes);
}

static void put_labels(const char *name, bool gz, uint32_t n, const uint8_t *lab, size_t bytes)
{
    put_idx(name, gz, 0x801, &n, 1, lab, bytes);
}

/* Flip the bits of byte `at` (negative: from the end) of a fixture. */
static void flip_byte(const char *name, long at)
{
    FILE *f = fopen(P(name), "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, at, at < 0 ? SEEK_END : SEEK_SET), 0);
    int ch = fgetc(f);
    assert_true(ch != EOF);
    assert_int_equal(fseek(f, -1, SEEK_CUR), 0);
    fputc(ch ^ 0xff, f);
    assert_int_equal(fclose(f), 0);
}

static pd_config mkcfg(pd_data_format fmt, pd_model_type type, const char *train)
{
    pd_config c;
    memset(&c, 0, sizeof c);
    c.run.seed = 1;
    c.data.format = fmt;
    snprintf(c.data.train, sizeof c.data.train, "%s", P(train));
    c.data.normalize = PD_NORM_NONE;
    c.data.shuffle = PD_SHUFFLE_NONE;
    c.data.shard = PD_SHARD_STRIDED;
    c.model.type = type;
    return c;
}

static void set(char *field, const char *name)
{
    snprintf(field, PD_PATH_MAX, "%s", P(name));
}

static pd_data *load(const pd_config *c, int shard, int nshards, unsigned parts)
{
    pd_data *d = NULL;
    pd_err_clear();
    int err = pd_data_load(c, shard, nshards, parts, &d);
    if (err != PD_OK)
        fail_msg("pd_data_load failed (%d): %s", err, pd_err_msg());
    return d;
}


#define assert_close(got, want, tol) \
    close_to((double)(got), (double)(want), (tol), #got, __FILE__, __LINE__)
static void close_to(double got, double want, double tol, const char *what, const char *file,
                     int line)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%s = %.9g, want %.9g (tolerance %g)\n", what, got, want, tol);
        _fail(file, line);
    }
}

/* Loading must fail with PD_EINPUT, no data, and exactly this message. */
#define expect_error(c, parts, ...)                                   \
    do {                                                              \
        char want_[2048];                                             \
        snprintf(want_, sizeof want_, __VA_ARGS__);                   \
        expect_error_at((c), (parts), want_, __FILE__, __LINE__);     \
    } while (0)
static void expect_error_at(const pd_config *c, unsigned parts, const char *want,
                            const char *file, int line)
{
    pd_data *d = NULL;
    pd_err_clear();
    int err = pd_data_load(c, 0, 1, parts, &d);
    if (err != PD_EINPUT || d != NULL) {
        print_error("pd_data_load returned %d (want PD_EINPUT %d), data %p: %s\n", err,
                    PD_EINPUT, (void *)d, pd_err_msg());
        pd_data_destroy(&d);
        _fail(file, line);
    }
    check_str(pd_err_msg(), want, file, line);
}

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pd-test-data-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    DIR *dp = opendir(dir);
    if (!dp)
        return -1;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(P(e->d_name));
    closedir(dp);
    return rmdir(dir);
}

/* ---- IDX ---- */

/* 5 images of 2x3: pixel j of image r is 10r + j (image 4 ends in 255). */
static void small_idx(const char *img, const char *lab, bool gz)
{
    uint8_t pix[30], y[5] = {3, 0, 9, 1, 2};
    for (int r = 0; r < 5; r++)
        for (int j = 0; j < 6; j++)
            pix[r * 6 + j] = (uint8_t)(10 * r + j);
    pix[29] = 255;
    put_images(img, gz, 5, 2, 3, pix, sizeof pix);
    put_labels(lab, gz, 5, y, sizeof y);
}

static void test_idx_raw_and_gz(void **state)
{
    (void)state;
    small_idx("img", "lab", false);
    small_idx("img.gz", "lab.gz", true);
    pd_config c = mkcfg(PD_FMT_IDX, PD_MODEL_SOFTMAX, "img");
    set(c.data.train_labels, "lab");
    set(c.data.test, "img.gz");
    set(c.data.test_labels, "lab.gz");
    pd_data *d = load(&c, 0, 1, ALL);
    assert_int_equal(pd_data_features(d), 6);
    assert_int_equal(pd_data_classes(d), 10);   /* max label 9, plus 1 */
    assert_int_equal(pd_data_train_total(d), 5);
    assert_int_equal(pd_data_part(d, PD_PART_VALID)->n, 0);
    const float want_y[5] = {3, 0, 9, 1, 2};
    for (pd_part p = PD_PART_TRAIN; p <= PD_PART_TEST; p *= 2) {
        if (p == PD_PART_VALID)
            continue;
        const pd_dataset *ds = pd_data_part(d, p);
        assert_non_null(ds);
        assert_false(ds->sparse);
        assert_int_equal(ds->n, 5);
        assert_int_equal(ds->d, 6);
        for (size_t r = 0; r < 5; r++) {
            assert_int_equal(ds->id[r], r);
            assert_close(ds->y[r], want_y[r], 0);
            for (size_t j = 0; j < 6; j++)
                assert_close(ds->x[r * 6 + j], r == 4 && j == 5 ? 255 : 10 * r + j, 0);
        }
    }
    pd_data_destroy(&d);
    assert_null(d);
    pd_data_destroy(&d);   /* NULL is fine */
}

/* Pixels are read a chunk of 1 MiB of rows at a time (1024 rows of 32x32
 * here): a file of 2.5 chunks loads every row, gzip'd and raw, sharded
 * too; cut inside its third chunk it is refused as truncated with the
 * bytes it holds, and a byte too many is refused too. */
static void test_idx_chunks(void **state)
{
    (void)state;
    enum { N = 2560, D = 1024 };
    uint8_t *pix = malloc((size_t)N * D + 1), y[N];
    assert_non_null(pix);
    for (size_t r = 0; r < N; r++) {
        y[r] = (uint8_t)(r % 10);
        for (size_t j = 0; j < D; j++)
            pix[r * D + j] = (uint8_t)((r * 7 + j * 13) % 251);
    }
    put_images("big", false, N, 32, 32, pix, (size_t)N * D);
    put_images("big.gz", true, N, 32, 32, pix, (size_t)N * D);
    put_labels("bigl", false, N, y, N);
    pd_config c = mkcfg(PD_FMT_IDX, PD_MODEL_SOFTMAX, "big");
    set(c.data.train_labels, "bigl");
    for (int k = 0; k < 3; k++) {
        set(c.data.train, k == 1 ? "big.gz" : "big");
        int nshards = k == 2 ? 2 : 1;   /* then shard 1 of 2 */
        pd_data *d = load(&c, nshards - 1, nshards, PD_PART_TRAIN);
        const pd_dataset *ds = pd_data_part(d, PD_PART_TRAIN);
        assert_int_equal(ds->n, N / nshards);
        for (size_t i = 0; i < ds->n; i++) {
            size_t r = ds->id[i];   /* the record's index in the file */
            assert_true(r < N && (nshards == 2 || r == i) && (i == 0 || r > ds->id[i - 1]));
            assert_true(ds->y[i] == (float)y[r]);
            for (size_t j = 0; j < D; j++)
                if (ds->x[i * D + j] != (float)pix[r * D + j])
                    fail_msg("row %zu pixel %zu: %g, want %d", r, j, (double)ds->x[i * D + j],
                             pix[r * D + j]);
        }
        pd_data_destroy(&d);
    }
    put_images("bigcut", false, N, 32, 32, pix, (size_t)2100 * D + 5);
    set(c.data.train, "bigcut");
    expect_error(&c, PD_PART_TRAIN, "%s: truncated: header says 2560 images of 32x32, file "
                 "holds 2150405 bytes of pixel data", P("bigcut"));
    pix[(size_t)N * D] = 1;
    put_images("bigmore", false, N, 32, 32, pix, (size_t)N * D + 1);
    set(c.data.train, "bigmore");
    expect_error(&c, PD_PART_TRAIN, "%s: more data than the header's 2560 images of 32x32 "
                 "(2621440 bytes of pixel data)", P("bigmore"));
    free(pix);
}

static void test_idx_binary_labels(void **state)
{
    (void)state;
    uint8_t pix[4] = {1, 2, 3, 4}, y[4] = {0, 1, 1, 0};
    put_images("bi", false, 4, 1, 1, pix, 4);
    put_labels("bl", false, 4, y, 4);
    pd_config c = mkcfg(PD_FMT_IDX, PD_MODEL_LOGREG, "bi");
    set(c.data.train_labels, "bl");
    pd_data *d = load(&c, 0, 1, PD_PART_TRAIN);
    const pd_dataset *ds = pd_data_part(d, PD_PART_TRAIN);
    const float want[4] = {-1, 1, 1, -1};
    for (size_t i = 0; i < 4; i++)
        assert_close(ds->y[i], want[i], 0);
    assert_int_equal(pd_data_classes(d), 0);
    pd_data_destroy(&d);
    y[2] = 2;
    put_labels("bl", false, 4, y, 4);
    c.model.type = PD_MODEL_SVM;
    expect_error(&c, PD_PART_TRAIN, "%s: record 2: label 2 is not binary (expected 0/1 or "
                 "-1/+1)", P("bl"));
}

static void test_idx_errors(void **state)
{
    (void)state;
    uint8_t pix[40] = {0}, y[6] = {0, 1, 9, 2, 0, 0};
    small_idx("img", "lab", false);
    pd_config c = mkcfg(PD_FMT_IDX, PD_MODEL_SOFTMAX, "img");
    set(c.data.train_labels, "lab");

    uint32_t dims[3] = {5, 2, 3};
    put_idx("m802", false, 0x802, dims, 3, pix, 30);
    set(c.data.train, "m802");
    expect_error(&c, ALL, "%s: bad magic 0x00000802, expected 0x00000803 (idx3 ubyte images)",
                 P("m802"));
    set(c.data.train, "img");
    set(c.data.train_labels, "img");
    expect_error(&c, ALL, "%s: bad magic 0x00000803, expected 0x00000801 (idx1 ubyte labels)",
                 P("img"));
    set(c.data.train_labels, "lab");

    put_bytes("short", "\0\0\x08\x03\0\0\0", 7, true);
    set(c.data.train, "short");
    expect_error(&c, ALL, "%s: truncated: 7 bytes, an idx3 header needs 16", P("short"));

    for (int gz = 0; gz <= 1; gz++) {
        put_images("trunc", gz, 5, 2, 3, pix, 20);
        set(c.data.train, "trunc");
        expect_error(&c, ALL, "%s: truncated: header says 5 images of 2x3, file holds 20 "
                     "bytes of pixel data", P("trunc"));
    }
    put_images("long", false, 5, 2, 3, pix, 31);
    set(c.data.train, "long");
    expect_error(&c, ALL, "%s: more data than the header's 5 images of 2x3 (30 bytes of "
                 "pixel data)", P("long"));
    set(c.data.train, "img");

    put_labels("l4", false, 4, y, 4);
    set(c.data.train_labels, "l4");
    expect_error(&c, ALL, "%s: 5 images, but %s: 4 labels", P("img"), P("l4"));
    put_labels("l5", false, 5, y, 3);
    set(c.data.train_labels, "l5");
    expect_error(&c, ALL, "%s: truncated: header says 5 labels, file holds 3 bytes of label "
                 "data", P("l5"));
    set(c.data.train_labels, "lab");

    /* A gzip stream cut short is refused too, naming the file. */
    small_idx("cut.gz", "lab.gz", true);
    FILE *f = fopen(P("cut.gz"), "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 30), 0);
    fclose(f);
    set(c.data.train, "cut.gz");
    pd_data *d = NULL;
    assert_int_equal(pd_data_load(&c, 0, 1, ALL, &d), PD_EINPUT);
    assert_null(d);
    assert_int_equal(strncmp(pd_err_msg(), P("cut.gz"), strlen(P("cut.gz"))), 0);
    set(c.data.train, "img");
    /* A damaged checksum inside a gzip'd file. */
    small_idx("img.gz", "crc.gz", true);
    flip_byte("crc.gz", -8);
    set(c.data.train_labels, "crc.gz");
    expect_error(&c, ALL, "%s: corrupt gzip data: incorrect data check", P("crc.gz"));
    set(c.data.train_labels, "lab");

    c.model.classes = 4;
    expect_error(&c, ALL, "%s: record 2: label 9 out of range [0, 4)", P("lab"));
    c.model.classes = 0;
    c.model.features = 10;
    expect_error(&c, ALL, "%s: images of 2x3 have 6 features, expected 10 (model.features)",
                 P("img"));
    c.model.features = 0;

    /* The test set must match what the training file fixed. */
    put_images("t22", false, 1, 2, 2, pix, 4);
    put_labels("tl", false, 1, y, 1);
    set(c.data.test, "t22");
    set(c.data.test_labels, "tl");
    expect_error(&c, ALL, "%s: images of 2x2 have 4 features, expected 6 (the training file)",
                 P("t22"));
    put_images("t23", false, 1, 2, 3, pix, 6);
    uint8_t big = 10;
    put_labels("tl", false, 1, &big, 1);
    set(c.data.test, "t23");
    expect_error(&c, ALL, "%s: record 0: label 10 out of range [0, 10)", P("tl"));
    set(c.data.test_labels, "nope");
    expect_error(&c, ALL, "%s: cannot open: No such file or directory", P("nope"));
    /* ... but only when the test part is asked for. */
    pd_data *ok = load(&c, 0, 1, PD_PART_TRAIN);
    pd_data_destroy(&ok);

    c.data.test_labels[0] = '\0';
    expect_error(&c, ALL, "config: data.test_labels: required with data.format idx and a "
                 "data.test file");
    c.data.train_labels[0] = '\0';
    snprintf(c.source, sizeof c.source, "run.yaml");
    expect_error(&c, ALL, "run.yaml: data.train_labels: required with data.format idx");
    c.data.train[0] = '\0';
    expect_error(&c, ALL, "run.yaml: data.train: no training file given");
}

/* ---- CSV ---- */

static void check_abc(const pd_data *d, const float *want_y)
{
    const pd_dataset *ds = pd_data_part(d, PD_PART_TRAIN);
    assert_int_equal(ds->n, 3);
    assert_int_equal(ds->d, 2);
    assert_int_equal(pd_data_features(d), 2);
    for (size_t i = 0; i < 3; i++) {
        assert_close(ds->y[i], want_y[i], 0);
        assert_close(ds->x[2 * i], 2 * i + 1, 0);
        assert_close(ds->x[2 * i + 1], 2 * i + 2, 0);
    }
}

static void test_csv_variants(void **state)
{
    (void)state;
    const float cls[3] = {0, 1, 2};
    put("h.csv", "f1, \"label\" ,f2\n1,0,2\r\n3, 1 ,4\n\n  \n5,2,6\n");
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "h.csv");
    c.data.header = true;
    snprintf(c.data.label_column, sizeof c.data.label_column, "label");
    pd_data *d = load(&c, 0, 1, ALL);
    check_abc(d, cls);
    assert_int_equal(pd_data_classes(d), 3);
    assert_int_equal(pd_data_part(d, PD_PART_TEST)->n, 0);
    pd_data_destroy(&d);

    snprintf(c.data.label_column, sizeof c.data.label_column, "1");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    check_abc(d, cls);
    pd_data_destroy(&d);

    /* A header name wins over an index. */
    put("n.csv", "a,2,b\n1,0,2\n3,1,4\n5,2,6\n");
    set(c.data.train, "n.csv");
    snprintf(c.data.label_column, sizeof c.data.label_column, "2");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    check_abc(d, cls);
    pd_data_destroy(&d);

    /* No header: the label by index, "" meaning column 0; gzip'd works too. */
    const char *text = "0,1,2\n1,3,4\n2,5,6\n";
    put_bytes("g.csv.gz", text, strlen(text), true);
    c = mkcfg(PD_FMT_CSV, PD_MODEL_MLP, "g.csv.gz");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    check_abc(d, cls);
    pd_data_destroy(&d);

    /* Binary models map 0/1 and -1/+1 to -1/+1; linreg keeps real targets. */
    const float pm[3] = {-1, 1, -1};
    put("b01.csv", "0,1,2\n1,3,4\n0,5,6");
    put("bpm.csv", "-1,1,2\n+1,3,4\n-1,5,6\n");
    c = mkcfg(PD_FMT_CSV, PD_MODEL_LOGREG, "b01.csv");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    check_abc(d, pm);
    assert_int_equal(pd_data_classes(d), 0);
    pd_data_destroy(&d);
    c = mkcfg(PD_FMT_CSV, PD_MODEL_SVM, "bpm.csv");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    check_abc(d, pm);
    pd_data_destroy(&d);
    const float real[3] = {2.5f, -1e3f, 0.125f};
    put("r.csv", "1,2,2.5\n3,4,-1e3\n5,6,0.125\n");
    c = mkcfg(PD_FMT_CSV, PD_MODEL_LINREG, "r.csv");
    snprintf(c.data.label_column, sizeof c.data.label_column, "2");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    check_abc(d, real);
    pd_data_destroy(&d);
}

/* data.curriculum.type column: the score column is read per record and is
 * not a feature; shards and parts keep each example's score. */
static void test_csv_score_column(void **state)
{
    (void)state;
    /* Record r: label r % 2, a = 10 r, s = 100 - r, b = 10 r + 1. */
    char text[4096];
    int o = snprintf(text, sizeof text, "label,a,s,b\n");
    for (int r = 0; r < 20; r++)
        o += snprintf(text + o, sizeof text - (size_t)o, "%d,%d,%d,%d\n", r % 2, 10 * r,
                      100 - r, 10 * r + 1);
    put("s.csv", text);
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "s.csv");
    c.data.header = true;
    snprintf(c.data.label_column, sizeof c.data.label_column, "label");
    c.data.curriculum.type = PD_CURRICULUM_COLUMN;
    snprintf(c.data.curriculum.column, sizeof c.data.curriculum.column, "s");

    pd_data *d = load(&c, 0, 1, PD_PART_TRAIN);
    const pd_dataset *t = pd_data_part(d, PD_PART_TRAIN);
    assert_int_equal(pd_data_features(d), 2);
    assert_int_equal(t->d, 2);
    assert_int_equal(t->n, 20);
    assert_non_null(t->score);
    for (size_t i = 0; i < t->n; i++) {
        assert_close(t->score[i], 100.0 - (double)i, 0);
        assert_close(t->x[i * 2], 10.0 * (double)i, 0);
        assert_close(t->x[i * 2 + 1], 10.0 * (double)i + 1, 0);
        assert_close(t->y[i], (double)(i % 2), 0);
    }
    pd_data_destroy(&d);

    /* By index too (s is column 2); a held-out part keeps its scores. */
    snprintf(c.data.curriculum.column, sizeof c.data.curriculum.column, "2");
    c.data.validation_fraction = 0.25;
    d = load(&c, 0, 1, PD_PART_TRAIN | PD_PART_VALID);
    const pd_dataset *v = pd_data_part(d, PD_PART_VALID);
    assert_int_equal(v->n, 5);
    for (size_t i = 0; i < v->n; i++)
        assert_close(v->score[i], 100.0 - (double)v->id[i], 0);
    pd_data_destroy(&d);
    c.data.validation_fraction = 0;

    /* Sharding: kept records keep their scores. */
    for (int policy = 0; policy < 2; policy++) {
        c.data.shard = policy ? PD_SHARD_CONTIGUOUS : PD_SHARD_STRIDED;
        size_t total = 0;
        for (int w = 0; w < 3; w++) {
            d = load(&c, w, 3, PD_PART_TRAIN);
            t = pd_data_part(d, PD_PART_TRAIN);
            for (size_t i = 0; i < t->n; i++) {
                assert_close(t->score[i], 100.0 - (double)t->id[i], 0);
                assert_close(t->x[i * 2], 10.0 * (double)t->id[i], 0);
            }
            total += t->n;
            pd_data_destroy(&d);
        }
        assert_int_equal(total, 20);
    }
    c.data.shard = PD_SHARD_STRIDED;

    /* Without a column curriculum, s is a feature and there are no scores. */
    c.data.curriculum.type = PD_CURRICULUM_LOSS;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_int_equal(pd_data_features(d), 3);
    assert_null(pd_data_part(d, PD_PART_TRAIN)->score);
    pd_data_destroy(&d);
    c.data.curriculum.type = PD_CURRICULUM_COLUMN;

    /* Errors. */
    snprintf(c.data.curriculum.column, sizeof c.data.curriculum.column, "s");
    put("s.csv", "label,a,s,b\n0,1,2,3\n1,1,easy,3\n");
    expect_error(&c, ALL, "%s:3: column 2: not a number: \"easy\"", P("s.csv"));
    put("s.csv", "label,a,s,b\n0,1,inf,3\n");
    expect_error(&c, ALL, "%s:2: column 2: not finite: inf", P("s.csv"));
    put("s.csv", "label,a,b\n0,1,3\n");
    expect_error(&c, ALL, "%s:1: data.curriculum.column: no column named \"s\"", P("s.csv"));
    put("s.csv", "label,s\n0,1\n");
    expect_error(&c, ALL, "%s:1: 2 fields: need a label, a score and at least one feature",
                 P("s.csv"));
    put("s.csv", "label,a,s,b\n0,1,2,3\n");
    snprintf(c.data.curriculum.column, sizeof c.data.curriculum.column, "0");
    expect_error(&c, ALL, "%s:1: data.curriculum.column: column 0 is the label column "
                 "(data.label_column)", P("s.csv"));
}

static void test_csv_errors(void **state)
{
    (void)state;
    /* The file's text, and the message after its path. */
    static const char *const bad[][2] = {
        {"a,b,c,d,e\n1,2,3,4,5\n1,2,3,4\n", ":3: expected 5 fields, got 4"},
        {"a,b,c\n\n1,2,3\n1,2,3,4\n", ":4: expected 3 fields, got 4"},
        {"a,b,c,d\n1,2,3,4\n1,2, abc ,4\n", ":3: column 2: not a number: \"abc\""},
        {"a,b,c\n1,,3\n", ":2: column 1: not a number: \"\""},
        {"a,b,c\n1,2x,3\n", ":2: column 1: not a number: \"2x\""},
        {"a,b,c\n1,2,3\n1,nan,3\n", ":3: column 1: not finite: nan"},
        {"a,b,c\n1,2,-inf\n", ":2: column 2: not finite: -inf"},
        {"a,b,c\n1,2,1e999\n", ":2: column 2: not finite: 1e999"},
        {"a,b,c\n", ": no records"},
        {"", ": no records"},
        {"a\n1\n", ":1: 1 field: need a label and at least one feature"},
    };
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "bad.csv");
    c.data.header = true;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        put("bad.csv", bad[k][0]);
        expect_error(&c, ALL, "%s%s", P("bad.csv"), bad[k][1]);
    }

    /* Labels. */
    put("lab.csv", "y,a,b\n0,1,2\n2.5,1,2\n");
    set(c.data.train, "lab.csv");
    expect_error(&c, ALL, "%s:3: label 2.5 is not a class id (an integer >= 0)", P("lab.csv"));
    put("lab.csv", "y,a,b\n0,1,2\n-1,1,2\n");
    expect_error(&c, ALL, "%s:3: label -1 is not a class id (an integer >= 0)", P("lab.csv"));
    c.model.classes = 3;
    expect_error(&c, ALL, "%s:3: label -1 out of range [0, 3)", P("lab.csv"));
    put("lab.csv", "y,a,b\n0,1,2\n\n3,1,2\n");
    expect_error(&c, ALL, "%s:4: label 3 out of range [0, 3)", P("lab.csv"));
    c.model.classes = 0;
    /* An inferred class count stops at 65536 (the fuzzer's label of 9999110
     * made ten million class names); model.classes set allows more. */
    put("lab.csv", "y,a,b\n65535,1,2\n9999110,1,2\n");
    expect_error(&c, ALL, "%s:3: label 9.99911e+06 would make 9999111 classes; paramd infers "
                 "at most 65536 from the labels (set model.classes for more, or check the "
                 "label column)", P("lab.csv"));
    c.model.classes = 70000;
    put("lab.csv", "y,a,b\n65535,1,2\n69999,1,2\n");
    pd_data *big = load(&c, 0, 1, PD_PART_TRAIN);
    assert_int_equal(pd_data_classes(big), 70000);
    pd_data_destroy(&big);
    c.model.classes = 0;
    c.model.type = PD_MODEL_LOGREG;
    put("lab.csv", "y,a,b\n1,1,2\n2,1,2\n2,1,2\n3,1,2\n");
    expect_error(&c, ALL, "%s:5: label 3 is a third label (after 1 and 2): logreg takes two",
                 P("lab.csv"));
    put("lab.csv", "y,a,b\n1,1,2\n0,1,2\n-1,1,2\n");
    expect_error(&c, ALL, "%s:4: label -1 is a third label (after 1 and 0): logreg takes two",
                 P("lab.csv"));
    put("lab.csv", "y,a,b\n3,1,2\n3,1,2\n");
    expect_error(&c, ALL, "%s:2: every label is 3: logreg needs two (0/1, -1/+1 or any two "
                 "numbers)", P("lab.csv"));

    /* The label column. */
    put("lc.csv", "a,b,c\n1,2,3\n");
    set(c.data.train, "lc.csv");
    snprintf(c.data.label_column, sizeof c.data.label_column, "price");
    expect_error(&c, ALL, "%s:1: data.label_column: no column named \"price\"", P("lc.csv"));
    c.data.header = false;
    expect_error(&c, ALL, "%s: data.label_column: \"price\" is a column name, but data.header "
                 "is false", P("lc.csv"));
    snprintf(c.data.label_column, sizeof c.data.label_column, "7");
    expect_error(&c, ALL, "%s:1: data.label_column: column 7, but the line has 3 fields",
                 P("lc.csv"));
    c.data.header = true;
    expect_error(&c, ALL, "%s:1: data.label_column: column 7, but the line has 3 fields",
                 P("lc.csv"));
    c.data.label_column[0] = '\0';

    /* Feature counts: model.features, then the training file for the test file. */
    put("lc.csv", "a,b,c\n1,2,3\n");
    c.model.type = PD_MODEL_LINREG;
    c.model.features = 5;
    expect_error(&c, ALL, "%s:1: 2 feature columns, expected 5 (model.features)", P("lc.csv"));
    c.model.features = 0;
    put("t.csv", "a,b,c,d\n1,2,3,4\n");
    set(c.data.test, "t.csv");
    expect_error(&c, ALL, "%s:1: 3 feature columns, expected 2 (the training file)",
                 P("t.csv"));
    /* gzip'd text cut short. */
    const char *text = "a,b,c\n1,2,3\n4,5,6\n";
    put_bytes("cut.csv.gz", text, strlen(text), true);
    FILE *f = fopen(P("cut.csv.gz"), "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 20), 0);
    fclose(f);
    set(c.data.test, "cut.csv.gz");
    expect_error(&c, ALL, "%s: corrupt gzip data: unexpected end of file", P("cut.csv.gz"));
    set(c.data.test, "none.csv");
    expect_error(&c, ALL, "%s: cannot open: No such file or directory", P("none.csv"));
}

/* ---- LIBSVM ---- */

/* The class names as a "|"-joined string, for exact comparisons. */
static const char *names_of(const pd_data *d)
{
    static char buf[256];
    size_t n, k = 0;
    const char *const *names = pd_data_class_names(d, &n);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? "|" : "", names[i]);
    return buf;
}

static void assert_labels(const pd_dataset *ds, const float *want, size_t n)
{
    assert_int_equal(ds->n, n);
    for (size_t i = 0; i < n; i++)
        assert_close(ds->y[i], want[i], 0);
}

/* CSV as spreadsheets export it: a byte-order mark, other delimiters. */
static void test_csv_exports(void **state)
{
    (void)state;
    /* Excel's "CSV UTF-8": a BOM before the header (was: no column named "label"). */
    put("bom.csv", "\xEF\xBB\xBFlabel,a,b\n1,2,3\n0,4,5\n");
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "bom.csv");
    c.data.header = true;
    snprintf(c.data.label_column, sizeof c.data.label_column, "label");
    pd_data *d = load(&c, 0, 1, PD_PART_TRAIN);
    const pd_dataset *ds = pd_data_part(d, PD_PART_TRAIN);
    assert_labels(ds, (const float[]){1, 0}, 2);
    const float x[4] = {2, 3, 4, 5};
    for (size_t i = 0; i < 4; i++)
        assert_close(ds->x[i], x[i], 0);
    pd_data_destroy(&d);
    /* Without a header the BOM does not become part of the first number. */
    put("bom.csv", "\xEF\xBB\xBF" "1,2,3\n0,4,5\n");
    c.data.header = false;
    snprintf(c.data.label_column, sizeof c.data.label_column, "0");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, 0}, 2);
    pd_data_destroy(&d);
    /* Only at the start of the file. */
    put("bom.csv", "1,2,3\n0,\xEF\xBB\xBF" "4,5\n");
    expect_error(&c, ALL, "%s:2: column 1: not a number: \"\xEF\xBB\xBF" "4\"", P("bom.csv"));

    /* Semicolon (European Excel) and tab, with decimal points. */
    put("semi.csv", "y;a;b\n2;1.5;-2\n0;3;4.25\n");
    c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "semi.csv");
    c.data.header = true;
    snprintf(c.data.label_column, sizeof c.data.label_column, "y");
    c.data.delimiter = PD_DELIM_SEMICOLON;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    ds = pd_data_part(d, PD_PART_TRAIN);
    assert_int_equal(pd_data_features(d), 2);
    assert_labels(ds, (const float[]){2, 0}, 2);
    const float xs[4] = {1.5f, -2, 3, 4.25f};
    for (size_t i = 0; i < 4; i++)
        assert_close(ds->x[i], xs[i], 0);
    pd_data_destroy(&d);
    put("tab.tsv", "a\ty\tb\n1\t1\t2\n3\t0\t4\n");
    set(c.data.train, "tab.tsv");
    c.data.delimiter = PD_DELIM_TAB;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    ds = pd_data_part(d, PD_PART_TRAIN);
    assert_labels(ds, (const float[]){1, 0}, 2);
    const float xt[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < 4; i++)
        assert_close(ds->x[i], xt[i], 0);
    pd_data_destroy(&d);
    /* A semicolon file read with commas: one field per line, so one column. */
    set(c.data.train, "semi.csv");
    c.data.delimiter = PD_DELIM_COMMA;
    expect_error(&c, ALL, "%s:1: data.label_column: no column named \"y\"", P("semi.csv"));
    c.data.header = false;
    snprintf(c.data.label_column, sizeof c.data.label_column, "0");
    put("semi.csv", "2;1.5;-2\n");
    expect_error(&c, ALL, "%s:1: 1 field: need a label and at least one feature",
                 P("semi.csv"));
}

/* Class labels that are words, mapped in byte order or data.classes order. */
static void test_csv_class_names(void **state)
{
    (void)state;
    put("w.csv", "label,a\ncat,1\ndog,2\nbird,3\n\"cat\" ,4\n");
    put("wt.csv", "label,a\ndog,5\nbird,6\n");
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "w.csv");
    c.data.header = true;
    snprintf(c.data.label_column, sizeof c.data.label_column, "label");
    set(c.data.test, "wt.csv");
    pd_data *d = load(&c, 0, 1, ALL);
    /* bird < cat < dog; quotes and blanks around a name are not part of it. */
    assert_string_equal(names_of(d), "bird|cat|dog");
    assert_int_equal(pd_data_classes(d), 3);
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, 2, 0, 1}, 4);
    assert_labels(pd_data_part(d, PD_PART_TEST), (const float[]){2, 0}, 2);
    pd_data_destroy(&d);
    /* data.classes gives the order (and may name a class the file lacks). */
    snprintf(c.data.classes, sizeof c.data.classes, "dog, cat,bird,cow");
    d = load(&c, 0, 1, ALL);
    assert_string_equal(names_of(d), "dog|cat|bird|cow");
    assert_int_equal(pd_data_classes(d), 4);
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, 0, 2, 1}, 4);
    assert_labels(pd_data_part(d, PD_PART_TEST), (const float[]){0, 2}, 2);
    pd_data_destroy(&d);
    /* With validation and two shards every rank maps alike. */
    c.data.validation_fraction = 0.25;
    for (int w = 0; w < 2; w++) {
        d = load(&c, w, 2, PD_PART_TRAIN);
        assert_string_equal(names_of(d), "dog|cat|bird|cow");
        pd_data_destroy(&d);
    }
    c.data.validation_fraction = 0;
    /* Errors. */
    snprintf(c.data.classes, sizeof c.data.classes, "dog,cat");
    expect_error(&c, ALL, "%s:4: column 0: label \"bird\" is not a class (\"dog\", \"cat\", "
                 "from data.classes)", P("w.csv"));
    snprintf(c.data.classes, sizeof c.data.classes, "dog,,cat");
    expect_error(&c, ALL, "config: data.classes: name 2 is empty (\"dog,,cat\")");
    snprintf(c.data.classes, sizeof c.data.classes, "dog,cat,dog");
    expect_error(&c, ALL, "config: data.classes: \"dog\" is given twice");
    c.data.classes[0] = '\0';
    put("wt.csv", "label,a\ndog,5\ncow,6\n");
    expect_error(&c, ALL, "%s:3: column 0: label \"cow\" is not a class (\"bird\", \"cat\", "
                 "\"dog\", from the training file's labels)", P("wt.csv"));
    c.model.classes = 2;
    expect_error(&c, ALL, "%s: model.classes is 2, but the labels name 3 classes (\"bird\", "
                 "\"cat\", \"dog\")", P("w.csv"));
    c.model.classes = 0;
    c.data.test[0] = '\0';

    /* Numbers stay numbers: class ids, names "0".."C-1". */
    put("n.csv", "label,a\n2,1\n0,2\n");
    set(c.data.train, "n.csv");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "0|1|2");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){2, 0}, 2);
    pd_data_destroy(&d);
    put("n.csv", "label,a\n12,1\n0,2\n");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "0|1|2|3|4|5|6|7|8|9|10|11|12");
    pd_data_destroy(&d);
    /* One word makes every label a name: "10" < "9" < "x" in byte order. */
    put("n.csv", "label,a\n9,1\n10,2\nx,3\n");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "10|9|x");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, 0, 2}, 3);
    pd_data_destroy(&d);

    /* Binary models: two names, the first in order is negative. */
    c.model.type = PD_MODEL_LOGREG;
    put("b.csv", "label,a\nyes,1\nno,2\nyes,3\n");
    set(c.data.train, "b.csv");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "no|yes");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, -1, 1}, 3);
    pd_data_destroy(&d);
    snprintf(c.data.classes, sizeof c.data.classes, "yes,no");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "yes|no");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){-1, 1, -1}, 3);
    pd_data_destroy(&d);
    snprintf(c.data.classes, sizeof c.data.classes, "yes,no,maybe");
    expect_error(&c, ALL, "%s: data.classes names 3 classes (\"yes\", \"no\", \"maybe\"): "
                 "logreg takes two", P("b.csv"));
    c.data.classes[0] = '\0';
    put("b.csv", "label,a\nyes,1\nno,2\nmaybe,3\n");
    expect_error(&c, ALL, "%s:4: label \"maybe\" is a third label: logreg takes two (the "
                 "labels are \"maybe\", \"no\", \"yes\")", P("b.csv"));
    put("b.csv", "label,a\nyes,1\nyes,2\n");
    expect_error(&c, ALL, "%s:2: every label is \"yes\": logreg needs two", P("b.csv"));
    /* 0/1 and -1/+1 as before; their names say which. */
    put("b.csv", "label,a\n-1,1\n1,2\n");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "-1|1");
    pd_data_destroy(&d);
    put("b.csv", "label,a\n1,1\n0,2\n");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "0|1");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, -1}, 2);
    pd_data_destroy(&d);
    /* linreg: no names. */
    c.model.type = PD_MODEL_LINREG;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    assert_string_equal(names_of(d), "");
    pd_data_destroy(&d);
}

/* liblinear's binary labels: any two numbers, the smaller negative. */
static void test_libsvm_two_labels(void **state)
{
    (void)state;
    put("two.svm", "2 1:1\n1 2:1\n2 1:3\n");
    put("two-test.svm", "1 1:1\n2 2:1\n");
    pd_config c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LOGREG, "two.svm");
    set(c.data.test, "two-test.svm");
    pd_data *d = load(&c, 0, 1, ALL);
    assert_string_equal(names_of(d), "1|2");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, -1, 1}, 3);
    assert_labels(pd_data_part(d, PD_PART_TEST), (const float[]){-1, 1}, 2);
    pd_data_destroy(&d);
    /* Negative numbers and 0 with -1: still the smaller is negative. */
    put("two.svm", "0 1:1\n-1 2:1\n");
    c.data.test[0] = '\0';
    d = load(&c, 0, 1, ALL);
    assert_string_equal(names_of(d), "-1|0");
    assert_labels(pd_data_part(d, PD_PART_TRAIN), (const float[]){1, -1}, 2);
    pd_data_destroy(&d);
    /* Every rank, whatever records it parses, maps alike (model.features set:
     * a shard parses only its own records). */
    put("two.svm", "5 1:1\n5 1:2\n7 1:3\n5 1:4\n");
    c.model.features = 1;
    for (int w = 0; w < 2; w++) {
        d = load(&c, w, 2, PD_PART_TRAIN);
        const pd_dataset *ds = pd_data_part(d, PD_PART_TRAIN);
        assert_string_equal(names_of(d), "5|7");
        assert_labels(ds, w == 0 ? (const float[]){-1, 1} : (const float[]){-1, -1}, 2);
        pd_data_destroy(&d);
    }
    /* A test label that is neither. */
    put("two-test.svm", "5 1:1\n6 1:1\n");
    set(c.data.test, "two-test.svm");
    expect_error(&c, ALL, "%s:2: label 6 is neither of the training file's two labels "
                 "(5 negative, 7 positive)", P("two-test.svm"));
}

/* --predict's test files may come without labels (PD_PART_UNLABELED). */
static void test_unlabeled_test_file(void **state)
{
    (void)state;
    put("tr.csv", "label,a,b\ncat,2,3\ndog,4,5\n");
    put("te.csv", "a,b\n7,8\n9,10\n");
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "tr.csv");
    c.data.header = true;
    snprintf(c.data.label_column, sizeof c.data.label_column, "label");
    set(c.data.test, "te.csv");
    pd_data *d = load(&c, 0, 1, PD_PART_TEST | PD_PART_UNLABELED);
    const pd_dataset *te = pd_data_part(d, PD_PART_TEST);
    assert_int_equal(te->n, 2);
    const float x[4] = {7, 8, 9, 10};
    for (size_t i = 0; i < 4; i++)
        assert_close(te->x[i], x[i], 0);
    assert_string_equal(names_of(d), "cat|dog");
    pd_data_destroy(&d);
    /* A labeled file still reads its labels; without the flag labels are needed. */
    put("te.csv", "label,a,b\ndog,7,8\n");
    d = load(&c, 0, 1, PD_PART_TEST | PD_PART_UNLABELED);
    assert_labels(pd_data_part(d, PD_PART_TEST), (const float[]){1}, 1);
    pd_data_destroy(&d);
    put("te.csv", "a,b\n7,8\n");
    expect_error(&c, PD_PART_TEST, "%s:1: data.label_column: no column named \"label\"",
                 P("te.csv"));
    put("te.csv", "a,b,c\n7,8,9\n");
    expect_error(&c, PD_PART_TEST | PD_PART_UNLABELED, "%s:1: data.label_column: no column "
                 "named \"label\"", P("te.csv"));

    /* LIBSVM: a row that starts with index:value has no label. */
    put("tr.svm", "2 1:1\n1 2:1\n");
    put("te.svm", "1:5 2:6\n2 2:3\n");
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LOGREG, "tr.svm");
    set(c.data.test, "te.svm");
    d = load(&c, 0, 1, PD_PART_TEST | PD_PART_UNLABELED);
    te = pd_data_part(d, PD_PART_TEST);
    assert_int_equal(te->n, 2);
    assert_int_equal(te->row_ptr[1], 2);
    assert_int_equal(te->row_ptr[2], 3);
    assert_close(te->val[0], 5, 0);
    assert_close(te->val[1], 6, 0);
    assert_int_equal(te->col[2], 1);
    assert_close(te->y[1], 1, 0);
    pd_data_destroy(&d);
    expect_error(&c, PD_PART_TEST, "%s:1: label: not a number: \"1:5\"", P("te.svm"));
}

static void test_libsvm_variants(void **state)
{
    (void)state;
    put("a.svm", "# a comment line\n"
                 "+1 1:0.5 3:2   # trailing comment\n"
                 "\n"
                 "   # indented comment\n"
                 "-1\t2:1.5\n"
                 "+1 1:1 2:2 3:3\n"
                 "-1\n");
    pd_config c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LOGREG, "a.svm");
    pd_data *d = load(&c, 0, 1, ALL);
    const pd_dataset *ds = pd_data_part(d, PD_PART_TRAIN);
    assert_true(ds->sparse);
    assert_null(ds->x);
    assert_int_equal(ds->n, 4);
    assert_int_equal(ds->d, 3);
    assert_int_equal(pd_data_features(d), 3);
    const size_t rp[5] = {0, 2, 3, 6, 6};
    const uint32_t col[6] = {0, 2, 1, 0, 1, 2};
    const float val[6] = {0.5f, 2, 1.5f, 1, 2, 3}, y[4] = {1, -1, 1, -1};
    for (size_t i = 0; i <= 4; i++)
        assert_int_equal(ds->row_ptr[i], rp[i]);
    for (size_t p = 0; p < 6; p++) {
        assert_int_equal(ds->col[p], col[p]);
        assert_close(ds->val[p], val[p], 0);
    }
    for (size_t i = 0; i < 4; i++)
        assert_close(ds->y[i], y[i], 0);
    assert_true(pd_data_part(d, PD_PART_TEST)->sparse);
    pd_data_destroy(&d);

    /* model.features may exceed the indices seen; 0/1 labels become -1/+1. */
    put("b.svm", "0 1:1\n1 2:1\n");
    set(c.data.train, "b.svm");
    c.model.features = 5;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    ds = pd_data_part(d, PD_PART_TRAIN);
    assert_int_equal(ds->d, 5);
    assert_close(ds->y[0], -1, 0);
    assert_close(ds->y[1], 1, 0);
    pd_data_destroy(&d);
    c.model.features = 0;

    /* The test set is checked against the features the training file had. */
    put("t.svm", "1 1:1\n-1 3:1\n");
    set(c.data.train, "a.svm");
    set(c.data.test, "t.svm");
    d = load(&c, 0, 1, PD_PART_TEST);
    assert_int_equal(pd_data_part(d, PD_PART_TEST)->n, 2);
    assert_int_equal(pd_data_part(d, PD_PART_TEST)->d, 3);
    assert_null(pd_data_part(d, PD_PART_TRAIN));
    pd_data_destroy(&d);
    put("t.svm", "1 1:1\n-1 4:1\n");
    expect_error(&c, ALL, "%s:2: index 4 beyond 3 features (the training file)", P("t.svm"));
    c.data.test[0] = '\0';

    /* Dense models get dense rows: class ids (softmax), real targets (linreg). */
    const char *text = "0 1:1\n2 3:4\n# c\n1 2:-2.5 3:1\n";
    put_bytes("s.svm.gz", text, strlen(text), true);
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_SOFTMAX, "s.svm.gz");
    d = load(&c, 0, 1, PD_PART_TRAIN);
    ds = pd_data_part(d, PD_PART_TRAIN);
    assert_false(ds->sparse);
    assert_null(ds->row_ptr);
    assert_int_equal(ds->d, 3);
    assert_int_equal(pd_data_classes(d), 3);
    const float dense[9] = {1, 0, 0, 0, 0, 4, 0, -2.5f, 1}, cls[3] = {0, 2, 1};
    for (size_t i = 0; i < 9; i++)
        assert_close(ds->x[i], dense[i], 0);
    for (size_t i = 0; i < 3; i++)
        assert_close(ds->y[i], cls[i], 0);
    pd_data_destroy(&d);
    put("r.svm", "2.5 2:1\n-7 1:1\n");
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LINREG, "r.svm");
    d = load(&c, 0, 1, PD_PART_TRAIN | PD_PART_TEST);
    ds = pd_data_part(d, PD_PART_TRAIN);
    assert_false(ds->sparse);
    assert_close(ds->y[0], 2.5, 0);
    assert_close(ds->y[1], -7, 0);
    assert_close(ds->x[1], 1, 0);
    assert_close(ds->x[2], 1, 0);
    assert_false(pd_data_part(d, PD_PART_TEST)->sparse);
    pd_data_destroy(&d);
}

#define svm_error(type, features, line, want) \
    svm_error_at((type), (features), (line), (want), __LINE__)
static void svm_error_at(pd_model_type type, int features, const char *line, const char *want,
                         int at)
{
    char text[256], msg[1024];
    snprintf(text, sizeof text, "# header comment\n0 1:1\n%s\n", line);
    put("e.svm", text);
    pd_config c = mkcfg(PD_FMT_LIBSVM, type, "e.svm");
    c.model.features = features;
    if (type == PD_MODEL_SOFTMAX)
        c.model.classes = 2;
    snprintf(msg, sizeof msg, "%s:3: %s", P("e.svm"), want);
    expect_error_at(&c, ALL, msg, __FILE__, at);
}

static void test_libsvm_errors(void **state)
{
    (void)state;
    svm_error(PD_MODEL_LOGREG, 0, "1 3x1", "cannot parse \"3x1\" (expected index:value)");
    svm_error(PD_MODEL_LOGREG, 0, "1 a:1", "cannot parse \"a:1\" (expected index:value)");
    svm_error(PD_MODEL_LOGREG, 0, "1 :1", "cannot parse \":1\" (expected index:value)");
    svm_error(PD_MODEL_LOGREG, 0, "1 -2:1", "cannot parse \"-2:1\" (expected index:value)");
    svm_error(PD_MODEL_LOGREG, 0, "1 99999999999:1",
              "cannot parse \"99999999999:1\" (expected index:value)");
    svm_error(PD_MODEL_LOGREG, 0, "1 3:abc", "index 3: not a number: \"abc\"");
    svm_error(PD_MODEL_LOGREG, 0, "1 3:", "index 3: not a number: \"\"");
    svm_error(PD_MODEL_LOGREG, 0, "1 3:1:2", "index 3: not a number: \"1:2\"");
    svm_error(PD_MODEL_LOGREG, 0, "1 3:nan", "index 3: not finite: nan");
    svm_error(PD_MODEL_LOGREG, 0, "1 1:2 0:1", "index 0 in \"0:1\": indices start at 1");
    svm_error(PD_MODEL_LOGREG, 0, "1 0:1", "index 0 in \"0:1\": indices start at 1");
    svm_error(PD_MODEL_LOGREG, 0, "1 2:1 2:3", "index 2 repeated");
    svm_error(PD_MODEL_LOGREG, 0, "1 3:1 2:1", "index 2 after index 3: indices must increase");
    svm_error(PD_MODEL_LOGREG, 3, "1 1:1 4:1", "index 4 beyond 3 features (model.features)");
    svm_error(PD_MODEL_LOGREG, 0, "x 1:1", "label: not a number: \"x\"");
    svm_error(PD_MODEL_LINREG, 0, "inf 1:1", "label: not finite: inf");
    svm_error(PD_MODEL_SOFTMAX, 0, "5 1:1", "label 5 out of range [0, 2)");

    /* Binary labels: two numbers at most (0/1, -1/+1, or any two). */
    put("e.svm", "# header comment\n0 1:1\n1 1:1\n3 1:1\n");
    pd_config c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LOGREG, "e.svm");
    expect_error(&c, ALL, "%s:4: label 3 is a third label (after 0 and 1): logreg takes two",
                 P("e.svm"));
    put("e.svm", "1 1:1\n0 1:1 # zero\n1 1:2\n-1 1:1\n");
    c.model.type = PD_MODEL_SVM;
    expect_error(&c, ALL, "%s:4: label -1 is a third label (after 1 and 0): svm takes two",
                 P("e.svm"));
    c.model.type = PD_MODEL_LOGREG;

    put("e.svm", "# nothing\n\n   \n");
    expect_error(&c, ALL, "%s: no records", P("e.svm"));
    put("e.svm", "1\n-1\n");
    expect_error(&c, ALL, "%s: no record has a feature; set model.features", P("e.svm"));
}

/* ---- hold-out and shards ---- */

/* n records; feature 0 is the record number, feature 1 its square. */
static void numbered_csv(const char *name, int n)
{
    size_t cap = 64 * (size_t)n, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    text[0] = '\0';
    for (int r = 0; r < n; r++)
        len += (size_t)snprintf(text + len, cap - len, "%d,%d,%d\n", r % 3, r, r * r);
    put(name, text);
    free(text);
}

static void valid_records(uint64_t seed, double frac, size_t *out, size_t *n)
{
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "num.csv");
    c.run.seed = seed;
    c.data.validation_fraction = frac;
    pd_data *d = load(&c, 0, 1, PD_PART_VALID);
    const pd_dataset *v = pd_data_part(d, PD_PART_VALID);
    *n = v->n;
    for (size_t i = 0; i < v->n; i++) {
        assert_close(v->x[2 * i], v->id[i], 0);   /* id = record number */
        out[i] = v->id[i];
    }
    pd_data_destroy(&d);
}

static void test_holdout(void **state)
{
    (void)state;
    numbered_csv("num.csv", 20);
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "num.csv");
    c.data.validation_fraction = 0.25;
    pd_data *d = load(&c, 0, 1, ALL);
    const pd_dataset *tr = pd_data_part(d, PD_PART_TRAIN), *va = pd_data_part(d, PD_PART_VALID);
    assert_int_equal(va->n, 5);
    assert_int_equal(tr->n, 15);
    assert_int_equal(pd_data_train_total(d), 15);
    int seen[20] = {0};
    for (size_t i = 0; i < va->n; i++) {
        assert_close(va->x[2 * i], va->id[i], 0);
        assert_true(i == 0 || va->id[i] > va->id[i - 1]);
        seen[va->id[i]]++;
    }
    for (size_t i = 0; i < tr->n; i++) {
        size_t rec = (size_t)tr->x[2 * i];
        assert_int_equal(tr->id[i], i);                         /* numbered 0..T-1 */
        assert_true(i == 0 || rec > (size_t)tr->x[2 * i - 2]);  /* in record order */
        assert_close(tr->y[i], rec % 3, 0);
        assert_close(tr->x[2 * i + 1], rec * rec, 0);
        seen[rec]++;
    }
    for (int r = 0; r < 20; r++)
        assert_int_equal(seen[r], 1);
    pd_data_destroy(&d);

    size_t a[20], b[20], e[20], na, nb, ne;
    valid_records(1, 0.25, a, &na);
    valid_records(1, 0.25, b, &nb);
    valid_records(2, 0.25, e, &ne);
    assert_int_equal(na, 5);
    assert_int_equal(ne, 5);
    assert_memory_equal(a, b, sizeof a[0] * na);
    assert_memory_not_equal(a, e, sizeof a[0] * na);
    valid_records(1, 0.125, a, &na);   /* 2.5 rounds to 3 */
    assert_int_equal(na, 3);
    valid_records(1, 0, a, &na);
    assert_int_equal(na, 0);
    valid_records(1, 0.97, a, &na);    /* 19.4 -> 19, one left to train on */
    assert_int_equal(na, 19);
    c.data.validation_fraction = 0.98;
    expect_error(&c, ALL, "%s: data.validation_fraction 0.98 leaves no training example of 20 "
                 "records", P("num.csv"));
    c.data.validation_fraction = 1.5;
    expect_error(&c, ALL, "data.validation_fraction: 1.5 is not in [0, 1)");
}

/* Every training example in exactly one shard, each with its own row. */
static void check_shards(pd_config *c, pd_shard policy, int W)
{
    c->data.shard = policy;
    pd_data *full = load(c, 0, 1, PD_PART_TRAIN);
    const pd_dataset *all = pd_data_part(full, PD_PART_TRAIN);
    size_t T = pd_data_train_total(full), total = 0;
    int *count = calloc(T, sizeof *count);
    for (int w = 0; w < W; w++) {
        pd_data *d = load(c, w, W, PD_PART_TRAIN);
        const pd_dataset *s = pd_data_part(d, PD_PART_TRAIN);
        assert_int_equal(pd_data_train_total(d), T);
        assert_true(s->n == T / (size_t)W || s->n == T / (size_t)W + 1);   /* balanced */
        for (size_t i = 0; i < s->n; i++) {
            size_t id = s->id[i];
            assert_true(id < T);
            assert_true(i == 0 || id > s->id[i - 1]);
            if (policy == PD_SHARD_STRIDED)
                assert_int_equal(id % (size_t)W, (size_t)w);
            else
                assert_true(id >= (size_t)w * T / (size_t)W &&
                            id < (size_t)(w + 1) * T / (size_t)W);
            assert_close(s->y[i], all->y[id], 0);
            assert_memory_equal(s->x + i * s->d, all->x + id * all->d, s->d * sizeof(float));
            count[id]++;
        }
        total += s->n;
        pd_data_destroy(&d);
    }
    assert_int_equal(total, T);
    for (size_t i = 0; i < T; i++)
        assert_int_equal(count[i], 1);
    free(count);
    pd_data_destroy(&full);
}

static void test_shards(void **state)
{
    (void)state;
    numbered_csv("num.csv", 23);
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "num.csv");
    c.data.validation_fraction = 0.2;   /* 4.6 -> 5 held out, T = 18 */
    const int Ws[] = {1, 2, 3, 5, 7};
    for (size_t k = 0; k < sizeof Ws / sizeof Ws[0]; k++) {
        check_shards(&c, PD_SHARD_STRIDED, Ws[k]);
        check_shards(&c, PD_SHARD_CONTIGUOUS, Ws[k]);
    }
    /* More shards than examples: some are empty, still a partition. */
    c.data.validation_fraction = 0;
    numbered_csv("num.csv", 4);
    check_shards(&c, PD_SHARD_STRIDED, 7);
    check_shards(&c, PD_SHARD_CONTIGUOUS, 7);

    /* IDX and LIBSVM rows follow their ids too. */
    small_idx("img", "lab", true);
    c = mkcfg(PD_FMT_IDX, PD_MODEL_SOFTMAX, "img");
    set(c.data.train_labels, "lab");
    check_shards(&c, PD_SHARD_STRIDED, 2);
    check_shards(&c, PD_SHARD_CONTIGUOUS, 3);
    put("sh.svm", "1 1:1\n2 2:2\n0 3:3\n1 1:4\n2 2:5\n0 3:6\n");
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_SOFTMAX, "sh.svm");
    check_shards(&c, PD_SHARD_STRIDED, 3);
    check_shards(&c, PD_SHARD_CONTIGUOUS, 2);

    /* Sparse shards: rows compared through their CSR entries. */
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_SVM, "sh.svm");
    put("sh.svm", "1 1:1\n-1 2:2\n1 3:3\n1 1:4 3:1\n-1 2:5\n");
    pd_data *d = load(&c, 1, 2, PD_PART_TRAIN);
    const pd_dataset *s = pd_data_part(d, PD_PART_TRAIN);
    assert_int_equal(s->n, 2);   /* examples 1 and 3 */
    assert_int_equal(s->id[0], 1);
    assert_int_equal(s->id[1], 3);
    assert_int_equal(s->row_ptr[2], 3);
    assert_int_equal(s->col[0], 1);
    assert_close(s->val[0], 2, 0);
    assert_int_equal(s->col[2], 2);
    assert_close(s->val[2], 1, 0);
    assert_int_equal(pd_data_features(d), 3);   /* from every line, not just the shard */
    pd_data_destroy(&d);
}

/* ---- normalization ---- */

static void test_normalize_dense(void **state)
{
    (void)state;
    /* label, a, b (constant), c; test values outside the training range. */
    put("tr.csv", "y,a,b,c\n0,1,2,-1\n1,3,2,0\n0,5,2,0\n1,7,2,1\n");
    put("te.csv", "y,a,b,c\n0,9,3,2\n");
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "tr.csv");
    c.data.header = true;
    set(c.data.test, "te.csv");
    c.data.normalize = PD_NORM_SCALE01;
    pd_data *d = load(&c, 0, 1, ALL);
    const pd_dataset *tr = pd_data_part(d, PD_PART_TRAIN), *te = pd_data_part(d, PD_PART_TEST);
    const double s01[12] = {0, 0, 0, 1.0 / 3, 0, 0.5, 2.0 / 3, 0, 0.5, 1, 0, 1};
    for (size_t i = 0; i < 12; i++)
        assert_close(tr->x[i], s01[i], 1e-6);
    assert_close(te->x[0], 4.0 / 3, 1e-6);
    assert_close(te->x[1], 0, 0);          /* constant feature -> 0 */
    assert_close(te->x[2], 1.5, 1e-6);
    pd_data_destroy(&d);

    c.data.normalize = PD_NORM_STANDARDIZE;
    d = load(&c, 0, 1, ALL);
    tr = pd_data_part(d, PD_PART_TRAIN);
    te = pd_data_part(d, PD_PART_TEST);
    /* a: mean 4, std sqrt 5; b: std 0 -> 1; c: mean 0, std sqrt 0.5 */
    const double r5 = sqrt(5.0), rh = sqrt(0.5);
    const double st[12] = {-3 / r5, 0, -1 / rh, -1 / r5, 0, 0, 1 / r5, 0, 0, 3 / r5, 0, 1 / rh};
    for (size_t i = 0; i < 12; i++)
        assert_close(tr->x[i], st[i], 1e-6);
    assert_close(te->x[0], 5 / r5, 1e-6);
    assert_close(te->x[1], 1, 1e-6);
    assert_close(te->x[2], 2 / rh, 1e-6);
    pd_data_destroy(&d);
}

/* Statistics come from the training part only and are the same in every shard. */
static void test_normalize_train_only(void **state)
{
    (void)state;
    /* Record r has a spike of 100 in feature r and the value r elsewhere. */
    char text[1024];
    size_t len = 0;
    for (int r = 0; r < 10; r++) {
        len += (size_t)snprintf(text + len, sizeof text - len, "%d", r % 2);
        for (int j = 0; j < 10; j++)
            len += (size_t)snprintf(text + len, sizeof text - len, ",%d", j == r ? 100 : r);
        len += (size_t)snprintf(text + len, sizeof text - len, "\n");
    }
    put("spike.csv", text);
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_SOFTMAX, "spike.csv");
    c.data.validation_fraction = 0.3;
    pd_data *raw = load(&c, 0, 1, ALL);
    c.data.normalize = PD_NORM_SCALE01;
    pd_data *nd = load(&c, 0, 1, ALL);
    const pd_dataset *rt = pd_data_part(raw, PD_PART_TRAIN), *rv = pd_data_part(raw, PD_PART_VALID);
    const pd_dataset *nt = pd_data_part(nd, PD_PART_TRAIN), *nv = pd_data_part(nd, PD_PART_VALID);
    assert_int_equal(rv->n, 3);
    for (size_t j = 0; j < 10; j++) {
        float mn = INFINITY, mx = -INFINITY;
        for (size_t i = 0; i < rt->n; i++) {
            mn = fminf(mn, rt->x[i * 10 + j]);
            mx = fmaxf(mx, rt->x[i * 10 + j]);
        }
        for (size_t i = 0; i < rt->n; i++)
            assert_close(nt->x[i * 10 + j], (rt->x[i * 10 + j] - (double)mn) / (mx - mn), 1e-5);
        for (size_t i = 0; i < rv->n; i++)
            assert_close(nv->x[i * 10 + j], (rv->x[i * 10 + j] - (double)mn) / (mx - mn), 1e-5);
    }
    /* A held-out record's spike lies outside the training range. */
    size_t h = rv->id[0];
    assert_true(nv->x[h] > 1.5f);
    /* Shard 1 of 3 scales its rows exactly as the whole part does. */
    pd_data *sh = load(&c, 1, 3, PD_PART_TRAIN);
    const pd_dataset *s = pd_data_part(sh, PD_PART_TRAIN);
    for (size_t i = 0; i < s->n; i++)
        assert_memory_equal(s->x + i * 10, nt->x + s->id[i] * 10, 10 * sizeof(float));
    pd_data_destroy(&sh);
    pd_data_destroy(&nd);
    pd_data_destroy(&raw);
}

/* A test value far outside a narrow training range would normalize past
 * the float range; it is clamped to +-FLT_MAX instead of becoming infinite
 * (found with the tests/fuzz data targets' finiteness check). */
static void test_normalize_out_of_range(void **state)
{
    (void)state;
    put("narrow.csv", "1,0\n1,1e-30\n1,0\n1,1e-30\n");
    put("wide.csv", "1,3e38\n1,-3e38\n1,5e-31\n");
    pd_config c = mkcfg(PD_FMT_CSV, PD_MODEL_LINREG, "narrow.csv");
    set(c.data.test, "wide.csv");
    c.data.normalize = PD_NORM_STANDARDIZE;
    pd_data *d = load(&c, 0, 1, ALL);
    const pd_dataset *t = pd_data_part(d, PD_PART_TEST);
    assert_int_equal(t->n, 3);
    assert_true(t->x[0] == FLT_MAX);
    assert_true(t->x[1] == -FLT_MAX);
    assert_true(t->x[2] == 0.0f);   /* the mean, 5e-31 */
    pd_data_destroy(&d);

    put("narrow.svm", "+1 1:1e-30\n-1 2:1\n");
    put("wide.svm", "+1 1:3e38\n-1 1:-3e38 2:2\n");
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LOGREG, "narrow.svm");
    set(c.data.test, "wide.svm");
    c.data.normalize = PD_NORM_SCALE01;   /* sparse: divided by max |x| */
    d = load(&c, 0, 1, ALL);
    t = pd_data_part(d, PD_PART_TEST);
    assert_true(t->sparse);
    assert_true(t->val[0] == FLT_MAX);
    assert_true(t->val[1] == -FLT_MAX);
    assert_true(t->val[2] == 2.0f);
    pd_data_destroy(&d);
}

static void test_normalize_sparse(void **state)
{
    (void)state;
    put("n.svm", "+1 1:2 2:-4\n-1 2:2\n+1 1:2\n-1 3:0.5\n");
    pd_config c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LOGREG, "n.svm");
    c.data.normalize = PD_NORM_STANDARDIZE;
    pd_data *d = load(&c, 0, 1, PD_PART_TRAIN);
    const pd_dataset *s = pd_data_part(d, PD_PART_TRAIN);
    /* Zeros count: std of (2,0,2,0) is 1, of (-4,2,0,0) sqrt 4.75, of
     * (0,0,0,.5) sqrt .046875; values are divided, never shifted. */
    const double s1 = sqrt(4.75), s2 = sqrt(0.046875);
    const float want[5] = {2.0f, (float)(-4 / s1), (float)(2 / s1), 2.0f, (float)(0.5 / s2)};
    assert_true(s->sparse);
    assert_int_equal(s->row_ptr[4], 5);   /* sparsity kept */
    for (size_t p = 0; p < 5; p++)
        assert_close(s->val[p], want[p], 1e-6);
    pd_data_destroy(&d);

    c.data.normalize = PD_NORM_SCALE01;   /* sparse: divided by max |x| */
    d = load(&c, 0, 1, PD_PART_TRAIN);
    s = pd_data_part(d, PD_PART_TRAIN);
    const float m01[5] = {1, -1, 0.5f, 1, 1};
    for (size_t p = 0; p < 5; p++)
        assert_close(s->val[p], m01[p], 1e-6);
    pd_data_destroy(&d);

    /* Densified for a dense model: missing entries are zeros that scale01 shifts. */
    c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_LINREG, "n.svm");
    c.data.normalize = PD_NORM_SCALE01;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    s = pd_data_part(d, PD_PART_TRAIN);
    const float dense[12] = {1, 0, 0, 0, 1, 0, 1, 4.0f / 6, 0, 0, 4.0f / 6, 1};
    for (size_t i = 0; i < 12; i++)
        assert_close(s->x[i], dense[i], 1e-6);
    pd_data_destroy(&d);
}

static void test_normalize_idx(void **state)
{
    (void)state;
    uint8_t pix[6] = {0, 5, 10, 5, 255, 5}, y[3] = {0, 1, 0};
    put_images("ni", false, 3, 1, 2, pix, 6);
    put_labels("nl", false, 3, y, 3);
    pd_config c = mkcfg(PD_FMT_IDX, PD_MODEL_SOFTMAX, "ni");
    set(c.data.train_labels, "nl");
    c.data.normalize = PD_NORM_SCALE01;
    pd_data *d = load(&c, 0, 1, PD_PART_TRAIN);
    const pd_dataset *s = pd_data_part(d, PD_PART_TRAIN);
    for (size_t i = 0; i < 6; i++)
        assert_close(s->x[i], pix[i] / 255.0, 1e-7);
    assert_true(s->x[4] == 1.0f);
    pd_data_destroy(&d);

    /* pixel 0: 0, 10, 255 -> mean 88.333, population std; pixel 1 constant -> 0. */
    c.data.normalize = PD_NORM_STANDARDIZE;
    d = load(&c, 0, 1, PD_PART_TRAIN);
    s = pd_data_part(d, PD_PART_TRAIN);
    double m = 265.0 / 3, sd = sqrt((0 + 100 + 65025) / 3.0 - m * m);
    for (size_t i = 0; i < 3; i++) {
        assert_close(s->x[2 * i], (pix[2 * i] - m) / sd, 1e-6);
        assert_close(s->x[2 * i + 1], 0, 0);
    }
    pd_data_destroy(&d);
}

/* ---- minibatch iterator ---- */

/* One epoch's rows (false when not a permutation or the batches are wrong). */
static size_t epoch_rows(pd_iter *it, size_t n, size_t batch, bool drop_last, size_t *out)
{
    const size_t *rows;
    size_t k, got = 0, batches = 0;
    while (pd_iter_next(it, &rows, &k)) {
        assert_true(k == batch || (!drop_last && k < batch && got + k == n));
        memcpy(out + got, rows, k * sizeof *rows);
        got += k;
        batches++;
    }
    assert_int_equal(k, 0);
    assert_int_equal(batches, pd_iter_batches_per_epoch(it));
    return got;
}

static void assert_permutation(const size_t *v, size_t n)
{
    int seen[64] = {0};
    for (size_t i = 0; i < n; i++) {
        assert_true(v[i] < n);
        seen[v[i]]++;
    }
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
}

static void test_iter_orders(void **state)
{
    (void)state;
    pd_dataset ds = {.n = 10};
    size_t e0[10], e1[10], e2[10], o[10];
    pd_iter *it = NULL;

    assert_int_equal(pd_iter_create(&ds, 4, PD_SHUFFLE_NONE, false, 1, 0, &it), PD_OK);
    assert_int_equal(pd_iter_batches_per_epoch(it), 3);   /* 4, 4, 2 */
    for (int e = 0; e < 2; e++) {
        assert_int_equal(pd_iter_epoch(it), e);
        assert_int_equal(epoch_rows(it, 10, 4, false, e0), 10);
        for (size_t i = 0; i < 10; i++)
            assert_int_equal(e0[i], i);
    }
    assert_int_equal(pd_iter_epoch(it), 2);
    pd_iter_destroy(&it);
    assert_null(it);

    assert_int_equal(pd_iter_create(&ds, 3, PD_SHUFFLE_ONCE, false, 1, 0, &it), PD_OK);
    epoch_rows(it, 10, 3, false, e0);
    epoch_rows(it, 10, 3, false, e1);
    assert_permutation(e0, 10);
    assert_memory_equal(e0, e1, sizeof e0);
    for (size_t i = 0; i < 10; i++)
        o[i] = i;
    assert_memory_not_equal(e0, o, sizeof o);
    pd_iter_destroy(&it);

    assert_int_equal(pd_iter_create(&ds, 3, PD_SHUFFLE_EVERY_EPOCH, false, 1, 0, &it), PD_OK);
    epoch_rows(it, 10, 3, false, e1);
    epoch_rows(it, 10, 3, false, e2);
    assert_permutation(e1, 10);
    assert_permutation(e2, 10);
    assert_memory_equal(e0, e1, sizeof e0);   /* epoch 0: the same draw as once */
    assert_memory_not_equal(e1, e2, sizeof e1);
    pd_iter_destroy(&it);

    /* Same seed and stream, same order; another stream or seed, another. */
    size_t a[10], b[10], c2[10], d2[10];
    pd_iter *x = NULL, *y = NULL, *z = NULL;
    assert_int_equal(pd_iter_create(&ds, 10, PD_SHUFFLE_EVERY_EPOCH, false, 7, 2, &x), PD_OK);
    assert_int_equal(pd_iter_create(&ds, 10, PD_SHUFFLE_EVERY_EPOCH, false, 7, 2, &y), PD_OK);
    assert_int_equal(pd_iter_create(&ds, 10, PD_SHUFFLE_EVERY_EPOCH, false, 7, 3, &z), PD_OK);
    for (int e = 0; e < 3; e++) {
        epoch_rows(x, 10, 10, false, a);
        epoch_rows(y, 10, 10, false, b);
        epoch_rows(z, 10, 10, false, c2);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_not_equal(a, c2, sizeof a);
    }
    pd_iter_destroy(&z);
    assert_int_equal(pd_iter_create(&ds, 10, PD_SHUFFLE_EVERY_EPOCH, false, 8, 2, &z), PD_OK);
    epoch_rows(z, 10, 10, false, d2);
    pd_iter_destroy(&x);
    assert_int_equal(pd_iter_create(&ds, 10, PD_SHUFFLE_EVERY_EPOCH, false, 7, 2, &x), PD_OK);
    epoch_rows(x, 10, 10, false, a);
    assert_memory_not_equal(a, d2, sizeof a);
    pd_iter_destroy(&x);
    pd_iter_destroy(&y);
    pd_iter_destroy(&z);
}

/* ---- curriculum ---- */

enum { CN = 200 };

/* Rows by increasing score, ties by row (insertion sort: the reference). */
static void easiest_first(const float *score, size_t n, size_t *rank)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && score[rank[j - 1]] > score[i])
            j--;
        memmove(rank + j + 1, rank + j, (i - j) * sizeof *rank);
        rank[j] = i;
    }
}

/* One curriculum epoch: its rows into out, each at most once (seen[row]
 * = 1 for the rows of the epoch), with the batch count and admitted count
 * announced at its start. Returns the rows seen. */
static size_t curriculum_epoch(pd_iter *it, size_t n, size_t batch, unsigned char *seen,
                               size_t *out)
{
    size_t m = pd_iter_admitted(it), bpe = pd_iter_batches_per_epoch(it);
    const size_t *rows;
    size_t k, got = 0, batches = 0;
    memset(seen, 0, n);
    while (pd_iter_next(it, &rows, &k)) {
        assert_true(k >= 1 && k <= batch);
        for (size_t i = 0; i < k; i++) {
            assert_true(rows[i] < n);
            if (seen[rows[i]]++)
                fail_msg("row %zu twice in one epoch", rows[i]);
            out[got + i] = rows[i];
        }
        got += k;
        batches++;
    }
    assert_int_equal(got, m);
    assert_int_equal(batches, bpe);
    return got;
}

/* Scores with ties: 100 distinct values, each on two rows. */
static void curriculum_scores(float *score, size_t n)
{
    for (size_t i = 0; i < n; i++)
        score[i] = (float)(((i * 37) % n) / 2);
}

static void test_curriculum_schedule(void **state)
{
    (void)state;
    pd_dataset ds = {.n = CN};
    float *score = malloc(CN * sizeof *score);
    assert_non_null(score);
    curriculum_scores(score, CN);
    size_t rank[CN], out[CN], first[CN];
    unsigned char seen[CN];
    easiest_first(score, CN, rank);
    /* start 0.3 over 3 epochs: f = 0.3, 0.5333, 0.7667, then 1; m = ceil(f 200) */
    const size_t want_m[] = {60, 107, 154, 200, 200};
    pd_curriculum_config cc = {.type = PD_CURRICULUM_LOSS, .start = 0.3, .epochs = 3};
    const pd_shuffle policies[] = {PD_SHUFFLE_NONE, PD_SHUFFLE_ONCE, PD_SHUFFLE_EVERY_EPOCH};
    for (int p = 0; p < 3; p++) {
        pd_iter *it = NULL;
        assert_int_equal(pd_iter_create(&ds, 16, policies[p], false, 5, 1, &it), PD_OK);
        float *copy = malloc(CN * sizeof *copy);   /* the iterator keeps no pointer */
        assert_non_null(copy);
        memcpy(copy, score, CN * sizeof *copy);
        assert_int_equal(pd_iter_set_curriculum(it, copy, &cc, 5), PD_OK);
        free(copy);
        for (int e = 0; e < 5; e++) {
            assert_int_equal(pd_iter_epoch(it), e);
            assert_int_equal(pd_iter_admitted(it), want_m[e]);
            assert_int_equal(pd_iter_batches_per_epoch(it), (want_m[e] + 15) / 16);
            size_t got = curriculum_epoch(it, CN, 16, seen, out);
            assert_int_equal(got, want_m[e]);
            for (size_t k = 0; k < CN; k++)   /* exactly the easiest m */
                if (seen[rank[k]] != (k < want_m[e]))
                    fail_msg("policy %d epoch %d: rank %zu (row %zu) %s", p, e, k, rank[k],
                             seen[rank[k]] ? "admitted" : "missing");
            if (policies[p] == PD_SHUFFLE_NONE)
                for (size_t i = 1; i < got; i++)
                    assert_true(out[i - 1] < out[i]);
            if (e == 3)
                memcpy(first, out, sizeof first);
        }
        /* All admitted: the order is the policy's own, as without a curriculum
         * (once: the creation permutation). */
        pd_iter *plain = NULL;
        assert_int_equal(pd_iter_create(&ds, 16, policies[p], false, 5, 1, &plain), PD_OK);
        size_t ref[CN];
        curriculum_epoch(plain, CN, 16, seen, ref);
        if (policies[p] != PD_SHUFFLE_EVERY_EPOCH)
            assert_memory_equal(first, ref, sizeof ref);
        pd_iter_destroy(&plain);
        /* Removing the curriculum gives every row again, from this epoch on. */
        cc.type = PD_CURRICULUM_NONE;
        assert_int_equal(pd_iter_set_curriculum(it, score, &cc, 5), PD_OK);
        cc.type = PD_CURRICULUM_LOSS;
        assert_int_equal(curriculum_epoch(it, CN, 16, seen, out), CN);
        if (policies[p] == PD_SHUFFLE_ONCE)
            assert_memory_equal(out, ref, sizeof ref);
        pd_iter_destroy(&it);
    }

    /* Rounding: 0.1 * 30 admits 3, not 4; drop_last counts full batches of
     * the admitted rows; start 1 admits everything from epoch 0. */
    pd_dataset small = {.n = 30};
    pd_iter *it = NULL;
    assert_int_equal(pd_iter_create(&small, 2, PD_SHUFFLE_NONE, true, 1, 0, &it), PD_OK);
    pd_curriculum_config c1 = {.type = PD_CURRICULUM_LOSS, .start = 0.1, .epochs = 9};
    assert_int_equal(pd_iter_set_curriculum(it, score, &c1, 1), PD_OK);
    assert_int_equal(pd_iter_admitted(it), 3);
    assert_int_equal(pd_iter_batches_per_epoch(it), 1);
    c1.start = 1;
    assert_int_equal(pd_iter_set_curriculum(it, score, &c1, 1), PD_OK);
    assert_int_equal(pd_iter_admitted(it), 30);
    /* A NaN score is refused. */
    score[7] = NAN;
    assert_int_equal(pd_iter_set_curriculum(it, score, &c1, 1), PD_EINPUT);
    pd_iter_destroy(&it);
    free(score);
}

/* stochastic: m(e) rows as above; the m - r easiest and r more drawn from
 * the rest, r = floor(h m), h = 0, 1/3, 2/3, 1: r = 0, 35, 102, 200. */
static void stochastic_sets(uint64_t seed, unsigned char sets[4][CN])
{
    pd_dataset ds = {.n = CN};
    float score[CN];
    size_t out[CN];
    curriculum_scores(score, CN);
    pd_curriculum_config cc = {.type = PD_CURRICULUM_LOSS, .start = 0.3, .epochs = 3,
                               .stochastic = true};
    pd_iter *it = NULL;
    assert_int_equal(pd_iter_create(&ds, 7, PD_SHUFFLE_EVERY_EPOCH, false, seed, 0, &it),
                     PD_OK);
    assert_int_equal(pd_iter_set_curriculum(it, score, &cc, seed), PD_OK);
    for (int e = 0; e < 4; e++)
        curriculum_epoch(it, CN, 7, sets[e], out);
    pd_iter_destroy(&it);
}

static void test_curriculum_stochastic(void **state)
{
    (void)state;
    float score[CN];
    size_t rank[CN];
    curriculum_scores(score, CN);
    easiest_first(score, CN, rank);
    const size_t want_m[] = {60, 107, 154, 200}, want_r[] = {0, 35, 102, 200};
    unsigned char a[4][CN], b[4][CN], c[4][CN];
    for (uint64_t seed = 1; seed <= 5; seed++) {
        stochastic_sets(seed, a);
        stochastic_sets(seed, b);
        assert_memory_equal(a, b, sizeof a);   /* reproducible for a seed */
        for (int e = 0; e < 4; e++) {
            size_t easy = want_m[e] - want_r[e], drawn = 0, beyond = 0;
            for (size_t k = 0; k < CN; k++) {
                if (k < easy && !a[e][rank[k]])
                    fail_msg("seed %d epoch %d: easy rank %zu missing", (int)seed, e, k);
                drawn += k >= easy && a[e][rank[k]];
                beyond += k >= want_m[e] && a[e][rank[k]];
            }
            assert_int_equal(drawn, want_r[e]);           /* the random share */
            assert_true(e == 0 || e == 3 || beyond > 0);  /* harder rows come in */
            assert_true(e != 0 || beyond == 0);           /* epoch 0: the easiest only */
        }
    }
    stochastic_sets(1, a);
    stochastic_sets(2, c);
    assert_memory_equal(a[0], c[0], CN);       /* no draw in epoch 0 */
    assert_memory_not_equal(a[1], c[1], CN);   /* another seed, another draw */
}

/* Record the next `count` batches of it (rows, a -1 between epochs). */
static size_t record(pd_iter *it, size_t count, long *out)
{
    size_t k = 0;
    for (size_t b = 0; b < count; b++) {
        const size_t *rows;
        size_t n;
        if (!pd_iter_next(it, &rows, &n)) {
            out[k++] = -1;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            out[k++] = (long)rows[i];
    }
    return k;
}

/* Save an iterator part-way through an epoch, load the state into one made
 * the same way: both then yield the same batches, across epoch boundaries
 * (fresh shuffles, curriculum admissions and stochastic draws included). */
static void test_iter_state_resume(void **state)
{
    (void)state;
    pd_dataset ds = {.n = CN};
    float score[CN];
    curriculum_scores(score, CN);
    pd_curriculum_config cc = {.type = PD_CURRICULUM_LOSS, .start = 0.3, .epochs = 3,
                               .stochastic = true};
    const pd_shuffle policies[] = {PD_SHUFFLE_NONE, PD_SHUFFLE_ONCE, PD_SHUFFLE_EVERY_EPOCH};
    static long want[4000], got[4000];
    for (int p = 0; p < 3; p++) {
        for (int withcur = 0; withcur < 2; withcur++) {
            pd_iter *a, *b;
            assert_int_equal(pd_iter_create(&ds, 7, policies[p], false, 3, 1, &a), PD_OK);
            assert_int_equal(pd_iter_create(&ds, 7, policies[p], false, 3, 1, &b), PD_OK);
            if (withcur) {
                assert_int_equal(pd_iter_set_curriculum(a, score, &cc, 3), PD_OK);
                assert_int_equal(pd_iter_set_curriculum(b, score, &cc, 3), PD_OK);
            }
            long skip[400];
            record(a, 40, skip);   /* into epoch 1 (or 2 with the curriculum) */
            size_t size = pd_iter_state_size(a);
            void *buf = malloc(size);
            assert_non_null(buf);
            assert_int_equal(pd_iter_save(a, buf, size), PD_OK);
            assert_int_equal(pd_iter_load(b, buf, size), PD_OK);
            assert_int_equal(pd_iter_epoch(b), pd_iter_epoch(a));
            assert_int_equal(pd_iter_admitted(b), pd_iter_admitted(a));
            size_t n1 = record(a, 150, want), n2 = record(b, 150, got);
            assert_int_equal(n1, n2);
            assert_memory_equal(want, got, n1 * sizeof *want);
            free(buf);
            pd_iter_destroy(&a);
            pd_iter_destroy(&b);
        }
    }
}

/* A state saved with the minibatch just drawn given back: an iterator
 * loaded from it draws that minibatch first, then what the saved one
 * draws; also for a minibatch drawn right after an epoch's end (its
 * redraw, admission and stochastic draw happened before it). Giving back
 * more than the epoch's drawn rows is refused. */
static void test_iter_save_before(void **state)
{
    (void)state;
    pd_dataset ds = {.n = CN};
    float score[CN];
    curriculum_scores(score, CN);
    pd_curriculum_config cc = {.type = PD_CURRICULUM_LOSS, .start = 0.3, .epochs = 3,
                               .stochastic = true};
    const pd_shuffle policies[] = {PD_SHUFFLE_NONE, PD_SHUFFLE_ONCE, PD_SHUFFLE_EVERY_EPOCH};
    static long want[4000], got[4000];
    for (int p = 0; p < 3; p++) {
        for (int withcur = 0; withcur < 2; withcur++) {
            for (int at_start = 0; at_start < 2; at_start++) {
                pd_iter *a, *b;
                assert_int_equal(pd_iter_create(&ds, 7, policies[p], false, 3, 1, &a), PD_OK);
                assert_int_equal(pd_iter_create(&ds, 7, policies[p], false, 3, 1, &b), PD_OK);
                if (withcur) {
                    assert_int_equal(pd_iter_set_curriculum(a, score, &cc, 3), PD_OK);
                    assert_int_equal(pd_iter_set_curriculum(b, score, &cc, 3), PD_OK);
                }
                const size_t *rows;
                size_t n;
                long skip[400];
                record(a, 40, skip);
                int64_t epoch = pd_iter_epoch(a);
                if (at_start)   /* through this epoch's end: the next draw starts one */
                    while (pd_iter_next(a, &rows, &n))
                        ;
                while (!pd_iter_next(a, &rows, &n))
                    ;
                long drawn[7];
                for (size_t i = 0; i < n; i++)
                    drawn[i] = (long)rows[i];
                size_t size = pd_iter_state_size(a);
                void *buf = malloc(size);
                assert_non_null(buf);
                pd_err_clear();
                assert_int_equal(pd_iter_save_before(a, 10000, buf, size), PD_EINPUT);
                assert_non_null(strstr(pd_err_msg(), "rows to give back"));
                assert_int_equal(pd_iter_save_before(a, n, buf, size), PD_OK);
                assert_int_equal(pd_iter_load(b, buf, size), PD_OK);
                assert_int_equal(pd_iter_epoch(b), at_start ? epoch + 1 : epoch);
                const size_t *again;
                size_t m;
                assert_true(pd_iter_next(b, &again, &m));
                assert_int_equal(m, n);
                for (size_t i = 0; i < n; i++)
                    assert_int_equal((long)again[i], drawn[i]);
                size_t n1 = record(a, 150, want), n2 = record(b, 150, got);
                assert_int_equal(n1, n2);
                assert_memory_equal(want, got, n1 * sizeof *want);
                free(buf);
                pd_iter_destroy(&a);
                pd_iter_destroy(&b);
            }
        }
    }
}

/* A state that does not fit is refused, naming what differs, and leaves
 * the iterator as it was. */
static void test_iter_state_refused(void **state)
{
    (void)state;
    pd_dataset ds = {.n = 10}, other = {.n = 11};
    pd_iter *a, *b, *c;
    assert_int_equal(pd_iter_create(&ds, 3, PD_SHUFFLE_EVERY_EPOCH, false, 1, 0, &a), PD_OK);
    assert_int_equal(pd_iter_create(&other, 3, PD_SHUFFLE_EVERY_EPOCH, false, 1, 0, &b), PD_OK);
    assert_int_equal(pd_iter_create(&ds, 3, PD_SHUFFLE_EVERY_EPOCH, false, 2, 0, &c), PD_OK);
    const size_t *rows;
    size_t n;
    assert_true(pd_iter_next(a, &rows, &n));
    size_t size = pd_iter_state_size(a);
    unsigned char buf[512], copy[512];
    assert_true(size <= sizeof buf);
    pd_err_clear();
    assert_int_equal(pd_iter_save(a, buf, size - 1), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "need"));
    assert_int_equal(pd_iter_save(a, buf, size), PD_OK);
    memcpy(copy, buf, size);
    /* c yields its own first batch before and after the refusals */
    long before[3], after[3];
    struct { const char *what; size_t len; size_t at; unsigned char byte; } cases[] = {
        {"too short for the", 10, 0, 0},
        {"bad magic", 0, 0, 'X'},
        {"version 9", 0, 4, 9},
        {"truncated", 0, 0, 0},
        {"trailing bytes", 0, 0, 0},
        {"row 77 at position 0", 0, 0, 0},
    };
    pd_iter *fresh;
    assert_int_equal(pd_iter_create(&ds, 3, PD_SHUFFLE_EVERY_EPOCH, false, 2, 0, &fresh), PD_OK);
    record(fresh, 1, before);
    pd_iter_destroy(&fresh);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        memcpy(buf, copy, size);
        size_t len = cases[k].len ? cases[k].len : size;
        if (cases[k].byte)
            buf[cases[k].at] = cases[k].byte;
        if (!strcmp(cases[k].what, "truncated"))
            len = size - 8;
        if (!strcmp(cases[k].what, "trailing bytes"))
            len = size + 8;
        if (cases[k].what[0] == 'r') {
            uint64_t bad = 77;
            memcpy(buf + size - 10 * 8, &bad, sizeof bad);   /* order[0] */
        }
        pd_err_clear();
        assert_int_equal(pd_iter_load(c, buf, len), PD_EINPUT);
        if (!strstr(pd_err_msg(), cases[k].what))
            fail_msg("case %zu: %s lacks \"%s\"", k, pd_err_msg(), cases[k].what);
    }
    record(c, 1, after);
    assert_memory_equal(before, after, sizeof before);
    /* another dataset size */
    pd_err_clear();
    assert_int_equal(pd_iter_load(b, copy, size), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "saved for 10 rows, batch 3"));
    pd_iter_destroy(&a);
    pd_iter_destroy(&b);
    pd_iter_destroy(&c);
}

static void test_iter_drop_last(void **state)
{
    (void)state;
    pd_dataset ds = {.n = 10};
    size_t rows[10];
    pd_iter *it = NULL;
    assert_int_equal(pd_iter_create(&ds, 3, PD_SHUFFLE_EVERY_EPOCH, true, 1, 0, &it), PD_OK);
    assert_int_equal(pd_iter_batches_per_epoch(it), 3);
    for (int e = 0; e < 3; e++)
        assert_int_equal(epoch_rows(it, 10, 3, true, rows), 9);   /* one row dropped */
    assert_int_equal(pd_iter_epoch(it), 3);
    pd_iter_destroy(&it);
    assert_int_equal(pd_iter_create(&ds, 5, PD_SHUFFLE_NONE, true, 1, 0, &it), PD_OK);
    assert_int_equal(pd_iter_batches_per_epoch(it), 2);   /* exact fit: nothing dropped */
    assert_int_equal(epoch_rows(it, 10, 5, true, rows), 10);
    pd_iter_destroy(&it);
    assert_int_equal(pd_iter_create(&ds, 11, PD_SHUFFLE_NONE, true, 1, 0, &it), PD_OK);
    assert_int_equal(pd_iter_batches_per_epoch(it), 0);
    const size_t *r;
    size_t n = 99;
    assert_false(pd_iter_next(it, &r, &n));
    assert_int_equal(n, 0);
    pd_iter_destroy(&it);
    assert_int_equal(pd_iter_create(&ds, 11, PD_SHUFFLE_NONE, false, 1, 0, &it), PD_OK);
    assert_int_equal(pd_iter_batches_per_epoch(it), 1);   /* one short batch */
    assert_true(pd_iter_next(it, &r, &n));
    assert_int_equal(n, 10);
    pd_iter_destroy(&it);
    assert_int_equal(pd_iter_create(&ds, 0, PD_SHUFFLE_NONE, false, 1, 0, &it), PD_EINPUT);
    assert_null(it);
}

/* ---- shape only, and the real data ---- */

static void test_shape_only(void **state)
{
    (void)state;
    put("sh.svm", "0 7:1\n3 2:1\n");
    pd_config c = mkcfg(PD_FMT_LIBSVM, PD_MODEL_MLP, "sh.svm");
    pd_data *d = load(&c, 0, 1, 0);
    assert_int_equal(pd_data_features(d), 7);
    assert_int_equal(pd_data_classes(d), 4);
    assert_null(pd_data_part(d, PD_PART_TRAIN));
    assert_null(pd_data_part(d, PD_PART_VALID));
    assert_null(pd_data_part(d, PD_PART_TEST));
    pd_data_destroy(&d);
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    pd_config c;
    memset(&c, 0, sizeof c);
    c.run.seed = 1;
    c.data.format = PD_FMT_IDX;
    snprintf(c.data.train, sizeof c.data.train, FMNIST "train-images-idx3-ubyte.gz");
    snprintf(c.data.train_labels, sizeof c.data.train_labels, FMNIST "train-labels-idx1-ubyte.gz");
    snprintf(c.data.test, sizeof c.data.test, FMNIST "t10k-images-idx3-ubyte.gz");
    snprintf(c.data.test_labels, sizeof c.data.test_labels, FMNIST "t10k-labels-idx1-ubyte.gz");
    c.data.normalize = PD_NORM_SCALE01;
    c.model.type = PD_MODEL_SOFTMAX;
    /* How long this takes is scripts/bench's business, not a test's. */
    pd_data *d = load(&c, 0, 1, PD_PART_TRAIN | PD_PART_TEST);
    const pd_dataset *tr = pd_data_part(d, PD_PART_TRAIN), *te = pd_data_part(d, PD_PART_TEST);
    assert_int_equal(tr->n, 60000);
    assert_int_equal(te->n, 10000);
    assert_int_equal(tr->d, 784);
    assert_int_equal(pd_data_features(d), 784);
    assert_int_equal(pd_data_classes(d), 10);
    assert_close(tr->y[0], 9, 0);
    assert_close(te->y[0], 9, 0);
    float mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < tr->n * tr->d; i++) {
        mn = fminf(mn, tr->x[i]);
        mx = fmaxf(mx, tr->x[i]);
    }
    assert_true(mn == 0.0f);
    assert_true(mx == 1.0f);
    pd_data_destroy(&d);

    /* One worker of 4 with a 1/6 hold-out: 50000 to train, 12500 here. */
    c.data.validation_fraction = 1.0 / 6;
    d = load(&c, 3, 4, PD_PART_TRAIN | PD_PART_VALID);
    assert_int_equal(pd_data_train_total(d), 50000);
    assert_int_equal(pd_data_part(d, PD_PART_TRAIN)->n, 12500);
    assert_int_equal(pd_data_part(d, PD_PART_VALID)->n, 10000);
    pd_data_destroy(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idx_raw_and_gz, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_idx_chunks, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_idx_binary_labels, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_idx_errors, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_csv_variants, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_csv_score_column, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_csv_errors, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_csv_exports, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_csv_class_names, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_libsvm_two_labels, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_unlabeled_test_file, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_libsvm_variants, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_libsvm_errors, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_holdout, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_shards, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_normalize_dense, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_normalize_train_only, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_normalize_out_of_range, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_normalize_sparse, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_normalize_idx, make_dir, remove_dir),
        cmocka_unit_test(test_iter_orders),
        cmocka_unit_test(test_iter_state_resume),
        cmocka_unit_test(test_iter_save_before),
        cmocka_unit_test(test_iter_state_refused),
        cmocka_unit_test(test_iter_drop_last),
        cmocka_unit_test(test_curriculum_schedule),
        cmocka_unit_test(test_curriculum_stochastic),
        cmocka_unit_test_setup_teardown(test_shape_only, make_dir, remove_dir),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
