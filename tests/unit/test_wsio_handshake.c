/*
 * test_wsio_handshake.c - tools/wsio_crypto.c and tools/wsio_handshake.c:
 * SHA-1 against FIPS 180's examples and lengths around the padding
 * boundaries (digests from Python's hashlib), base64 against RFC 4648's
 * vectors, Sec-WebSocket-Accept against RFC 6455's example; the upgrade
 * request's lines; the answer's check: a good 101 accepted at its full
 * length (and "read more" at every shorter one), header names and tokens
 * case-insensitive, and refused with a sentence: a bad or missing Accept,
 * another status, no Upgrade, no Connection: Upgrade, another
 * subprotocol, a head that never ends.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsio_crypto.h"
#include "wsio_handshake.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void assert_sha1(const void *data, size_t len, const char *want)
{
    uint8_t d[WSIO_SHA1_BYTES];
    char h[2 * WSIO_SHA1_BYTES + 1];
    wsio_crypto_sha1(data, len, d);
    hex(d, sizeof d, h);
    if (strcmp(h, want) != 0)
        fail_msg("SHA-1 of %zu bytes: %s, expected %s", len, h, want);
}

static void test_sha1_vectors(void **state)
{
    (void)state;
    assert_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *two =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_sha1(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    size_t mega = 1000000;
    char *a = malloc(mega);
    assert_non_null(a);
    memset(a, 'a', mega);
    assert_sha1(a, mega, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
    /* bytes (i * 7 + 3) & 255: around the one- and two-block padding */
    static const struct {
        size_t n;
        const char *digest;
    } pad[] = {
        {55, "ddf57317ef34bfee3b6df83d359098930eb278bc"},
        {56, "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"},
        {63, "c55856749bef509bdfe6bfebfc7bf4e793e82132"},
        {64, "bede92be29c3874e1b54ddc77988d606fc857a8e"},
        {119, "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"},
        {120, "82134b02fb3f702491be9bed581eeab59334acb2"},
        {1000, "4231a8a50a10fa9758db8ec71fdef855b751048a"},
    };
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)((i * 7 + 3) & 255);
    for (size_t i = 0; i < sizeof pad / sizeof pad[0]; i++)
        assert_sha1(buf, pad[i].n, pad[i].digest);
}

static void test_base64_vectors(void **state)
{
    (void)state;
    static const char *const in[] = {"",     "f",     "fo",    "foo",
                                     "foob", "fooba", "foobar"};
    static const char *const out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char b[16];
        assert_int_equal(wsio_crypto_base64(in[i], strlen(in[i]), b, sizeof b),
                         DEMIX_OK);
        assert_string_equal(b, out[i]);
    }
    char small[8];
    assert_int_equal(wsio_crypto_base64("foobar", 6, small, sizeof small),
                     DEMIX_ENOSPACE);
    assert_int_equal(wsio_crypto_base64("fooba", 5, small, 9 - 1),
                     DEMIX_ENOSPACE);
}

static void test_rfc6455_accept(void **state)
{
    (void)state;
    char accept[WSIO_HANDSHAKE_ACCEPT_BYTES];
    wsio_handshake_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* RFC 6455's nonce is the 16 bytes "the sample nonce" */
    char key[WSIO_HANDSHAKE_KEY_BYTES];
    wsio_handshake_key((const uint8_t *)"the sample nonce", key);
    assert_string_equal(key, "dGhlIHNhbXBsZSBub25jZQ==");
}

