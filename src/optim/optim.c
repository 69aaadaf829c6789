/* The update rules of every mode. pd_optim_prepare computes a step's
 * constants once; pd_optim_apply / pd_optim_apply_sparse then run flat
 * element-wise loops over a coordinate range or an index set. The gradient
 * is preprocessed chunk by chunk into a stack buffer (clip factor, clip by
 * value, counter-based noise, coupled weight decay), so every rule loop is
 * branch-free, split-invariant and allocation-free. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/clones.h"
#include "paramd/error.h"
#include "paramd/le.h"
#include "paramd/optim.h"
#include "paramd/rng.h"

/* Gradient values preprocessed per pass: 1 KiB of stack. */
enum { CHUNK = 256 };

/* Each rule's state vectors, in the order they sit in the state allocation
 * and in a saved state (names: pd_optimizer_names). */
static const char *const rule_vecs[PD_OPT_COUNT] = {   /* letters among v, r, s, m, g, q, h, t */
    [PD_OPT_SGD]              = "",
    [PD_OPT_MOMENTUM]         = "v",
    [PD_OPT_NESTEROV]         = "v",
    [PD_OPT_ADAGRAD]          = "r",
    [PD_OPT_RMSPROP]          = "r",
    [PD_OPT_RMSPROP_NESTEROV] = "vr",
    [PD_OPT_ADADELTA]         = "rs",
    [PD_OPT_ADAM]             = "mv",
    [PD_OPT_ADAMW]            = "mv",
    [PD_OPT_CG]               = "",   /* batch methods: no element rule */
    [PD_OPT_BFGS]             = "",
    [PD_OPT_LBFGS]            = "",
    [PD_OPT_CD]               = "",
    [PD_OPT_VSGD]             = "gqht",   /* gb, vb, hb, tau */
};

struct pd_optim {
    pd_optim_config oc;
    size_t lo, hi;        /* global coordinates held: state index = i - lo */
    size_t model_params;  /* vsgd's D (pd_optim_set_model_params) */
    uint64_t noise_key;   /* (seed, PD_STREAM_NOISE) hashed once */
    size_t nvec;
    float *state;         /* nvec * (hi - lo) floats, zeroed at create */
    float *v, *r, *s, *m; /* into state, NULL when the rule has none */
    float *gb, *vb, *hb, *tau;   /* vsgd */
    float *q;             /* dc_lambda_adaptive: moving mean of g*g, after the rule's */
};

/* Saved state: this header, then the state vectors in rule_vecs order
 * (and q last under optimizer.dc_lambda_adaptive),
 * every field little-endian (paramd/le.h) whatever the host:
 *   0 magic "PDOS" (u32 0x534f4450)  4 version u32  8 rule u32  12 nvec u32
 *   16 lo u64  24 hi u64  32 nvec * (hi - lo) float32 */
#define STATE_MAGIC 0x534f4450u   /* "PDOS" */
#define STATE_VERSION 1u
typedef struct state_header {
    uint32_t magic, version, rule, nvec;
    uint64_t lo, hi;
} state_header;
enum { STATE_HEADER = 32 };   /* bytes on disk */

/* A step's float constants, computed once per apply call. */
typedef struct consts {
    float gscale, clip, sigma, wd;   /* preprocessing; wd = 0 when decoupled */
    float lr, alpha, rho, one_rho, eps;
    float b1, one_b1, b2, one_b2, lr_bc1, bc2, lr_wd;
    float inv_n, slow, mem;          /* vsgd: 1 / examples behind the gradient; C;
                                        tau's largest value (INFINITY: none) */
    uint64_t key;                    /* noise key of (seed, t) */
    int pre;                         /* some preprocessing is on */
} consts;

static const char *rule_name(uint32_t rule)
{
    return rule < PD_OPT_COUNT ? pd_optimizer_names[rule] : "?";
}

