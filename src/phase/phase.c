/* training.phases: the sequence of phases and what one hands the next
 * (paramd/phase.h). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "paramd/error.h"
#include "paramd/le.h"
#include "paramd/phase.h"

int pd_phase_config(const pd_config *run, int i, int64_t start, pd_config *out)
{
    PD_TRY(pd_config_phase(run, i, out));
    if (out->training.max_updates > 0)
        out->training.max_updates += start;   /* counted from the phase's start */
    return PD_OK;
}

int pd_phase_run(const pd_config *run, const pd_phase_record *from, pd_phase_role role,
                 void *ctx)
{
    pd_config *pc = pd_malloc(sizeof *pc);   /* outlives every phase: learners keep it */
    if (!pc)
        return PD_ENOMEM;
    pd_phase_carry c = {.run = run, .count = run->training.n_phases, .record = from,
                        .resumed = from != NULL};
    int err = PD_OK;
    for (int i = from ? from->index : 0; i < c.count && err == PD_OK && !c.stop; i++) {
        c.index = i;
        int64_t start = c.record ? c.record->start.update : c.server ? c.server->c.version : 0;
        err = pd_phase_config(run, i, start, pc);
        if (err == PD_OK)
            err = role(pc, &c, ctx);
        c.record = NULL;   /* the next phase follows this one */
    }
    pd_phase_carry_free(&c);
    free(pc);
    return err;
}

int pd_phase_server_get(pd_phase_carry *c, pd_phase_server **out)
{
    if (!c->server && !(c->server = pd_calloc(1, sizeof *c->server)))
        return PD_ENOMEM;
    *out = c->server;
    return PD_OK;
}

int pd_phase_worker_get(pd_phase_carry *c, pd_phase_worker **out)
{
    if (!c->worker && !(c->worker = pd_calloc(1, sizeof *c->worker)))
        return PD_ENOMEM;
    *out = c->worker;
    return PD_OK;
}

void pd_phase_carry_free(pd_phase_carry *c)
{
    pd_phase_server *s = c->server;
    if (s) {
        if (s->evaluator && s->evaluator_free)
            s->evaluator_free(s->evaluator);
        free(s->theta);
        free(s->opt);
        free(s->w_applied);
        free(s->w_dropped);
        free(s->w_stale);
        free(s->epoch_base);
        free(s);
        c->server = NULL;
    }
    pd_phase_worker *w = c->worker;
    if (w) {
        if (w->learner && w->learner_free)
            w->learner_free(w->learner);
        free(w->local);
        free(w);
        c->worker = NULL;
    }
}

/* ---- the record of a checkpoint ------------------------------------------ */

static void prune_records(const char *dir, uint64_t t);

enum { HEAD = 24, MARKS = 64, ENTRY = 128, EXIT_LEN = 16 };
static const char MAGIC[8] = {'P', 'D', 'P', 'H', 'A', 'S', 'E', '\n'};
/* The exits a finished phase can have (summary.json's "exit"). */
static const char *const exits[] = {"done", "max_updates", "early_stopped", "signal", "io_error"};

static void put_f64(unsigned char *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    pd_le_put64(p, u);
}

