/* Private to ps: a straggler's pacing (faults.slow_workers). A worker with
 * factor F produces gradients at 1/F of the rate of an unslowed worker,
 * whatever the mix of compute and communication: each cycle (gradient,
 * exchange with the servers) is padded with a sleep so that it lasts F
 * times the unslowed cycle time. The servers measure that time on the
 * workers that are not slowed (the mean of each one's last PD_PACE_WINDOW
 * cycles, averaged over them; pd_cycles) and send it in every reply to a
 * slowed worker; with no unslowed worker, and in the round modes (sync,
 * local_sgd), the worker's own recent cycles are the measure: in a round
 * the straggler arrives last and its cycle is the round's, while the
 * waiting workers' cycles carry the wake-up lag of their back-off sleeps,
 * which grows with the pad (factor 4 gave 13x, measured). In the other
 * modes not the worker's own time, because a worker that
 * sleeps is not the worker it was: its wake-ups run on cold caches, and
 * where the servers are the bottleneck the others speed up while it
 * sleeps (on softmax both made its own cycle 1.5-2x theirs, measured).
 * A cycle's time leaves out the time a server held the request for other
 * workers (a sync round, an SSP wait), which is not the worker's: left in,
 * two stragglers in one round would pad on each other's pads without end.
 * The pad is the cycle's budget F x unslowed, minus the worker's expected
 * unpadded time (the median of its recent cycles), plus the debt: the
 * budgets so far minus the time the cycles took (a sleep overshoots on a
 * loaded machine, the expectation errs), so the time taken in all is the
 * budget in all; the debt is kept within +-PD_PACE_DEBT budgets. Under
 * faults.slow_basis: compute the pad is (F - 1) times the cycle's compute
 * time. Pure arithmetic on times the caller measures: no clock, no MPI. */
#ifndef PARAMD_PS_PACE_H
#define PARAMD_PS_PACE_H

#include <stdbool.h>

#define PD_PACE_WINDOW 32
#define PD_PACE_DEBT 16

/* The last PD_PACE_WINDOW cycle times. */
typedef struct pd_cycles {
    double t[PD_PACE_WINDOW];
    int n;                         /* added so far (the window holds min(n, W)) */
} pd_cycles;

void pd_cycles_add(pd_cycles *c, double t);
double pd_cycles_mean(const pd_cycles *c);     /* 0 when empty */
double pd_cycles_median(const pd_cycles *c);   /* 0 when empty */

typedef struct pd_pace {
    double factor;                 /* >= 1; 1: never pads */
    bool compute_only;             /* faults.slow_basis: compute */
    pd_cycles own;                 /* this worker's cycles, sleep and holds left out */
    double budget;                 /* this cycle's (pd_pace_pad) */
    double debt;                   /* budgets so far minus the time they took */
} pd_pace;

void pd_pace_init(pd_pace *p, double factor, bool compute_only);
/* The sleep before this cycle's request goes out, given its compute time
 * and the unslowed cycle time from the servers (0: not known; the
 * worker's own median is used). Never negative. */
double pd_pace_pad(pd_pace *p, double compute_s, double unslowed_s);
/* The cycle ended: its wall time, the time it slept (measured), the time a
 * server held its request (the longest over the servers). */
void pd_pace_cycle(pd_pace *p, double cycle_s, double slept_s, double held_s);

#endif
