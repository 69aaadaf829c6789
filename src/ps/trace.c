/* Reading and writing trace.bin (format in trace.h). Records go through
 * stdio's buffer, one fwrite per gradient, so tracing costs no syscall per
 * update. The file is written under a temporary name and renamed into
 * place when the run ends (after fsync), so a trace.bin is always whole. */
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