static void test_request(void **state)
{
    (void)state;
    char req[1024];
    size_t n;
    assert_int_equal(wsio_handshake_request(req, sizeof req, "127.0.0.1", 8080,
                                            "/v1/stream", "demix.v1",
                                            "dGhlIHNhbXBsZSBub25jZQ==", &n),
                     DEMIX_OK);
    assert_int_equal(n, strlen(req));
    assert_true(strncmp(req, "GET /v1/stream HTTP/1.1\r\n", 25) == 0);
    assert_non_null(strstr(req, "\r\nHost: 127.0.0.1:8080\r\n"));
    assert_non_null(strstr(req, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(req, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(
        strstr(req, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Protocol: demix.v1\r\n"));
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_true(n >= 4 && strcmp(req + n - 4, "\r\n\r\n") == 0);
    assert_int_equal(
        wsio_handshake_request(req, sizeof req, "::1", 80, "/", NULL, "k", &n),
        DEMIX_OK);
    assert_non_null(strstr(req, "\r\nHost: [::1]:80\r\n"));
    assert_null(strstr(req, "Sec-WebSocket-Protocol"));
    assert_int_equal(wsio_handshake_request(req, 40, "127.0.0.1", 8080,
                                            "/v1/stream", "demix.v1", "k", &n),
                     DEMIX_ENOSPACE);
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define GOOD_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int check(const char *resp, const char *subprotocol, size_t *head,
                 char *why, size_t why_cap)
{
    why[0] = '\0';
    return wsio_handshake_check(resp, strlen(resp), KEY, subprotocol, head, why,
                                why_cap);
}

static void test_check_accepts(void **state)
{
    (void)state;
    const char *good = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: " GOOD_ACCEPT "\r\n"
                       "Sec-WebSocket-Protocol: demix.v1\r\n"
                       "\r\n"
                       "\x81\x02hi"; /* a frame right behind the head */
    size_t head;
    char why[256];
    assert_int_equal(check(good, "demix.v1", &head, why, sizeof why), 1);
    assert_int_equal(head, strlen(good) - 4);
    size_t full = head;
    for (size_t n = 0; n < full; n++) {
        int rc = wsio_handshake_check(good, n, KEY, "demix.v1", &head, why,
                                      sizeof why);
        if (rc != 0)
            fail_msg("%zu of %zu bytes: %d (%s), expected 0", n, full, rc, why);
    }
    /* names and tokens in any case, extra headers, list values, spaces */
    const char *mixed = "HTTP/1.1 101 OK\r\n"
                        "server: x\r\n"
                        "UPGRADE:   WebSocket  \r\n"
                        "connection: keep-alive, upgrade\r\n"
                        "sec-websocket-accept:" GOOD_ACCEPT "\r\n"
                        "\r\n";
    assert_int_equal(check(mixed, "demix.v1", &head, why, sizeof why), 1);
    assert_int_equal(head, strlen(mixed));
    assert_int_equal(check(mixed, NULL, &head, why, sizeof why), 1);
}

static void test_check_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *resp;
        const char *why; /* in the sentence */
    } cases[] = {
        {"bad accept",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOA=\r\n\r\n",
         "does not match"},
        {"no accept",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n\r\n",
         "no Sec-WebSocket-Accept"},
        {"404", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
         "404 Not Found"},
        {"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", "with HTTP"},
        {"no upgrade",
         "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " GOOD_ACCEPT "\r\n\r\n",
         "Upgrade: websocket"},
        {"upgrade to h2c",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " GOOD_ACCEPT "\r\n\r\n",
         "Upgrade: websocket"},
        {"no connection upgrade",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: keep-alive\r\n"
         "Sec-WebSocket-Accept: " GOOD_ACCEPT "\r\n\r\n",
         "Connection: Upgrade"},
        {"other subprotocol",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " GOOD_ACCEPT "\r\n"
         "Sec-WebSocket-Protocol: demix.v2\r\n\r\n",
         "demix.v2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t head = 99;
        char why[256];
        int rc = check(cases[i].resp, "demix.v1", &head, why, sizeof why);
        if (rc != DEMIX_EPROTOCOL || !strstr(why, cases[i].why))
            fail_msg("%s: %d '%s', expected a refusal naming '%s'",
                     cases[i].what, rc, why, cases[i].why);
        assert_int_equal(head, 0);
    }
    /* a subprotocol when none was asked for */
    size_t head;
    char why[256];
    assert_int_equal(check(cases[7].resp, NULL, &head, why, sizeof why),
                     DEMIX_EPROTOCOL);
    /* a head that never ends */
    char *big = malloc(WSIO_HANDSHAKE_MAX_HEAD + 1);
    assert_non_null(big);
    memset(big, 'x', WSIO_HANDSHAKE_MAX_HEAD);
    memcpy(big, "HTTP/1.1 101 OK\r\n", 17);
    big[WSIO_HANDSHAKE_MAX_HEAD] = '\0';
    assert_int_equal(check(big, "demix.v1", &head, why, sizeof why),
                     DEMIX_EPROTOCOL);
    assert_non_null(strstr(why, "end of headers"));
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_vectors),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_rfc6455_accept),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_check_accepts),
        cmocka_unit_test(test_check_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
