/*
 * test_stream_url.c - tools/cli/stream_url.c: the stream endpoint's path
 * appended to a URL that has none, kept otherwise, and the hint for a
 * refused upgrade.
 */
#include "testutil.h"

#include <string.h>

#include "stream_url.h"

static void expect(const char *url, int rc, const char *want)
{
    char out[256];
    assert_int_equal(stream_url_complete(url, out, sizeof out), rc);
    assert_string_equal(out, want);
}

static void test_appends_when_no_path(void **state)
{
    (void)state;
    expect("ws://127.0.0.1:8080", 1, "ws://127.0.0.1:8080/v1/stream");
    expect("ws://127.0.0.1:8080/", 1, "ws://127.0.0.1:8080/v1/stream");
    expect("wss://demix.example", 1, "wss://demix.example/v1/stream");
    expect("ws://[::1]:8080", 1, "ws://[::1]:8080/v1/stream");
    expect("ws://h:1/?x=1", 1, "ws://h:1/v1/stream?x=1");
}

static void test_keeps_a_path(void **state)
{
    (void)state;
    expect("ws://127.0.0.1:8080/v1/stream", 0, "ws://127.0.0.1:8080/v1/stream");
    expect("wss://proxy.example/demix/v1/stream", 0,
           "wss://proxy.example/demix/v1/stream");
    expect("ws://h:1/x", 0, "ws://h:1/x");
    expect("not a url", 0, "not a url");
}

static void test_short_buffer(void **state)
{
    (void)state;
    char out[24];
    assert_int_equal(stream_url_complete("ws://127.0.0.1:8080", out, sizeof out),
                     -1);
    assert_string_equal(out, "ws://127.0.0.1:8080");
}

static void test_hint(void **state)
{
    (void)state;
    const char *why = "HS: ws upgrade response not 101";
    assert_non_null(strstr(stream_url_hint("ws://h:1/stream", why),
                           "/v1/stream"));
    assert_string_equal(stream_url_hint("ws://h:1/v1/stream", why), "");
    assert_string_equal(stream_url_hint("ws://h:1/v1/stream?t=1", why), "");
    assert_string_equal(stream_url_hint("ws://h:1/x", "connection refused"),
                        "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_when_no_path),
        cmocka_unit_test(test_keeps_a_path),
        cmocka_unit_test(test_short_buffer),
        cmocka_unit_test(test_hint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
