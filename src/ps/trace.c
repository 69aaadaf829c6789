/* Reading and writing trace.bin (format in trace.h). Records go through
 * stdio's buffer, one fwrite per gradient, so tracing costs no syscall per
 * update. The file is written under a temporary name and renamed into
 * place when the run ends (after fsync), so a trace.bin is always whole. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paramd/error.h"
#include "paramd/metrics.h"
#include "trace.h"

static const char MAGIC[8] = {'P', 'D', 'T', 'R', 'A', 'C', 'E', '1'};

typedef struct header {
    char magic[8];
    uint32_t version, workers;
    uint64_t records;
} header;

static int path_of(const char *dir, char *buf, size_t size)
{
    if ((size_t)snprintf(buf, size, "%s/trace.bin", dir) >= size)
        return PD_FAIL(PD_EINPUT, "%s: path too long", dir);
    return PD_OK;
}

static int tmp_of(const char *dir, char *buf, size_t size)
{
    if ((size_t)snprintf(buf, size, "%s/trace.bin.tmp.%ld", dir, (long)getpid()) >= size)
        return PD_FAIL(PD_EINPUT, "%s: path too long", dir);
    return PD_OK;
}

int pd_trace_open(const char *dir, int workers, FILE **out)
{
    char path[1100];
    PD_TRY(tmp_of(dir, path, sizeof path));
    FILE *f = fopen(path, "wb");
    if (!f)
        return PD_FAIL(PD_EIO, "%s: cannot create: %s", path, strerror(errno));
    header h = {.version = 1, .workers = (uint32_t)workers};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    if (fwrite(&h, sizeof h, 1, f) != 1) {
        int e = errno;
        fclose(f);
        unlink(path);
        return PD_FAIL(PD_EIO, "%s: write failed: %s", path, strerror(e));
    }
    *out = f;
    return PD_OK;
}

int pd_trace_append(FILE *f, const pd_trace_rec *r)
{
    if (fwrite(r, sizeof *r, 1, f) != 1)
        return PD_FAIL(PD_EIO, "trace.bin: write failed: %s", strerror(errno));
    return PD_OK;
}

int pd_trace_close(FILE **pf, const char *dir, uint64_t records)
{
    FILE *f = *pf;
    if (!f)
        return PD_OK;
    *pf = NULL;
    char tmp[1100], path[1100];
    PD_TRY(tmp_of(dir, tmp, sizeof tmp));
    PD_TRY(path_of(dir, path, sizeof path));
    int e = 0;
    if (fseek(f, offsetof(header, records), SEEK_SET) != 0 ||
        fwrite(&records, sizeof records, 1, f) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        e = errno ? errno : EIO;
    if (fclose(f) != 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (e) {
        unlink(tmp);
        return PD_FAIL(PD_EIO, "%s: cannot finish: %s", path, strerror(e));
    }
    return pd_fsync_dir(path);
}

void pd_trace_abort(FILE **pf, const char *dir)
{
    char tmp[1100];
    if (!*pf)
        return;
    fclose(*pf);
    *pf = NULL;
    if (tmp_of(dir, tmp, sizeof tmp) == PD_OK)
        unlink(tmp);
}

uint64_t pd_trace_hash(uint64_t h, const pd_trace_rec *r)
{
    const unsigned char *b = (const unsigned char *)r;
    for (size_t i = 0; i < sizeof *r; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int pd_trace_sync(FILE *f)
{
    if (f && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        return PD_FAIL(PD_EIO, "trace.bin: cannot flush: %s", strerror(errno));
    return PD_OK;
}

/* The first n records of the trace at path into recs, if it is a trace of
 * W workers and they hash to `hash`. */
static bool trace_prefix(const char *path, int workers, uint64_t n, uint64_t hash,
                         pd_trace_rec *recs)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    header h;
    bool ok = fread(&h, sizeof h, 1, f) == 1 && memcmp(h.magic, MAGIC, sizeof MAGIC) == 0 &&
              h.version == 1 && h.workers == (uint32_t)workers &&
              (n == 0 || fread(recs, sizeof *recs, n, f) == n);
    fclose(f);
    uint64_t got = PD_TRACE_HASH0;
    for (uint64_t i = 0; ok && i < n; i++)
        got = pd_trace_hash(got, &recs[i]);
    return ok && got == hash;
}

