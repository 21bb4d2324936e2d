/*
 * client_session.c - see client_session.h: the client side of one
 * streaming session as a state machine over events, with no I/O of its
 * own. Texts of the reports are the ones `demix stream` and `demix
 * loadgen` printed before they shared this core.
 *
 * Thread context: the thread that delivers the session's events.
 */
#include "client_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client_parse.h"

#define CLOSE_ABNORMAL 1006 /* RFC 6455: closed without a close frame */
#define CLOSE_GOING_AWAY 1001
#define CLOSE_RESTART 1012     /* RFC 6455 registry: service restart */
#define CLOSE_TRY_LATER 1013   /* RFC 6455 registry: try again later */

void client_session_init(client_session *cs, const client_session_ops *ops,
                         void *user)
{
    memset(cs, 0, sizeof *cs);
    cs->ops = ops;
    cs->user = user;
}

static void report(client_session *cs, client_failure kind, int close,
                   const char *fmt, va_list ap)
{
    if (cs->failed)
        return; /* the first word stands */
    cs->failed = 1;
    cs->failure = kind;
    char text[CLIENT_SESSION_TEXT_BYTES];
    vsnprintf(text, sizeof text, fmt, ap);
    cs->ops->on_failure(cs->user, kind, text);
    if (close && cs->ops->is_open(cs->user))
        cs->ops->close(cs->user, 1000, "client error");
}

void client_session_fail(client_session *cs, client_failure kind,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cs, kind, 1, fmt, ap);
    va_end(ap);
}

void client_session_note(client_session *cs, client_failure kind,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cs, kind, 0, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ sending */

static void send_start(client_session *cs)
{
    demix_proto_start st;
    demix_proto_start_init(&st);
    cs->ops->make_start(cs->user, &st);
    size_t cap, len;
    char *buf = (char *)cs->ops->tx_buffer(cs->user, &cap);
    if (demix_proto_write_start(&st, buf, cap, &len)) {
        client_session_fail(cs, CLIENT_FAIL_CLIENT,
                            "the start message would be refused (check %s)",
                            cs->ops->start_hint);
        return;
    }
    if (cs->ops->send(cs->user, 0, len)) {
        client_session_fail(cs, CLIENT_FAIL_CLOSED,
                            "the connection failed while sending start");
        return;
    }
    cs->start_sent = 1;
    cs->rate_hz = st.sample_rate_hz;
    cs->channels = st.channels;
    cs->in_codec = st.input_codec;
    cs->out_codec = st.output_codec;
    cs->mode = st.mode;
    cs->stem_count_req = st.mode == DEMIX_PROTO_MODE_STEMS ? st.stem_count : 0;
}

uint8_t *client_session_audio_payload(client_session *cs, size_t *cap)
{
    size_t all;
    uint8_t *buf = cs->ops->tx_buffer(cs->user, &all);
    if (all < DEMIX_PROTO_AUDIO_IN_HEADER_BYTES) {
        client_session_fail(cs, CLIENT_FAIL_CLIENT,
                            "cannot write an audio header");
        return NULL;
    }
    *cap = all - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES;
    return buf + DEMIX_PROTO_AUDIO_IN_HEADER_BYTES;
}

int client_session_send_audio(client_session *cs, size_t payload_bytes)
{
    size_t cap;
    uint8_t *buf = cs->ops->tx_buffer(cs->user, &cap);
    demix_proto_audio_in h = {.codec = cs->in_codec, .flags = 0,
                              .seq = cs->seq_in};
    if (demix_proto_audio_in_write_header(&h, buf, cap)) {
        client_session_fail(cs, CLIENT_FAIL_CLIENT,
                            "cannot write an audio header");
        return -1;
    }
    if (cs->ops->send(cs->user, 1,
                      DEMIX_PROTO_AUDIO_IN_HEADER_BYTES + payload_bytes)) {
        client_session_fail(cs, CLIENT_FAIL_CLOSED,
                            "the connection failed while sending audio");
        return -1;
    }
    cs->seq_in++;
    return 0;
}

int client_session_send_end(client_session *cs)
{
    char msg[64];
    size_t len, cap;
    if (demix_proto_write_end(msg, sizeof msg, &len)) {
        client_session_fail(cs, CLIENT_FAIL_CLIENT,
                            "cannot write the end message");
        return -1;
    }
    uint8_t *buf = cs->ops->tx_buffer(cs->user, &cap);
    memcpy(buf, msg, len);
    if (cs->ops->send(cs->user, 0, len)) {
        client_session_fail(cs, CLIENT_FAIL_CLOSED,
                            "the connection failed while sending end");
        return -1;
    }
    cs->end_sent = 1;
    cs->state = CLIENT_ENDING;
    return 0;
}

/* -------------------------------------------------------------- events */

void client_session_on_open(client_session *cs)
{
    cs->state = CLIENT_WAIT_READY;
    cs->ops->want_write(cs->user);
}

int client_session_on_writable(client_session *cs)
{
    if (cs->failed)
        return 0;
    if (cs->state == CLIENT_WAIT_READY) {
        if (!cs->start_sent)
            send_start(cs);
        return 0;
    }
    return cs->state == CLIENT_STREAMING;
}

static void handle_ready(client_session *cs, const demix_proto_ready *r)
{
    if (cs->state != CLIENT_WAIT_READY) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent ready twice");
        return;
    }
    int stems = r->mode == DEMIX_PROTO_MODE_STEMS ? r->stem_count : 0;
    if (r->client_rate_hz != cs->rate_hz || r->channels != cs->channels ||
        r->input_codec != cs->in_codec || r->output_codec != cs->out_codec ||
        r->mode != cs->mode || stems != cs->stem_count_req) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server's ready does not match the start "
                            "(rate %d, channels %d, codecs %s/%s, %d stems)",
                            r->client_rate_hz, r->channels,
                            demix_proto_codec_name(r->input_codec),
                            demix_proto_codec_name(r->output_codec),
                            r->stem_count);
        return;
    }
    if (r->mode == DEMIX_PROTO_MODE_MIX) {
        cs->slots[0].wire_index = DEMIX_PROTO_STEM_MIX;
        snprintf(cs->slots[0].name, sizeof cs->slots[0].name, "mix");
        cs->slot_count = 1;
    } else {
        int seen[DEMIX_PROTO_MAX_STEMS] = {0};
        for (int i = 0; i < r->stem_count; i++) {
            int src = r->stem_source[i];
            if (src < 0 || src >= DEMIX_PROTO_MAX_STEMS || seen[src]) {
                client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                                    "the server's ready lists a bad stem "
                                    "index %d",
                                    src);
                return;
            }
            seen[src] = 1;
            client_slot *sl = &cs->slots[i];
            sl->wire_index = src;
            memcpy(sl->name, r->sources[src], sizeof sl->name);
            sl->name[sizeof sl->name - 1] = '\0';
        }
        cs->slot_count = r->stem_count;
    }
    if (cs->ops->on_ready && cs->ops->on_ready(cs->user, r))
        return;
    if (cs->failed)
        return;
    cs->state = CLIENT_STREAMING;
    cs->ops->want_write(cs->user);
}

