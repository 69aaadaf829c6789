/* Private to ps: the async trace (training.trace: true), which lets one
 * process re-execute an async run exactly (paramd --replay RUN_DIR).
 *
 * trace.bin in the run directory, little-endian:
 *   header  8 bytes "PDTRACE1", uint32 format version (1), uint32 workers,
 *           uint64 records (filled in when the run ends; a run that dies
 *           leaves no trace.bin)
 *   records of 32 bytes, one per gradient server 0 received, in arrival
 *   order: uint32 worker, uint32 outcome (1 applied, 2 dropped, 3 not
 *   finite), int64 seq (the worker's gradient number: its seq-th minibatch,
 *   counted from 0 over all epochs), int64 version the gradient was computed
 *   at, int64 version it made (-1 when not applied).
 * The worker's minibatch sequence is a function of (run.seed, its shard),
 * so (worker, seq) stands for the minibatch's example indices.
 * A resumed run continues its trace: the checkpoint's records, then a
 * "dropped" record (version it was computed at: the checkpoint's) for
 * each gradient the checkpoint counts as dropped at the stop (sent after
 * its snapshot, before the worker's state), then the resumed run's.
 */
#ifndef PARAMD_PS_TRACE_H
#define PARAMD_PS_TRACE_H

#include <stdint.h>
#include <stdio.h>

enum { PD_TRACE_APPLIED = 1, PD_TRACE_DROPPED = 2, PD_TRACE_BAD = 3 };

typedef struct pd_trace_rec {
    uint32_t worker, outcome;
    int64_t seq, from, made;
} pd_trace_rec;

/* Start DIR/trace.bin for W workers: written as DIR/trace.bin.tmp.PID
 * until pd_trace_close. */
int pd_trace_open(const char *dir, int workers, FILE **out);
int pd_trace_append(FILE *f, const pd_trace_rec *r);
/* Write the record count into the header, fsync, close, rename to
 * DIR/trace.bin and fsync DIR. */
int pd_trace_close(FILE **f, const char *dir, uint64_t records);
/* A run that failed: close and remove the unfinished temporary file. */
void pd_trace_abort(FILE **f, const char *dir);
/* Records are chained into a FNV-1a 64 hash of their bytes as written, from
 * PD_TRACE_HASH0: a checkpoint names the trace's first records by their
 * count and hash. */
#define PD_TRACE_HASH0 0xcbf29ce484222325ull
uint64_t pd_trace_hash(uint64_t h, const pd_trace_rec *r);
/* Flush and fsync what is written so far (before a checkpoint names it). */
int pd_trace_sync(FILE *f);
/* --resume of a traced run: in src_dir, the trace (trace.bin, or the
 * unfinished temporary of a run that stopped without finishing it) whose
 * first n records, of W workers, hash to `hash`: those records into *recs
 * (malloc'd) and, when they came from a temporary, its path into from
 * (else ""). None: PD_EINPUT naming src_dir. Reads only. */
int pd_trace_find(const char *src_dir, int workers, uint64_t n, uint64_t hash,
                  pd_trace_rec **recs, char *from, size_t size);
/* Start dir's trace (as pd_trace_open) with recs[0..n), flushed; then
 * remove `from` (a temporary they came from; "" none) unless it is ours. */
int pd_trace_restart(const char *dir, int workers, const pd_trace_rec *recs, uint64_t n,
                     const char *from, FILE **out);
/* Read DIR/trace.bin whole (*recs malloc'd). Bad magic, version, size,
 * count or worker count (1..INT_MAX), or a record that no run writes (worker
 * out of range, outcome not 1-3, negative seq or from, made not -1 exactly
 * when not applied): PD_EINPUT naming the file (and the record). */
int pd_trace_read(const char *dir, int *workers, pd_trace_rec **recs, size_t *n);

#endif
