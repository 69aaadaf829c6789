/* Batch methods: nonlinear conjugate gradient, BFGS and L-BFGS over a
 * full-batch objective (Goodfellow, Bengio and Courville, Deep Learning,
 * Algorithms 8.9 and 8.10; Nocedal and Wright, Numerical Optimization,
 * ch. 3, 5.2, 6.1 and 7.2). The minimizer sees an objective as a callback
 * that gives f and its gradient at a point: it knows no model and no MPI,
 * so the serial and the sync driver (src/batch/driver.c) run the same code.
 *
 * One iteration: a search direction d (cg: -g + beta d with Polak-Ribiere
 * PR+ or Fletcher-Reeves beta; bfgs: -H g with the inverse-Hessian update;
 * lbfgs: the two-loop recursion over the last `history` pairs), then a line
 * search for a step a along d satisfying the strong Wolfe conditions
 *   f(x + a d) <= f(x) + c1 a g.d,   |g(x + a d).d| <= c2 |g.d|
 * (c1 = 1e-4; c2 = 0.1 for cg, 0.9 for bfgs and lbfgs) by bracketing and
 * zoom with cubic interpolation (N&W Algorithms 3.5 and 3.6). When that
 * search fails (PD_BATCH_WOLFE_EVALS evaluations without a Wolfe point),
 * backtracking from the same first trial halves the step until the Armijo
 * (first) condition holds. A direction that is not a descent direction, or
 * a failed search along a quasi-Newton or conjugate direction, restarts
 * from -g with the memory cleared. Every evaluation of f and g is counted.
 *
 * Points are float (the model's parameters): a trial point is x + a d
 * computed in double and rounded once. f, gradients, directions and the
 * quasi-Newton memory are double. A dot product or norm over n coordinates
 * is the sum, in order, of PD_BATCH_SLICES partial sums over the slices
 * [j n / 64, (j+1) n / 64), each taken in index order (with n <= 64, the
 * plain sum in index order), so a run is bit-reproducible.
 *
 * Several processes (the S servers of a sync job, pd_batch_comm) can run
 * one minimization together: each holds the part [lo, hi) of every vector
 * that pd_batch_part_range gives it (whole slices), computes its slices'
 * partial sums and the parts exchange them (each slice's sum comes from one
 * part, so the exchange adds exact zeros); every part then adds the same
 * 64 numbers in the same order, takes the same decisions, and the result
 * is the one-process result to the bit. bfgs's n x n matrix is not split:
 * it runs on one part only. Coordinate descent for least squares (cd) is
 * at the end.
 */
#ifndef PARAMD_BATCH_H
#define PARAMD_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"

#define PD_BATCH_C1 1e-4
#define PD_BATCH_WOLFE_EVALS 25    /* evaluations of one strong Wolfe search */
#define PD_BATCH_ARMIJO_EVALS 40   /* halvings of the backtracking fallback */
#define PD_BATCH_SLICES 64         /* partial sums of a dot product; the most parts */

/* How the parts of one minimization talk (NULL or parts 1: one process).
 * Both callbacks are collective over the parts. */
typedef struct pd_batch_comm {
    int parts, part;               /* P >= 1 and this part, 0 <= part < P */
    void *ctx;
    /* v[len] summed elementwise over the parts, the result on every part;
     * each entry is nonzero on at most one part, so the sum is exact */
    int (*sum)(void *ctx, double *v, size_t len);
    /* v[len] from part root to every part (cd) */
    int (*bcast)(void *ctx, double *v, size_t len, int root);
} pd_batch_comm;

/* The coordinates [*lo, *hi) of n that part `part` of `parts` holds in
 * pd_batch_minimize: the slices [part 64 / P, (part+1) 64 / P). Local. */
void pd_batch_part_range(size_t n, int parts, int part, size_t *lo, size_t *hi);

/* cd's split of p coordinates in blocks of block_size (the last one
 * shorter): part `part` holds the blocks [part B / P, (part+1) B / P), the
 * coordinates [*lo, *hi). Local. */
void pd_batch_cd_range(size_t p, size_t block_size, int parts, int part, size_t *lo, size_t *hi);

/* f(x) into *f and its gradient into g[n] (overwritten). A non-finite f
 * is not an error: the line search steps back. An error code stops the
 * minimizer and is returned. */
typedef int (*pd_batch_fg)(void *ctx, const float *x, double *f, double *g);

typedef struct pd_batch_opts {
    pd_optimizer_name method;      /* PD_OPT_CG, PD_OPT_BFGS or PD_OPT_LBFGS */
    pd_cg_variant cg_variant;
    int history;                   /* lbfgs pairs, >= 1 */
    double step0;                  /* first trial step of a search along -g,
                                      scaled by min(1, 1/|g|) (optimizer.lr) */
    double grad_tol;               /* stop when |g| <= grad_tol */
    double loss_tol;               /* stop when (f_old - f) <= loss_tol max(|f_old|, tiny) */
    int64_t max_iterations;        /* >= 1 */
    size_t block_size;             /* cd: coordinates minimized together, >= 1 */
    bool random_blocks;            /* cd: blocks in a fresh random order each cycle */
    uint64_t seed;                 /* cd: that order's stream (seed, PD_STREAM_CD) */
    const pd_batch_comm *comm;     /* several parts (not bfgs), or NULL */
    /* Resume: the bytes pd_batch_save wrote (this part's), and the file
     * they came from for messages; x holds the point they go with. NULL:
     * start from x. */
    const unsigned char *resume;
    size_t resume_size;
    const char *resume_name;
} pd_batch_opts;