int pd_optim_create(const pd_optim_config *oc, size_t lo, size_t hi, uint64_t seed,
                    pd_optim **out)
{
    int err = PD_OK;
    *out = NULL;
    if ((unsigned)oc->name >= PD_OPT_COUNT)
        return PD_FAIL(PD_EINPUT, "optimizer.name: unknown rule %d", (int)oc->name);
    const char *rn = pd_optimizer_names[oc->name];
    if (pd_optim_is_batch(oc->name))
        return PD_FAIL(PD_EINPUT, "optimizer.name: %s is a batch method (src/batch/), not "
                       "an element-wise rule", rn);
    if (lo > hi)
        return PD_FAIL(PD_EINPUT, "optimizer %s: range [%zu, %zu) is reversed", rn, lo, hi);
    /* Every number the step reads: a NaN one (a caller that filled its own
     * pd_optim_config and left a key unset) would turn theta into NaN, or
     * send every step down the preprocessing path (weight_decay != 0). */
    const struct { const char *key; double v; } hp[] = {
        {"lr", oc->lr}, {"momentum", oc->momentum}, {"rho", oc->rho}, {"eps", oc->eps},
        {"beta1", oc->beta1}, {"beta2", oc->beta2}, {"weight_decay", oc->weight_decay},
        {"clip_norm", oc->clip_norm}, {"clip_value", oc->clip_value}, {"noise", oc->noise},
        {"noise_gamma", oc->noise_gamma}, {"dc_lambda", oc->dc_lambda},
        {"dc_decay", oc->dc_decay}, {"vsgd_slow", oc->vsgd_slow},
        {"vsgd_memory", oc->vsgd_memory},
    };
    for (size_t k = 0; k < sizeof hp / sizeof hp[0]; k++)
        if (isnan(hp[k].v))
            return PD_FAIL(PD_EINPUT, "optimizer %s: optimizer.%s is NAN (unset; "
                           "pd_optim_defaults fills only the rule's own defaults)", rn, hp[k].key);

    pd_optim *o = pd_calloc(1, sizeof *o);
    if (!o)
        return PD_ENOMEM;
    o->oc = *oc;
    o->lo = lo;
    o->hi = hi;
    o->model_params = hi - lo;
    o->noise_key = pd_hash64(pd_hash64(seed) ^ pd_hash64(PD_STREAM_NOISE));
    o->nvec = strlen(rule_vecs[oc->name]) + (oc->dc_lambda_adaptive ? 1 : 0);
    size_t n = hi - lo;
    if (o->nvec) {
        if (n > SIZE_MAX / sizeof(float) / o->nvec) {
            err = PD_FAIL(PD_ENOMEM, "optimizer %s: state for %zu coordinates overflows", rn, n);
            goto err;
        }
        o->state = pd_calloc(o->nvec * n, sizeof(float));
        if (!o->state) {
            err = PD_ENOMEM;
            goto err;
        }
    }
    if (oc->dc_lambda_adaptive)
        o->q = o->state + (o->nvec - 1) * n;
    for (size_t k = 0; k < strlen(rule_vecs[oc->name]); k++) {
        float *p = o->state + k * n;
        switch (rule_vecs[oc->name][k]) {
        case 'v': o->v = p; break;
        case 'r': o->r = p; break;
        case 's': o->s = p; break;
        case 'm': o->m = p; break;
        case 'g': o->gb = p; break;
        case 'q': o->vb = p; break;
        case 'h': o->hb = p; break;
        case 't': o->tau = p; break;
        }
    }
    *out = o;
    return PD_OK;
err:
    free(o->state);
    free(o);
    return err;
}

void pd_optim_set_model_params(pd_optim *o, size_t n)
{
    o->model_params = n;
}

float pd_optim_vsgd_slow(size_t model_params)
{
    float c = (float)model_params / 10.0f;
    return c > 2.0f ? c : 2.0f;
}

void pd_optim_destroy(pd_optim **o)
{
    if (!o || !*o)
        return;
    free((*o)->state);
    free(*o);
    *o = NULL;
}

pd_optim_step pd_optim_prepare(const pd_optim *o, int64_t t, double scale, double grad_norm)
{
    assert(t >= 1);
    const pd_optim_config *oc = &o->oc;
    pd_optim_step st = {
        .t = t,
        .lr = (float)(pd_optim_lr(oc, t) * scale),
        .gscale = 1.0f, .bc1 = 1.0f, .bc2 = 1.0f, .noise_sigma = 0.0f,
    };
    if (oc->clip_norm > 0 && grad_norm > oc->clip_norm)
        st.gscale = (float)(oc->clip_norm / grad_norm);
    if (oc->name == PD_OPT_ADAM || oc->name == PD_OPT_ADAMW) {
        st.bc1 = (float)(1.0 / (1.0 - pow(oc->beta1, (double)t)));
        st.bc2 = (float)(1.0 / (1.0 - pow(oc->beta2, (double)t)));
    }
    if (oc->noise > 0)
        st.noise_sigma = (float)sqrt(oc->noise / pow(1.0 + (double)t, oc->noise_gamma));
    return st;
}

