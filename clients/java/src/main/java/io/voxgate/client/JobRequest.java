package io.voxgate.client;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The body of {@code POST /v1/jobs}: the synthesis fields of {@code /v1/tts}
 * plus what to do when the job is done (docs/jobs.md). Unset fields are not
 * sent (format defaults to mp3 on the server).
 *
 * <p>The idempotency key is sent as the {@code Idempotency-Key} header; when
 * none is set the client generates one per {@code submitJob} call, so that a
 * retried submission never starts a second job. Set your own (an order id,
 * say) to make submissions idempotent across restarts of your service too.
 */
public final class JobRequest {
    private final Map<String, Object> body;
    private final String idempotencyKey;

    private JobRequest(Map<String, Object> body, String idempotencyKey) {
        this.body = body;
        this.idempotencyKey = idempotencyKey;
    }

    public static Builder builder(String text) {
        return new Builder(text);
    }

    /** The JSON fields sent. */
    public Map<String, Object> toJson() {
        return new LinkedHashMap<>(body);
    }

    /** The caller's idempotency key, or null (then the client makes one). */
    public String idempotencyKey() {
        return idempotencyKey;
    }

    public static final class Builder {
        private final Map<String, Object> body = new LinkedHashMap<>();
        private String idempotencyKey;

        private Builder(String text) {
            body.put("text", Objects.requireNonNull(text, "text"));
        }

        public Builder voice(String voice) {
            return put("voice", voice);
        }

        public Builder engine(String engine) {
            return put("engine", engine);
        }

        public Builder mode(Mode mode) {
            return put("mode", mode == null ? null : mode.wireName());
        }

        public Builder instruct(String instruct) {
            return put("instruct", instruct);
        }

        public Builder language(String language) {
            return put("language", language);
        }

        public Builder speed(double speed) {
            return put("speed", speed);
        }

        public Builder pitch(double pitch) {
            return put("pitch", pitch);
        }

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

        /** Jobs run as {@code batch} unless told otherwise. */
        public Builder priority(Priority priority) {
            return put("priority", priority == null ? null : priority.wireName());
        }

        /** POSTed (signed) when the job ends; must be a public http(s) URL. */
        public Builder callbackUrl(String url) {
            return put("callback_url", url);
        }

        /** Subtitle formats to record as wanted (both are always made). */
        public Builder subtitles(SubtitleFormat... formats) {
            if (formats == null || formats.length == 0) {
                return put("subtitles", null);
            }
            List<String> names = new java.util.ArrayList<>();
            for (SubtitleFormat f : formats) {
                names.add(f.extension());
            }
            return put("subtitles", names);
        }

        /** The same key again returns the first job instead of starting another. */
        public Builder idempotencyKey(String key) {
            this.idempotencyKey = key;
            return this;
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

        public JobRequest build() {
            return new JobRequest(new LinkedHashMap<>(body), idempotencyKey);
        }
    }
}