int pd_trace_find(const char *src_dir, int workers, uint64_t n, uint64_t hash,
                  pd_trace_rec **recs, char *from, size_t size)
{
    *recs = pd_malloc(n * sizeof **recs + 1);
    if (!*recs)
        return PD_ENOMEM;
    char path[1100];
    PD_TRY(path_of(src_dir, path, sizeof path));
    bool found = trace_prefix(path, workers, n, hash, *recs);
    from[0] = '\0';
    DIR *d = found ? NULL : opendir(src_dir);
    for (struct dirent *de; d && !found && (de = readdir(d)) != NULL;) {
        if (strncmp(de->d_name, "trace.bin.tmp.", 14) != 0 ||
            snprintf(path, sizeof path, "%s/%s", src_dir, de->d_name) >= (int)sizeof path)
            continue;
        if ((found = trace_prefix(path, workers, n, hash, *recs)))
            snprintf(from, size, "%s", path);
    }
    if (d)
        closedir(d);
    if (found)
        return PD_OK;
    free(*recs);
    *recs = NULL;
    return PD_FAIL(PD_EINPUT, "%s: no trace.bin (or unfinished trace) holds the checkpoint's "
                   "first %llu trace records: training.trace continues the trace of the run "
                   "resumed", src_dir, (unsigned long long)n);
}

int pd_trace_restart(const char *dir, int workers, const pd_trace_rec *recs, uint64_t n,
                     const char *from, FILE **out)
{
    char mine[1100];
    PD_TRY(tmp_of(dir, mine, sizeof mine));
    PD_TRY(pd_trace_open(dir, workers, out));
    int err = PD_OK;
    if (n && fwrite(recs, sizeof *recs, n, *out) != n)
        err = PD_FAIL(PD_EIO, "%s: write failed: %s", mine, strerror(errno));
    if (err == PD_OK)
        err = pd_trace_sync(*out);
    if (err != PD_OK) {
        pd_trace_abort(out, dir);
        return err;
    }
    if (from[0] && strcmp(from, mine) != 0)
        unlink(from);   /* its records live on in ours */
    return PD_OK;
}

/* What every writer guarantees of a record, and replay relies on: staleness
 * is computed from `from`, so a negative one would overflow it. */
static int check_rec(const char *path, size_t i, const pd_trace_rec *r, uint32_t workers)
{
    if (r->worker >= workers)
        return PD_FAIL(PD_EINPUT, "%s: record %zu: worker %u of %u", path, i, r->worker, workers);
    if (r->outcome < PD_TRACE_APPLIED || r->outcome > PD_TRACE_BAD)
        return PD_FAIL(PD_EINPUT, "%s: record %zu: outcome %u is not 1, 2 or 3", path, i,
                       r->outcome);
    bool applied = r->outcome == PD_TRACE_APPLIED;
    if (r->seq < 0 || r->from < 0 || (applied ? r->made < 1 : r->made != -1))
        return PD_FAIL(PD_EINPUT, "%s: record %zu: gradient %lld, version %lld -> %lld is not "
                       "a possible record", path, i, (long long)r->seq, (long long)r->from,
                       (long long)r->made);
    return PD_OK;
}

int pd_trace_read(const char *dir, int *workers, pd_trace_rec **recs, size_t *n)
{
    char path[1100];
    PD_TRY(path_of(dir, path, sizeof path));
    *recs = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return PD_FAIL(PD_EINPUT, "%s: cannot open: %s (was the run made with "
                       "training.trace: true?)", path, strerror(errno));
    int err = PD_OK;
    header h;
    long size = 0;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, MAGIC, sizeof MAGIC) != 0) {
        err = PD_FAIL(PD_EINPUT, "%s: not a paramd trace (bad magic)", path);
        goto out;
    }
    if (h.version != 1) {
        err = PD_FAIL(PD_EINPUT, "%s: trace format version %u, this paramd reads 1", path,
                      h.version);
        goto out;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, sizeof h, SEEK_SET) != 0) {
        err = PD_FAIL(PD_EIO, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    size_t count = ((size_t)size - sizeof h) / sizeof **recs;
    if (((size_t)size - sizeof h) % sizeof **recs != 0 || count != h.records || h.workers == 0) {
        err = PD_FAIL(PD_EINPUT, "%s: truncated or unfinished: the header says %llu records of "
                      "%u workers, the file holds %zu bytes of records", path,
                      (unsigned long long)h.records, h.workers, (size_t)size - sizeof h);
        goto out;
    }
    if (h.workers > INT_MAX) {
        err = PD_FAIL(PD_EINPUT, "%s: %u workers is more than an MPI job can have", path,
                      h.workers);
        goto out;
    }
    *recs = pd_malloc(count * sizeof **recs + 1);
    if (!*recs) {
        err = PD_ENOMEM;
        goto out;
    }
    if (count && fread(*recs, sizeof **recs, count, f) != count) {
        free(*recs);
        *recs = NULL;
        err = PD_FAIL(PD_EIO, "%s: read failed", path);
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        if ((err = check_rec(path, i, &(*recs)[i], h.workers)) != PD_OK)
            break;
    if (err != PD_OK) {
        free(*recs);
        *recs = NULL;
        goto out;
    }
    *n = count;
    *workers = (int)h.workers;
out:
    fclose(f);
    return err;
}
