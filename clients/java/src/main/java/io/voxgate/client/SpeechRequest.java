package io.voxgate.client;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * The body of OpenAI-compatible {@code POST /v1/audio/speech}. Fields left
 * unset are not sent, so voxgate's defaults apply (model {@code tts-1}, the
 * default voice, {@code mp3}, speed 1, 24 kHz).
 *
 * <pre>{@code
 * SpeechRequest.builder("Hello from Java.").voice("alloy").format(AudioFormat.WAV).build()
 * }</pre>
 */
public final class SpeechRequest {
    private final Map<String, Object> body;

    private SpeechRequest(Map<String, Object> body) {
        this.body = body;
    }

    public static Builder builder(String input) {
        return new Builder(input);
    }

    /** The JSON fields sent, in order. */
    public Map<String, Object> toJson() {
        return new LinkedHashMap<>(body);
    }

    /** The requested format, or null for voxgate's default (mp3). */
    public AudioFormat format() {
        return AudioFormat.fromWire((String) body.get("response_format"));
    }

    public static final class Builder {
        private final Map<String, Object> body = new LinkedHashMap<>();

        private Builder(String input) {
            body.put("input", Objects.requireNonNull(input, "input"));
        }

        /** An engine name, or a model name ({@code tts-1}...); see {@code GET /v1/models}. */
        public Builder model(String model) {
            return put("model", model);
        }

        /** A voice name or alias ({@code alloy}, {@code 中文女}, {@code en-us-f3}) or a registered voice id. */
        public Builder voice(String voice) {
            return put("voice", voice);
        }

        /** Style control ("speak slowly"); what the engine applied comes back as warnings. */
        public Builder instructions(String instructions) {
            return put("instructions", instructions);
        }

        public Builder format(AudioFormat format) {
            return put("response_format", format == null ? null : format.wireName());
        }

        /** Tempo, 0.25-4.0. */
        public Builder speed(double speed) {
            return put("speed", speed);
        }

        /** Output rate in Hz (8000-192000); voxgate's extension. */
        public Builder sampleRate(int sampleRate) {
            return put("sample_rate", sampleRate);
        }

        /** Language hint ({@code en-GB}, {@code zh}, {@code yue}); voxgate's extension. */
        public Builder language(String language) {
            return put("language", language);
        }

        public Builder priority(Priority priority) {
            return put("priority", priority == null ? null : priority.wireName());
        }

        /** Any other field, sent as is (for fields newer than this client). */
        public Builder put(String field, Object value) {
            if (value == null) {
                body.remove(field);
            } else {
                body.put(field, value);
            }
            return this;
        }

        public SpeechRequest build() {
            return new SpeechRequest(new LinkedHashMap<>(body));
        }
    }
}
