/* The run directory (docs/design.md, "The run directory"): metrics.jsonl,
 * status.json, summary.json, params.bin, written by server 0 (or the
 * serial trainer). Files that readers may see mid-run (status.json,
 * summary.json, params.bin) are replaced atomically: temp file, fsync,
 * rename. Also SHA-256, used for params_sha256 and checkpoints.
 */
#ifndef PARAMD_METRICS_H
#define PARAMD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* SHA-256 (FIPS 180-4), incremental. */
typedef struct pd_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t fill;
} pd_sha256;
void pd_sha256_init(pd_sha256 *c);
void pd_sha256_update(pd_sha256 *c, const void *data, size_t n);
void pd_sha256_final(pd_sha256 *c, uint8_t digest[32]);
/* Lower-case hex of the SHA-256 of data: hex[65] (NUL-terminated). */
void pd_sha256_hex(const void *data, size_t n, char hex[65]);

/* mkdir -p. Local. */
int pd_mkdir_p(const char *path);
/* Write buf to path atomically: path.tmp.PID, fsync, rename, fsync of the
 * directory. On failure the temporary file is removed and the message
 * names path and errno. Local. */
int pd_write_atomic(const char *path, const void *buf, size_t n);
/* fsync the directory that holds path (after a rename into it). Local. */
int pd_fsync_dir(const char *path);
/* write() all n bytes, retrying on EINTR and short writes: 0 or an errno. */
int pd_write_all(int fd, const void *buf, size_t n);

/* s as a JSON string, quoted and escaped (NULL as ""). Local. */
void pd_metrics_json_string(FILE *f, const char *s);
/* v as a JSON number of `digits` significant digits (%.*g), or null when
 * it is NAN or infinite. Local. */
void pd_metrics_json_number(FILE *f, double v, int digits);

/* A worker the servers stopped waiting for (training.worker_timeout): its
 * index, MPI rank, the server's update when its last message arrived, and
 * the update and wall time when it was counted lost. Its shard is
 * untrained from then on, until it rejoins: a --resume of the run brings
 * it back at update `rejoined` (-1: it has not). */
typedef struct pd_lost_worker {
    int worker, rank;
    int64_t last_update;
    int64_t update;
    double wall_s;
    int64_t rejoined;
} pd_lost_worker;

/* One evaluation: a line of metrics.jsonl. NAN doubles and negative
 * counts are written as null. */
typedef struct pd_metrics_row {
    double wall_s;
    int64_t update;
    double epoch;              /* fractional epochs of the training part */
    int64_t examples;          /* training examples consumed so far */
    double lr;
    double train_loss;         /* mean minibatch loss since the last row */
    double valid_loss, valid_acc;
    double test_loss, test_acc;
    double staleness_mean;
    int64_t staleness_max;
    int64_t dropped;
    /* batch methods (written only when evaluations > 0): function and
     * gradient evaluations so far, and those of this row's line search */
    int64_t evaluations, line_search_steps;
    size_t ntensors;           /* per-tensor norms (0 = none) */
    const char *const *tensor_names;
    const double *param_norms;
    const double *grad_norms;
    const pd_lost_worker *lost;    /* workers lost so far (n_lost; 0: the key is left out) */
    size_t n_lost;
    /* training.phases: the phase this row belongs to and its mode
     * (phase_mode NULL: the run has no phases, neither is written) */
    int phase;
    const char *phase_mode;
} pd_metrics_row;

/* One phase of a run with training.phases, as summary.json's "phases"
 * lists it: its updates [first_update, last_update], and what it sent,
 * applied, dropped and found bad (sent = applied + dropped + bad). */
typedef struct pd_phase_summary {
    int index;
    const char *mode, *exit;
    int64_t first_update, last_update;
    double epochs, wall_s;         /* this phase's */
    int64_t sent, applied, dropped, bad;
    double staleness_mean;         /* of its applied gradients */
    double valid_loss, valid_acc, test_loss, test_acc;   /* at its last update */
} pd_phase_summary;

