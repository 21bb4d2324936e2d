/*
 * test_server_options.c - server/options.c, demixd's command line on
 * getopt_long: "--name VALUE", "--name=VALUE", the short aliases (also
 * "-tN") and unique prefixes set the same fields; the defaults without
 * arguments; an unknown option, a missing value at the end of argv, a
 * number out of range or not whole, a stray operand (also before the
 * options and after "--"), a lone --tls-cert and an unreadable one are -1
 * with demixd's own message, byte for byte; --help and --version print and
 * return 1 (an error before them wins); several parses in one process,
 * also after one that stopped inside a group of short options, each read
 * their own argv.
 *
 * The parser prints to stdout and stderr: parse() sends both to files and
 * reads them back.
 *
 * Thread context: the test's one thread.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "options.h"

static char g_out[16384], g_err[4096]; /* the last parse's stdout, stderr */

/* Read what the file behind fd holds into buf, and empty it. */
static void drain(int fd, FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    assert_int_equal(ftruncate(fd, 0), 0);
}

/* demixd_options_parse of "demixd" and args (NULL-terminated) into o; its
 * return value. Its output lands in g_out and g_err. */
static int parse_argv(demixd_options *o, const char *const *args)
{
    /* Each parse its own strings: a parse that reused the last one's
     * state would read stale text, not the same text again. */
    static char sets[4][32][256];
    static int calls;
    char(*copies)[256] = sets[calls++ % 4];
    char *argv[33] = {copies[0]};
    int argc = 1;
    snprintf(copies[0], sizeof copies[0], "demixd");
    for (; args[argc - 1]; argc++) {
        assert_true(argc < 32);
        snprintf(copies[argc], sizeof copies[argc], "%s", args[argc - 1]);
        argv[argc] = copies[argc];
    }
    argv[argc] = NULL;

    FILE *out = tmpfile(), *err = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    assert_true(saved_out >= 0 && saved_err >= 0);
    assert_true(dup2(fileno(out), 1) >= 0 && dup2(fileno(err), 2) >= 0);
    int r = demixd_options_parse(argc, argv, o);
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(saved_out, 1) >= 0 && dup2(saved_err, 2) >= 0);
    close(saved_out);
    close(saved_err);
    drain(fileno(out), out, g_out, sizeof g_out);
    drain(fileno(err), err, g_err, sizeof g_err);
    fclose(out);
    fclose(err);
    return r;
}

#define PARSE(o, ...) parse_argv(o, (const char *const[]){__VA_ARGS__, NULL})

/* The parse of args fails with exactly this message on stderr. */
#define REFUSED(message, ...)                                                  \
    do {                                                                       \
        demixd_options o_;                                                     \
        assert_int_equal(PARSE(&o_, __VA_ARGS__), -1);                         \
        assert_string_equal(g_err, message);                                   \
        assert_string_equal(g_out, "");                                        \
    } while (0)

static int setup(void **state)
{
    (void)state;
    /* The defaults must not depend on the caller's environment. */
    unsetenv("DEMIX_MODEL");
    unsetenv("DEMIXD_TOKENS_FILE");
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    demixd_options o;
    assert_int_equal(parse_argv(&o, (const char *const[]){NULL}), 0);
    assert_string_equal(g_err, "");
    assert_int_equal(o.backend, DEMIX_BACKEND_AUTO);
    assert_int_equal(o.precision, DEMIX_PRECISION_DEFAULT);
    assert_int_equal(o.threads, demixd_usable_cpus());
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 8080);
    assert_int_equal(o.max_sessions, 0);
    assert_int_equal(o.max_file_bytes, 200L << 20);
    assert_int_equal(o.max_file_seconds, 1200);
    assert_int_equal(o.file_jobs, 2);
    assert_int_equal(o.opus_complexity, 10);
    assert_int_equal(o.idle_timeout_s, 30);
    assert_int_equal(o.max_per_address, -1);
    assert_int_equal(o.min_upload_rate, 16384);
    assert_int_equal(o.log_level, DEMIXD_LOG_INFO);
    assert_int_equal(o.event_loop, DEMIXD_EVENT_LOOP_EPOLL);
    assert_string_equal(o.tokens_path, "");
    assert_string_equal(o.tls_cert, "");
}

