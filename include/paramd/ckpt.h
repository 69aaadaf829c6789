/* Checkpoints: the state of a run in a checksummed binary format, written
 * atomically, read back whole or not at all. This module encodes, writes,
 * prunes, finds and decodes checkpoint files; what goes into a checkpoint
 * (and when) is the caller's (ps) business. It sees flat arrays and the
 * byte strings of pd_optim_save and pd_iter_save, never MPI.
 *
 * Files of one checkpoint, the state after `t` applied updates, in a
 * checkpoint directory (t printed as 12 decimal digits, s = part index):
 *   ckpt-<t>.<s>.pdck     part s of S: server s's state (S = 1 serially)
 *   ckpt-<t>.manifest     written last; names every part's size and crc32.
 * A set is valid when its manifest is valid and every part it names has
 * that size, that crc32 and decodes (below). Every file is written with
 * pd_write_atomic (paramd/metrics.h): a temporary "<name>.tmp.<pid>" in the
 * same directory, fsync'ed, renamed over its name, and the directory
 * fsync'ed, so a crash leaves either the old file or the new one complete,
 * never a torn file under the real name (a stray temporary is ignored).
 *
 * Every integer is little-endian on every host (paramd/le.h); floats are
 * IEEE-754 binary32 bit patterns, little-endian. crc32 is zlib's (the
 * CRC-32 of ISO 3309 / ITU-T V.42, as in gzip and PNG).
 *
 * Part file, format version 5 (version 1 had no RUNS section, version 2 no
 * TRCE, version 3 no LOST, version 4 no local optimizer in a worker state
 * of a phase without one (below)); versions 4 and 5 are read (a version 4
 * checkpoint of a phase whose workers need that state is refused by the
 * worker, exit 2); a part or manifest of another version is refused, exit
 * 2, naming the file and the versions read:
 *   header, 40 bytes
 *     0  magic, 8 bytes "PDCKPT\r\n"
 *     8  u32 format version (PD_CKPT_VERSION)
 *     12 u32 number of sections (6, plus the optional ones present)
 *     16 u64 layout hash (pd_ckpt_layout_hash)
 *     24 u64 config hash (pd_ckpt_config_hash)
 *     32 u32 crc32 of bytes 0..32
 *     36 u32 zero
 *   then the 6 sections every part has and the optional ones it has
 *   (BTCH, TRCE, LOST), in this order, each a 16-byte section header
 *     0 tag, 4 ASCII bytes   4 u32 crc32 of the payload   8 u64 payload length
 *   followed by its payload:
 *     "META" 56 bytes: u32 part s, u32 parts S, u32 optimizer kind
 *            (pd_optimizer_name), u32 zero, u64 updates t (the update
 *            counter), u64 parameter version, u64 lo, u64 hi (this part's
 *            global parameter range [lo, hi)), u64 training examples
 *            consumed by all workers (their fractional epochs)
 *     "PARM" (hi - lo) float32: the parameters theta[lo..hi)
 *     "OPTM" the bytes of pd_optim_save over [lo, hi) (paramd/optim.h)
 *     "ITER" u32 number of iterator states W, u32 zero, then W times:
 *            u64 length, the bytes of pd_iter_save (paramd/data.h);
 *            state w belongs to worker w (W = 0 in parts that carry none)
 *     "CNTR" i64 sent, applied, dropped, bad gradients; u64 H, then H i64
 *            (staleness histogram, counts of staleness 0..H-1); u64 W, then
 *            W times i64 sent, applied, dropped, bad (per worker)
 *     "RUNS" the rest of the run's state (f64: the IEEE-754 binary64 bit
 *            pattern as a u64):
 *              0 f64 wall seconds of the run so far
 *              8 f64 checkpoint pauses: sum of seconds, 16 f64 their max,
 *             24 i64 their number
 *             32 i64 dropped stale, 40 dropped late, 48 dropped at the stop
 *             56 i64 staleness sum, 64 i64 staleness max
 *             72 u64 applied-set fingerprint (summary.json's applied_set)
 *             80 f64 early stopping: best validation loss (inf: none yet)
 *             88 i64 its update (-1: none), 96 i64 evaluations since it
 *            104 i64 the last evaluated update (-1: none)
 *            112 u64 B, then B float32: the best parameters (B = 0, or the
 *                whole model in the part that carries them)
 *            then u64 W and W worker states (worker w at w; W = 0 in parts
 *            that carry none), each: i64 requests sent, i64 examples
 *            consumed, i64 local steps taken, i64 staleness sum, 4 u64
 *            fault-injection RNG state (paramd/rng.h's s[0..3]), u64 L and
 *            L bytes of the worker's local optimizer (pd_optim_save over the
 *            whole model) followed in easgd by its own model (float32 over
 *            the whole model); L = 0 without either. In a phase of a run
 *            with training.phases whose mode has no local optimizer (sync,
 *            async, hogwild), the local optimizer is the one the last
 *            local_sgd or easgd phase before it left, which the worker
 *            carries to the next such phase (paramd/phase.h); L = 0 when
 *            no such phase came before. The local steps taken are the
 *            worker's over the whole run
 *     "BTCH" only in a part of a batch method (cg, bfgs, lbfgs, cd): the
 *            bytes of pd_batch_save (paramd/batch.h), the minimizer's state
 *            over this part's coordinates at an iteration boundary; META's
 *            updates t is the iteration, OPTM and ITER are empty
 *     "TRCE" only in part 0 of an async run with training.trace: 16 bytes,
 *            u64 N, the trace records (ps/trace.h) written up to this
 *            checkpoint's snapshot, u64 the FNV-1a 64 hash of their bytes
 *            as written, which name them for --resume
 *     "LOST" only in part 0 of a run that lost workers (training.worker_timeout)
 *            before this checkpoint's cut: u64 N >= 1, then N entries of 48
 *            bytes, in the order they were lost (over the whole run):
 *              0 u32 worker w, 4 u32 its MPI rank
 *              8 i64 the update when its last message came
 *             16 i64 the update when it was counted lost, 24 f64 the wall
 *                seconds of the run then
 *             32 i64 its requests that had arrived by then (its gradients
 *                sent: one in flight that never arrived is not counted)
 *             40 i64 the update at which it rejoined (the first update of
 *                a --resume after its loss), -1 while it has not
 *            A worker has at most one entry with -1. For such a worker,
 *            ITER's state w and RUNS' worker state w are the last state
 *            server 0 had of it (the one of an earlier checkpoint, of the
 *            start of a resumed run, or none: an ITER state of length 0 is
 *            a fresh iterator, with a worker state of zeros and no RNG
 *            state); its iterator as of its loss is that one advanced by
 *            (entry's requests - the worker state's requests) minibatches,
 *            which is exactly what a resumed worker does (the iterator is a
 *            deterministic function of its state; its fault RNG skips one
 *            draw per request where faults.delay draws), and CNTR counts the
 *            entry's requests as its gradients sent.
 *   and nothing after the last section.
 *
 * Manifest file, format version 5 (as versions 1 to 4):
 *     0  magic, 8 bytes "PDCKMAN\n"
 *     8  u32 format version (PD_CKPT_VERSION)
 *     12 u32 parts S
 *     16 u64 updates t
 *     24 S times 16 bytes: u64 size of part s in bytes, u32 crc32 of the
 *        whole part file, u32 zero
 *     24 + 16 S: u32 crc32 of every byte before it, u32 zero
 *
 * The layout hash is FNV-1a 64 of "name rows cols offset\n" for each model
 * tensor in order. The config hash is FNV-1a 64 of the text
 * "workers=W\n" followed by "key=value\n" for each of these keys, in this
 * order (integers and enums in decimal, doubles "%.17g", booleans 0/1,
 * strings verbatim, model.hidden as its widths joined by ','):
 *   run.seed
 *   data.format data.train data.train_labels data.label_column data.header
 *   data.delimiter and data.classes, each only when not its default
 *   data.validation_fraction data.normalize data.shuffle data.shard
 *   data.curriculum.type data.curriculum.column
 *   data.curriculum.warmup_updates data.curriculum.start
 *   data.curriculum.epochs data.curriculum.stochastic
 *   model.type model.features model.classes model.hidden model.activation
 *   model.init model.l2
 *   optimizer.name optimizer.lr optimizer.momentum optimizer.rho
 *   optimizer.eps optimizer.beta1 optimizer.beta2 optimizer.weight_decay
 *   optimizer.clip_norm optimizer.clip_value optimizer.schedule.type
 *   optimizer.schedule.step_size optimizer.schedule.gamma
 *   optimizer.schedule.decay optimizer.schedule.min_lr
 *   optimizer.schedule.warmup optimizer.noise optimizer.noise_gamma
 *   optimizer.staleness_scaling (the value of staleness_compensation)
 *   optimizer.dc_lambda_adaptive (as 1) and optimizer.dc_decay, only when
 *     dc_lambda_adaptive is on
 *   optimizer.vsgd_bound_layers optimizer.vsgd_row_layers
 *     optimizer.vsgd_slow, only when optimizer.name is vsgd
 *   optimizer.batch_examples, only when not 0
 *   optimizer.dc_lambda, only when staleness_compensation is dc
 *   training.mode training.servers training.batch_size training.drop_last
 *   training.backup_workers training.max_staleness
 *   training.staleness_policy training.local_steps training.elastic_alpha
 * and, for a run with training.phases, "training.phases[i].path=value\n"
 * for each key each phase sets, in order (the keys above are then the
 * file's, training.mode the first phase's; the phase a checkpoint was taken
 * in is in its record, paramd/phase.h).
 * Every other key (run.out_dir, run.blas_threads, data.test*, model.init_from,
 * training.epochs, max_updates, eval_every*, eval_wait, worker_timeout,
 * trace, early_stopping, max_bad_updates, server_threads, max_iterations,
 * optimizer.grad_tol, loss_tol, bfgs_max_params, checkpoint.*, faults.*)
 * may differ between the run that wrote a checkpoint and the one that
 * reads it; the batch methods' optimizer.history, cg_variant, block_size
 * and block_order are checked against the BTCH header instead.
 */
