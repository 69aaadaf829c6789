/* Private to ps: server 0's evaluation thread (see evalthread.c). */
#ifndef PARAMD_PS_EVALTHREAD_H
#define PARAMD_PS_EVALTHREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train.h"

typedef struct pd_eval_thread pd_eval_thread;

/* Start the thread for parameters of n floats. ev stays owned by the caller
 * and must outlive the thread. */
int pd_eval_thread_start(pd_evaluator *ev, size_t n, pd_eval_thread **out);
/* Evaluations that came due while the previous one still ran: skipped
 * and counted (summary.json's evals_skipped), not waited for (in rounds
 * every worker would wait). Kept by the caller, from phase to phase. */
typedef struct pd_eval_skips {
    int64_t count;
    int64_t at;                   /* update of the last one skipped, -1: none */
} pd_eval_skips;
/* A due evaluation at progress p: the snapshot buffer [n] for the caller
 * to fill and submit; or NULL, at once, while the previous evaluation is
 * pending or running: this one is skipped (counted in *skips, p kept as
 * the latest progress). With wait (training.eval_wait) it waits until the
 * thread is idle instead and never skips. Only the caller submits, so an
 * idle thread stays idle until it does. One caller at a time. */
float *pd_eval_thread_begin(pd_eval_thread *et, bool wait, const pd_progress *p,
                            pd_eval_skips *skips);
/* evals_skipped at the end of a run at update last: the final evaluation
 * makes up for one skipped at the last update (a skip is a due evaluation
 * without a row). */
int64_t pd_eval_skips_total(const pd_eval_skips *skips, int64_t last);
/* The snapshot buffer once the thread is idle (its pending evaluation is
 * done), waiting for it. */
float *pd_eval_thread_acquire(pd_eval_thread *et);
/* Evaluate the filled snapshot as progress p (p->grad is ignored;
 * p->grad_norms, at most 2 PD_MAX_HIDDEN + 4 of them, is copied). */
void pd_eval_thread_submit(pd_eval_thread *et, const pd_progress *p);
/* Latest progress, for the status heartbeat. */
void pd_eval_thread_progress(pd_eval_thread *et, const pd_progress *p);
/* Early stopping has fired. */
bool pd_eval_thread_should_stop(pd_eval_thread *et);
/* First error the thread hit (and its message), or PD_OK. */
int pd_eval_thread_error(pd_eval_thread *et);
/* Finish pending work, stop and free; returns the thread's first error. */
int pd_eval_thread_stop(pd_eval_thread **et);

#endif
