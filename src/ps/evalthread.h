/* Private to ps: server 0's evaluation thread (see evalthread.c). */
#ifndef PARAMD_PS_EVALTHREAD_H
#define PARAMD_PS_EVALTHREAD_H

#include <stdbool.h>
#include <stddef.h>

#include "train.h"

typedef struct pd_eval_thread pd_eval_thread;

/* Start the thread for parameters of n floats. ev stays owned by the caller
 * and must outlive the thread. */
int pd_eval_thread_start(pd_evaluator *ev, size_t n, pd_eval_thread **out);
/* The snapshot buffer [n] for the caller to fill when the thread is idle;
 * NULL, at once, while an evaluation is pending or running (the caller
 * skips this one: serving threads never wait for an evaluation). Only
 * the caller submits, so an idle thread stays idle until it does. */
float *pd_eval_thread_try_acquire(pd_eval_thread *et);
/* The same, waiting until the thread is idle (training.eval_wait). */
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