#ifndef PARAMD_CKPT_H
#define PARAMD_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "paramd/config.h"
#include "paramd/model.h"

#define PD_CKPT_VERSION 5u
/* The oldest format this build reads: version 4 differs from 5 only in a
 * worker state that version 5 fills and 4 leaves empty (a phase without
 * local steps after a local_sgd or easgd phase), and such a worker refuses
 * the empty state itself. */
#define PD_CKPT_VERSION_OLDEST 4u
enum { PD_CKPT_HEADER = 40, PD_CKPT_SECTION = 16, PD_CKPT_META = 56, PD_CKPT_RUNS = 120,
       PD_CKPT_WSTATE = 72, PD_CKPT_TRCE = 16, PD_CKPT_LOST = 48 };

/* Gradient accounting of one worker. */
typedef struct pd_ckpt_worker {
    int64_t sent, applied, dropped, bad;
} pd_ckpt_worker;

/* A worker's state besides its iterator (RUNS). */
typedef struct pd_ckpt_wstate {
    int64_t seq, examples, local_t, stale_sum;
    uint64_t rng[4];                /* fault-injection stream */
    unsigned char *optim;           /* [optim_size] local optimizer, or NULL */
    size_t optim_size;
} pd_ckpt_wstate;

/* A lost worker (LOST). */
typedef struct pd_ckpt_lost {
    uint32_t worker, rank;
    int64_t last_update, update;    /* its last message; counted lost */
    double wall_s;                  /* the run's wall seconds when counted lost */
    int64_t sent;                   /* its requests that had arrived then */
    int64_t rejoined;               /* the update it rejoined at (--resume), -1: not */
} pd_ckpt_lost;