void client_session_allow_retry(client_session *cs, int on)
{
    cs->retry_ok = on;
}

int client_session_retry_code(demix_proto_code code)
{
    return code == DEMIX_PROTO_ERR_RESTARTING ||
           code == DEMIX_PROTO_ERR_AT_CAPACITY ||
           code == DEMIX_PROTO_ERR_SHUTTING_DOWN;
}

static void handle_error(client_session *cs, const demix_proto_error *e)
{
    cs->has_error_code = 1; /* (a failed session reads no more messages) */
    cs->error_code = e->code;
    if (cs->retry_ok && !cs->have_summary &&
        client_session_retry_code(e->code)) {
        /* Not a failure: the close that follows asks for a reconnect. */
        snprintf(cs->retry_why, sizeof cs->retry_why, "server error %s: %s",
                 demix_proto_code_name(e->code), e->message);
        size_t n = strlen(cs->retry_why); /* it goes on after a ';' */
        if (n && cs->retry_why[n - 1] == '.')
            cs->retry_why[n - 1] = '\0';
        cs->state = CLIENT_FINISHING;
        return;
    }
    /* The server closes after an error: wait for it. */
    client_session_note(cs, CLIENT_FAIL_SERVER, "server error %s: %s%s%s%s",
                        demix_proto_code_name(e->code), e->message,
                        e->field[0] ? " (field " : "", e->field,
                        e->field[0] ? ")" : "");
    cs->state = CLIENT_FINISHING;
}

void client_session_on_text(client_session *cs, const uint8_t *data,
                            size_t len)
{
    if (cs->failed)
        return; /* after a failure only the close matters */
    demix_proto_server_msg m;
    demix_proto_error perr;
    if (client_parse_server((const char *)data, len, &m, &perr)) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent a malformed message: %s",
                            perr.message);
        return;
    }
    switch (m.type) {
    case DEMIX_PROTO_READY:
        handle_ready(cs, &m.ready);
        break;
    case DEMIX_PROTO_ERROR:
        handle_error(cs, &m.error);
        break;
    case DEMIX_PROTO_SUMMARY:
        if (cs->state != CLIENT_ENDING) {
            client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                                "the server sent a summary before the end");
            return;
        }
        cs->have_summary = 1;
        cs->state = CLIENT_FINISHING;
        if (cs->ops->on_summary)
            cs->ops->on_summary(cs->user, &m.summary);
        break;
    case DEMIX_PROTO_STATS:
        break;
    default:
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent an unexpected %s message",
                            demix_proto_type_name(m.type));
        break;
    }
}

