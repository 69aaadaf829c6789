#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_data.h"
#include "paramd/data.h"
#include "paramd/error.h"

/* Memory in proportion to the largest LIBSVM index is by design (dense
 * models, statistics), so inputs that would ask for gigabytes that way are
 * skipped when the feature count is inferred: an index of more than 6 digits. */
static bool huge_index(const uint8_t *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '9')
            run++;
        else if (p[i] == ':' && run > 6)
            return true;
        else
            run = 0;
    }
    return false;
}

/* What pd_data_load promises of a part (paramd/data.h); abort otherwise. */
static void check_part(const pd_dataset *ds, int classes, pd_model_type type)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++) {
        float y = ds->y[i];
        if (!isfinite(y))
            abort();
        if (classes > 0 && (y < 0 || y >= (float)classes || y != floorf(y)))
            abort();
        if ((type == PD_MODEL_LOGREG || type == PD_MODEL_SVM) && y != 1 && y != -1)
            abort();
        if (!ds->sparse)
            continue;
        if (ds->row_ptr[i] > ds->row_ptr[i + 1])
            abort();
        for (size_t k = ds->row_ptr[i]; k < ds->row_ptr[i + 1]; k++)
            if (ds->col[k] >= ds->d || (k > ds->row_ptr[i] && ds->col[k] <= ds->col[k - 1]) ||
                !isfinite(ds->val[k]))
                abort();
    }
    if (ds->sparse && ds->row_ptr[0] != 0)
        abort();
    if (!ds->sparse)
        for (size_t k = 0; k < ds->n * ds->d; k++)
            if (!isfinite(ds->x[k]))
                abort();
}

int pd_fuzz_data(pd_data_format format, const uint8_t *data, size_t size)
{
    static int fd[2] = {-1, -1};
    static char path[2][64];
    static pd_config cfg;
    if (fd[0] < 0) {
        fd[0] = pd_fuzz_memfd("train", path[0], sizeof path[0]);
        fd[1] = pd_fuzz_memfd("labels", path[1], sizeof path[1]);
    }
    if (size < 1)
        return 0;
    unsigned opt = data[0];
    data++;
    size--;

    pd_config_defaults(&cfg);
    pd_data_config *dc = &cfg.data;
    dc->format = format;
    const pd_model_type types[4] = {PD_MODEL_SOFTMAX, PD_MODEL_LINREG, PD_MODEL_LOGREG,
                                    PD_MODEL_SVM};
    cfg.model.type = types[opt & 3];
    dc->header = opt & 4;
    if (dc->header)
        snprintf(dc->label_column, sizeof dc->label_column, "label");
    dc->validation_fraction = (opt & 8) ? 0.25 : 0;
    const pd_normalize norms[4] = {PD_NORM_NONE, PD_NORM_SCALE01, PD_NORM_STANDARDIZE,
                                   PD_NORM_STANDARDIZE};
    dc->normalize = norms[(opt >> 4) & 3];
    if (opt & 64) {
        cfg.model.features = 16;
        if (cfg.model.type == PD_MODEL_SOFTMAX)
            cfg.model.classes = 10;
    } else if (format == PD_FMT_LIBSVM && huge_index(data, size)) {
        return 0;
    }
    int nshards = (opt & 128) ? 2 : 1;
    dc->shard = (opt & 128) ? PD_SHARD_CONTIGUOUS : PD_SHARD_STRIDED;

    if (format == PD_FMT_IDX) {
        if (size < 4)
            return 0;
        size_t len = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 |
                     (size_t)data[3] << 24;
        data += 4;
        size -= 4;
        if (len > size)
            len = size;
        pd_fuzz_fill(fd[0], data, len);
        pd_fuzz_fill(fd[1], data + len, size - len);
        snprintf(dc->train_labels, sizeof dc->train_labels, "%s", path[1]);
        snprintf(dc->test_labels, sizeof dc->test_labels, "%s", path[1]);
    } else {
        pd_fuzz_fill(fd[0], data, size);
        /* A CSV input without commas is read with the delimiter it has. */
        if (format == PD_FMT_CSV && !memchr(data, ',', size))
            dc->delimiter = memchr(data, ';', size)    ? PD_DELIM_SEMICOLON
                            : memchr(data, '\t', size) ? PD_DELIM_TAB
                                                       : PD_DELIM_COMMA;
    }
    snprintf(dc->train, sizeof dc->train, "%s", path[0]);
    snprintf(dc->test, sizeof dc->test, "%s", path[0]);

    pd_data *d = NULL;
    if (pd_data_load(&cfg, nshards - 1, nshards, PD_PART_TRAIN | PD_PART_VALID | PD_PART_TEST,
                     &d) == PD_OK) {
        for (unsigned p = PD_PART_TRAIN; p <= PD_PART_TEST; p *= 2)
            check_part(pd_data_part(d, (pd_part)p), pd_data_classes(d), cfg.model.type);
        /* One name per class: C for softmax, two for logreg/svm, none for linreg. */
        size_t nn;
        const char *const *names = pd_data_class_names(d, &nn);
        size_t want = cfg.model.type == PD_MODEL_SOFTMAX ? (size_t)pd_data_classes(d)
                      : cfg.model.type == PD_MODEL_LINREG ? 0 : 2;
        if (nn != want)
            abort();
        for (size_t i = 0; i < nn; i++)
            if (!names[i])
                abort();
        /* Walk one epoch of the training part, as a worker would. */
        const pd_dataset *tr = pd_data_part(d, PD_PART_TRAIN);
        pd_iter *it = NULL;
        if (tr && pd_iter_create(tr, 3, PD_SHUFFLE_EVERY_EPOCH, false, 1, 0, &it) == PD_OK) {
            const size_t *rows;
            size_t n;
            while (pd_iter_next(it, &rows, &n))
                for (size_t i = 0; i < n; i++)
                    if (rows[i] >= tr->n)
                        abort();
            pd_iter_destroy(&it);
        }
        pd_data_destroy(&d);
    }
    pd_err_clear();
    return 0;
}