static void test_both_value_forms(void **state)
{
    (void)state;
    demixd_options a, b;
    assert_int_equal(PARSE(&a, "--port", "1234", "--host", "::1",
                           "--max-file-mb", "3", "--min-upload-rate", "0",
                           "--log-level", "debug", "--model", "m.st",
                           "--max-per-address", "0", "--allow-origin",
                           "https://a,https://b"),
                     0);
    assert_string_equal(g_err, "");
    assert_int_equal(PARSE(&b, "--port=1234", "--host=::1", "--max-file-mb=3",
                           "--min-upload-rate=0", "--log-level=debug",
                           "--model=m.st", "--max-per-address=0",
                           "--allow-origin=https://a,https://b"),
                     0);
    assert_string_equal(g_err, "");
    for (demixd_options *o = &a; o; o = o == &a ? &b : NULL) {
        assert_int_equal(o->port, 1234);
        assert_string_equal(o->host, "::1");
        assert_int_equal(o->max_file_bytes, 3L << 20);
        assert_int_equal(o->min_upload_rate, 0);
        assert_int_equal(o->log_level, DEMIXD_LOG_DEBUG);
        assert_string_equal(o->model_path, "m.st");
        assert_int_equal(o->max_per_address, 0);
        assert_string_equal(o->allow_origin, "https://a,https://b");
    }
    /* An empty "=" value is a value: an empty model path is kept (no
     * default looked up), an empty port is not a number. */
    assert_int_equal(PARSE(&a, "--model="), 0);
    assert_string_equal(a.model_path, "");
    REFUSED("demixd: --port wants a whole number in 0..65535, not ''\n",
            "--port=");
    /* A value is the next argument whatever it looks like. */
    assert_int_equal(PARSE(&a, "--model", "--help"), 0);
    assert_string_equal(a.model_path, "--help");
    REFUSED("demixd: --port wants a whole number in 0..65535, not '-1'\n",
            "--port", "-1");
    /* The last of an option given twice wins. */
    assert_int_equal(PARSE(&a, "--port", "1", "--port=2"), 0);
    assert_int_equal(a.port, 2);
}

static void test_aliases_and_prefixes(void **state)
{
    (void)state;
    demixd_options o;
    assert_int_equal(
        PARSE(&o, "-m", "x.st", "-b", "cpu", "-p", "fp32", "-t", "3"), 0);
    assert_string_equal(o.model_path, "x.st");
    assert_int_equal(o.backend, DEMIX_BACKEND_CPU);
    assert_int_equal(o.precision, DEMIX_PRECISION_FP32);
    assert_int_equal(o.threads, 3);
    assert_int_equal(PARSE(&o, "-t5", "-pfast", "--threads", "7", "-b=cpu"),
                     -1); /* "-b=cpu": the value "=cpu" */
    assert_string_equal(g_err,
                        "demixd: --backend is auto, cpu or cuda, not '=cpu'\n");
    assert_int_equal(PARSE(&o, "-t5", "-pfast"), 0);
    assert_int_equal(o.threads, 5);
    assert_int_equal(o.precision, DEMIX_PRECISION_FAST);
    /* getopt_long takes a unique prefix of a long name... */
    assert_int_equal(PARSE(&o, "--po", "7", "--opus=3"), 0);
    assert_int_equal(o.port, 7);
    assert_int_equal(o.opus_complexity, 3);
    /* ... but not one that fits several. */
    REFUSED("demixd: unknown argument '--max' (see --help)\n", "--max", "1");
    REFUSED("demixd: unknown argument '--tls=x' (see --help)\n", "--tls=x");
}

