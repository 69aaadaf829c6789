/* Using what was trained: params.json (the layout of params.bin, for
 * people, NumPy and PyTorch), `paramd --evaluate` and `--predict` on a run
 * directory, and reading a run's parameters to start from them
 * (--init-from). Reads a run directory; writes only evaluation.json and
 * predictions. Local: no MPI. */
#ifndef PARAMD_USE_H
#define PARAMD_USE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "paramd/config.h"
#include "paramd/data.h"
#include "paramd/model.h"

/* params.json for the model m trained on d under cfg: format, model type,
 * activation, features, classes, parameters; per tensor its name, shape
 * (rows, cols; [n] for vectors), dtype float32, byte order little and byte
 * offset in params.bin; the class names in order (and positive_class for
 * logreg/svm); the input normalization (shift and scale per feature). */
int pd_use_write_layout(const pd_config *cfg, const pd_model *m, const pd_data *d, FILE *out);

/* What a run directory's params.json says of its model's shape. */
typedef struct pd_use_layout {
    size_t features, classes, nparams;
} pd_use_layout;
/* PD_EINPUT naming the file when it is missing or not paramd's. */
int pd_use_read_layout(const char *run_dir, pd_use_layout *out);
/* run_dir/params.bin into theta[n]; PD_EINPUT when its size is not n
 * floats (saying by how much). */
int pd_use_read_params(const char *run_dir, float *theta, size_t n);

/* model.init_from (--init-from): theta[nparams of m] from run_dir's
 * params.bin, after checking that its params.json has the same model type
 * and the same tensors (names and shapes) as m; a difference is PD_EINPUT
 * naming it ("tensor 0 is W1 [8, 4] there, W1 [16, 4] here"). Local. */
int pd_use_init_from(const char *run_dir, const pd_config *cfg, const pd_model *m, float *theta);

typedef struct pd_use_opts {
    const char *run_dir;                 /* a finished run's directory */
    const char *const *overrides;        /* --set, data.* keys only */
    int n_overrides;
    const char *out_path;                /* --predict: CSV file, NULL = stdout */
} pd_use_opts;

/* --evaluate: the run's model (config.resolved.yaml, params.bin, or when
 * there is none the newest valid checkpoint, as --resume finds it) on its
 * test file (or data.test given with --set): loss, accuracy and confusion
 * matrix (RMSE for linreg; precision, recall and AUC for logreg/svm)
 * printed to out and written to run_dir/evaluation.json. A model that does
 * not fit the data is PD_EINPUT saying which and by how much. */
int pd_use_evaluate(const pd_use_opts *o, FILE *out);
/* --predict: one CSV line per example of the test file (which may lack
 * labels: PD_PART_UNLABELED), in file order:
 * the predicted class name (value for linreg) and the class probabilities
 * (logreg: of both classes; svm: its score w.x + b). */
int pd_use_predict(const pd_use_opts *o);

#endif