/* One part of a checkpoint. For pd_ckpt_encode/write the pointers are the
 * caller's (borrowed, read only); pd_ckpt_decode/read/find fill one whose
 * arrays it allocates, freed by pd_ckpt_part_free. */
typedef struct pd_ckpt_part {
    uint32_t part, nparts;          /* server s of S */
    uint64_t layout_hash, config_hash;
    uint32_t optim_kind;            /* pd_optimizer_name */
    uint64_t updates;               /* update counter t */
    uint64_t version;               /* parameter version */
    uint64_t lo, hi;                /* global range [lo, hi) of this part */
    uint64_t examples;              /* training examples consumed */
    float *params;                  /* [hi - lo] */
    unsigned char *optim;           /* [optim_size] pd_optim_save bytes */
    size_t optim_size;
    size_t niters;                  /* iterator states, worker w at w */
    unsigned char **iter;           /* [niters] pd_iter_save bytes */
    size_t *iter_size;              /* [niters] */
    int64_t sent, applied, dropped, bad;
    size_t nstale;                  /* staleness histogram */
    int64_t *stale;                 /* [nstale] */
    size_t nworkers;
    pd_ckpt_worker *worker;         /* [nworkers] */
    /* RUNS */
    double wall_s, pause_sum, pause_max;
    int64_t pauses;
    int64_t dropped_stale, dropped_late, dropped_at_stop, stale_sum, stale_max;
    uint64_t applied_mix;
    double best_loss;               /* early stopping */
    int64_t best_update, bad_evals, last_eval;
    size_t nbest;
    float *best;                    /* [nbest] */
    size_t nwstates;
    pd_ckpt_wstate *wstate;         /* [nwstates] */
    /* BTCH (batch methods only; batch_size 0: no section) */
    unsigned char *batch;           /* [batch_size] pd_batch_save bytes */
    size_t batch_size;
    /* TRCE (traced async runs, part 0; traced false: no section) */
    bool traced;
    uint64_t trace_records, trace_hash;
    /* LOST (part 0 of a run that lost workers; nlost 0: no section) */
    size_t nlost;
    pd_ckpt_lost *lost;             /* [nlost] */
} pd_ckpt_part;

