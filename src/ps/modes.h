/* Private to ps: what each distributed mode is made of, in one table, so
 * server.c, apply.c and worker.c test properties instead of mode names. */
#ifndef PARAMD_PS_MODES_H
#define PARAMD_PS_MODES_H

#include <stdbool.h>

#include "paramd/config.h"

typedef struct pd_mode_props {
    bool rounds;        /* one version per round of all workers (sync, local_sgd) */
    bool local_steps;   /* workers take local steps and send models */
    bool elastic;       /* replies carry the elastic difference (easgd) */
    bool each;          /* each message applied alone, in arrival order */
    bool threads;       /* server_threads serving threads (hogwild) */
    bool ssp;           /* max_staleness may hold replies back (async wait) */
    bool sparse_pull;   /* sparse models pull only what the next batch touches */
    bool grad_norms;    /* the round's gradient has per-tensor norms (sync) */
} pd_mode_props;

static inline const pd_mode_props *pd_mode_props_of(pd_mode m)
{
    static const pd_mode_props table[] = {
        [PD_MODE_SERIAL]    = {0},
        [PD_MODE_SYNC]      = {.rounds = true, .grad_norms = true},
        [PD_MODE_ASYNC]     = {.each = true, .ssp = true, .sparse_pull = true},
        [PD_MODE_HOGWILD]   = {.each = true, .threads = true, .sparse_pull = true},
        [PD_MODE_LOCAL_SGD] = {.rounds = true, .local_steps = true},
        [PD_MODE_EASGD]     = {.local_steps = true, .elastic = true, .each = true},
    };
    return &table[m];
}

#endif
