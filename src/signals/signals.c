/* The handlers only store into volatile sig_atomic_t (C11 7.14.1.1): the
 * first stop signal's number, and a count of SIGUSR1 that the one
 * checkpointing thread compares with the count it has served. Nothing
 * else happens in a handler, so nothing in paramd runs in signal context. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/signals.h"

static volatile sig_atomic_t stop_sig;     /* 0 until a stop signal */
static volatile sig_atomic_t usr1_count;   /* written only by on_usr1 */
static sig_atomic_t usr1_served;           /* the checkpointing thread's */

static void on_stop(int sig)
{
    if (!stop_sig)
        stop_sig = sig;
}

/* While this handler runs SIGUSR1 is blocked (no SA_NODEFER), so it is the
 * only writer of usr1_count and the increment cannot be torn. */
static void on_usr1(int sig)
{
    (void)sig;
    usr1_count = usr1_count + 1;
}

int pd_signals_install(void)
{
    static const int stops[] = {SIGTERM, SIGINT, SIGUSR2};
    stop_sig = 0;
    usr1_served = usr1_count;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop;
    for (size_t i = 0; i < sizeof stops / sizeof *stops; i++)
        if (sigaction(stops[i], &sa, NULL) != 0)
            return PD_FAIL(PD_EIO, "cannot handle %s: %s", pd_signals_name(stops[i]),
                           strerror(errno));
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        return PD_FAIL(PD_EIO, "cannot handle SIGUSR1: %s", strerror(errno));
    return PD_OK;
}

int pd_signals_stop(void) { return stop_sig; }

bool pd_signals_take_checkpoint(void)
{
    sig_atomic_t seen = usr1_count;
    if (seen == usr1_served)
        return false;
    usr1_served = seen;
    return true;
}

const char *pd_signals_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    default: return "signal";
    }
}
