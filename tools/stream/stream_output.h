/*
 * stream_output.h - the receiving side of `demix stream`: one output per
 * stem asked for (or the mix), written exactly as `demix separate` writes
 * it: DIR/<input name>/<source>.wav (mix.wav for the mix), with the
 * input's length, rate and channels.
 *
 *   audio_out messages --> [Opus decode, drop pre_skip] --> [resample back
 *        to the file's rate] --> trim to the input's length --> WAV
 *
 * Positions: the output of stem s at position p is written as frame p of
 * its file; messages of a stem must arrive contiguous from 0 (checked).
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#ifndef DEMIX_STREAM_OUTPUT_H
#define DEMIX_STREAM_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "stream_session.h"

/* Open the writers and decoders once ready says what comes (s->ready).
 * 0, or -1 after stream_session_fail. */
int stream_output_open(stream_session *s);

/* One audio_out message the client-session core has checked (header,
 * seq, stem, position, LAST): decode it, write it to its stem's file. 0,
 * or -1 with the failure gone to stream_session_fail. */
int stream_output_receive(stream_session *s, const demix_proto_audio_out *h);

/* Output position every stem has reached. */
int64_t stream_output_reached(const stream_session *s);

/* After the summary: flush resamplers, check lengths, close the files.
 * 0, or -1 with s->err set (the file that failed is removed). */
int stream_output_finish(stream_session *s);

/* Remove what a failed session wrote. */
void stream_output_remove(stream_session *s);

#endif /* DEMIX_STREAM_OUTPUT_H */
