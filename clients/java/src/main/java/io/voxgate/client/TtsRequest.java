package io.voxgate.client;

import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * The body of native {@code POST /v1/tts}: CosyVoice's modes and vocabulary
 * (speaker ids, instructions, an inline reference prompt). Fields left unset
 * are not sent; voxgate's defaults apply ({@code wav} at the engine's rate).
 * Whether the answer streams is decided by the client method called
 * ({@code tts} gets one file, {@code ttsTo}/{@code openTts} stream).
 */
public final class TtsRequest {
    private final Map<String, Object> body;

    private TtsRequest(Map<String, Object> body) {
        this.body = body;
    }

    public static Builder builder(String text) {
        return new Builder(text);
    }

    /** The JSON fields sent (without {@code stream}, which the client sets). */
    public Map<String, Object> toJson() {
        return new LinkedHashMap<>(body);
    }

    public static final class Builder {
        private final Map<String, Object> body = new LinkedHashMap<>();

        private Builder(String text) {
            body.put("text", Objects.requireNonNull(text, "text"));
        }

        public Builder mode(Mode mode) {
            return put("mode", mode == null ? null : mode.wireName());
        }

        /** A speaker id or alias ({@code 中文女}, {@code en-us-f3}), or a registered voice id. */
        public Builder speakerId(String speakerId) {
            return put("speaker_id", speakerId);
        }

        /**
         * A voice prompt for this request only: the bytes of an audio file
         * (3-15 s; WAV, MP3, FLAC, Ogg, M4A...), sent as base64. JSON bodies are
         * limited to 1 MiB by default: for longer prompts register a voice.
         */
        public Builder referenceAudio(byte[] audioFile) {
            return put("reference_audio", audioFile == null ? null : Base64.getEncoder().encodeToString(audioFile));
        }

        /** What the reference audio says (needed for {@code zero_shot}). */
        public Builder referenceText(String text) {
            return put("reference_text", text);
        }

        /** The instruction for {@code mode: instruct}. */
        public Builder instruct(String instruct) {
            return put("instruct", instruct);
        }

        public Builder engine(String engine) {
            return put("engine", engine);
        }

        public Builder language(String language) {
            return put("language", language);
        }

        /** Tempo, 0.25-4.0. */
        public Builder speed(double speed) {
            return put("speed", speed);
        }

        /** Semitones, -12..12. */
        public Builder pitch(double pitch) {
            return put("pitch", pitch);
        }

        /** Loudness factor, 0.0-2.0. */
        public Builder volume(double volume) {
            return put("volume", volume);
        }

        public Builder format(AudioFormat format) {
            return put("format", format == null ? null : format.wireName());
        }

        public Builder sampleRate(int sampleRate) {
            return put("sample_rate", sampleRate);
        }

        public Builder seed(int seed) {
            return put("seed", seed);
        }

        public Builder priority(Priority priority) {
            return put("priority", priority == null ? null : priority.wireName());
        }

        /** Any other field, sent as is. */
        public Builder put(String field, Object value) {
            if (value == null) {
                body.remove(field);
            } else {
                body.put(field, value);
            }
            return this;
        }

        public TtsRequest build() {
            return new TtsRequest(new LinkedHashMap<>(body));
        }
    }
}
