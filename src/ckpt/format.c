/* The checkpoint part format of paramd/ckpt.h: the two hashes, encoding a
 * part into bytes and decoding bytes back after checking every one of them
 * (magic, version, checksums, lengths, hashes) before anything is kept. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ckpt_impl.h"
#include "paramd/error.h"
#include "paramd/le.h"

static const char part_magic[8] = {'P', 'D', 'C', 'K', 'P', 'T', '\r', '\n'};
static const char *const tags[NSECTIONS_MAX] = {"META", "PARM", "OPTM", "ITER", "CNTR", "RUNS",
                                                "BTCH", "TRCE", "LOST"};
enum { META, PARM, OPTM, ITER, CNTR, RUNS, BTCH, TRCE, LOST };

/* Does p have section k? BTCH only with a batch method's state, TRCE only
 * with a trace position, LOST only with lost workers. */
static bool has(const pd_ckpt_part *p, int k)
{
    return k < NSECTIONS || (k == BTCH && p->batch_size) || (k == TRCE && p->traced) ||
           (k == LOST && p->nlost);
}

static uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

uint32_t ckpt_crc(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, n);
}

/* ---- hashes --------------------------------------------------------------- */

typedef struct fnv { uint64_t h; } fnv;

static void fnv_bytes(fnv *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        f->h ^= b[i];
        f->h *= 0x100000001b3ull;
    }
}

