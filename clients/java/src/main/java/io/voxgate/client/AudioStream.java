package io.voxgate.client;

import java.io.IOException;
import java.io.InputStream;

/**
 * Audio being received: the headers are known, the body is read from
 * {@link #body()} as it arrives. Close it (try-with-resources) to release the
 * connection; closing before the end stops the synthesis on the server.
 *
 * <p>A synthesis that fails after audio was sent ends the body early: a read
 * then throws an {@link IOException} instead of reporting a normal end of
 * stream (voxgate never sends a silently short file).
 */
public final class AudioStream implements AutoCloseable {
    private final AudioInfo info;
    private final InputStream body;

    AudioStream(AudioInfo info, InputStream body) {
        this.info = info;
        this.body = body;
    }

    /** What the headers said: format, sample rate, engine, voice, warnings, request id. */
    public AudioInfo info() {
        return info;
    }

    /** The audio bytes, as they arrive. */
    public InputStream body() {
        return body;
    }

    @Override
    public void close() throws IOException {
        body.close();
    }
}