void client_session_close(client_session *cs, int code, const char *reason)
{
    cs->state = CLIENT_FINISHING;
    if (cs->ops->is_open(cs->user))
        cs->ops->close(cs->user, code, reason);
}

int client_session_slot_of(const client_session *cs, int wire_index)
{
    for (int i = 0; i < cs->slot_count; i++)
        if (cs->slots[i].wire_index == wire_index)
            return i;
    return -1;
}

int client_session_on_binary(client_session *cs, const uint8_t *data,
                             size_t len)
{
    if (cs->failed)
        return 0;
    if (cs->state < CLIENT_STREAMING) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent audio before ready");
        return 0;
    }
    demix_proto_audio_out h;
    demix_proto_error perr;
    if (demix_proto_audio_out_decode(data, len, cs->out_codec, cs->channels,
                                     cs->seq_out, &h, &perr)) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent a malformed audio message "
                            "(seq %u): %s",
                            (unsigned)cs->seq_out, perr.message);
        return 0;
    }
    cs->seq_out++;
    int slot = client_session_slot_of(cs, h.stem);
    if (slot < 0) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent stem index %u, which was not "
                            "asked for",
                            (unsigned)h.stem);
        return 0;
    }
    client_slot *sl = &cs->slots[slot];
    if ((int64_t)h.position != sl->next_pos) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent %s at position %llu, expected "
                            "%lld (a gap or an overlap)",
                            sl->name, (unsigned long long)h.position,
                            (long long)sl->next_pos);
        return 0;
    }
    if (sl->last_seen) {
        client_session_fail(cs, CLIENT_FAIL_PROTOCOL,
                            "the server sent %s audio after its LAST message",
                            sl->name);
        return 0;
    }
    if (cs->ops->on_audio && cs->ops->on_audio(cs->user, slot, &h))
        return 0;
    sl->next_pos += h.frames;
    if (h.flags & DEMIX_PROTO_FLAG_LAST)
        sl->last_seen = 1;
    return 1;
}

client_close_verdict client_session_on_close(client_session *cs, int *code,
                                             const char *reason)
{
    /* lws 4.1 turns the peer's close codes 1012-1015 into 1002 */
    *code = demix_proto_received_close_code(*code, reason);
    cs->close_code = *code;
    cs->state = CLIENT_CLOSED;
    if (cs->failed)
        return CLIENT_CLOSE_AFTER_FAILURE;
    if (cs->retry_ok && !cs->have_summary) {
        int server_said = cs->has_error_code &&
                          client_session_retry_code(cs->error_code);
        if (server_said || *code == CLOSE_ABNORMAL ||
            *code == CLOSE_GOING_AWAY || *code == CLOSE_RESTART ||
            *code == CLOSE_TRY_LATER) {
            if (!server_said && *code == CLOSE_ABNORMAL)
                snprintf(cs->retry_why, sizeof cs->retry_why,
                         "the connection dropped (no close frame)");
            else if (!server_said)
                snprintf(cs->retry_why, sizeof cs->retry_why,
                         "the server closed with %d%s%s", *code,
                         reason && reason[0] ? " " : "",
                         reason ? reason : "");
            return CLIENT_CLOSE_RETRY;
        }
    }
    if (cs->have_summary)
        return *code == 1000 ? CLIENT_CLOSE_CLEAN : CLIENT_CLOSE_AFTER_SUMMARY;
    return *code == CLOSE_ABNORMAL ? CLIENT_CLOSE_DROPPED : CLIENT_CLOSE_EARLY;
}

void client_session_on_connect_error(client_session *cs)
{
    cs->state = CLIENT_CLOSED;
}

const char *client_failure_name(client_failure f)
{
    switch (f) {
    case CLIENT_FAIL_NONE:
        return "none";
    case CLIENT_FAIL_CONNECT:
        return "connect";
    case CLIENT_FAIL_SERVER:
        return "server_error";
    case CLIENT_FAIL_CLOSED:
        return "closed";
    case CLIENT_FAIL_PROTOCOL:
        return "protocol";
    case CLIENT_FAIL_TIMEOUT:
        return "timeout";
    case CLIENT_FAIL_INTERRUPTED:
        return "interrupted";
    case CLIENT_FAIL_CLIENT:
        return "client";
    }
    return "unknown";
}