/* A written part as its manifest names it. */
typedef struct pd_ckpt_id {
    uint64_t size;                  /* bytes of a part file */
    uint32_t crc;                   /* crc32 of the whole part file */
} pd_ckpt_id;

/* Hashes of the header comment. Local. */
uint64_t pd_ckpt_layout_hash(const pd_tensor_info *t, size_t n);
uint64_t pd_ckpt_config_hash(const pd_config *cfg, int workers);

/* Encode p into a buffer it allocates (*buf, *size; caller frees). Local. */
int pd_ckpt_encode(const pd_ckpt_part *p, unsigned char **buf, size_t *size);

/* Decode and check buf (size bytes; `file` names it in messages) against
 * the expected layout and config hashes. Refusals are PD_EINPUT with
 * "FILE: SECTION: reason" (SECTION is "header" or a tag); *out is written
 * only on PD_OK. Local. */
int pd_ckpt_decode(const char *file, const unsigned char *buf, size_t size,
                   uint64_t layout_hash, uint64_t config_hash, pd_ckpt_part *out);
void pd_ckpt_part_free(pd_ckpt_part *p);

/* Write part p->part of the checkpoint at p->updates into dir atomically
 * (header comment); *id (may be NULL) receives its size and crc32 for the
 * manifest. Errors are PD_EIO naming the file and errno. Local. */
int pd_ckpt_write_part(const char *dir, const pd_ckpt_part *p, pd_ckpt_id *id);
/* Write the manifest of the checkpoint at `updates` with its S parts'
 * ids, atomically; written last, it makes the set valid. Local. */
int pd_ckpt_write_manifest(const char *dir, uint64_t updates, uint32_t nparts,
                           const pd_ckpt_id *ids);
/* Keep the `keep` newest checkpoints that have a manifest and remove every
 * older set (its manifest first, then its parts). Sets newer than the
 * oldest kept one are left alone, valid or not (another part may still be
 * being written). Call it after a manifest is written, so an older set is
 * only removed once a newer one is valid. Local. */
int pd_ckpt_prune(const char *dir, int keep);
/* A one-part checkpoint (serial): write_part, write_manifest, prune.
 * Creates dir if needed. Local. */
int pd_ckpt_save(const char *dir, const pd_ckpt_part *p, int keep);

/* Read part `part` of the checkpoint at `updates` in dir after checking
 * the whole set (manifest, every part's size, crc32 and content). On
 * refusal PD_EINPUT with a located message, and *damaged (may be NULL) says
 * whether the set is damaged (missing or torn file, bad magic, version or
 * checksum) rather than of another model, config or world size. Local. */
int pd_ckpt_read(const char *dir, uint64_t updates, uint32_t part, uint64_t layout_hash,
                 uint64_t config_hash, pd_ckpt_part *out, bool *damaged);
/* The newest valid checkpoint of dir, its part `part` into *out. A damaged
 * newer set is skipped with one line "paramd: warning: skipping damaged
 * checkpoint: <reason>" to warn (NULL: stderr). A set of another model or
 * config, or no valid set (or none at all), is PD_EINPUT naming dir and the
 * reason; *out is written only on PD_OK. Local. */
int pd_ckpt_find(const char *dir, uint32_t part, uint64_t layout_hash, uint64_t config_hash,
                 FILE *warn, pd_ckpt_part *out);

#endif
