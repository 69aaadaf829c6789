/* Private to ps: the serial trainer (training.mode serial). */
#ifndef PARAMD_PS_SERIAL_H
#define PARAMD_PS_SERIAL_H

#include "paramd/config.h"
#include "paramd/ps.h"

/* Train in this process and write the run directory. Local. */
int pd_serial_run(const pd_config *cfg, const pd_run_opts *opts);

#endif