static void test_event_loop(void **state)
{
    (void)state;
    demixd_options o;
    assert_int_equal(PARSE(&o, "--event-loop", "poll"), 0);
    assert_int_equal(o.event_loop, DEMIXD_EVENT_LOOP_POLL);
    assert_int_equal(PARSE(&o, "--event-loop=epoll"), 0);
    assert_int_equal(o.event_loop, DEMIXD_EVENT_LOOP_EPOLL);
    assert_string_equal(demixd_event_loop_name(DEMIXD_EVENT_LOOP_POLL), "poll");
    assert_string_equal(demixd_event_loop_name(DEMIXD_EVENT_LOOP_EPOLL),
                        "epoll");
}

static void test_unknown_options(void **state)
{
    (void)state;
    REFUSED("demixd: unknown argument '--bogus' (see --help)\n", "--bogus");
    REFUSED("demixd: unknown argument '--bogus=1' (see --help)\n",
            "--port", "1", "--bogus=1");
    REFUSED("demixd: unknown argument '-x' (see --help)\n", "-x");
    REFUSED("demixd: unknown argument '-xh' (see --help)\n", "-xh");
    /* Options without a value refuse one. */
    REFUSED("demixd: unknown argument '--help=1' (see --help)\n", "--help=1");
    REFUSED("demixd: unknown argument '--version=x' (see --help)\n",
            "--version=x");
    REFUSED("demixd: --backend is auto, cpu or cuda, not 'gpu'\n", "-b",
            "gpu");
    REFUSED("demixd: --precision is fp32 or fast, not 'fp16'\n",
            "--precision=fp16");
    REFUSED("demixd: --log-level is error, warn, info or debug, not "
            "'loud'\n",
            "--log-level", "loud");
    REFUSED("demixd: --event-loop is epoll or poll, not 'kqueue'\n",
            "--event-loop", "kqueue");
    REFUSED("demixd: --host wants an address\n", "--host=");
    REFUSED("demixd: --tokens wants a file name\n", "--tokens", "");
    REFUSED("demixd: --allow-origin wants origins such as "
            "https://host:port\n",
            "--allow-origin=");
}

static void test_missing_value(void **state)
{
    (void)state;
    REFUSED("demixd: --port needs a value\n", "--port");
    REFUSED("demixd: --idle-timeout needs a value\n", "--port", "1",
            "--idle-timeout");
    /* An alias is named by its long name. */
    REFUSED("demixd: --precision needs a value\n", "-p");
    REFUSED("demixd: --threads needs a value\n", "-b", "cpu", "-t");
}

static void test_numbers_in_range(void **state)
{
    (void)state;
    demixd_options o;
    assert_int_equal(PARSE(&o, "--port", "0", "-t", "1024",
                           "--service-threads", "1024", "--device", "255",
                           "--drain-seconds", "3600", "--steps-in-flight",
                           "2", "--max-file-mb", "4096", "--file-jobs", "64",
                           "--min-upload-rate", "1073741824"),
                     0);
    assert_int_equal(o.port, 0);
    assert_int_equal(o.threads, 1024);
    assert_int_equal(o.service_threads, 1024);
    assert_int_equal(o.device, 255);
    assert_int_equal(o.drain_seconds, 3600);
    assert_int_equal(o.steps_in_flight, 2);
    assert_int_equal(o.max_file_bytes, 4096L << 20);
    assert_int_equal(o.file_jobs, 64);
    assert_int_equal(o.min_upload_rate, 1L << 30);

    REFUSED("demixd: --port wants a whole number in 0..65535, not '65536'\n",
            "--port", "65536");
    REFUSED("demixd: --threads wants a whole number in 1..1024, not '0'\n",
            "-t", "0");
    REFUSED("demixd: --max-sessions wants a whole number in 1..1048576, not "
            "'2x'\n",
            "--max-sessions=2x");
    REFUSED("demixd: --max-file-mb wants a whole number in 1..4096, not "
            "'4097'\n",
            "--max-file-mb", "4097");
    REFUSED("demixd: --min-upload-rate wants a whole number in "
            "0..1073741824, not '1073741825'\n",
            "--min-upload-rate", "1073741825");
    REFUSED("demixd: --opus-complexity wants a whole number in 0..10, not "
            "'99999999999999999999'\n",
            "--opus-complexity", "99999999999999999999");
    REFUSED("demixd: --idle-timeout wants a whole number in 0..86400, not "
            "'5 '\n",
            "--idle-timeout", "5 ");
}

