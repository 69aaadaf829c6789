/* Checkpoint files on disk (paramd/ckpt.h): atomic writes (pd_write_atomic:
 * temporary file, fsync, rename, fsync of the directory), the manifest that makes a set of
 * parts valid, pruning to the K newest, and finding the newest valid set. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_impl.h"
#include "paramd/error.h"
#include "paramd/le.h"
#include "paramd/metrics.h"

static const char man_magic[8] = {'P', 'D', 'C', 'K', 'M', 'A', 'N', '\n'};
enum { PATH_LEN = PD_PATH_MAX + 64, MAN_HEAD = 24, MAN_ENTRY = 16 };

/* dir/ckpt-<t>.manifest (part < 0) or dir/ckpt-<t>.<part>.pdck */
static int set_path(char *out, const char *dir, uint64_t t, long part)
{
    int n = part < 0 ? snprintf(out, PATH_LEN, "%s/ckpt-%012" PRIu64 ".manifest", dir, t)
                     : snprintf(out, PATH_LEN, "%s/ckpt-%012" PRIu64 ".%ld.pdck", dir, t, part);
    if (n < 0 || n >= PATH_LEN)
        return PD_FAIL(PD_EINPUT, "%s: checkpoint directory path too long", dir);
    return PD_OK;
}

int pd_ckpt_write_part(const char *dir, const pd_ckpt_part *p, pd_ckpt_id *id)
{
    char path[PATH_LEN];
    PD_TRY(set_path(path, dir, p->updates, p->part));
    unsigned char *buf;
    size_t size;
    PD_TRY(pd_ckpt_encode(p, &buf, &size));
    int e = pd_write_atomic(path, buf, size);
    if (e == PD_OK && id)
        *id = (pd_ckpt_id){size, ckpt_crc(buf, size)};
    free(buf);
    PD_TRY(e);
    return PD_OK;
}

int pd_ckpt_write_manifest(const char *dir, uint64_t updates, uint32_t nparts,
                           const pd_ckpt_id *ids)
{
    char path[PATH_LEN];
    PD_TRY(set_path(path, dir, updates, -1));
    size_t size = MAN_HEAD + MAN_ENTRY * (size_t)nparts + 8;
    unsigned char *b = pd_calloc(size, 1);
    if (!b)
        return PD_ENOMEM;
    memcpy(b, man_magic, 8);
    pd_le_put32(b + 8, PD_CKPT_VERSION);
    pd_le_put32(b + 12, nparts);
    pd_le_put64(b + 16, updates);
    for (uint32_t s = 0; s < nparts; s++) {
        pd_le_put64(b + MAN_HEAD + MAN_ENTRY * s, ids[s].size);
        pd_le_put32(b + MAN_HEAD + MAN_ENTRY * s + 8, ids[s].crc);
    }
    pd_le_put32(b + size - 8, ckpt_crc(b, size - 8));
    int e = pd_write_atomic(path, b, size);
    free(b);
    PD_TRY(e);
    return PD_OK;
}

/* ---- listing and pruning -------------------------------------------------- */

typedef struct set_list {
    uint64_t *t;      /* distinct update counts, decreasing */
    bool *manifest;   /* [n] the set has a manifest file */
    size_t n;
} set_list;

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The sets of dir (by their file names; parts without a manifest count). */
static int list_sets(const char *dir, set_list *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return PD_FAIL(errno == ENOENT ? PD_EINPUT : PD_EIO, "%s: %s", dir, strerror(errno));
    uint64_t *t = NULL, *m = NULL;
    size_t n = 0, nm = 0, cap = 0, capm = 0;
    int err = PD_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t v;
        int used = 0;
        char rest[32];
        if (sscanf(de->d_name, "ckpt-%12" SCNu64 "%n", &v, &used) != 1 || used != 17)
            continue;
        if (snprintf(rest, sizeof rest, "%s", de->d_name + used) >= (int)sizeof rest)
            continue;
        bool is_man = strcmp(rest, ".manifest") == 0;
        size_t dots = strspn(rest + 1, "0123456789");
        bool is_part = rest[0] == '.' && dots > 0 && strcmp(rest + 1 + dots, ".pdck") == 0;
        if (!is_man && !is_part)
            continue;
        uint64_t **arr = is_man ? &m : &t;
        size_t *len = is_man ? &nm : &n, *c = is_man ? &capm : &cap;
        if (*len == *c) {
            size_t nc = *c ? 2 * *c : 16;
            uint64_t *g = realloc(*arr, nc * sizeof *g);
            if (!g) {
                err = PD_FAIL(PD_ENOMEM, "listing %s: out of memory", dir);
                goto out;
            }
            *arr = g;
            *c = nc;
        }
        (*arr)[(*len)++] = v;
    }
    /* All update counts (parts and manifests), distinct, newest first. */
    uint64_t *all = pd_malloc((n + nm + 1) * sizeof *all);
    bool *man = pd_calloc(n + nm + 1, sizeof *man);
    if (!all || !man) {
        free(all);
        free(man);
        err = PD_ENOMEM;
        goto out;
    }
    if (n)
        memcpy(all, t, n * sizeof *t);
    if (nm)
        memcpy(all + n, m, nm * sizeof *m);
    qsort(all, n + nm, sizeof *all, cmp_desc);
    size_t k = 0;
    for (size_t i = 0; i < n + nm; i++)
        if (k == 0 || all[k - 1] != all[i])
            all[k++] = all[i];
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < nm; j++)
            man[i] |= m[j] == all[i];
    *out = (set_list){all, man, k};
