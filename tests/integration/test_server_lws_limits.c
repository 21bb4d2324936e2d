/*
 * test_server_lws_limits.c - two behaviours demixd inherits from
 * libwebsockets 4.1 and cannot change through any lws option or callback
 * (docs/server.md, "What lws 4.1 decides"). These tests pin today's
 * behaviour, so that a change (a newer lws, or demixd parsing more
 * itself) shows up here and the documentation is updated with it:
 *
 *   - a client frame without a mask is taken like a masked one: a start
 *     sent unmasked gets its ready (RFC 6455 section 5.1 says the server
 *     must close with 1002);
 *   - lws decodes %xx and removes dot segments from the path before any
 *     callback sees it: /.. and /%2e%2e are / (index.html, 200), /../x
 *     is /x (404 here), /a/../index.html is /index.html; nothing outside
 *     the web root can be named (/%2e%2e/%2e%2e/etc/passwd is 404).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_fixture.h"

static struct {
    char dir[256];
    const char *model;
    server_fixture fx;
    int started;
} g;

static int setup(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.model = strdup(demix_test_data_path("tiny.safetensors"));
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "2",
                             (const char *)NULL))
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free((void *)g.model);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

static void test_unmasked_frames_are_taken(void **state)
{
    (void)state;
    wst_conn *c;
    int status = 0;
    assert_int_equal(wst_open(g.fx.port, DEMIX_PROTO_PATH,
                              DEMIX_PROTO_SUBPROTOCOL, &c, &status),
                     0);
    demix_proto_start st;
    const char *stems[] = {"vocals", NULL};
    fx_start_init(&st, 44100, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, stems);
    char text[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_start(&st, text, sizeof text, &len), 0);
    assert_true(len < 65536);
    /* FIN + text, no mask bit, the 16-bit length form when needed */
    uint8_t frame[4 + DEMIX_PROTO_MAX_TEXT_BYTES];
    size_t h = 0;
    frame[h++] = 0x81;
    if (len < 126) {
        frame[h++] = (uint8_t)len;
    } else {
        frame[h++] = 126;
        frame[h++] = (uint8_t)(len >> 8);
        frame[h++] = (uint8_t)len;
    }
    memcpy(frame + h, text, len);
    assert_int_equal(wst_send_raw(c, frame, h + len), 0);
    wst_msg m;
    assert_int_equal(wst_recv(c, &m, FX_TIMEOUT_MS), 1);
    print_message("unmasked start: the server answered %.*s\n",
                  (int)(m.len < 80 ? m.len : 80), (const char *)m.data);
    assert_int_equal(m.opcode, WST_TEXT);
    assert_non_null(strstr((const char *)m.data, "\"type\":\"ready\""));
    wst_free(c);
}

static int get(const char *path, wst_http_response *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(
        wst_http(g.fx.port, "GET", path, NULL, NULL, 0, r, FX_TIMEOUT_MS), 0);
    return r->status;
}

static void test_dot_segments_are_normalised(void **state)
{
    (void)state;
    wst_http_response root, r;
    assert_int_equal(get("/", &root), 200);
    static const char *const same_as_root[] = {"/..", "/%2e%2e", "/./",
                                               "/%2E%2E/"};
    for (size_t i = 0; i < sizeof same_as_root / sizeof *same_as_root; i++) {
        int st = get(same_as_root[i], &r);
        print_message("GET %s: %d\n", same_as_root[i], st);
        assert_int_equal(st, 200);
        assert_int_equal(r.body_len, root.body_len);
        assert_memory_equal(r.body, root.body, root.body_len);
        wst_http_response_free(&r);
    }
    static const char *const not_found[] = {"/../x", "/%2e%2e/%2e%2e/etc/passwd",
                                            "/../../../etc/passwd"};
    for (size_t i = 0; i < sizeof not_found / sizeof *not_found; i++) {
        int st = get(not_found[i], &r);
        print_message("GET %s: %d\n", not_found[i], st);
        assert_int_equal(st, 404);
        wst_http_response_free(&r);
    }
    assert_int_equal(get("/a/../index.html", &r), 200);
    assert_int_equal(r.body_len, root.body_len);
    wst_http_response_free(&r);
    wst_http_response_free(&root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unmasked_frames_are_taken),
        cmocka_unit_test(test_dot_segments_are_normalised),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