/* What the report callback sees after the starting point (iteration 0) and
 * after each iteration. x and g are the minimizer's buffers: valid during
 * the call only; with several parts, this part's coordinates [lo, hi)
 * (cd: x is every coordinate). */
typedef struct pd_batch_state {
    int64_t iteration;
    int64_t evaluations;           /* all so far, the starting point's included */
    int line_search_steps;         /* evaluations of this iteration's search */
    bool armijo;                   /* the Wolfe search failed; backtracking stepped */
    bool restarted;                /* the direction was reset to -g */
    double f, gnorm, step;         /* step: the accepted a (0 at iteration 0) */
    const float *x;
    const double *g;               /* NULL for cd */
    /* The state was just loaded from o->resume: the iteration the saved
     * run reported last (and wrote its row for); nothing new happened. */
    bool resumed;
    const struct pd_batch_run *run;   /* the minimizer, for pd_batch_save */
} pd_batch_state;

/* The minimizer's whole state as the report callback sees it (the
 * iteration boundary): counters, f, the previous f, the gradient, the
 * direction, the quasi-Newton memory (lbfgs pairs, bfgs matrix), or cd's
 * w, its part of Gw, block order and random stream; not the point (x,
 * which the caller keeps). Bytes: little-endian u64 words (doubles as bit
 * patterns), starting with a header of the method, its settings and this
 * part's coordinates, which a resume must match. pd_batch_save_size gives
 * the size, pd_batch_save writes it into buf[size]. Local. */
size_t pd_batch_save_size(const pd_batch_state *st);
int pd_batch_save(const pd_batch_state *st, unsigned char *buf, size_t size);

/* Whether o->resume's header matches o (the method, its settings, the
 * parts) and this part's coordinates [off, off + n) of N (cd: the rows of
 * G it holds), before anything runs: PD_EINPUT naming o->resume_name and
 * what differs. The rest is checked when the minimizer loads it. Local. */
int pd_batch_resume_check(const pd_batch_opts *o, size_t N, size_t off, size_t n);

/* Called after each iteration (and once after a resume, st->resumed);
 * setting *stop ends the run ("stopped"). */
typedef int (*pd_batch_report)(void *ctx, const pd_batch_state *st, bool *stop);

typedef struct pd_batch_result {
    int64_t iterations, evaluations;
    double f, gnorm;
    /* "gradient_norm", "relative_decrease", "max_iterations",
     * "line_search_failed" (no step along -g lowers f: at float precision,
     * the end), or "stopped" (by the report) */
    const char *reason;
} pd_batch_result;

/* Minimize from x (updated in place to the last accepted point) with
 * method o->method. n counts every coordinate; x, and the gradient fg
 * fills, hold the part's coordinates [lo, hi) (pd_batch_part_range; all n
 * without o->comm), and f is the whole objective on every part. bfgs
 * allocates n * n doubles and refuses o->comm with several parts. Local,
 * or collective over the parts; allocates once. */
int pd_batch_minimize(const pd_batch_opts *o, size_t n, float *x, pd_batch_fg fg,
                      pd_batch_report report, void *ctx, pd_batch_result *res);

/* Coordinate descent (cd) for least squares with an L2 penalty on the
 * weights: with z = (x, 1) (the features, then 1 for the bias, in the
 * linreg model's parameter order w[D], b), the mean loss over m examples
 *   f(w) = (w'Gw - 2 c'w + yy) / (2m) + l2/2 sum_{j < D} w_j^2,
 *   G = sum z z', c = sum y z, yy = sum y^2,
 * is a quadratic known from these sufficient statistics. Each iteration is
 * one cycle over blocks of block_size consecutive coordinates (in order, or
 * in a random order drawn anew each cycle); each block is set to its exact
 * minimizer given the others (a Cholesky solve of the block's Hessian
 * G_BB / m + l2 I, Gw kept up to date). No evaluation of the data after
 * the statistics: `evaluations` stays 1. Stops as pd_batch_minimize does
 * (no line search). */
typedef struct pd_cd_problem {
    size_t p;                      /* coordinates: D weights, then the bias */
    size_t m;                      /* examples */
    const double *gram;            /* G, packed upper triangle [p (p + 1) / 2], or NULL: */
    const double *rows;            /* with several parts: G's rows [row_lo, row_hi), */
    size_t row_lo, row_hi;         /* the part's coordinates, whole [(row_hi - row_lo) p] */
    const double *zy;              /* c [p] */
    double yy;
    double l2;                     /* on the weights, not the bias */
} pd_cd_problem;

/* Where G[i][j], i <= j, sits in the packed upper triangle (row-major). */
size_t pd_cd_packed_index(size_t p, size_t i, size_t j);

/* f(w) of the problem (NAN if out of memory). Local. */
double pd_cd_loss(const pd_cd_problem *pr, const double *w);

/* Solve the k x k system A x = b in place (A symmetric positive definite,
 * row-major, overwritten by its Cholesky factor; b by x). False when A is
 * not positive definite. Local. */
bool pd_batch_cholesky_solve(double *A, double *b, size_t k);

/* Minimize from x[p] (updated after each cycle). A block whose Hessian is
 * singular (l2 = 0 and a feature that is always 0) is PD_ETRAIN. Local;
 * with o->comm, collective over the parts: each holds G's rows of its
 * blocks (pd_batch_cd_range, pr->rows), solves its blocks when their turn
 * comes and sends the step to the others, and keeps q = Gw on its rows;
 * w and the objective are the one-process ones to the bit. */
int pd_batch_cd(const pd_batch_opts *o, const pd_cd_problem *pr, float *x,
                pd_batch_report report, void *ctx, pd_batch_result *res);

#endif
