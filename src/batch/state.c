/* The minimizers' saved state (paramd/batch.h, pd_batch_save): the header
 * a resume must match, and the stopping rules both minimizers share. */
#include <inttypes.h>
#include <math.h>

#include "paramd/error.h"
#include "paramd/optim.h"
#include "state.h"

size_t pd_batch_save_size(const pd_batch_state *st)
{
    return st->run->save(st->run->self, NULL, 0);
}

int pd_batch_save(const pd_batch_state *st, unsigned char *buf, size_t size)
{
    size_t n = st->run->save(st->run->self, buf, size);
    if (n != size)
        return PD_FAIL(PD_EIO, "batch state: %zu bytes, the buffer holds %zu", n, size);
    return PD_OK;
}

int pd_batch_check_header(rbuf *b, const pd_batch_opts *o, size_t N, size_t off, size_t n)
{
    static const char *const what[STATE_HEADER_WORDS] = {
        "format", "optimizer", "optimizer.cg_variant", "optimizer.history",
        "optimizer.block_size", "optimizer.block_order", "servers", "server",
        "parameters", "first coordinate of this part", "coordinates of this part"};
    uint64_t want[STATE_HEADER_WORDS];
    state_header(o, N, off, n, want);
    const char *name = o->resume_name ? o->resume_name : "<batch state>";
    for (int k = 0; k < STATE_HEADER_WORDS; k++) {
        uint64_t got = r_u64(b);
        if (b->bad)
            return PD_FAIL(PD_EINPUT, "%s: BTCH: %zu bytes, too short for its header", name,
                           b->size);
        if (got != want[k] && k == 1 && got < PD_OPT_COUNT)
            return PD_FAIL(PD_EINPUT, "%s: BTCH: the checkpoint's optimizer is %s, this run's %s",
                           name, pd_optimizer_names[got], pd_optimizer_names[want[k]]);
        if (got != want[k])
            return PD_FAIL(PD_EINPUT, "%s: BTCH: %s %" PRIu64 " in the checkpoint, %" PRIu64
                           " in this run", name, what[k], got, want[k]);
    }
    return PD_OK;
}

int pd_batch_resume_check(const pd_batch_opts *o, size_t N, size_t off, size_t n)
{
    rbuf b = {o->resume, 0, o->resume_size, false};
    return pd_batch_check_header(&b, o, N, off, n);
}

int pd_batch_check_end(const rbuf *b, const pd_batch_opts *o)
{
    if (!b->bad && b->at == b->size)
        return PD_OK;
    return PD_FAIL(PD_EINPUT, "%s: BTCH: %zu bytes do not hold the state of %s they announce",
                   o->resume_name ? o->resume_name : "<batch state>", b->size,
                   pd_optimizer_names[o->method]);
}

const char *pd_batch_why_stop(const pd_batch_opts *o, int64_t it, double f_old, double f,
                              double gnorm, bool stop)
{
    if (stop)
        return "stopped";
    if (gnorm <= o->grad_tol)
        return "gradient_norm";
    if (it == 0)
        return NULL;
    if (f_old - f <= o->loss_tol * fmax(fabs(f_old), 1e-300))
        return "relative_decrease";
    if (it >= o->max_iterations)
        return "max_iterations";
    return NULL;
}
