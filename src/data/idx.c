/* IDX reader (LeCun's MNIST format, gzip'd or raw: gzread reads both):
 * idx3 ubyte images [n][rows][cols] with idx1 ubyte labels [n]. Headers
 * are big-endian; magic, counts and sizes are checked before anything is
 * used. Labels are read whole; pixel bytes are read a chunk of rows at a
 * time (a header announcing more than the file could hold: whole, so that
 * it is refused as truncated before rows are allocated for it), and only
 * the rows the loader asks for become floats (raw 0..255; normalization
 * scales). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_impl.h"
#include "paramd/error.h"

#define MAGIC_IMAGES 0x00000803u
#define MAGIC_LABELS 0x00000801u
#define FIRST_CHUNK ((size_t)1 << 26)
#define ROW_CHUNK ((size_t)1 << 20)   /* pixel bytes read at a time */
/* deflate expands at most 1032:1; a header announcing more than this times
 * the file's size cannot be whole */
#define MAX_EXPANSION 1100

typedef struct idx_file {
    const char *path;
    gzFile f;
    uint32_t dim[3];        /* n, rows, cols (labels: n only) */
} idx_file;

static int open_idx(idx_file *F, const char *path)
{
    F->path = path;
    return pd_data_gzopen(path, &F->f);
}

/* Read exactly want bytes into buf (fewer at the end of the data, *got
 * says how many); a gzip error other than a stream cut short is reported. */
static int read_into(idx_file *F, uint8_t *buf, size_t want, size_t *got)
{
    size_t have = 0;
    while (have < want) {
        size_t ask = want - have < (size_t)1 << 30 ? want - have : (size_t)1 << 30;
        int n = gzread(F->f, buf + have, (unsigned)ask);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    int zerr = Z_OK;
    gzerror(F->f, &zerr);
    if (zerr != Z_OK && zerr != Z_BUF_ERROR)
        return pd_data_gz_fail(F->f, F->path);
    *got = have;
    return PD_OK;
}

/* Read up to want bytes into a buffer grown as data arrives, so a corrupt
 * header announcing terabytes costs nothing until the bytes exist. */
static int read_bytes(idx_file *F, size_t want, uint8_t **out, size_t *got)
{
    size_t cap = want < FIRST_CHUNK ? want : FIRST_CHUNK, have = 0;
    uint8_t *buf = pd_malloc(cap);
    if (!buf)
        return PD_ENOMEM;
    for (;;) {
        size_t n = 0;
        int err = read_into(F, buf + have, cap - have, &n);
        if (err != PD_OK) {
            free(buf);
            return err;
        }
        have += n;
        if (have < cap || have == want)   /* the data ended, or all of it is in */
            break;
        size_t nc = cap * 2 < want ? cap * 2 : want;
        uint8_t *nb = realloc(buf, nc);
        if (!nb) {
            free(buf);
            return PD_FAIL(PD_ENOMEM, "%s: out of memory reading %zu bytes", F->path, want);
        }
        buf = nb;
        cap = nc;
    }
    *out = buf;
    *got = have;
    return PD_OK;
}

static int read_header(idx_file *F, uint32_t magic, int ndim, const char *what)
{
    uint8_t *h = NULL;
    size_t got = 0, want = 4 + 4 * (size_t)ndim;
    PD_TRY(read_bytes(F, want, &h, &got));
    int err = PD_OK;
    if (got < want) {
        err = PD_FAIL(PD_EINPUT, "%s: truncated: %zu bytes, an %s header needs %zu", F->path,
                      got, what, want);
        goto done;
    }
    uint32_t v[4];
    for (int i = 0; i <= ndim; i++)
        v[i] = (uint32_t)h[4 * i] << 24 | (uint32_t)h[4 * i + 1] << 16 |
               (uint32_t)h[4 * i + 2] << 8 | h[4 * i + 3];
    if (v[0] != magic) {
        err = PD_FAIL(PD_EINPUT, "%s: bad magic 0x%08x, expected 0x%08x (%s ubyte %s)",
                      F->path, v[0], magic, what, ndim == 3 ? "images" : "labels");
        goto done;
    }
    for (int i = 0; i < ndim; i++)
        F->dim[i] = v[i + 1];
done:
    free(h);
    return err;
}

/* Read the data after the header: exactly `want` bytes, no more. */
static int read_body(idx_file *F, size_t want, const char *says, const char *kind,
                     uint8_t **out)
{
    size_t got = 0;
    PD_TRY(read_bytes(F, want, out, &got));
    uint8_t extra;
    if (got < want || gzread(F->f, &extra, 1) > 0) {
        free(*out);
        *out = NULL;
        if (got < want)
            return PD_FAIL(PD_EINPUT, "%s: truncated: header says %s, file holds %zu bytes "
                           "of %s data", F->path, says, got, kind);
        return PD_FAIL(PD_EINPUT, "%s: more data than the header's %s (%zu bytes of %s data)",
                       F->path, says, want, kind);
    }
    return PD_OK;
}

/* The file could hold `bytes` bytes after its header. */
static bool could_hold(const char *path, uint64_t bytes)
{
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size < 0)
        return false;
    return bytes / MAX_EXPANSION <= (uint64_t)st.st_size;
}