static double get_f64(const unsigned char *p)
{
    uint64_t u = pd_le_get64(p);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static size_t record_size(int workers, int n_done)
{
    return HEAD + MARKS + 8 * (size_t)workers + 8 + ENTRY * (size_t)n_done + 8;
}

int pd_phase_record_encode(const pd_phase_record *r, unsigned char **buf, size_t *size)
{
    size_t n = record_size(r->workers, r->n_done);
    unsigned char *b = pd_calloc(n, 1);
    if (!b)
        return PD_ENOMEM;
    memcpy(b, MAGIC, sizeof MAGIC);
    pd_le_put32(b + 8, PD_PHASE_RECORD_VERSION);
    pd_le_put32(b + 12, (uint32_t)r->index);
    pd_le_put32(b + 16, (uint32_t)r->count);
    pd_le_put32(b + 20, (uint32_t)r->workers);
    unsigned char *q = b + HEAD;
    const pd_phase_marks *m = &r->start;
    pd_le_put64(q, (uint64_t)m->update);
    put_f64(q + 8, m->epoch);
    put_f64(q + 16, m->wall_s);
    pd_le_put64(q + 24, (uint64_t)m->sent);
    pd_le_put64(q + 32, (uint64_t)m->applied);
    pd_le_put64(q + 40, (uint64_t)m->dropped);
    pd_le_put64(q + 48, (uint64_t)m->bad);
    put_f64(q + 56, m->stale);
    q += MARKS;
    for (int w = 0; w < r->workers; w++, q += 8)
        pd_le_put64(q, (uint64_t)r->epoch_base[w]);
    pd_le_put32(q, (uint32_t)r->n_done);
    q += 8;
    for (int k = 0; k < r->n_done; k++, q += ENTRY) {
        const pd_phase_summary *e = &r->done[k];
        pd_le_put32(q, (uint32_t)e->index);
        uint32_t mode = 0;
        while (mode <= PD_MODE_EASGD && strcmp(pd_mode_name((pd_mode)mode), e->mode ? e->mode : ""))
            mode++;
        pd_le_put32(q + 4, mode);   /* PD_MODE_EASGD + 1: unknown, refused when read */
        strncpy((char *)q + 8, e->exit ? e->exit : "", EXIT_LEN - 1);
        pd_le_put64(q + 24, (uint64_t)e->first_update);
        pd_le_put64(q + 32, (uint64_t)e->last_update);
        put_f64(q + 40, e->epochs);
        put_f64(q + 48, e->wall_s);
        pd_le_put64(q + 56, (uint64_t)e->sent);
        pd_le_put64(q + 64, (uint64_t)e->applied);
        pd_le_put64(q + 72, (uint64_t)e->dropped);
        pd_le_put64(q + 80, (uint64_t)e->bad);
        put_f64(q + 88, e->staleness_mean);
        put_f64(q + 96, e->valid_loss);
        put_f64(q + 104, e->valid_acc);
        put_f64(q + 112, e->test_loss);
        put_f64(q + 120, e->test_acc);
    }
    pd_le_put32(q, (uint32_t)crc32(0L, b, (uInt)(q - b)));
    *buf = b;
    *size = n;
    return PD_OK;
}

int pd_phase_record_decode(const char *file, const unsigned char *b, size_t size,
                           pd_phase_record *out)
{
    if (size < record_size(0, 0) || memcmp(b, MAGIC, sizeof MAGIC))
        return PD_FAIL(PD_EINPUT, "%s: not a phase record (%zu bytes)", file, size);
    if (pd_le_get32(b + 8) != PD_PHASE_RECORD_VERSION)
        return PD_FAIL(PD_EINPUT, "%s: phase record version %u, this paramd reads %u", file,
                       pd_le_get32(b + 8), PD_PHASE_RECORD_VERSION);
    pd_phase_record r = {.index = (int)pd_le_get32(b + 12), .count = (int)pd_le_get32(b + 16),
                         .workers = (int)pd_le_get32(b + 20)};
    if (r.count < 1 || r.count > PD_MAX_PHASES || r.index < 0 || r.index >= r.count ||
        r.workers < 1 || r.workers > 1 << 20)
        return PD_FAIL(PD_EINPUT, "%s: phase %d of %d with %d workers", file, r.index, r.count,
                       r.workers);
    size_t at = HEAD + MARKS + 8 * (size_t)r.workers;
    if (size < at + 8)
        return PD_FAIL(PD_EINPUT, "%s: truncated (%zu bytes)", file, size);
    r.n_done = (int)pd_le_get32(b + at);
    if (r.n_done < 0 || r.n_done > r.index || size != record_size(r.workers, r.n_done))
        return PD_FAIL(PD_EINPUT, "%s: %d finished phases before phase %d in %zu bytes", file,
                       r.n_done, r.index, size);
    if (pd_le_get32(b + size - 8) != (uint32_t)crc32(0L, b, (uInt)(size - 8)))
        return PD_FAIL(PD_EINPUT, "%s: bad crc32", file);
    const unsigned char *q = b + HEAD;
    r.start = (pd_phase_marks){
        .update = (int64_t)pd_le_get64(q), .epoch = get_f64(q + 8), .wall_s = get_f64(q + 16),
        .sent = (int64_t)pd_le_get64(q + 24), .applied = (int64_t)pd_le_get64(q + 32),
        .dropped = (int64_t)pd_le_get64(q + 40), .bad = (int64_t)pd_le_get64(q + 48),
        .stale = get_f64(q + 56),
    };
    q += MARKS;
    q += 8 * (size_t)r.workers + 8;
    for (int k = 0; k < r.n_done; k++, q += ENTRY) {
        pd_phase_summary *e = &r.done[k];
        char exit[EXIT_LEN + 1] = "";
        memcpy(exit, q + 8, EXIT_LEN);
        e->exit = NULL;
        for (size_t x = 0; x < sizeof exits / sizeof *exits; x++)
            if (!strcmp(exit, exits[x]))
                e->exit = exits[x];
        uint32_t mode = pd_le_get32(q + 4);
        if (!e->exit || pd_le_get32(q) != (uint32_t)k || mode > PD_MODE_EASGD)
            return PD_FAIL(PD_EINPUT, "%s: finished phase %d: index %u, mode %u, exit \"%s\"",
                           file, k, pd_le_get32(q), mode, exit);
        e->index = k;
        e->mode = pd_mode_name((pd_mode)mode);
        e->first_update = (int64_t)pd_le_get64(q + 24);
        e->last_update = (int64_t)pd_le_get64(q + 32);
        e->epochs = get_f64(q + 40);
        e->wall_s = get_f64(q + 48);
        e->sent = (int64_t)pd_le_get64(q + 56);
        e->applied = (int64_t)pd_le_get64(q + 64);
        e->dropped = (int64_t)pd_le_get64(q + 72);
        e->bad = (int64_t)pd_le_get64(q + 80);
        e->staleness_mean = get_f64(q + 88);
        e->valid_loss = get_f64(q + 96);
        e->valid_acc = get_f64(q + 104);
        e->test_loss = get_f64(q + 112);
        e->test_acc = get_f64(q + 120);
    }
    if (!(r.epoch_base = pd_malloc((size_t)r.workers * sizeof *r.epoch_base)))
        return PD_ENOMEM;
    q = b + HEAD + MARKS;
    for (int w = 0; w < r.workers; w++)
        r.epoch_base[w] = (int64_t)pd_le_get64(q + 8 * (size_t)w);
    *out = r;
    return PD_OK;
}

void pd_phase_record_free(pd_phase_record *r)
{
    free(r->epoch_base);
    r->epoch_base = NULL;
}

int pd_phase_record_path(const char *dir, uint64_t t, char *out, size_t size)
{
    if (snprintf(out, size, "%s/ckpt-%012" PRIu64 ".phase", dir, t) >= (int)size)
        return PD_FAIL(PD_EINPUT, "%s: checkpoint directory path too long", dir);
    return PD_OK;
}

void pd_phase_record_prune(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    unsigned long long newest = 0, u;
    struct dirent *e;
    char tail[16];
    while ((e = readdir(d)))
        if (sscanf(e->d_name, "ckpt-%12llu.%15s", &u, tail) == 2 && !strcmp(tail, "manifest") &&
            u > newest)
            newest = u;
    closedir(d);
    prune_records(dir, newest);
}

/* The records older than t whose checkpoint's manifest is gone. */
static void prune_records(const char *dir, uint64_t t)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long u;
        char tail[8] = "";
        if (sscanf(e->d_name, "ckpt-%12llu.%7s", &u, tail) != 2 || strcmp(tail, "phase") ||
            u >= t)
            continue;
        char man[PD_PATH_MAX + 64], rec[PD_PATH_MAX + 64];
        struct stat st;
        snprintf(man, sizeof man, "%s/ckpt-%012llu.manifest", dir, u);
        snprintf(rec, sizeof rec, "%s/%s", dir, e->d_name);
        if (stat(man, &st) != 0 && errno == ENOENT)
            (void)unlink(rec);   /* a leftover costs a few bytes, no more */
    }
    closedir(d);
}

