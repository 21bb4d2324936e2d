/*
 * test_tokens.c - server/tokens.c, the --tokens file and the check: blank
 * lines, comments and surrounding whitespace are skipped; each loaded
 * token is accepted and anything else (a prefix, an extension, another
 * length, a candidate longer than any token) is WRONG, no token MISSING,
 * and no token set accepts everything; a bad line, an empty file, a
 * missing file and a directory are refused with the documented status and
 * line; NULL arguments are DEMIX_EARG.
 *
 * Thread context: the test's one thread.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "protocol.h"
#include "tokens.h"

static char g_dir[256]; /* the test's temporary folder */

/* A file in the test's temporary folder holding text; its path. */
static const char *write_file(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static int check(const demixd_tokens *t, const char *token)
{
    return demixd_tokens_check(t, token, token ? strlen(token) : 0);
}

static void test_load_and_check(void **state)
{
    (void)state;
    const char *path = write_file("tokens", "# demixd tokens\n"
                                            "\n"
                                            "alpha-1\n"
                                            "   \t beta_2 \r\n"
                                            "  # an indented comment\n"
                                            "gamma~3");
    demixd_tokens *t = NULL;
    int line = -1;
    char err[256];
    assert_int_equal(demixd_tokens_load(path, &t, &line, err, sizeof err),
                     DEMIX_OK);
    assert_non_null(t);
    assert_int_equal(demixd_tokens_count(t), 3);
    assert_int_equal(check(t, "alpha-1"), DEMIXD_AUTH_OK);
    assert_int_equal(check(t, "beta_2"), DEMIXD_AUTH_OK);
    assert_int_equal(check(t, "gamma~3"), DEMIXD_AUTH_OK);
    assert_int_equal(check(t, NULL), DEMIXD_AUTH_MISSING);
    assert_int_equal(check(t, ""), DEMIXD_AUTH_WRONG);
    assert_int_equal(check(t, "alpha-"), DEMIXD_AUTH_WRONG);
    assert_int_equal(check(t, "alpha-12"), DEMIXD_AUTH_WRONG);
    assert_int_equal(check(t, " beta_2"), DEMIXD_AUTH_WRONG);
    assert_int_equal(check(t, "# demixd"), DEMIXD_AUTH_WRONG);
    /* The length counts: a token followed by a NUL is another candidate. */
    assert_int_equal(demixd_tokens_check(t, "beta_2\0", 7), DEMIXD_AUTH_WRONG);
    assert_int_equal(demixd_tokens_check(t, "beta_2xyz", 6), DEMIXD_AUTH_OK);
    demixd_tokens_destroy(t);

    /* Without a token set everything passes, even no token. */
    assert_int_equal(check(NULL, NULL), DEMIXD_AUTH_OK);
    assert_int_equal(check(NULL, "anything"), DEMIXD_AUTH_OK);
    assert_int_equal(demixd_tokens_count(NULL), 0);
    demixd_tokens_destroy(NULL); /* a no-op */
}

/* The longest token is accepted; a candidate one byte longer that starts
 * with it is not (it is cut for the comparison, not matched). */
static void test_longest_token(void **state)
{
    (void)state;
    char token[DEMIX_PROTO_TOKEN_MAX_BYTES + 2];
    memset(token, 'k', DEMIX_PROTO_TOKEN_MAX_BYTES);
    token[DEMIX_PROTO_TOKEN_MAX_BYTES] = '\n';
    token[DEMIX_PROTO_TOKEN_MAX_BYTES + 1] = '\0';
    const char *path = write_file("longest", token);
    demixd_tokens *t = NULL;
    int line;
    char err[256];
    assert_int_equal(demixd_tokens_load(path, &t, &line, err, sizeof err),
                     DEMIX_OK);
    token[DEMIX_PROTO_TOKEN_MAX_BYTES] = '\0';
    assert_int_equal(check(t, token), DEMIXD_AUTH_OK);
    char longer[DEMIX_PROTO_TOKEN_MAX_BYTES + 2];
    memset(longer, 'k', DEMIX_PROTO_TOKEN_MAX_BYTES + 1);
    longer[DEMIX_PROTO_TOKEN_MAX_BYTES + 1] = '\0';
    assert_int_equal(check(t, longer), DEMIXD_AUTH_WRONG);
    demixd_tokens_destroy(t);
}

/* A refused file: status, line, and a sentence. */
static void expect_refused(const char *name, const char *text, int status,
                           int at_line, const char *words)
{
    const char *path = write_file(name, text);
    demixd_tokens *t = (demixd_tokens *)&t; /* must be reset to NULL */
    int line = -1;
    char err[256] = "";
    assert_int_equal(demixd_tokens_load(path, &t, &line, err, sizeof err),
                     status);
    assert_null(t);
    assert_int_equal(line, at_line);
    if (!strstr(err, words))
        fail_msg("%s: '%s' does not say '%s'", name, err, words);
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_refused("empty", "", DEMIX_EFORMAT, 0, "no token");
    expect_refused("comments", "# only\n\n   \n", DEMIX_EFORMAT, 0, "no token");
    expect_refused("space", "good\nbad token\n", DEMIX_EFORMAT, 2,
                   "printable ASCII");
    expect_refused("control", "ok\nok2\nx\x01y\n", DEMIX_EFORMAT, 3, "control");
    expect_refused("utf8", "caf\xc3\xa9\n", DEMIX_EFORMAT, 1, "non-ASCII");
    char big[DEMIX_PROTO_TOKEN_MAX_BYTES + 3];
    memset(big, 'x', DEMIX_PROTO_TOKEN_MAX_BYTES + 1);
    big[DEMIX_PROTO_TOKEN_MAX_BYTES + 1] = '\n';
    big[DEMIX_PROTO_TOKEN_MAX_BYTES + 2] = '\0';
    expect_refused("long", big, DEMIX_EFORMAT, 1, "the limit is");

    demixd_tokens *t = NULL;
    int line = -1;
    char err[256];
    char path[4096];
    snprintf(path, sizeof path, "%s/no-such-file", g_dir);
    assert_int_equal(demixd_tokens_load(path, &t, &line, err, sizeof err),
                     DEMIX_EIO);
    assert_null(t);
    assert_int_equal(line, 0);
    assert_non_null(strstr(err, "cannot open"));
    snprintf(path, sizeof path, "%s/a-folder", g_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(demixd_tokens_load(path, &t, &line, err, sizeof err),
                     DEMIX_EIO);
    assert_null(t);
}

static void test_null_arguments(void **state)
{
    (void)state;
    const char *path = write_file("one", "token\n");
    demixd_tokens *t = NULL;
    int line;
    char err[64];
    assert_int_equal(demixd_tokens_load(NULL, &t, &line, err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demixd_tokens_load(path, NULL, &line, err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demixd_tokens_load(path, &t, NULL, err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demixd_tokens_load(path, &t, &line, NULL, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demixd_tokens_load(path, &t, &line, err, 0), DEMIX_EARG);
    assert_null(t);
}

static int setup(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    demix_test_rmtree(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_check),
        cmocka_unit_test(test_longest_token),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