static consts make_consts(const pd_optim *o, const pd_optim_step *st)
{
    const pd_optim_config *oc = &o->oc;
    bool decoupled = oc->name == PD_OPT_ADAMW;
    consts c = {
        .slow = oc->vsgd_slow > 0 ? (float)oc->vsgd_slow : pd_optim_vsgd_slow(o->model_params),
        .mem = oc->vsgd_memory > 0 ? (float)oc->vsgd_memory : INFINITY,
        .gscale = st->gscale,
        .clip = oc->clip_value > 0 ? (float)oc->clip_value : 0.0f,
        .sigma = st->noise_sigma,
        .wd = decoupled ? 0.0f : (float)oc->weight_decay,
        .lr = st->lr,
        .alpha = (float)oc->momentum,
        .rho = (float)oc->rho,
        .one_rho = (float)(1.0 - oc->rho),
        .eps = (float)oc->eps,
        .b1 = (float)oc->beta1,
        .one_b1 = (float)(1.0 - oc->beta1),
        .b2 = (float)oc->beta2,
        .one_b2 = (float)(1.0 - oc->beta2),
        .lr_bc1 = st->lr * st->bc1,
        .bc2 = st->bc2,
        .lr_wd = decoupled ? st->lr * (float)oc->weight_decay : 0.0f,
        .key = pd_hash64(o->noise_key ^ pd_hash64((uint64_t)st->t)),
    };
    c.pre = c.gscale != 1.0f || c.clip > 0 || c.sigma > 0 || c.wd != 0;
    return c;
}

/* A standard normal drawn from (key, global index i) alone, so any split of
 * the coordinates, in any order or thread, draws the same value for i. */