int pd_phase_record_write(const char *dir, uint64_t t, const pd_phase_record *r)
{
    char path[PD_PATH_MAX + 64];
    PD_TRY(pd_phase_record_path(dir, t, path, sizeof path));
    unsigned char *b;
    size_t n;
    PD_TRY(pd_phase_record_encode(r, &b, &n));
    int err = pd_write_atomic(path, b, n);
    free(b);
    return err;
}

int pd_phase_record_load(const char *dir, uint64_t t, unsigned char **buf, size_t *size)
{
    char path[PD_PATH_MAX + 64];
    PD_TRY(pd_phase_record_path(dir, t, path, sizeof path));
    FILE *f = fopen(path, "rb");
    if (!f)
        return PD_FAIL(PD_EINPUT, "%s: %s (the checkpoint of a run with training.phases has "
                       "none)", path, strerror(errno));
    unsigned char *b = NULL;
    size_t n = 0, cap = 0;
    int err = PD_OK;
    for (;;) {
        if (n == cap) {
            unsigned char *nb = realloc(b, cap = cap ? 2 * cap : 4096);
            if (!nb) {
                err = PD_ENOMEM;
                break;
            }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                err = PD_FAIL(PD_EINPUT, "%s: read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (err != PD_OK) {
        free(b);
        return err;
    }
    *buf = b;
    *size = n;
    return PD_OK;
}
