/*
 * stream_input.h - the sending side of `demix stream`: the input file,
 * read (and resampled to the session rate) into a FIFO, goes out as
 * audio_in messages (PCM s16/f32 or one Opus packet each), then end.
 *
 * Flow control. Audio is sent only on a writeable event (lws keeps at most
 * one partially sent message), and only while the frames in flight (sent
 * minus the least output received over all stems) stay under the announced
 * latency plus one second: the client never runs ahead of the server by
 * more than that, whatever the file's length. --realtime also paces each
 * message at the moment its last frame would have been captured live.
 * Memory is bounded and independent of the file's length (the latency
 * figures aside: one double per message).
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#ifndef DEMIX_STREAM_INPUT_H
#define DEMIX_STREAM_INPUT_H

#include <stdint.h>

#include "stream_session.h"

/* Open s->o->input and choose the session's format from it and the
 * options: rate, channels, codecs, the Opus encoder, frames per message.
 * 0, or -1 with s->err set. */
int stream_input_open(stream_session *s);

/* Build and send the next audio message, or end. Called on writeable;
 * failures go to stream_session_fail. */
void stream_input_send_next(stream_session *s);

/* Input frames sent as the server counts them (without the encoder's
 * lookahead). */
int64_t stream_input_server_frames(const stream_session *s);

#endif /* DEMIX_STREAM_INPUT_H */
