/* Run directory writer and SHA-256: known digests (FIPS 180-4 examples),
 * atomic replacement, JSON rows with nulls, params.bin bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paramd/error.h"
#include "paramd/metrics.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[65];
    pd_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    pd_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pd_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* Feeding in pieces of every size equals one call (buffer boundaries). */
static void test_sha256_incremental(void **state)
{
    (void)state;
    char data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 + 3);
    char want[65];
    pd_sha256_hex(data, sizeof data, want);
    for (size_t step = 1; step < 130; step += 9) {
        pd_sha256 c;
        uint8_t d[32];
        pd_sha256_init(&c);
        for (size_t off = 0; off < sizeof data; off += step)
            pd_sha256_update(&c, data + off, off + step > sizeof data ? sizeof data - off : step);
        pd_sha256_final(&c, d);
        char got[65];
        for (int i = 0; i < 32; i++)
            snprintf(got + 2 * i, 3, "%02x", d[i]);
        assert_string_equal(got, want);
    }
}

static void test_run_directory(void **state)
{
    (void)state;
    char dir[] = "/tmp/paramd-test-metrics-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[256], path[512];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    pd_metrics *m = NULL;
    assert_int_equal(pd_metrics_open(sub, false, &m), PD_OK);

    const char *names[] = {"W", "b"};
    double pn[] = {1.5, 0.25};
    pd_metrics_row row = {.wall_s = 1.25, .update = 10, .epoch = 0.5, .examples = 640,
                          .lr = 0.1, .train_loss = 2.0, .valid_loss = NAN, .valid_acc = NAN,
                          .test_loss = 0.75, .test_acc = 0.875, .staleness_mean = NAN,
                          .staleness_max = -1, .dropped = -1, .ntensors = 2,
                          .tensor_names = names, .param_norms = pn};
    assert_int_equal(pd_metrics_append(m, &row), PD_OK);
    snprintf(path, sizeof path, "%s/metrics.jsonl", sub);
    assert_string_equal(slurp(path),
        "{\"wall_s\":1.25,\"update\":10,\"epoch\":0.5,\"examples\":640,\"lr\":0.1,"
        "\"train_loss\":2,\"valid_loss\":null,\"valid_acc\":null,\"test_loss\":0.75,"
        "\"test_acc\":0.875,\"staleness_mean\":null,\"staleness_max\":null,\"dropped\":null,"
        "\"param_norm\":{\"W\":1.5,\"b\":0.25}}\n");

    assert_int_equal(pd_metrics_status(m, "training", &row), PD_OK);
    snprintf(path, sizeof path, "%s/status.json", sub);
    assert_non_null(strstr(slurp(path), "{\"phase\":\"training\",\"wall_s\":1.25,"));

    float theta[3] = {1.0f, -2.0f, 0.5f};
    char hex[65], want[65];
    assert_int_equal(pd_metrics_write_params(m, theta, 3, hex), PD_OK);
    pd_sha256_hex(theta, sizeof theta, want);
    assert_string_equal(hex, want);
    snprintf(path, sizeof path, "%s/params.bin", sub);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 12);
    FILE *f = fopen(path, "rb");
    unsigned char bytes[12];
    assert_int_equal(fread(bytes, 1, 12, f), 12);
    fclose(f);
    /* 1.0f little-endian is 00 00 80 3f */
    assert_int_equal(bytes[2], 0x80);
    assert_int_equal(bytes[3], 0x3f);

    pd_summary s = {.mode = "sync", .optimizer = "sgd", .exit = "done", .workers = 2,
                    .servers = 1, .updates = 5, .epochs = 1, .wall_s = 2, .examples_per_s = 3,
                    .test_loss = 0.5, .test_acc = 0.9, .valid_loss = NAN, .valid_acc = NAN,
                    .dropped = 0, .staleness_mean = 0, .staleness_max = 0,
                    .staleness_hist = (int64_t[]){5}, .staleness_hist_n = 1, .best_update = -1,
                    .applied = 10, .sent = 10, .bad = 0, .server_cpu_s = 0.5,
                    .server_loop_cpu_s = NAN, .params_sent_floats = 1234,
                    .workers_stats = (pd_worker_stats[]){{1, 7, 2, 0.5, 12.5, 1.0, -1},
                                                         {2, 3, 0, NAN, NAN, 0.25, 4}},
                    .n_workers_stats = 2,
                    .lost = (pd_lost_worker[]){{1, 2, 3, 4, 1.5, -1}}, .n_lost = 1};
    memcpy(s.params_sha256, hex, 65);
    assert_int_equal(pd_metrics_summary(m, &s), PD_OK);
    snprintf(path, sizeof path, "%s/summary.json", sub);
    const char *text = slurp(path);
    assert_non_null(strstr(text, "\"mode\":\"sync\""));
    assert_non_null(strstr(text, "\"staleness_hist\":[5]"));
    assert_non_null(strstr(text, "\"best_update\":null"));
    assert_non_null(strstr(text, "\"server_loop_cpu_s\":null"));
    assert_non_null(strstr(text, "\"params_sent_floats\":1234"));
    assert_non_null(strstr(text, "\"per_worker\":[{\"rank\":1,\"applied\":7,\"dropped\":2,"
                                 "\"staleness_mean\":0.5,\"gradients_per_s\":12.5,\"epochs\":1,"
                                 "\"lost_at_update\":null},{\"rank\":2,\"applied\":3,\"dropped\":0,"
                                 "\"staleness_mean\":null,\"gradients_per_s\":null,\"epochs\":0.25,"
                                 "\"lost_at_update\":4}]"));
    assert_non_null(strstr(text, "\"workers_lost\":[{\"worker\":1,\"rank\":2,\"last_update\":3,"
                                 "\"update\":4,\"wall_s\":1.5,\"rejoined_at_update\":null}]"));
    assert_non_null(strstr(text, want));
    pd_metrics_close(&m);
    assert_null(m);
    pd_metrics_close(&m);   /* accepts NULL */

    /* A second run in the same directory is refused, not overwritten. */
    pd_metrics *again = (pd_metrics *)1;
    assert_int_equal(pd_metrics_open(sub, false, &again), PD_EINPUT);
    assert_null(again);
    char refused[700];
    snprintf(refused, sizeof refused, "%s: the run directory already holds a run's results "
             "(summary.json); give another --out (or run.out_dir), or remove %s first", sub, sub);
    assert_string_equal(pd_err_msg(), refused);

    /* The directory holds exactly the four files written: no temporary
     * (NAME.tmp.PID) is left behind by the atomic replacements. A directory
     * that cannot be read fails here rather than looking empty. */
    const char *files[] = {"metrics.jsonl", "params.bin", "status.json", "summary.json"};
    DIR *dd = opendir(sub);
    if (!dd)
        fail_msg("%s: cannot list: %s", sub, strerror(errno));
    unsigned seen = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(dd)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool known = false;
        for (unsigned i = 0; i < 4; i++)
            if (strcmp(e->d_name, files[i]) == 0) {
                seen |= 1u << i;
                known = true;
            }
        if (!known)
            fail_msg("%s: %s is not one of the files written (a temporary left behind?)",
                     sub, e->d_name);
        errno = 0;
    }
    if (errno != 0)
        fail_msg("%s: reading the listing failed: %s", sub, strerror(errno));
    closedir(dd);
    assert_int_equal(seen, 0xf);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_open_fails_on_file(void **state)
{
    (void)state;
    char path[] = "/tmp/paramd-test-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    pd_metrics *m = NULL;
    assert_int_equal(pd_metrics_open(path, false, &m), PD_EINPUT);
    char want[512];
    snprintf(want, sizeof want, "%s: not a directory (the run directory, run.out_dir or --out: "
             "choose one paramd can create)", path);
    assert_string_equal(pd_err_msg(), want);
    assert_null(m);
    unlink(path);
}

/* JSON numbers: the digits asked for, null for NAN and infinities. */
static void test_json_number(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    pd_metrics_json_number(f, 0.1, 17);
    fputc(' ', f);
    pd_metrics_json_number(f, 1.0 / 3.0, 9);
    fputc(' ', f);
    pd_metrics_json_number(f, -2.5, 9);
    fputc(' ', f);
    pd_metrics_json_number(f, NAN, 17);
    fputc(' ', f);
    pd_metrics_json_number(f, -INFINITY, 9);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(text, "0.10000000000000001 0.333333333 -2.5 null null");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_incremental),
        cmocka_unit_test(test_run_directory),
        cmocka_unit_test(test_open_fails_on_file),
        cmocka_unit_test(test_json_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