int pd_data_read_idx(pd_loader *L, const char *images, const char *labels)
{
    idx_file I = {0}, Y = {0};
    uint8_t *pix = NULL, *lab = NULL;
    float *row = NULL;
    char says[96];
    int err = PD_OK;
    PD_TRY_GOTO(err, open_idx(&I, images), done);
    PD_TRY_GOTO(err, read_header(&I, MAGIC_IMAGES, 3, "idx3"), done);
    PD_TRY_GOTO(err, open_idx(&Y, labels), done);
    PD_TRY_GOTO(err, read_header(&Y, MAGIC_LABELS, 1, "idx1"), done);
    uint32_t n = I.dim[0], rows = I.dim[1], cols = I.dim[2];
    if (n != Y.dim[0]) {
        err = PD_FAIL(PD_EINPUT, "%s: %u images, but %s: %u labels", images, n, labels,
                      Y.dim[0]);
        goto done;
    }
    size_t d = (size_t)rows * cols;
    const char *who;
    size_t want_d = pd_data_expect_d(L, &who);
    if (d == 0) {
        err = PD_FAIL(PD_EINPUT, "%s: bad header: images of %ux%u", images, rows, cols);
        goto done;
    }
    if (want_d && d != want_d) {
        err = PD_FAIL(PD_EINPUT, "%s: images of %ux%u have %zu features, expected %zu (%s)",
                      images, rows, cols, d, want_d, who);
        goto done;
    }
    if ((uint64_t)n * d > SIZE_MAX / 2) {
        err = PD_FAIL(PD_EINPUT, "%s: header says %u images of %ux%u, more than memory holds",
                      images, n, rows, cols);
        goto done;
    }
    snprintf(says, sizeof says, "%u labels", n);
    PD_TRY_GOTO(err, read_body(&Y, n, says, "label", &lab), done);
    snprintf(says, sizeof says, "%u images of %ux%u", n, rows, cols);
    /* Streamed, the pixels of a chunk of rows at a time: a rank then never
     * holds the whole file's bytes beside its rows as floats (47 MB of
     * Fashion-MNIST's training set). */
    bool stream = could_hold(images, (uint64_t)n * d);
    if (!stream)
        PD_TRY_GOTO(err, read_body(&I, (size_t)n * d, says, "pixel", &pix), done);
    size_t per = stream ? (ROW_CHUNK / d ? ROW_CHUNK / d : 1) : n;   /* rows per chunk */
    if (per > n)
        per = n ? n : 1;
    if (stream && !(pix = pd_malloc(per * d))) {
        err = PD_ENOMEM;
        goto done;
    }
    PD_TRY_GOTO(err, pd_data_begin(L, images, n, d), done);
    row = pd_malloc(d * sizeof *row);
    if (!row) {
        err = PD_ENOMEM;
        goto done;
    }
    size_t total = 0;   /* pixel bytes read so far (streamed) */
    for (size_t r = 0; r < n; r++) {
        if (stream && r % per == 0) {
            size_t want = (n - r < per ? n - r : per) * d, got = 0;
            PD_TRY_GOTO(err, read_into(&I, pix, want, &got), done);
            total += got;
            if (got < want) {
                err = PD_FAIL(PD_EINPUT, "%s: truncated: header says %s, file holds %zu bytes "
                              "of pixel data", images, says, total);
                goto done;
            }
        }
        bool parse;
        PD_TRY_GOTO(err, pd_data_next(L, 0, &parse), done);
        if (!parse)
            continue;
        const uint8_t *p = pix + (stream ? r % per : r) * d;
        for (size_t j = 0; j < d; j++)
            row[j] = p[j];
        PD_TRY_GOTO(err, pd_data_add(L, labels, 0, lab[r], row, NULL, d), done);
    }
    if (stream) {
        uint8_t extra;
        size_t more = 0;
        PD_TRY_GOTO(err, read_into(&I, &extra, 1, &more), done);
        if (more) {
            err = PD_FAIL(PD_EINPUT, "%s: more data than the header's %s (%zu bytes of pixel "
                          "data)", images, says, (size_t)n * d);
            goto done;
        }
    }
done:
    free(row);
    free(pix);
    free(lab);
    if (Y.f)
        gzclose(Y.f);
    if (I.f)
        gzclose(I.f);
    return err;
}
