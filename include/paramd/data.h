/* Data: readers (IDX, gzip'd or raw; CSV; LIBSVM sparse), the validation
 * hold-out, normalization, sharding over workers, and the minibatch
 * iterator with its shuffle policy and curriculum. A worker holds only its
 * shard.
 *
 * Example numbering: the training file's records are 0..N-1. The validation
 * hold-out takes round(validation_fraction * N) of them, chosen by a
 * permutation seeded with (run.seed, PD_STREAM_SPLIT); the rest, in
 * ascending record order, is the training part, numbered 0..T-1. Shard w of
 * W holds training examples {i : i % W == w} (strided) or a contiguous block
 * [w*T/W, (w+1)*T/W) (contiguous). Normalization statistics come from the
 * whole training part (every rank computes the same ones) and are applied
 * to every part.
 */
#ifndef PARAMD_DATA_H
#define PARAMD_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"
#include "paramd/rng.h"

/* Conventions the data module fixes (details in src/data/):
 * - Files may be gzip'd or plain, in every format.
 * - The validation part keeps record order; its ids are record numbers.
 * - Inference reads the whole training file (validation records too):
 *   classes = max label + 1, LIBSVM features = max index; the test file
 *   must fit both. The hold-out is round(fraction * N), half up.
 * - Labels: softmax/mlp class ids 0..C-1; logreg/svm 0/1 or -1/+1 (one
 *   encoding per run), or in CSV and LIBSVM any two numbers (the smaller
 *   negative), become -1/+1; linreg any finite value. CSV labels may be
 *   names (src/data/labels.c): data.classes in order, or when a training
 *   label is not a number, the distinct labels in byte order.
 * - CSV fields are split at data.delimiter; a UTF-8 byte-order mark at the
 *   start of a text file is ignored.
 * - LIBSVM gives sparse parts for logreg/svm, dense ones otherwise.
 * - Normalization: std is the population std. Sparse parts are never
 *   shifted, so zeros stay zeros: standardize divides by std, scale01 by
 *   max |x| (equal to (x-min)/(max-min) for non-negative features with
 *   zeros). Missing entries count as zeros in every statistic. A
 *   held-out or test value that normalization would take beyond the float
 *   range is clamped to +-FLT_MAX.
 * - Messages: "FILE:LINE: ..." (1-based lines, blank and comment lines
 *   counted; CSV columns 0-based like data.label_column) and
 *   "FILE: record N: ..." (0-based) for IDX.
 * - A rank parses a training record only if it stores it, or normalization
 *   or inference needs it, so it may miss a bad line in another shard; the
 *   rank holding that line, and `paramd --check`, report it. */

/* One part of the data in memory: dense row-major features x[n][d], or CSR
 * sparse rows (row_ptr[n+1], col[], val[]; columns 0-based, increasing).
 * y[i] is the target: a class id 0..classes-1 (softmax, mlp), +1/-1 (logreg,
 * svm) or a real value (linreg). id[i] is the example's number in the
 * training part (or the record number for validation/test parts).
 * score[i] is the example's curriculum score from the CSV column
 * data.curriculum.column (data.curriculum.type column only; lower = easier).
 * Owned by the pd_data it came from. */
typedef struct pd_dataset {
    size_t n, d;
    bool sparse;
    float *x;                /* [n][d] when dense, else NULL */
    size_t *row_ptr;         /* [n+1] when sparse */
    uint32_t *col;           /* [nnz] */
    float *val;              /* [nnz] */
    float *y;                /* [n] */
    size_t *id;              /* [n] */
    float *score;            /* [n] curriculum score per example, or NULL */
} pd_dataset;

typedef enum { PD_PART_TRAIN = 1, PD_PART_VALID = 2, PD_PART_TEST = 4 } pd_part;
/* With PD_PART_TEST, for prediction: the test file may have no labels (a
 * CSV file whose fields are exactly the features; LIBSVM rows that start
 * with index:value); their y is 0 and means nothing. */
#define PD_PART_UNLABELED 8u

typedef struct pd_data pd_data;

/* Load the parts asked for (a mask of pd_part): the training part only as
 * shard `shard` of `nshards` (0 of 1 for everything), validation and test
 * whole. Checks the data against model.features / model.classes when they
 * are set, else infers them (pd_data_features/classes). Bad data: PD_EINPUT with
 * "FILE: record N: what is wrong" (line N for CSV/LIBSVM). Local. */
int pd_data_load(const pd_config *cfg, int shard, int nshards, unsigned parts,
                 pd_data **out);
void pd_data_destroy(pd_data **d);