static void test_stray_operand(void **state)
{
    (void)state;
    REFUSED("demixd: unknown argument 'foo' (see --help)\n", "foo");
    REFUSED("demixd: unknown argument 'foo' (see --help)\n", "--port", "1",
            "foo");
    /* Not moved behind the options: refused before they are read. */
    REFUSED("demixd: unknown argument 'foo' (see --help)\n", "foo", "--port",
            "x");
    REFUSED("demixd: unknown argument '-' (see --help)\n", "-");
    /* "--" ends the options; an operand after it is still one. */
    REFUSED("demixd: unknown argument '--port' (see --help)\n", "--",
            "--port", "1");
    demixd_options o;
    assert_int_equal(PARSE(&o, "--port", "9", "--"), 0);
    assert_int_equal(o.port, 9);
}

static void test_tls_files(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    assert_non_null(dir);
    char cert[512], key[512], missing[512], message[1024];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    for (const char *p = cert; p; p = p == cert ? key : NULL) {
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
    }
    demixd_options o;
    assert_int_equal(PARSE(&o, "--tls-cert", cert, "--tls-key", key), 0);
    assert_string_equal(o.tls_cert, cert);
    assert_string_equal(o.tls_key, key);
    REFUSED("demixd: --tls-cert and --tls-key go together\n", "--tls-cert",
            cert);
    snprintf(message, sizeof message,
             "demixd: --tls-key %s: No such file or directory\n", missing);
    REFUSED(message, "--tls-cert", cert, "--tls-key", missing);
    REFUSED("demixd: --tls-cert wants a file name\n", "--tls-cert=");
    demix_test_rmtree(dir);
}

static void test_help_and_version(void **state)
{
    (void)state;
    demixd_options o;
    assert_int_equal(PARSE(&o, "--help"), 1);
    assert_string_equal(g_err, "");
    assert_non_null(strstr(g_out, "usage: demixd [OPTIONS]\n"));
    assert_non_null(strstr(g_out, "--max-per-address N"));
    assert_int_equal(PARSE(&o, "--port", "1", "-h", "--bogus"), 1);
    assert_non_null(strstr(g_out, "usage: demixd [OPTIONS]\n"));
    assert_int_equal(PARSE(&o, "--version"), 1);
    assert_string_equal(g_err, "");
    assert_int_equal(strncmp(g_out, "demixd ", 7), 0);
    assert_non_null(strchr(g_out, '\n'));
    assert_int_equal(strchr(g_out, '\n')[1], '\0'); /* one line */
    /* An error before them is reported instead. */
    REFUSED("demixd: --port wants a whole number in 0..65535, not 'x'\n",
            "--port", "x", "--help");
}

static void test_parses_in_a_row(void **state)
{
    (void)state;
    demixd_options o;
    /* Ends inside the group "-hq" (getopt would read on at 'q'). */
    assert_int_equal(PARSE(&o, "-hq"), 1);
    assert_int_equal(PARSE(&o, "-t", "6"), 0);
    assert_string_equal(g_err, "");
    assert_int_equal(o.threads, 6);
    /* Ends at the fourth argument; the next argv is shorter. */
    REFUSED("demixd: --device wants a whole number in 0..255, not '256'\n",
            "--port", "1", "--device", "256");
    assert_int_equal(PARSE(&o, "--port=5"), 0);
    assert_int_equal(o.port, 5);
    assert_int_equal(o.device, 0); /* nothing kept from the parse before */
    assert_int_equal(PARSE(&o, "--port=6"), 0);
    assert_int_equal(o.port, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_both_value_forms),
        cmocka_unit_test(test_aliases_and_prefixes),
        cmocka_unit_test(test_event_loop),
        cmocka_unit_test(test_unknown_options),
        cmocka_unit_test(test_missing_value),
        cmocka_unit_test(test_numbers_in_range),
        cmocka_unit_test(test_stray_operand),
        cmocka_unit_test(test_tls_files),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_parses_in_a_row),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