out:
    free(t);
    free(m);
    closedir(d);
    return err;
}

static void set_list_free(set_list *l)
{
    free(l->t);
    free(l->manifest);
    *l = (set_list){0};
}

/* Remove the set at t: manifest first (the set stops being valid), then
 * every part file of it. */
static int remove_set(const char *dir, uint64_t t)
{
    char path[PATH_LEN];
    PD_TRY(set_path(path, dir, t, -1));
    if (unlink(path) != 0 && errno != ENOENT)
        return PD_FAIL(PD_EIO, "%s: unlink: %s", path, strerror(errno));
    for (long s = 0;; s++) {
        PD_TRY(set_path(path, dir, t, s));
        if (unlink(path) != 0) {
            if (errno == ENOENT)
                break;
            return PD_FAIL(PD_EIO, "%s: unlink: %s", path, strerror(errno));
        }
    }
    return PD_OK;
}

int pd_ckpt_prune(const char *dir, int keep)
{
    set_list l;
    PD_TRY(list_sets(dir, &l));
    int err = PD_OK, kept = 0;
    size_t i = 0;
    for (; i < l.n && kept < keep; i++)
        kept += l.manifest[i];
    if (kept == keep)
        for (; i < l.n && err == PD_OK; i++)
            err = remove_set(dir, l.t[i]);
    char any[PATH_LEN];
    if (err == PD_OK && kept == keep && (err = set_path(any, dir, 0, -1)) == PD_OK)
        err = pd_fsync_dir(any);   /* flushes the directory of `any` */
    set_list_free(&l);
    PD_TRY(err);
    return PD_OK;
}

int pd_ckpt_save(const char *dir, const pd_ckpt_part *p, int keep)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return PD_FAIL(PD_EIO, "%s: mkdir: %s", dir, strerror(errno));
    pd_ckpt_id id;
    PD_TRY(pd_ckpt_write_part(dir, p, &id));
    PD_TRY(pd_ckpt_write_manifest(dir, p->updates, 1, &id));
    PD_TRY(pd_ckpt_prune(dir, keep));
    return PD_OK;
}

/* ---- reading -------------------------------------------------------------- */

/* Whole file into a buffer (caller frees). A missing file is damage. */
static int slurp(const char *path, unsigned char **buf, size_t *size, bool *damaged)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *damaged = errno == ENOENT;
        return PD_FAIL(*damaged ? PD_EINPUT : PD_EIO, "%s: %s", path, strerror(errno));
    }
    unsigned char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 1 << 16;
            unsigned char *g = realloc(b, nc);
            if (!g) {
                free(b);
                fclose(f);
                return PD_FAIL(PD_ENOMEM, "%s: out of memory reading it", path);
            }
            b = g;
            cap = nc;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        *damaged = false;
        return PD_FAIL(PD_EIO, "%s: read error", path);
    }
    *buf = b;
    *size = n;
    return PD_OK;
}

#define REFUSE(dmg, ...) (*damaged = (dmg), PD_FAIL(PD_EINPUT, __VA_ARGS__))