/* One worker's gradients as server 0 saw them. */
typedef struct pd_worker_stats {
    int rank;
    int64_t applied, dropped;
    double staleness_mean;
    double grads_per_s;        /* between its first and last request; NAN if < 2 */
    double epochs;             /* of its shard it trained on */
    int64_t lost_update;       /* update at which it was lost, -1 if not */
} pd_worker_stats;
#define PD_MAX_WORKER_STATS 256

typedef struct pd_summary {
    const char *mode, *optimizer, *exit;   /* exit: "done", "early_stopped", ... */
    int workers, servers;
    int64_t updates;
    double epochs, wall_s, examples_per_s;
    double test_loss, test_acc, valid_loss, valid_acc;
    char params_sha256[65];
    int64_t dropped;                       /* = the three below; -1 where not counted */
    int64_t dropped_stale, dropped_late, dropped_at_stop;
    double staleness_mean;
    int64_t staleness_max;
    const int64_t *staleness_hist;         /* counts of staleness 0..n-1 */
    size_t staleness_hist_n;
    int64_t best_update;                   /* early stopping: -1 if unused */
    int64_t applied, sent, bad;            /* gradients; -1 where not counted:
                                              sent = applied + dropped + bad */
    double server_cpu_s;                   /* NAN where it does not apply */
    double server_loop_cpu_s;              /* serving threads only; NAN likewise */
    int64_t params_sent_floats;            /* server 0's replies; -1 where not counted */
    int64_t evals_skipped;                 /* evaluations due while one still ran
                                              (skipped, never waited for) */
    const pd_worker_stats *workers_stats;  /* per worker (n_workers_stats), or NULL */
    const int64_t *server_applied, *server_bad, *server_dropped;   /* per server */
    const int64_t *server_applied_set;     /* per server: a fingerprint of which
                                              gradients it applied (equal sets, equal) */
    int n_servers_stats;                   /* 0: no per_server list */
    const pd_lost_worker *lost;            /* workers lost (n_lost) */
    size_t n_lost;
    int n_workers_stats;
    /* batch methods (written only when stop_reason is set): iterations,
     * function and gradient evaluations, and why they stopped */
    int64_t iterations, evaluations;
    const char *stop_reason;
    /* linreg (written when has_gap): (training loss - its minimum) / minimum */
    bool has_gap;
    double optimality_gap;
    int64_t ckpt_pauses;                   /* checkpoints written (the whole run) */
    double ckpt_pause_sum, ckpt_pause_max; /* seconds training paused for them */
    const pd_phase_summary *phases;        /* training.phases, in order (n_phases) */
    int n_phases;                          /* 0: no "phases" list */
} pd_summary;

typedef struct pd_metrics pd_metrics;

/* Open (creating) the run directory and create metrics.jsonl. A directory
 * that cannot be created or written is refused with PD_EINPUT; so is one
 * that already holds a run's results (summary.json, metrics.jsonl or
 * params.bin), with a message saying what to do, unless continuing (a
 * resume into the same directory, which starts metrics.jsonl afresh): a new
 * run never overwrites an earlier one. Local (server 0). */
int pd_metrics_open(const char *dir, bool continuing, pd_metrics **out);
void pd_metrics_close(pd_metrics **m);
const char *pd_metrics_dir(const pd_metrics *m);
/* Append one row to metrics.jsonl (one write(2), no stdio buffer). A row
 * that cannot be written is tried again a few times; if it still fails, the
 * file is cut back to its last whole row and PD_EIO names it and errno. */
int pd_metrics_append(pd_metrics *m, const pd_metrics_row *row);
/* Rewrite status.json atomically: {"phase":..,"update":..,...latest row}. */
int pd_metrics_status(pd_metrics *m, const char *phase, const pd_metrics_row *row);
/* Write params.bin (little-endian float32) atomically and its SHA-256 hex. */
int pd_metrics_write_params(pd_metrics *m, const float *theta, size_t n, char hex[65]);
/* Write summary.json atomically. */
int pd_metrics_summary(pd_metrics *m, const pd_summary *s);
/* Path of a file inside the run directory (buf of PD_PATH_MAX-ish). */
int pd_metrics_path(const pd_metrics *m, const char *name, char *buf, size_t size);

#endif