static double gauss(uint64_t key, uint64_t i)
{
    uint64_t h1 = pd_hash64(key + 2 * i), h2 = pd_hash64(key + 2 * i + 1);
    double u1 = (double)((h1 >> 11) + 1) * 0x1.0p-53;   /* (0, 1] */
    double u2 = (double)(h2 >> 11) * 0x1.0p-53;         /* [0, 1) */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* out[k] = the gradient the rule sees for the k-th coordinate: g[k] scaled
 * by the clip factor, clipped by value, plus noise and coupled weight decay.
 * Coordinates are i0 + k (dense, idx NULL) or idx[k] (sparse); theta is
 * indexed globally. */
static void preprocess(const consts *c, size_t n, float *restrict out,
                       const float *restrict g, const float *restrict theta,
                       const uint32_t *restrict idx, size_t i0)
{
    const float gs = c->gscale, cv = c->clip, wd = c->wd;
    for (size_t k = 0; k < n; k++)
        out[k] = gs * g[k];
    if (cv > 0)   /* written so that a NaN passes through for the caller to see */
        for (size_t k = 0; k < n; k++)
            out[k] = out[k] > cv ? cv : out[k] < -cv ? -cv : out[k];
    if (c->sigma > 0) {
        double sigma = c->sigma;
        for (size_t k = 0; k < n; k++)
            out[k] += (float)(sigma * gauss(c->key, idx ? idx[k] : i0 + k));
    }
    if (wd != 0) {
        if (idx)
            for (size_t k = 0; k < n; k++)
                out[k] += wd * theta[idx[k]];
        else
            for (size_t k = 0; k < n; k++)
                out[k] += wd * theta[i0 + k];
    }
}

/* One coordinate of each rule. Dense and sparse loops both call these, so
 * the arithmetic (and its bits) is the same in either. */
static inline void el_sgd(float *th, float g, float lr)
{
    *th -= lr * g;
}

static inline void el_momentum(float *th, float *v, float g, float alpha, float lr)
{
    float nv = alpha * *v - lr * g;
    *v = nv;
    *th += nv;
}

static inline void el_adagrad(float *th, float *r, float g, float lr, float eps)
{
    float nr = *r + g * g;
    *r = nr;
    *th -= lr / (eps + sqrtf(nr)) * g;
}

static inline float el_rms(float *r, float g, float rho, float one_rho)
{
    float nr = rho * *r + one_rho * (g * g);
    *r = nr;
    return nr;
}

static inline void el_rmsprop(float *th, float *r, float g, float rho, float one_rho,
                              float lr, float eps)
{
    float nr = el_rms(r, g, rho, one_rho);
    *th -= lr / sqrtf(eps + nr) * g;
}

static inline void el_rmsprop_nesterov(float *th, float *v, float *r, float g, float rho,
                                       float one_rho, float alpha, float lr, float eps)
{
    float nr = el_rms(r, g, rho, one_rho);
    float nv = alpha * *v - lr / sqrtf(eps + nr) * g;
    *v = nv;
    *th += nv;
}

static inline void el_adadelta(float *th, float *r, float *s, float g, float rho,
                               float one_rho, float lr, float eps)
{
    float nr = el_rms(r, g, rho, one_rho);
    float d = -(sqrtf(*s + eps) / sqrtf(nr + eps)) * g;
    *s = rho * *s + one_rho * (d * d);
    *th += lr * d;
}

static inline void el_adam(float *th, float *m, float *v, float g, const consts *c)
{
    float nm = c->b1 * *m + c->one_b1 * g;
    float nv = c->b2 * *v + c->one_b2 * (g * g);
    *m = nm;
    *v = nv;
    float t0 = *th;
    *th = t0 - c->lr_wd * t0 - c->lr_bc1 * nm / (sqrtf(nv * c->bc2) + c->eps);
}

/* vSGD (optim.h). tau < 0 during a coordinate's slow start (-tau minibatches
 * averaged, no step), 0 before its first signal. The ratios are 0 where
 * their denominators are (a coordinate whose gradient and curvature have
 * been exactly 0), so such a coordinate stays put instead of turning NaN.
 *
 * Without branches, so that the loop vectorizes: every case computes the
 * same expressions and the case selects operands, not stores. The slow
 * start averages as the step does, over k = 1 - tau instead of tau; a
 * coordinate that waits for its first signal averages with weight a = 0
 * (its state is all 0, so it stays 0) and keeps tau = 0; one in its slow
 * start subtracts lr 0 g = 0 from theta. Each value is the IEEE result of
 * the operations a branch would make, so the bits are those of the
 * branching form (for finite gradients, which are all a step receives, and
 * a theta that is not -0). The divisions are made unconditionally and
 * their result dropped where the denominator is 0 (masked exceptions). */
static inline void el_vsgd(float *th, float *gb, float *vb, float *hb, float *tau, float g,
                           float h, float v, const consts *c)
{
    const float t = *tau, ah = fabsf(h);
    const bool slow = t <= 0.0f;
    const bool idle = (t == 0.0f) & (g == 0.0f) & (v == 0.0f);
    const float omt = 1.0f - t, k = slow ? omt : t, rk = 1.0f / k;
    const float a = idle ? 0.0f : rk, b = 1.0f - a;
    const float ngb = b * *gb + a * g, nvb = b * *vb + a * v, nhb = b * *hb + a * ah;
    /* the step: the larger of the averaged and this minibatch's curvature
     * and per-example second moment (optim.h); E[g_mb^2] of a minibatch of
     * n examples: vb / n + (n - 1) / n gb^2 */
    const float hm = ah > nhb ? ah : nhb, vm = v > nvb ? v : nvb;
    const float g2 = ngb * ngb, den = hm * (c->inv_n * vm + (1.0f - c->inv_n) * g2);
    const float qe = g2 / den, qr = g2 / nvb;
    const float e = den > 0.0f ? qe : 0.0f, r = nvb > 0.0f ? qr : 0.0f;
    const float ntau0 = (1.0f - r) * t + 1.0f, es = slow ? 0.0f : e;
    const float ntau = ntau0 > c->mem ? c->mem : ntau0;   /* optimizer.vsgd_memory */
    /* the slow start ends after PD_VSGD_N0 minibatches: vb overestimated */
    const bool ends = k >= (float)PD_VSGD_N0;
    const float svb = nvb * c->slow, nk = idle ? 0.0f : -k;
    *gb = ngb;
    *vb = slow & ends ? svb : nvb;
    *hb = nhb;
    *tau = slow ? (ends ? k : nk) : ntau;
    *th = *th - c->lr * es * g;
}

/* vsgd's dense loop, a function of its own: inside run_dense's switch GCC
 * left the AVX2 copy of this loop scalar. */
PD_CLONES
static void run_vsgd(size_t n, float *restrict th, float *restrict gb, float *restrict vb,
                     float *restrict hb, float *restrict tau, const float *restrict g,
                     const float *restrict h, const float *restrict v2, const consts *k)
{
    const consts c = *k;
    for (size_t j = 0; j < n; j++)
        el_vsgd(&th[j], &gb[j], &vb[j], &hb[j], &tau[j], g[j], h[j], v2[j], &c);
}

/* The rule over n contiguous coordinates: th and g (and h, vsgd's
 * curvature, else NULL) start at the chunk, off is the chunk's state index
 * (global coordinate - o->lo). */
PD_CLONES
static void run_dense(pd_optim *o, const consts *k, size_t n, float *restrict th,
                      const float *restrict g, const float *restrict h,
                      const float *restrict v2, size_t off)
{
    const consts c = *k;
    switch (o->oc.name) {
    case PD_OPT_SGD:
        for (size_t j = 0; j < n; j++)
            el_sgd(&th[j], g[j], c.lr);
        break;
    case PD_OPT_MOMENTUM:
    case PD_OPT_NESTEROV: {
        float *restrict v = o->v + off;
        for (size_t j = 0; j < n; j++)
            el_momentum(&th[j], &v[j], g[j], c.alpha, c.lr);
        break;
    }
    case PD_OPT_ADAGRAD: {
        float *restrict r = o->r + off;
        for (size_t j = 0; j < n; j++)
            el_adagrad(&th[j], &r[j], g[j], c.lr, c.eps);
        break;
    }
    case PD_OPT_RMSPROP: {
        float *restrict r = o->r + off;
        for (size_t j = 0; j < n; j++)
            el_rmsprop(&th[j], &r[j], g[j], c.rho, c.one_rho, c.lr, c.eps);
        break;
    }
    case PD_OPT_RMSPROP_NESTEROV: {
        float *restrict v = o->v + off, *restrict r = o->r + off;
        for (size_t j = 0; j < n; j++)
            el_rmsprop_nesterov(&th[j], &v[j], &r[j], g[j], c.rho, c.one_rho, c.alpha, c.lr,
                                c.eps);
        break;
    }
    case PD_OPT_ADADELTA: {
        float *restrict r = o->r + off, *restrict s = o->s + off;
        for (size_t j = 0; j < n; j++)
            el_adadelta(&th[j], &r[j], &s[j], g[j], c.rho, c.one_rho, c.lr, c.eps);
        break;
    }
    case PD_OPT_ADAM:
    case PD_OPT_ADAMW: {
        float *restrict m = o->m + off, *restrict v = o->v + off;
        for (size_t j = 0; j < n; j++)
            el_adam(&th[j], &m[j], &v[j], g[j], &c);
        break;
    }
    case PD_OPT_VSGD:
        run_vsgd(n, th, o->gb + off, o->vb + off, o->hb + off, o->tau + off, g, h, v2, &c);
        break;
    case PD_OPT_CG:   /* refused by pd_optim_create */
    case PD_OPT_BFGS:
    case PD_OPT_LBFGS:
    case PD_OPT_CD:
    case PD_OPT_COUNT:
        break;
    }
}

/* The rule at coordinates idx[0, n) (global); theta is indexed globally. */
static void run_sparse(pd_optim *o, const consts *k, size_t n, float *restrict theta,
                       const uint32_t *restrict idx, const float *restrict g,
                       const float *restrict h, const float *restrict v2)
{
    const consts c = *k;
    const size_t lo = o->lo;
    float *restrict v = o->v, *restrict r = o->r, *restrict s = o->s, *restrict m = o->m;
    switch (o->oc.name) {
    case PD_OPT_SGD:
        for (size_t j = 0; j < n; j++)
            el_sgd(&theta[idx[j]], g[j], c.lr);
        break;
    case PD_OPT_MOMENTUM:
    case PD_OPT_NESTEROV:
        for (size_t j = 0; j < n; j++)
            el_momentum(&theta[idx[j]], &v[idx[j] - lo], g[j], c.alpha, c.lr);
        break;
    case PD_OPT_ADAGRAD:
        for (size_t j = 0; j < n; j++)
            el_adagrad(&theta[idx[j]], &r[idx[j] - lo], g[j], c.lr, c.eps);
        break;
    case PD_OPT_RMSPROP:
        for (size_t j = 0; j < n; j++)
            el_rmsprop(&theta[idx[j]], &r[idx[j] - lo], g[j], c.rho, c.one_rho, c.lr, c.eps);
        break;
    case PD_OPT_RMSPROP_NESTEROV:
        for (size_t j = 0; j < n; j++)
            el_rmsprop_nesterov(&theta[idx[j]], &v[idx[j] - lo], &r[idx[j] - lo], g[j],
                                c.rho, c.one_rho, c.alpha, c.lr, c.eps);
        break;
    case PD_OPT_ADADELTA:
        for (size_t j = 0; j < n; j++)
            el_adadelta(&theta[idx[j]], &r[idx[j] - lo], &s[idx[j] - lo], g[j], c.rho,
                        c.one_rho, c.lr, c.eps);
        break;
    case PD_OPT_ADAM:
    case PD_OPT_ADAMW:
        for (size_t j = 0; j < n; j++)
            el_adam(&theta[idx[j]], &m[idx[j] - lo], &v[idx[j] - lo], g[j], &c);
        break;
    case PD_OPT_VSGD:
        for (size_t j = 0; j < n; j++) {
            size_t i = idx[j] - lo;
            el_vsgd(&theta[idx[j]], &o->gb[i], &o->vb[i], &o->hb[i], &o->tau[i], g[j], h[j],
                    v2[j], &c);
        }
        break;
    case PD_OPT_CG:   /* refused by pd_optim_create */
    case PD_OPT_BFGS:
    case PD_OPT_LBFGS:
    case PD_OPT_CD:
    case PD_OPT_COUNT:
        break;
    }
}

/* 1 / the examples behind a gradient, for vsgd (at least one). */
static float inv_examples(const pd_optim_curv *cv)
{    return cv && cv->n > 1 ? (float)(1.0 / cv->n) : 1.0f;
}

/* Dense step over [lo, hi) with g of the range alone and, for vsgd, cv's
 * arrays of the range alone (cv->h[i - lo]). */
static void apply_range(pd_optim *o, const pd_optim_step *st, float *theta,
                        const float *g_range, const pd_optim_curv *cv, size_t lo, size_t hi)
{
    assert(lo <= hi && lo >= o->lo && hi <= o->hi);
    assert(cv || !pd_optim_needs_curvature(o->oc.name));
    consts c = make_consts(o, st);
    c.inv_n = inv_examples(cv);
    if (!c.pre) {   /* the rule on g as it is: one call over the whole range */
        run_dense(o, &c, hi - lo, theta + lo, g_range, cv ? cv->h : NULL, cv ? cv->v : NULL,
                  lo - o->lo);
        return;
    }
    float buf[CHUNK];   /* preprocessed g, a chunk at a time */
    for (size_t i = lo; i < hi; i += CHUNK) {
        size_t n = hi - i < CHUNK ? hi - i : CHUNK;
        preprocess(&c, n, buf, g_range + (i - lo), theta, NULL, i);
        run_dense(o, &c, n, theta + i, buf, cv ? cv->h + (i - lo) : NULL,
                  cv ? cv->v + (i - lo) : NULL, i - o->lo);
    }
}

void pd_optim_apply(pd_optim *o, const pd_optim_step *st, float *theta, const float *g,
                    size_t lo, size_t hi)
{
    apply_range(o, st, theta, g + lo, NULL, lo, hi);
}

void pd_optim_apply_curv(pd_optim *o, const pd_optim_step *st, float *theta, const float *g,
                         const pd_optim_curv *cv, size_t lo, size_t hi)
{
    pd_optim_curv r;
    if (cv)
        r = (pd_optim_curv){.h = cv->h + lo, .v = cv->v + lo, .n = cv->n};
    apply_range(o, st, theta, g + lo, cv ? &r : NULL, lo, hi);
}

void pd_optim_apply_range(pd_optim *o, const pd_optim_step *st, float *theta,
                          const float *g_range, size_t lo, size_t hi)
{
    apply_range(o, st, theta, g_range, NULL, lo, hi);
}

void pd_optim_apply_sparse_curv(pd_optim *o, const pd_optim_step *st, float *theta,
                                const uint32_t *idx, const float *val, const pd_optim_curv *cv,
                                size_t nnz)
{
#ifndef NDEBUG
    for (size_t k = 0; k < nnz; k++)
        assert(idx[k] >= o->lo && idx[k] < o->hi);
#endif
    assert(cv || !pd_optim_needs_curvature(o->oc.name));
    consts c = make_consts(o, st);
    c.inv_n = inv_examples(cv);
    float buf[CHUNK];
    for (size_t k = 0; k < nnz; k += CHUNK) {
        size_t n = nnz - k < CHUNK ? nnz - k : CHUNK;
        const float *gk = val + k;
        if (c.pre) {
            preprocess(&c, n, buf, gk, theta, idx + k, 0);
            gk = buf;
        }
        run_sparse(o, &c, n, theta, idx + k, gk, cv ? cv->h + k : NULL, cv ? cv->v + k : NULL);
    }
}

void pd_optim_apply_sparse(pd_optim *o, const pd_optim_step *st, float *theta,
                           const uint32_t *idx, const float *val, size_t nnz)
{
    pd_optim_apply_sparse_curv(o, st, theta, idx, val, NULL, nnz);
}

bool pd_optim_has_lookahead(const pd_optim *o)
{
    return o->oc.name == PD_OPT_NESTEROV || o->oc.name == PD_OPT_RMSPROP_NESTEROV;
}

void pd_optim_take_step(pd_optim *o, int64_t t, double scale, double grad_norm, float *theta,
                        const pd_optim_grad *g)
{
    pd_optim_step st = pd_optim_prepare(o, t, scale, grad_norm);
    if (g->idx)
        pd_optim_apply_sparse_curv(o, &st, theta, g->idx, g->val, g->curv, g->nnz);
    else if (g->g_range)
        apply_range(o, &st, theta, g->g_range, g->curv, g->lo, g->hi);
    else
        pd_optim_apply_curv(o, &st, theta, g->g, g->curv, g->lo, g->hi);
}

/* One coordinate's correction: the same expression for every layout, so
 * a server's range buffers and replay's whole vectors give the same bits.
 * With q (dc_lambda_adaptive) its moving mean of g*g first takes x in and
 * lambda becomes l / sqrt(q + PD_DC_EPS) (DC-ASGD-a). */
static inline float dc1(float l, float x, float now, float stale, float *q, float m)
{
    if (q) {
        *q = m * *q + (1 - m) * (x * x);
        l = l / sqrtf(*q + PD_DC_EPS);
    }
    return x + l * x * x * (now - stale);
}

void pd_optim_compensate(pd_optim *o, double lambda, const float *theta, const float *stale,
                         size_t stale_lo, const pd_optim_grad *g, float *out, pd_optim_grad *dc)
{
    const float l = (float)lambda, m = (float)o->oc.dc_decay;
    float *q = o->q;   /* q[i - o->lo] for coordinate i */
#define Q(i) (q ? q + ((i) - o->lo) : NULL)
    if (g->idx) {
        pd_optim_lookahead_gather(o, theta, g->idx, g->nnz, out);   /* now, packed */
        for (size_t k = 0; k < g->nnz; k++)
            out[k] = dc1(l, g->val[k], out[k], stale[g->idx[k] - stale_lo], Q(g->idx[k]), m);
        *dc = (pd_optim_grad){.idx = g->idx, .val = out, .nnz = g->nnz, .curv = g->curv};
        return;
    }
    const float *s = stale + (g->lo - stale_lo);   /* s[j]: coordinate lo + j */
    size_t n = g->hi - g->lo;
    if (g->g_range) {
        pd_optim_lookahead_range(o, theta, out, g->lo, g->hi);   /* now, out[j] */
        for (size_t j = 0; j < n; j++)
            out[j] = dc1(l, g->g_range[j], out[j], s[j], Q(g->lo + j), m);
        *dc = (pd_optim_grad){.g_range = out, .lo = g->lo, .hi = g->hi, .curv = g->curv};
        return;
    }
    pd_optim_lookahead(o, theta, out, g->lo, g->hi);   /* now, out[lo + j] */
    for (size_t j = 0; j < n; j++)
        out[g->lo + j] = dc1(l, g->g[g->lo + j], out[g->lo + j], s[j], Q(g->lo + j), m);
    *dc = (pd_optim_grad){.g = out, .lo = g->lo, .hi = g->hi, .curv = g->curv};
#undef Q
}

void pd_optim_lookahead(const pd_optim *o, const float *theta, float *point, size_t lo,
                        size_t hi)
{
    pd_optim_lookahead_range(o, theta, point + lo, lo, hi);
}

void pd_optim_lookahead_range(const pd_optim *o, const float *theta, float *out, size_t lo,
                              size_t hi)
{
    assert(lo <= hi && lo >= o->lo && hi <= o->hi);
    const float *restrict th = theta + lo;
    float *restrict p = out;
    size_t n = hi - lo;
    if (!pd_optim_has_lookahead(o)) {
        memcpy(p, th, n * sizeof *p);
        return;
    }
    const float *restrict v = o->v + (lo - o->lo);
    const float alpha = (float)o->oc.momentum;
    for (size_t j = 0; j < n; j++)
        p[j] = th[j] + alpha * v[j];
}

void pd_optim_lookahead_gather(const pd_optim *o, const float *theta, const uint32_t *idx,
                               size_t n, float *out)
{
    if (!pd_optim_has_lookahead(o)) {
        for (size_t j = 0; j < n; j++)
            out[j] = theta[idx[j]];
        return;
    }
    const float alpha = (float)o->oc.momentum;
    for (size_t j = 0; j < n; j++) {
        assert(idx[j] >= o->lo && idx[j] < o->hi);
        out[j] = theta[idx[j]] + alpha * o->v[idx[j] - o->lo];
    }
}

size_t pd_optim_state_size(const pd_optim *o)
{
    return STATE_HEADER + o->nvec * (o->hi - o->lo) * 4;
}

int pd_optim_save(const pd_optim *o, void *buf, size_t size)
{
    size_t need = pd_optim_state_size(o);
    if (size < need)
        return PD_FAIL(PD_EINPUT, "optimizer state: buffer of %zu bytes, need %zu", size, need);
    unsigned char *p = buf;
    pd_le_put32(p, STATE_MAGIC);
    pd_le_put32(p + 4, STATE_VERSION);
    pd_le_put32(p + 8, (uint32_t)o->oc.name);
    pd_le_put32(p + 12, (uint32_t)o->nvec);
    pd_le_put64(p + 16, o->lo);
    pd_le_put64(p + 24, o->hi);
    pd_le_put_floats(p + STATE_HEADER, o->state, o->nvec * (o->hi - o->lo));
    return PD_OK;
}

int pd_optim_load(pd_optim *o, const void *buf, size_t size)
{
    state_header h;
    const char *rn = pd_optimizer_names[o->oc.name];
    if (size < STATE_HEADER)
        return PD_FAIL(PD_EINPUT, "optimizer state: %zu bytes, too short for the %d-byte header",
                       size, STATE_HEADER);
    const unsigned char *p = buf;
    h.magic = pd_le_get32(p);
    h.version = pd_le_get32(p + 4);
    h.rule = pd_le_get32(p + 8);
    h.nvec = pd_le_get32(p + 12);
    h.lo = pd_le_get64(p + 16);
    h.hi = pd_le_get64(p + 24);
    if (h.magic != STATE_MAGIC)
        return PD_FAIL(PD_EINPUT, "optimizer state: bad magic 0x%08x (not an optimizer state)",
                       (unsigned)h.magic);
    if (h.version != STATE_VERSION)
        return PD_FAIL(PD_EINPUT, "optimizer state: version %u, this build reads version %u",
                       (unsigned)h.version, STATE_VERSION);
    if (h.rule != (uint32_t)o->oc.name)
        return PD_FAIL(PD_EINPUT, "optimizer state: saved by optimizer '%s', this run uses '%s'",
                       rule_name(h.rule), rn);
    if (h.lo != o->lo || h.hi != o->hi)
        return PD_FAIL(PD_EINPUT, "optimizer state: saved for coordinates [%llu, %llu), "
                       "this optimizer holds [%zu, %zu)",
                       (unsigned long long)h.lo, (unsigned long long)h.hi, o->lo, o->hi);
    if (h.nvec != o->nvec)
        return PD_FAIL(PD_EINPUT, "optimizer state: %u state vectors, '%s' keeps %zu (corrupt)",
                       (unsigned)h.nvec, rn, o->nvec);
    size_t need = pd_optim_state_size(o);
    if (size != need)
        return PD_FAIL(PD_EINPUT, "optimizer state: %zu bytes, expected %zu for '%s' over "
                       "[%zu, %zu) (%s)", size, need, rn, o->lo, o->hi,
                       size < need ? "truncated" : "trailing bytes");
    pd_le_get_floats(o->state, p + STATE_HEADER, o->nvec * (o->hi - o->lo));
    return PD_OK;
}

PD_CLONES
bool pd_optim_finite(const float *v, size_t n)
{
    /* On the bits: a float is NaN or Inf when its exponent field is all
     * ones, and then (bits & 0x7f800000) + 0x00800000 carries into bit 31.
     * Integer and/add/or have no order to keep, so the loop vectorizes; a
     * float sum (acc += v[i] * 0) was a chain of dependent adds, one
     * add latency per element, the largest cost of a step after sgemm. */
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        acc |= (u & 0x7f800000u) + 0x00800000u;
    }
    return !(acc & 0x80000000u);
}

double pd_optim_sumsq(double s, const float *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * (double)g[i];
    return s;
}

double pd_optim_norm2(const float *g, size_t n)
{
    return sqrt(pd_optim_sumsq(0, g, n));
}