int pd_ckpt_read(const char *dir, uint64_t updates, uint32_t part, uint64_t layout_hash,
                 uint64_t config_hash, pd_ckpt_part *out, bool *damaged)
{
    bool dmg_local;
    if (!damaged)
        damaged = &dmg_local;
    char path[PATH_LEN];
    unsigned char *m = NULL, *b = NULL;
    size_t msize = 0, size;
    int err;
    pd_ckpt_part keep = {0};
    PD_TRY(set_path(path, dir, updates, -1));
    PD_TRY_GOTO(err, slurp(path, &m, &msize, damaged), out);
    if (msize < MAN_HEAD + 8 || memcmp(m, man_magic, 8) != 0) {
        err = REFUSE(true, "%s: manifest: %s", path,
                     msize < MAN_HEAD + 8 ? "truncated" : "bad magic (not a paramd manifest)");
        goto out;
    }
    uint32_t nparts = pd_le_get32(m + 12);
    if (msize != MAN_HEAD + MAN_ENTRY * (uint64_t)nparts + 8) {
        err = REFUSE(true, "%s: manifest: %zu bytes, expected %" PRIu64 " for %u parts "
                     "(truncated or damaged)", path, msize,
                     MAN_HEAD + MAN_ENTRY * (uint64_t)nparts + 8, (unsigned)nparts);
        goto out;
    }
    uint32_t crc = ckpt_crc(m, msize - 8), stored = pd_le_get32(m + msize - 8);
    if (crc != stored) {
        err = REFUSE(true, "%s: manifest: crc32 0x%08x, stored 0x%08x (damaged)", path,
                     (unsigned)crc, (unsigned)stored);
        goto out;
    }
    const uint32_t mv = pd_le_get32(m + 8);
    if (mv < PD_CKPT_VERSION_OLDEST || mv > PD_CKPT_VERSION) {   /* not damage: another paramd's */
        err = REFUSE(false, "%s: manifest: format version %u, this build reads versions %u to "
                     "%u (a checkpoint of another paramd version)", path, (unsigned)mv,
                     PD_CKPT_VERSION_OLDEST, PD_CKPT_VERSION);
        goto out;
    }
    if (pd_le_get64(m + 16) != updates) {
        err = REFUSE(true, "%s: manifest: update %" PRIu64 " (expected update %" PRIu64 ")",
                     path, pd_le_get64(m + 16), updates);
        goto out;
    }
    if (part >= nparts) {
        err = REFUSE(false, "%s: manifest: %u parts, this run reads part %u (another number "
                     "of servers)", path, (unsigned)nparts, (unsigned)part);
        goto out;
    }
    /* Every part: present, size and crc as the manifest says, decodes. */
    for (uint32_t s = 0; s < nparts; s++) {
        PD_TRY_GOTO(err, set_path(path, dir, updates, s), out);
        PD_TRY_GOTO(err, slurp(path, &b, &size, damaged), out);
        uint64_t want = pd_le_get64(m + MAN_HEAD + MAN_ENTRY * s);
        uint32_t wcrc = pd_le_get32(m + MAN_HEAD + MAN_ENTRY * s + 8);
        if (size != want) {
            err = REFUSE(true, "%s: file: %zu bytes, the manifest says %" PRIu64 " (%s)", path,
                         size, want, size < want ? "truncated" : "damaged");
            goto out;
        }
        crc = ckpt_crc(b, size);
        pd_ckpt_part p;
        PD_TRY_GOTO(err, ckpt_decode(path, b, size, layout_hash, config_hash, &p, damaged), out);
        if (p.part != s || p.nparts != nparts || p.updates != updates || crc != wcrc) {
            err = REFUSE(true, "%s: META: part %u of %u at update %" PRIu64 ", crc32 0x%08x; "
                         "the manifest says part %u of %u at update %" PRIu64 ", crc32 0x%08x "
                         "(damaged)", path, (unsigned)p.part, (unsigned)p.nparts, p.updates,
                         (unsigned)crc, (unsigned)s, (unsigned)nparts, updates, (unsigned)wcrc);
            pd_ckpt_part_free(&p);
            goto out;
        }
        if (s == part)
            keep = p;
        else
            pd_ckpt_part_free(&p);
        free(b);
        b = NULL;
    }
    *out = keep;
    keep = (pd_ckpt_part){0};
    err = PD_OK;
out:
    pd_ckpt_part_free(&keep);
    free(b);
    free(m);
    return err;
}

int pd_ckpt_find(const char *dir, uint32_t part, uint64_t layout_hash, uint64_t config_hash,
                 FILE *warn, pd_ckpt_part *out)
{
    set_list l;
    PD_TRY(list_sets(dir, &l));
    int err = PD_OK;
    size_t skipped = 0;
    char first[512] = "";
    for (size_t i = 0; i < l.n; i++) {
        bool damaged = false;
        err = pd_ckpt_read(dir, l.t[i], part, layout_hash, config_hash, out, &damaged);
        if (err == PD_OK || !damaged || err != PD_EINPUT)
            goto done;
        fprintf(warn ? warn : stderr, "paramd: warning: skipping damaged checkpoint: %s\n",
                pd_err_msg());
        if (!skipped++)
            snprintf(first, sizeof first, "%s", pd_err_msg());
    }
    if (l.n == 0)
        err = PD_FAIL(PD_EINPUT, "%s: no checkpoint to resume from", dir);
    else
        err = PD_FAIL(PD_EINPUT, "%s: no valid checkpoint (%zu damaged; newest: %s)", dir,
                      skipped, first);
done:
    set_list_free(&l);
    PD_TRY(err);
    return PD_OK;
}
