/* Signals a run obeys: stop with a checkpoint, or checkpoint and go on.
 * The handlers only record what arrived (volatile sig_atomic_t flags); the
 * trainer reads them between steps, so a signal never interrupts a step, a
 * message or a file being written. README "Checkpoints and failures" says
 * what each rank does.
 *
 *   SIGTERM, SIGINT, SIGUSR2  stop: finish the current step, write one
 *                             checkpoint, exit 143. The first one counts;
 *                             later ones change nothing (Slurm and mpirun
 *                             both pass a job's SIGTERM on to its ranks, so
 *                             a rank often gets it twice). SIGKILL is the
 *                             hard stop. SIGUSR2 is there because mpirun
 *                             forwards it at once, where it delays SIGTERM.
 *   SIGUSR1                   checkpoint at the end of the current step and
 *                             go on (several before that step: one).
 */
#ifndef PARAMD_SIGNALS_H
#define PARAMD_SIGNALS_H

#include <stdbool.h>

/* Install the handlers (sigaction, SA_RESTART) for the signals above and
 * forget earlier arrivals. Call once in the main thread before any other
 * thread starts. Local. Returns PD_OK or PD_EIO naming the signal. */
int pd_signals_install(void);

/* The stop signal that arrived first (SIGTERM, SIGINT or SIGUSR2), or 0.
 * Any thread. */
int pd_signals_stop(void);

/* Whether SIGUSR1 arrived since the last call that returned true. Call it
 * from one thread only (the one that writes checkpoints). */
bool pd_signals_take_checkpoint(void);

/* "SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", else "signal". Local. */
const char *pd_signals_name(int sig);

#endif