/* A loaded part (n may be 0), or NULL when that part was not asked for. */
const pd_dataset *pd_data_part(const pd_data *d, pd_part part);
/* Examples in the whole training part (all shards): T. */
size_t pd_data_train_total(const pd_data *d);
/* Feature count and class count (0 for binary/regression models) found. */
size_t pd_data_features(const pd_data *d);
int pd_data_classes(const pd_data *d);
/* The class names in class order (*n of them; owned by d): softmax/mlp
 * "0".."C-1" for numeric labels, else the CSV label names (data.classes,
 * or the training file's distinct labels in byte order); logreg/svm the
 * negative then the positive label ("0","1", "-1","1", or the two numbers
 * or names of the training file, smaller first). NULL, 0 for linreg. */
const char *const *pd_data_class_names(const pd_data *d, size_t *n);
/* The normalization applied to every part: feature j became
 * (x - shift[j]) * scale[j], computed in double and rounded to float
 * (*n features; owned by d). False, with *n = 0, when there is none. */
bool pd_data_normalization(const pd_data *d, size_t *n, const double **shift,
                           const double **scale);

/* Minibatch iterator over one dataset. shuffle none: record order every
 * epoch; once: one permutation drawn at creation, reused every epoch;
 * every_epoch: a fresh permutation at the start of each epoch. The stream
 * is (seed, PD_STREAM_SHUFFLE, stream_index). drop_last drops a final
 * partial batch. pd_iter_save/load carry its position for checkpoints. */
typedef struct pd_iter pd_iter;

int pd_iter_create(const pd_dataset *ds, size_t batch, pd_shuffle shuffle,
                   bool drop_last, uint64_t seed, uint64_t stream_index,
                   pd_iter **out);
void pd_iter_destroy(pd_iter **it);
/* Next minibatch: *rows points at *n row indices into ds (valid until the
 * next call). Returns false at the end of an epoch (then *n == 0); the next
 * call starts the following epoch. */
bool pd_iter_next(pd_iter *it, const size_t **rows, size_t *n);
/* Completed epochs, and batches in the current epoch (with a curriculum
 * it follows the admitted count, so it may grow from epoch to epoch). */
int64_t pd_iter_epoch(const pd_iter *it);
size_t pd_iter_batches_per_epoch(const pd_iter *it);

/* Curriculum (data.curriculum): from now on, epoch e (pd_iter_epoch, the
 * current one included) yields only its admitted rows. With n rows and
 * score[i] the difficulty of row i (lower = easier; ties by row index):
 *   f(e) = min(1, start + (1 - start) e / epochs)   admitted fraction
 *   m(e) = ceil(f(e) n)     (at least 1; n once e >= epochs)
 *   deterministic: the m easiest rows.
 *   stochastic (Zaremba & Sutskever's mix): h(e) = (f(e) - start) /
 *     (1 - start) (1 when start == 1), r = floor(h(e) m); the m - r easiest
 *     rows plus r rows drawn uniformly without replacement from the other
 *     n - (m - r), a fresh draw each epoch from the stream
 *     (seed, PD_STREAM_CURRICULUM, stream_index).
 * The admitted rows are then ordered by the shuffle policy: none = row
 * order; once = the order of the permutation drawn at creation; every_epoch
 * = a fresh permutation of them each epoch. A type none config removes the
 * curriculum. The iterator copies what it needs (score may be freed);
 * everything is allocated here, never in pd_iter_next. Restarts the
 * current epoch. NaN scores are PD_EINPUT. Local. */
int pd_iter_set_curriculum(pd_iter *it, const float *score, const pd_curriculum_config *cc,
                           uint64_t seed);
/* Examples admitted in the current epoch (n without a curriculum). */
size_t pd_iter_admitted(const pd_iter *it);

/* The iterator's position, for checkpoints: epoch, cursor, both random
 * streams and the current epoch's order (8 bytes a row), after a header
 * (magic "PDIT", version 1, 128 bytes; little-endian on every host). Load into an iterator made
 * the same way (dataset, batch, shuffle, drop_last, seed, stream, and the
 * same curriculum scores): it then yields exactly what the saved one would
 * have. A state that does not fit (other sizes or settings, truncated,
 * rows out of range) is PD_EINPUT, and the iterator is left unchanged.
 * Local. */
size_t pd_iter_state_size(const pd_iter *it);
int pd_iter_save(const pd_iter *it, void *buf, size_t size);
/* The same state with the last `back` rows pd_iter_next returned given back
 * (the minibatch just drawn, back its count, or 0): a load then yields that
 * minibatch first, then what the saved iterator would have. A minibatch
 * drawn across an epoch's end is given back in the new epoch (its epoch
 * count and order; what follows is the same). PD_EINPUT when back exceeds
 * the rows drawn in the current epoch. Local. */
int pd_iter_save_before(const pd_iter *it, size_t back, void *buf, size_t size);
int pd_iter_load(pd_iter *it, const void *buf, size_t size);
/* The epoch (pd_iter_epoch) of a saved state; PD_EINPUT when buf is not
 * one. Local. */
int pd_iter_state_epoch(const void *buf, size_t size, int64_t *epoch);

#endif