static void fnv_printf(fnv *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fnv_printf(fnv *f, const char *fmt, ...)
{
    char line[PD_PATH_MAX + 96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fnv_bytes(f, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

uint64_t pd_ckpt_layout_hash(const pd_tensor_info *t, size_t n)
{
    fnv f = {0xcbf29ce484222325ull};
    for (size_t i = 0; i < n; i++)
        fnv_printf(&f, "%s %zu %zu %zu\n", t[i].name, t[i].rows, t[i].cols, t[i].offset);
    return f.h;
}

uint64_t pd_ckpt_config_hash(const pd_config *c, int workers)
{
    fnv f = {0xcbf29ce484222325ull};
    const pd_data_config *d = &c->data;
    const pd_curriculum_config *cu = &d->curriculum;
    const pd_model_config *m = &c->model;
    const pd_optim_config *o = &c->optimizer;
    const pd_schedule_config *s = &o->schedule;
    const pd_training_config *t = &c->training;
    char hidden[PD_MAX_HIDDEN * 12 + 1] = "";
    for (int k = 0, at = 0; k < m->n_hidden && k < PD_MAX_HIDDEN; k++)
        at += snprintf(hidden + at, sizeof hidden - (size_t)at, "%s%d", k ? "," : "",
                       m->hidden[k]);
    fnv_printf(&f, "workers=%d\n", workers);
    fnv_printf(&f, "run.seed=%" PRIu64 "\n", c->run.seed);
    fnv_printf(&f, "data.format=%d\n", (int)d->format);
    fnv_printf(&f, "data.train=%s\n", d->train);
    fnv_printf(&f, "data.train_labels=%s\n", d->train_labels);
    fnv_printf(&f, "data.label_column=%s\n", d->label_column);
    fnv_printf(&f, "data.header=%d\n", d->header);
    /* Keys added later are hashed only when set, so older checkpoints of
     * configs without them still match. */
    if (d->delimiter != PD_DELIM_COMMA)
        fnv_printf(&f, "data.delimiter=%d\n", (int)d->delimiter);
    if (d->classes[0])
        fnv_printf(&f, "data.classes=%s\n", d->classes);
    fnv_printf(&f, "data.validation_fraction=%.17g\n", d->validation_fraction);
    fnv_printf(&f, "data.normalize=%d\n", (int)d->normalize);
    fnv_printf(&f, "data.shuffle=%d\n", (int)d->shuffle);
    fnv_printf(&f, "data.shard=%d\n", (int)d->shard);
    fnv_printf(&f, "data.curriculum.type=%d\n", (int)cu->type);
    fnv_printf(&f, "data.curriculum.column=%s\n", cu->column);
    fnv_printf(&f, "data.curriculum.warmup_updates=%" PRId64 "\n", cu->warmup_updates);
    fnv_printf(&f, "data.curriculum.start=%.17g\n", cu->start);
    fnv_printf(&f, "data.curriculum.epochs=%d\n", cu->epochs);
    fnv_printf(&f, "data.curriculum.stochastic=%d\n", cu->stochastic);
    fnv_printf(&f, "model.type=%d\n", (int)m->type);
    fnv_printf(&f, "model.features=%d\n", m->features);
    fnv_printf(&f, "model.classes=%d\n", m->classes);
    fnv_printf(&f, "model.hidden=%s\n", hidden);
    fnv_printf(&f, "model.activation=%d\n", (int)m->activation);
    fnv_printf(&f, "model.init=%d\n", (int)m->init);
    fnv_printf(&f, "model.l2=%.17g\n", m->l2);
    fnv_printf(&f, "optimizer.name=%d\n", (int)o->name);
    fnv_printf(&f, "optimizer.lr=%.17g\n", o->lr);
    fnv_printf(&f, "optimizer.momentum=%.17g\n", o->momentum);
    fnv_printf(&f, "optimizer.rho=%.17g\n", o->rho);
    fnv_printf(&f, "optimizer.eps=%.17g\n", o->eps);
    fnv_printf(&f, "optimizer.beta1=%.17g\n", o->beta1);
    fnv_printf(&f, "optimizer.beta2=%.17g\n", o->beta2);
    fnv_printf(&f, "optimizer.weight_decay=%.17g\n", o->weight_decay);
    fnv_printf(&f, "optimizer.clip_norm=%.17g\n", o->clip_norm);
    fnv_printf(&f, "optimizer.clip_value=%.17g\n", o->clip_value);
    fnv_printf(&f, "optimizer.schedule.type=%d\n", (int)s->type);
    fnv_printf(&f, "optimizer.schedule.step_size=%" PRId64 "\n", s->step_size);
    fnv_printf(&f, "optimizer.schedule.gamma=%.17g\n", s->gamma);
    fnv_printf(&f, "optimizer.schedule.decay=%.17g\n", s->decay);
    fnv_printf(&f, "optimizer.schedule.min_lr=%.17g\n", s->min_lr);
    fnv_printf(&f, "optimizer.schedule.warmup=%" PRId64 "\n", s->warmup);
    fnv_printf(&f, "optimizer.noise=%.17g\n", o->noise);
    fnv_printf(&f, "optimizer.noise_gamma=%.17g\n", o->noise_gamma);
    fnv_printf(&f, "optimizer.staleness_scaling=%d\n", (int)o->staleness_compensation);
    if (o->dc_lambda_adaptive) {   /* one more optimizer state vector (older hashes unchanged) */
        fnv_printf(&f, "optimizer.dc_lambda_adaptive=1\n");
        fnv_printf(&f, "optimizer.dc_decay=%.17g\n", o->dc_decay);
    }
    if (o->name == PD_OPT_VSGD) {   /* the curvature each layer gets, and the slow start */
        fnv_printf(&f, "optimizer.vsgd_bound_layers=%d\n", o->vsgd_bound_layers);
        fnv_printf(&f, "optimizer.vsgd_row_layers=%d\n", o->vsgd_row_layers);
        fnv_printf(&f, "optimizer.vsgd_slow=%.17g\n", o->vsgd_slow);
        if (o->vsgd_memory > 0)   /* older hashes unchanged */
            fnv_printf(&f, "optimizer.vsgd_memory=%.17g\n", o->vsgd_memory);
    }
    if (o->batch_examples > 0)   /* the batch methods' objective: its first examples */
        fnv_printf(&f, "optimizer.batch_examples=%" PRId64 "\n", (int64_t)o->batch_examples);
    if (o->staleness_compensation == PD_SCOMP_DC)
        fnv_printf(&f, "optimizer.dc_lambda=%.17g\n", o->dc_lambda);
    fnv_printf(&f, "training.mode=%d\n", (int)t->mode);
    fnv_printf(&f, "training.servers=%d\n", t->servers);
    fnv_printf(&f, "training.batch_size=%d\n", t->batch_size);
    fnv_printf(&f, "training.drop_last=%d\n", t->drop_last);
    fnv_printf(&f, "training.backup_workers=%d\n", t->backup_workers);
    fnv_printf(&f, "training.max_staleness=%d\n", t->max_staleness);
    fnv_printf(&f, "training.staleness_policy=%d\n", (int)t->staleness_policy);
    fnv_printf(&f, "training.local_steps=%d\n", t->local_steps);
    fnv_printf(&f, "training.elastic_alpha=%.17g\n", t->elastic_alpha);
    for (int i = 0; i < t->n_phases; i++)   /* none: the hash of a run without phases */
        for (int k = 0; k < t->phases[i].n_sets; k++)
            fnv_printf(&f, "training.phases[%d].%s\n", i, t->phases[i].sets[k]);
    return f.h;
}

/* ---- encode --------------------------------------------------------------- */

static unsigned char *put_i64s(unsigned char *q, int64_t a, int64_t b, int64_t c, int64_t d);

/* Payload lengths of p's sections. */
static void lengths(const pd_ckpt_part *p, uint64_t len[NSECTIONS_MAX])
{
    len[META] = PD_CKPT_META;
    len[PARM] = 4 * (p->hi - p->lo);
    len[OPTM] = p->optim_size;
    len[ITER] = 8;
    for (size_t w = 0; w < p->niters; w++)
        len[ITER] += 8 + p->iter_size[w];
    len[CNTR] = 32 + 8 + 8 * p->nstale + 8 + 32 * p->nworkers;
    len[RUNS] = PD_CKPT_RUNS + 4 * p->nbest + 8;
    for (size_t w = 0; w < p->nwstates; w++)
        len[RUNS] += PD_CKPT_WSTATE + p->wstate[w].optim_size;
    len[BTCH] = p->batch_size;
    len[TRCE] = PD_CKPT_TRCE;
    len[LOST] = 8 + PD_CKPT_LOST * p->nlost;
}

/* The RUNS payload at e. */
static void put_runs(unsigned char *e, const pd_ckpt_part *p)
{
    pd_le_put64(e, f64_bits(p->wall_s));
    pd_le_put64(e + 8, f64_bits(p->pause_sum));
    pd_le_put64(e + 16, f64_bits(p->pause_max));
    pd_le_put64(e + 24, (uint64_t)p->pauses);
    e = put_i64s(e + 32, p->dropped_stale, p->dropped_late, p->dropped_at_stop, p->stale_sum);
    pd_le_put64(e, (uint64_t)p->stale_max);
    pd_le_put64(e + 8, p->applied_mix);
    pd_le_put64(e + 16, f64_bits(p->best_loss));
    pd_le_put64(e + 24, (uint64_t)p->best_update);
    pd_le_put64(e + 32, (uint64_t)p->bad_evals);
    pd_le_put64(e + 40, (uint64_t)p->last_eval);
    pd_le_put64(e + 48, p->nbest);
    e += 56;
    pd_le_put_floats(e, p->best, p->nbest);
    e += 4 * p->nbest;
    pd_le_put64(e, p->nwstates);
    e += 8;
    for (size_t w = 0; w < p->nwstates; w++) {
        const pd_ckpt_wstate *ws = &p->wstate[w];
        e = put_i64s(e, ws->seq, ws->examples, ws->local_t, ws->stale_sum);
        for (int k = 0; k < 4; k++, e += 8)
            pd_le_put64(e, ws->rng[k]);
        pd_le_put64(e, ws->optim_size);
        if (ws->optim_size)
            memcpy(e + 8, ws->optim, ws->optim_size);
        e += 8 + ws->optim_size;
    }
}

static unsigned char *put_i64s(unsigned char *q, int64_t a, int64_t b, int64_t c, int64_t d)
{
    pd_le_put64(q, (uint64_t)a);
    pd_le_put64(q + 8, (uint64_t)b);
    pd_le_put64(q + 16, (uint64_t)c);
    pd_le_put64(q + 24, (uint64_t)d);
    return q + 32;
}

int pd_ckpt_encode(const pd_ckpt_part *p, unsigned char **buf, size_t *size)
{
    uint64_t len[NSECTIONS_MAX];
    lengths(p, len);
    int nsec = 0;
    size_t total = PD_CKPT_HEADER;
    for (int k = 0; k < NSECTIONS_MAX; k++)
        if (has(p, k)) {
            total += PD_CKPT_SECTION + len[k];
            nsec++;
        }
    unsigned char *b = pd_calloc(total, 1);
    if (!b)
        return PD_ENOMEM;

    memcpy(b, part_magic, 8);
    pd_le_put32(b + 8, PD_CKPT_VERSION);
    pd_le_put32(b + 12, (uint32_t)nsec);
    pd_le_put64(b + 16, p->layout_hash);
    pd_le_put64(b + 24, p->config_hash);
    pd_le_put32(b + 32, ckpt_crc(b, 32));

    unsigned char *q = b + PD_CKPT_HEADER;
    for (int k = 0; k < NSECTIONS_MAX; k++) {
        if (!has(p, k))
            continue;
        unsigned char *s = q + PD_CKPT_SECTION, *e = s;
        switch (k) {
        case META:
            pd_le_put32(e, p->part);
            pd_le_put32(e + 4, p->nparts);
            pd_le_put32(e + 8, p->optim_kind);
            pd_le_put64(e + 16, p->updates);
            pd_le_put64(e + 24, p->version);
            pd_le_put64(e + 32, p->lo);
            pd_le_put64(e + 40, p->hi);
            pd_le_put64(e + 48, p->examples);
            break;
        case PARM:
            pd_le_put_floats(e, p->params, p->hi - p->lo);
            break;
        case OPTM:
            if (p->optim_size)
                memcpy(e, p->optim, p->optim_size);
            break;
        case ITER:
            pd_le_put32(e, (uint32_t)p->niters);
            e += 8;
            for (size_t w = 0; w < p->niters; w++) {
                pd_le_put64(e, p->iter_size[w]);
                if (p->iter_size[w])
                    memcpy(e + 8, p->iter[w], p->iter_size[w]);
                e += 8 + p->iter_size[w];
            }
            break;
        case CNTR:
            e = put_i64s(e, p->sent, p->applied, p->dropped, p->bad);
            pd_le_put64(e, p->nstale);
            e += 8;
            for (size_t h = 0; h < p->nstale; h++, e += 8)
                pd_le_put64(e, (uint64_t)p->stale[h]);
            pd_le_put64(e, p->nworkers);
            e += 8;
            for (size_t w = 0; w < p->nworkers; w++) {
                const pd_ckpt_worker *c = &p->worker[w];
                e = put_i64s(e, c->sent, c->applied, c->dropped, c->bad);
            }
            break;
        case RUNS:
            put_runs(e, p);
            break;
        case BTCH:
            memcpy(e, p->batch, p->batch_size);
            break;
        case TRCE:
            pd_le_put64(e, p->trace_records);
            pd_le_put64(e + 8, p->trace_hash);
            break;
        case LOST:
            pd_le_put64(e, p->nlost);
            e += 8;
            for (size_t i = 0; i < p->nlost; i++, e += PD_CKPT_LOST) {
                const pd_ckpt_lost *l = &p->lost[i];
                pd_le_put32(e, l->worker);
                pd_le_put32(e + 4, l->rank);
                pd_le_put64(e + 8, (uint64_t)l->last_update);
                pd_le_put64(e + 16, (uint64_t)l->update);
                pd_le_put64(e + 24, f64_bits(l->wall_s));
                pd_le_put64(e + 32, (uint64_t)l->sent);
                pd_le_put64(e + 40, (uint64_t)l->rejoined);
            }
            break;
        }
        memcpy(q, tags[k], 4);
        pd_le_put32(q + 4, ckpt_crc(s, len[k]));
        pd_le_put64(q + 8, len[k]);
        q = s + len[k];
    }
    *buf = b;
    *size = total;
    return PD_OK;
}

/* ---- decode --------------------------------------------------------------- */

void pd_ckpt_part_free(pd_ckpt_part *p)
{
    if (!p)
        return;
    for (size_t w = 0; w < p->niters; w++)
        free(p->iter[w]);
    free(p->iter);
    free(p->iter_size);
    free(p->params);
    free(p->optim);
    free(p->stale);
    free(p->worker);
    for (size_t w = 0; w < p->nwstates; w++)
        free(p->wstate[w].optim);
    free(p->wstate);
    free(p->best);
    free(p->batch);
    free(p->lost);
    memset(p, 0, sizeof *p);
}

/* A refusal of `file` at `where`: damage (set *dmg) or a mismatch. */
#define REFUSE(dmg, ...) (*damaged = (dmg), PD_FAIL(PD_EINPUT, __VA_ARGS__))

/* RUNS into *p (allocating); its lengths walked before anything is kept. */
static int parse_runs(const char *file, const unsigned char *e, uint64_t len, pd_ckpt_part *p,
                      bool *damaged)
{
    uint64_t nbest = len >= PD_CKPT_RUNS ? pd_le_get64(e + 112) : UINT64_MAX;
    if (nbest == UINT64_MAX || nbest > (len - PD_CKPT_RUNS) / 4)
        return REFUSE(true, "%s: RUNS: %" PRIu64 " bytes do not hold the state they announce "
                      "(damaged)", file, len);
    uint64_t at = PD_CKPT_RUNS + 4 * nbest;
    uint64_t nw = len - at >= 8 ? pd_le_get64(e + at) : UINT64_MAX;
    at += 8;
    for (uint64_t w = 0; nw != UINT64_MAX && w < nw; w++) {
        uint64_t n = len - at >= PD_CKPT_WSTATE ? pd_le_get64(e + at + 64) : UINT64_MAX;
        if (n == UINT64_MAX || n > len - at - PD_CKPT_WSTATE) {
            nw = UINT64_MAX;
            break;
        }
        at += PD_CKPT_WSTATE + n;
    }
    if (nw == UINT64_MAX || at != len)
        return REFUSE(true, "%s: RUNS: %" PRIu64 " bytes do not hold the state they announce "
                      "(damaged)", file, len);
    p->wall_s = bits_f64(pd_le_get64(e));
    p->pause_sum = bits_f64(pd_le_get64(e + 8));
    p->pause_max = bits_f64(pd_le_get64(e + 16));
    p->pauses = (int64_t)pd_le_get64(e + 24);
    p->dropped_stale = (int64_t)pd_le_get64(e + 32);
    p->dropped_late = (int64_t)pd_le_get64(e + 40);
    p->dropped_at_stop = (int64_t)pd_le_get64(e + 48);
    p->stale_sum = (int64_t)pd_le_get64(e + 56);
    p->stale_max = (int64_t)pd_le_get64(e + 64);
    p->applied_mix = pd_le_get64(e + 72);
    p->best_loss = bits_f64(pd_le_get64(e + 80));
    p->best_update = (int64_t)pd_le_get64(e + 88);
    p->bad_evals = (int64_t)pd_le_get64(e + 96);
    p->last_eval = (int64_t)pd_le_get64(e + 104);
    p->best = pd_malloc(4 * nbest + 1);
    p->wstate = pd_calloc(nw + 1, sizeof *p->wstate);
    if (!p->best || !p->wstate)
        return PD_ENOMEM;
    p->nbest = nbest;
    pd_le_get_floats(p->best, e + PD_CKPT_RUNS, nbest);
    at = PD_CKPT_RUNS + 4 * nbest + 8;
    for (size_t w = 0; w < nw; w++) {
        pd_ckpt_wstate *ws = &p->wstate[w];
        const unsigned char *q = e + at;
        ws->seq = (int64_t)pd_le_get64(q);
        ws->examples = (int64_t)pd_le_get64(q + 8);
        ws->local_t = (int64_t)pd_le_get64(q + 16);
        ws->stale_sum = (int64_t)pd_le_get64(q + 24);
        for (int k = 0; k < 4; k++)
            ws->rng[k] = pd_le_get64(q + 32 + 8 * k);
        size_t n = pd_le_get64(q + 64);
        if (!(ws->optim = pd_malloc(n + 1)))
            return PD_ENOMEM;
        p->nwstates = w + 1;
        memcpy(ws->optim, q + PD_CKPT_WSTATE, n);
        ws->optim_size = n;
        at += PD_CKPT_WSTATE + n;
    }
    return PD_OK;
}

/* LOST into *p (allocating): every entry names one of CNTR's workers, and a
 * worker has at most one entry it has not rejoined from. */
static int parse_lost(const char *file, const unsigned char *e, uint64_t len, pd_ckpt_part *p,
                      bool *damaged)
{
    uint64_t n = len >= 8 ? pd_le_get64(e) : UINT64_MAX;
    if (n == UINT64_MAX || n == 0 || n > (len - 8) / PD_CKPT_LOST || len != 8 + PD_CKPT_LOST * n)
        return REFUSE(true, "%s: LOST: %" PRIu64 " bytes do not hold the entries they announce "
                      "(damaged)", file, len);
    if (!(p->lost = pd_calloc(n, sizeof *p->lost)))
        return PD_ENOMEM;
    p->nlost = n;
    e += 8;
    for (size_t i = 0; i < n; i++, e += PD_CKPT_LOST) {
        pd_ckpt_lost *l = &p->lost[i];
        *l = (pd_ckpt_lost){
            .worker = pd_le_get32(e), .rank = pd_le_get32(e + 4),
            .last_update = (int64_t)pd_le_get64(e + 8), .update = (int64_t)pd_le_get64(e + 16),
            .wall_s = bits_f64(pd_le_get64(e + 24)), .sent = (int64_t)pd_le_get64(e + 32),
            .rejoined = (int64_t)pd_le_get64(e + 40)};
        if (l->worker >= p->nworkers || l->sent < 0 || l->rejoined < -1)
            return REFUSE(true, "%s: LOST: entry %zu: worker %u of %zu, %" PRId64 " sent, "
                          "rejoined at %" PRId64 " (damaged)", file, i, (unsigned)l->worker,
                          p->nworkers, l->sent, l->rejoined);
        for (size_t j = 0; l->rejoined < 0 && j < i; j++)
            if (p->lost[j].worker == l->worker && p->lost[j].rejoined < 0)
                return REFUSE(true, "%s: LOST: worker %u lost twice without rejoining "
                              "(damaged)", file, (unsigned)l->worker);
    }
    return PD_OK;
}

/* Parse the checked payloads into *p (allocating); refuses payloads whose
 * inner lengths do not add up (those passed their crc, so it is a writer
 * bug or a forged file: reported as damage). */
static int parse(const char *file, const unsigned char *pl[NSECTIONS_MAX],
                 const uint64_t len[NSECTIONS_MAX], const bool present[NSECTIONS_MAX],
                 pd_ckpt_part *p, bool *damaged)
{
    const unsigned char *e = pl[META];
    if (len[META] != PD_CKPT_META)
        return REFUSE(true, "%s: META: %" PRIu64 " bytes, expected %d (damaged)", file,
                      len[META], PD_CKPT_META);
    p->part = pd_le_get32(e);
    p->nparts = pd_le_get32(e + 4);
    p->optim_kind = pd_le_get32(e + 8);
    p->updates = pd_le_get64(e + 16);
    p->version = pd_le_get64(e + 24);
    p->lo = pd_le_get64(e + 32);
    p->hi = pd_le_get64(e + 40);
    p->examples = pd_le_get64(e + 48);
    if (p->part >= p->nparts || p->hi < p->lo || p->optim_kind >= PD_OPT_COUNT)
        return REFUSE(true, "%s: META: part %u of %u, range [%" PRIu64 ", %" PRIu64 "), "
                      "optimizer %u (damaged)", file, p->part, p->nparts, p->lo, p->hi,
                      p->optim_kind);
    /* Divide rather than multiply: 4 (hi - lo) may wrap around. */
    if (len[PARM] % 4 != 0 || len[PARM] / 4 != p->hi - p->lo)
        return REFUSE(true, "%s: PARM: %" PRIu64 " bytes, [%" PRIu64 ", %" PRIu64 ") holds %"
                      PRIu64 " parameters (damaged)", file, len[PARM], p->lo, p->hi,
                      p->hi - p->lo);
    /* ITER: walk the lengths first. */
    if (len[ITER] < 8)
        return REFUSE(true, "%s: ITER: %" PRIu64 " bytes, too short (damaged)", file, len[ITER]);
    size_t niters = pd_le_get32(pl[ITER]);
    uint64_t at = 8;
    for (size_t w = 0; w < niters; w++) {
        uint64_t n = len[ITER] - at >= 8 ? pd_le_get64(pl[ITER] + at) : UINT64_MAX;
        if (n == UINT64_MAX || n > len[ITER] - at - 8)
            return REFUSE(true, "%s: ITER: state %zu of %zu runs past the section (damaged)",
                          file, w, niters);
        at += 8 + n;
    }
    if (at != len[ITER])
        return REFUSE(true, "%s: ITER: %" PRIu64 " bytes after the last state (damaged)", file,
                      len[ITER] - at);
    /* CNTR: 32 + 8 + 8H + 8 + 32W bytes. */
    const unsigned char *c = pl[CNTR];
    uint64_t nstale = len[CNTR] >= 40 ? pd_le_get64(c + 32) : 0;
    uint64_t nworkers = len[CNTR] >= 48 && nstale <= (len[CNTR] - 48) / 8
                            ? pd_le_get64(c + 40 + 8 * nstale) : UINT64_MAX;
    if (len[CNTR] < 48 || nstale > (len[CNTR] - 48) / 8 || nworkers > len[CNTR] / 32 ||
        len[CNTR] != 48 + 8 * nstale + 32 * nworkers)
        return REFUSE(true, "%s: CNTR: %" PRIu64 " bytes do not hold the counts they "
                      "announce (damaged)", file, len[CNTR]);

    p->params = pd_malloc(4 * (p->hi - p->lo) + 1);
    p->optim = pd_malloc(len[OPTM] + 1);
    p->iter = pd_calloc(niters + 1, sizeof *p->iter);
    p->iter_size = pd_calloc(niters + 1, sizeof *p->iter_size);
    p->stale = pd_calloc(nstale + 1, sizeof *p->stale);
    p->worker = pd_calloc(nworkers + 1, sizeof *p->worker);
    if (!p->params || !p->optim || !p->iter || !p->iter_size || !p->stale || !p->worker)
        return PD_ENOMEM;
    pd_le_get_floats(p->params, pl[PARM], p->hi - p->lo);
    memcpy(p->optim, pl[OPTM], len[OPTM]);
    p->optim_size = len[OPTM];
    at = 8;
    for (size_t w = 0; w < niters; w++) {
        size_t n = pd_le_get64(pl[ITER] + at);
        p->iter[w] = pd_malloc(n + 1);
        if (!p->iter[w])
            return PD_ENOMEM;
        p->niters = w + 1;
        memcpy(p->iter[w], pl[ITER] + at + 8, n);
        p->iter_size[w] = n;
        at += 8 + n;
    }
    p->sent = (int64_t)pd_le_get64(c);
    p->applied = (int64_t)pd_le_get64(c + 8);
    p->dropped = (int64_t)pd_le_get64(c + 16);
    p->bad = (int64_t)pd_le_get64(c + 24);
    p->nstale = nstale;
    for (size_t h = 0; h < nstale; h++)
        p->stale[h] = (int64_t)pd_le_get64(c + 40 + 8 * h);
    p->nworkers = nworkers;
    const unsigned char *wp = c + 48 + 8 * nstale;
    for (size_t w = 0; w < nworkers; w++, wp += 32)
        p->worker[w] = (pd_ckpt_worker){
            (int64_t)pd_le_get64(wp), (int64_t)pd_le_get64(wp + 8),
            (int64_t)pd_le_get64(wp + 16), (int64_t)pd_le_get64(wp + 24)};
    if (present[BTCH] && len[BTCH] > 0) {
        if (!(p->batch = pd_malloc(len[BTCH])))
            return PD_ENOMEM;
        memcpy(p->batch, pl[BTCH], len[BTCH]);
        p->batch_size = len[BTCH];
    }
    if (present[TRCE]) {
        if (len[TRCE] != PD_CKPT_TRCE)
            return REFUSE(true, "%s: TRCE: %" PRIu64 " bytes, expected %d (damaged)", file,
                          len[TRCE], PD_CKPT_TRCE);
        p->traced = true;
        p->trace_records = pd_le_get64(pl[TRCE]);
        p->trace_hash = pd_le_get64(pl[TRCE] + 8);
    }
    if (present[LOST])
        PD_TRY(parse_lost(file, pl[LOST], len[LOST], p, damaged));
    return parse_runs(file, pl[RUNS], len[RUNS], p, damaged);
}

int ckpt_decode(const char *file, const unsigned char *buf, size_t size, uint64_t layout_hash,
                uint64_t config_hash, pd_ckpt_part *out, bool *damaged)
{
    if (size < PD_CKPT_HEADER)
        return REFUSE(true, "%s: header: %zu bytes, shorter than the %d-byte header (truncated)",
                      file, size, PD_CKPT_HEADER);
    if (memcmp(buf, part_magic, 8) != 0)
        return REFUSE(true, "%s: header: bad magic (not a paramd checkpoint part)", file);
    uint32_t crc = ckpt_crc(buf, 32), stored = pd_le_get32(buf + 32);
    if (crc != stored)
        return REFUSE(true, "%s: header: crc32 0x%08x, stored 0x%08x (damaged)", file,
                      (unsigned)crc, (unsigned)stored);
    uint32_t version = pd_le_get32(buf + 8), nsec = pd_le_get32(buf + 12);
    if (version < PD_CKPT_VERSION_OLDEST || version > PD_CKPT_VERSION)
        return REFUSE(false, "%s: header: format version %u, this build reads versions %u to %u "
                      "(a checkpoint of another paramd version)", file, (unsigned)version,
                      PD_CKPT_VERSION_OLDEST, PD_CKPT_VERSION);
    if (nsec < NSECTIONS || nsec > NSECTIONS_MAX)
        return REFUSE(true, "%s: header: %u sections, version %u has %d to %d (damaged)", file,
                      (unsigned)nsec, (unsigned)version, NSECTIONS, NSECTIONS_MAX);
    uint64_t lh = pd_le_get64(buf + 16), ch = pd_le_get64(buf + 24);
    if (lh != layout_hash)
        return REFUSE(false, "%s: header: model layout hash 0x%016" PRIx64 ", this run's is "
                      "0x%016" PRIx64 " (a different model)", file, lh, layout_hash);
    if (ch != config_hash)
        return REFUSE(false, "%s: header: config hash 0x%016" PRIx64 ", this run's is 0x%016"
                      PRIx64 " (a key listed in paramd/ckpt.h or the number of workers "
                      "changed)", file, ch, config_hash);

    const unsigned char *pl[NSECTIONS_MAX] = {0};
    uint64_t len[NSECTIONS_MAX] = {0};
    bool present[NSECTIONS_MAX] = {0};
    size_t at = PD_CKPT_HEADER;
    int k = -1;
    for (int i = 0; i < (int)nsec; i++) {
        /* The six in order, then optional ones, each once, in tag order. */
        if (size - at < PD_CKPT_SECTION)
            return REFUSE(true, "%s: %s: file ends at byte %zu, inside the section header "
                          "(truncated)", file, i < NSECTIONS ? tags[i] : "optional", size);
        if (i < NSECTIONS)
            k = i;
        else
            for (k++; k < NSECTIONS_MAX && memcmp(buf + at, tags[k], 4) != 0; k++)
                ;
        if (k >= NSECTIONS_MAX || memcmp(buf + at, tags[k], 4) != 0)
            return REFUSE(true, "%s: %s: section %d at byte %zu has another tag (damaged)",
                          file, i < NSECTIONS ? tags[i] : "optional", i, at);
        present[k] = true;
        len[k] = pd_le_get64(buf + at + 8);
        if (len[k] > size - at - PD_CKPT_SECTION)
            return REFUSE(true, "%s: %s: %" PRIu64 " bytes announced, %zu left in the file "
                          "(truncated)", file, tags[k], len[k], size - at - PD_CKPT_SECTION);
        pl[k] = buf + at + PD_CKPT_SECTION;
        crc = ckpt_crc(pl[k], len[k]);
        stored = pd_le_get32(buf + at + 4);
        if (crc != stored)
            return REFUSE(true, "%s: %s: crc32 0x%08x, stored 0x%08x (damaged)", file, tags[k],
                          (unsigned)crc, (unsigned)stored);
        at += PD_CKPT_SECTION + len[k];
    }
    if (at != size)
        return REFUSE(true, "%s: %s: %zu bytes after the last section (damaged)", file,
                      tags[k], size - at);

    pd_ckpt_part p = {.layout_hash = lh, .config_hash = ch};
    int e = parse(file, pl, len, present, &p, damaged);
    if (e != PD_OK) {
        pd_ckpt_part_free(&p);
        return e;
    }
    *out = p;
    return PD_OK;
}

int pd_ckpt_decode(const char *file, const unsigned char *buf, size_t size,
                   uint64_t layout_hash, uint64_t config_hash, pd_ckpt_part *out)
{
    bool damaged;
    return ckpt_decode(file, buf, size, layout_hash, config_hash, out, &damaged);
}
