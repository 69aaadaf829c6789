/* Server 0 evaluates on a snapshot in a thread of its own, so updates go
 * on while the held-out and test sets are scored. The thread also rewrites
 * status.json every couple of seconds from the latest progress. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evalthread.h"
#include "paramd/error.h"

struct pd_eval_thread {
    pd_evaluator *ev;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    float *snap;                  /* [n] parameters being evaluated */
    double gnorm[PD_MAX_TENSORS];   /* the job's gradient norms */
    pd_progress job, latest;      /* what to evaluate; latest progress */
    bool pending, busy, quit, stop;
    int err;                      /* first error of the thread */
    char errmsg[1024];
};

static void *run(void *arg)
{
    pd_eval_thread *et = arg;
    pthread_mutex_lock(&et->mu);
    while (!et->quit || et->pending) {
        if (!et->pending) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 2;
            int rc = pthread_cond_timedwait(&et->cv, &et->mu, &ts);
            if (rc == ETIMEDOUT && !et->pending && !et->quit && !et->err) {
                pd_progress p = et->latest;
                pthread_mutex_unlock(&et->mu);
                int err = pd_evaluator_heartbeat(et->ev, &p);
                pthread_mutex_lock(&et->mu);
                if (err && !et->err) {
                    et->err = err;
                    snprintf(et->errmsg, sizeof et->errmsg, "%s", pd_err_msg());
                }
            }
            continue;
        }
        et->pending = false;
        et->busy = true;
        pd_progress p = et->job;
        pthread_mutex_unlock(&et->mu);
        bool stop = false;
        int err = pd_evaluator_eval(et->ev, et->snap, &p, &stop);
        pthread_mutex_lock(&et->mu);
        et->busy = false;
        et->stop = et->stop || stop;
        if (err && !et->err) {
            et->err = err;
            snprintf(et->errmsg, sizeof et->errmsg, "%s", pd_err_msg());
        }
        pthread_cond_broadcast(&et->cv);   /* pd_eval_thread_acquire */
    }
    pthread_mutex_unlock(&et->mu);
    return NULL;
}

int pd_eval_thread_start(pd_evaluator *ev, size_t n, pd_eval_thread **out)
{
    *out = NULL;
    pd_eval_thread *et = pd_calloc(1, sizeof *et);
    if (!et)
        return PD_ENOMEM;
    et->ev = ev;
    et->snap = pd_malloc(n * sizeof *et->snap);
    if (!et->snap) {
        free(et);
        return PD_ENOMEM;
    }
    pthread_mutex_init(&et->mu, NULL);
    pthread_cond_init(&et->cv, NULL);
    if (pthread_create(&et->thread, NULL, run, et) != 0) {
        pthread_cond_destroy(&et->cv);
        pthread_mutex_destroy(&et->mu);
        free(et->snap);
        free(et);
        return PD_FAIL(PD_ENOMEM, "cannot start the evaluation thread");
    }
    *out = et;
    return PD_OK;
}

float *pd_eval_thread_acquire(pd_eval_thread *et)
{
    pthread_mutex_lock(&et->mu);
    while (et->pending || et->busy)
        pthread_cond_wait(&et->cv, &et->mu);
    pthread_mutex_unlock(&et->mu);
    return et->snap;
}

static float *try_acquire(pd_eval_thread *et)
{
    pthread_mutex_lock(&et->mu);
    bool idle = !et->pending && !et->busy;
    pthread_mutex_unlock(&et->mu);
    return idle ? et->snap : NULL;
}

float *pd_eval_thread_begin(pd_eval_thread *et, bool wait, const pd_progress *p,
                            pd_eval_skips *skips)
{
    float *snap = wait ? pd_eval_thread_acquire(et) : try_acquire(et);
    if (!snap) {
        skips->count++;
        skips->at = p->update;
        pd_eval_thread_progress(et, p);
    }
    return snap;
}

int64_t pd_eval_skips_total(const pd_eval_skips *skips, int64_t last)
{
    return skips->count - (skips->at == last);
}

void pd_eval_thread_submit(pd_eval_thread *et, const pd_progress *p)
{
    pthread_mutex_lock(&et->mu);
    et->job = *p;
    et->job.grad = NULL;
    if (p->grad_norms) {   /* the caller's array changes after this returns */
        memcpy(et->gnorm, p->grad_norms, sizeof et->gnorm);
        et->job.grad_norms = et->gnorm;
    }
    et->latest = et->job;
    et->pending = true;
    pthread_cond_broadcast(&et->cv);
    pthread_mutex_unlock(&et->mu);
}

void pd_eval_thread_progress(pd_eval_thread *et, const pd_progress *p)
{
    pthread_mutex_lock(&et->mu);
    et->latest = *p;
    et->latest.grad = NULL;
    et->latest.grad_norms = NULL;
    pthread_mutex_unlock(&et->mu);
}

bool pd_eval_thread_should_stop(pd_eval_thread *et)
{
    pthread_mutex_lock(&et->mu);
    bool stop = et->stop;
    pthread_mutex_unlock(&et->mu);
    return stop;
}

int pd_eval_thread_error(pd_eval_thread *et)
{
    pthread_mutex_lock(&et->mu);
    int err = et->err;
    if (err)
        PD_FAIL(err, "%s", et->errmsg);
    pthread_mutex_unlock(&et->mu);
    return err;
}

int pd_eval_thread_stop(pd_eval_thread **pet)
{
    pd_eval_thread *et = pet ? *pet : NULL;
    if (!et)
        return PD_OK;
    pthread_mutex_lock(&et->mu);
    et->quit = true;
    pthread_cond_broadcast(&et->cv);
    pthread_mutex_unlock(&et->mu);
    pthread_join(et->thread, NULL);
    int err = et->err;
    if (err)
        PD_FAIL(err, "%s", et->errmsg);
    pthread_cond_destroy(&et->cv);
    pthread_mutex_destroy(&et->mu);
    free(et->snap);
    free(et);
    *pet = NULL;
    return err;
}
