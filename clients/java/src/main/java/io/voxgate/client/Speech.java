package io.voxgate.client;

/**
 * A whole synthesized file and what the headers said about it.
 *
 * @param audio the file's bytes, in {@link AudioInfo#format()}
 * @param info  sample rate, format, engine, voice, warnings, request id
 */
public record Speech(byte[] audio, AudioInfo info) {
}
