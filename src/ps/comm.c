/* MPI plumbing for ps: checked calls, the job's layout, and waits that
 * sleep instead of spinning (Open MPI's blocking calls busy-poll, which
 * steals a core from a computing rank when the job is oversubscribed). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "comm.h"
#include "train.h"
#include "paramd/ps.h"

int pd_mpi_fail(int rc, const char *call, const char *file, int line, const char *func)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error %d", rc);
    return pd_err_set(PD_EMPI, file, line, func, "%s failed: %s", call, msg);
}

void pd_server_range(size_t n, int servers, int s, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)s / (size_t)servers;
    *hi = n * (size_t)(s + 1) / (size_t)servers;
}

double pd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double pd_cpu_process(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

double pd_cpu_thread(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sleep an eighth of the time waited so far, between 4 us and 1 ms: a
 * reply that is microseconds away is caught within microseconds, a wait
 * overshoots by at most about 12%, and a long wait costs one MPI_Test per
 * millisecond (a few percent of a core at most). */
void pd_backoff_sleep(pd_backoff *b)
{
    double t = pd_now();
    if (b->since == 0)
        b->since = t;
    double us = (t - b->since) * 1e6 / 8;
    us = us < 4 ? 4 : us > 1000 ? 1000 : us;
    struct timespec ts = {0, (long)(us * 1000)};
    nanosleep(&ts, NULL);
}

int pd_sleep_s(double s)
{
    if (!(s > 0))   /* NaN too */
        return 0;
    if (s >= 1e9)
        return EINVAL;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    if (ts.tv_nsec > 999999999L)
        ts.tv_nsec = 999999999L;
    /* Resume after a signal; any other failure (EINVAL) ends the sleep
     * instead of retrying it forever. */
    while (nanosleep(&ts, &ts) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

int pd_comm_wait(MPI_Request *req, MPI_Status *st)
{
    pd_backoff b = {0};
    for (;;) {
        int done = 0;
        PD_MPI(MPI_Test(req, &done, st ? st : MPI_STATUS_IGNORE));
        if (done)
            return PD_OK;
        pd_backoff_sleep(&b);
    }
}

int pd_comm_waitall(int n, MPI_Request *reqs)
{
    bool expired;
    return pd_comm_waitall_until(n, reqs, INFINITY, &expired);
}

int pd_comm_waitall_until(int n, MPI_Request *reqs, double until, bool *expired)
{
    pd_backoff b = {0};
    *expired = false;
    for (;;) {
        int done = 0;
        PD_MPI(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE));
        if (done)
            return PD_OK;
        if (until < INFINITY && pd_now() >= until) {
            *expired = true;
            return PD_OK;
        }
        pd_backoff_sleep(&b);
    }
}

int pd_comm_waitany(int n, MPI_Request *reqs, int *index, MPI_Status *st,
                    const _Atomic bool *give_up, double until)
{
    pd_backoff b = {0};
    for (;;) {
        int done = 0;
        PD_MPI(MPI_Testany(n, reqs, index, &done, st));
        if (done && *index != MPI_UNDEFINED)
            return PD_OK;
        if (done)   /* every request is inactive: nothing can arrive */
            return PD_FAIL(PD_EMPI, "waiting on no active request");
        if (give_up && atomic_load(give_up)) {
            *index = -1;
            return PD_OK;
        }
        if (until < INFINITY && pd_now() >= until) {
            *index = -2;
            return PD_OK;
        }
        pd_backoff_sleep(&b);
    }
}

bool pd_comm_recovery(void)
{
    const char *v = getenv("OMPI_MCA_orte_enable_recovery");
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static int env_int(const char *const *names, int fallback)
{
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v)
            return atoi(v);
    }
    return fallback;
}

/* mpirun sets OMPI_COMM_WORLD_*; srun --mpi=pmix sets PMIX_RANK and, for
 * the step, SLURM_STEP_NUM_TASKS (SLURM_NTASKS alone would also be seen by
 * a plain process inside a batch script, so it is not used). */
void pd_ps_launch_env(int *rank, int *size)
{
    static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", NULL};
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
    static const char *const steps[] = {"SLURM_STEP_NUM_TASKS", NULL};
    *rank = env_int(ranks, 0);
    *size = env_int(sizes, 0);
    if (*size == 0)
        *size = getenv("PMIX_RANK") ? env_int(steps, 1) : 1;
}

void pd_ps_exit_together(void)
{
    int up = 0;
    if (MPI_Initialized(&up) != MPI_SUCCESS || (!up && MPI_Init(NULL, NULL) != MPI_SUCCESS))
        return;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Request r;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &r) == MPI_SUCCESS)
        (void)pd_comm_wait(&r, NULL);
    MPI_Finalize();
}

const char *pd_ps_mpi_version(void)
{
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (MPI_Get_library_version(buf, &len) != MPI_SUCCESS)
        return "unknown";
    buf[strcspn(buf, ",\n")] = '\0';
    return buf;
}

/* Collective on MPI_COMM_WORLD: every rank learns the lowest failing rank's
 * error code; only that rank keeps its message. */
int pd_comm_agree(pd_world *w, int err)
{
    int in[2] = {err ? w->rank : 1 << 30, err}, outv[2];
    if (MPI_Allreduce(in, outv, 1, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD) != MPI_SUCCESS)
        return err ? err : PD_FAIL(PD_EMPI, "MPI_Allreduce failed while agreeing on errors");
    if (outv[0] == 1 << 30)
        return PD_OK;
    w->setup_failed = true;
    if (outv[0] != w->rank)
        pd_err_clear();
    return outv[1];
}


int pd_comm_recv_bytes_until(int src, int tag, double until, unsigned char **buf, size_t *size,
                             bool *expired)
{
    pd_backoff b = {0};
    MPI_Status st;
    double span = until - pd_now();
    *buf = NULL;
    *expired = false;
    for (;;) {
        int got = 0;
        PD_MPI(MPI_Iprobe(src, tag, MPI_COMM_WORLD, &got, &st));
        if (got)
            break;
        if (pd_now() >= until) {
            *expired = true;
            return PD_OK;
        }
        pd_backoff_sleep(&b);
    }
    int n = 0;
    PD_MPI(MPI_Get_count(&st, MPI_BYTE, &n));
    unsigned char *p = pd_malloc((size_t)n + 1);
    if (!p)
        return PD_ENOMEM;
    /* Matched by its envelope; a large payload still has to move (as long
     * again). */
    MPI_Request r;
    int rc = MPI_Irecv(p, n, MPI_BYTE, src, tag, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) {
        free(p);
        return pd_mpi_fail(rc, "MPI_Irecv", __FILE__, __LINE__, __func__);
    }
    int err = pd_comm_waitall_until(1, &r, pd_now() + span, expired);
    if (err != PD_OK || *expired) {
        (void)MPI_Cancel(&r);
        (void)MPI_Request_free(&r);
        free(p);
        return err;
    }
    *buf = p;
    *size = (size_t)n;
    return PD_OK;
}

int pd_comm_recv_bytes(int src, int tag, unsigned char **buf, size_t *size)
{
    bool expired;
    return pd_comm_recv_bytes_until(src, tag, INFINITY, buf, size, &expired);
}
