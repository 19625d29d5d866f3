package io.voxgate.client;

import java.util.LinkedHashMap;
import java.util.Map;

/** Filters and paging for {@code GET /v1/audio/voices}. */
public final class VoiceQuery {
    final Map<String, String> params;

    private VoiceQuery(Map<String, String> params) {
        this.params = params;
    }

    /** Everything, first page (voxgate's default limit, 100). */
    public static VoiceQuery all() {
        return builder().build();
    }

    public static Builder builder() {
        return new Builder();
    }

    public static final class Builder {
        private final Map<String, String> params = new LinkedHashMap<>();

        /** {@code builtin} or {@code audio_sample}. */
        public Builder type(String type) {
            return put("type", type);
        }

        /** Only this engine's built-in speakers. */
        public Builder engine(String engine) {
            return put("engine", engine);
        }

        /** Only voices whose language starts with this. */
        public Builder language(String language) {
            return put("language", language);
        }

        /** 1-1000. */
        public Builder limit(int limit) {
            return put("limit", Integer.toString(limit));
        }

        /** The previous page's {@code lastId}. */
        public Builder after(String lastId) {
            return put("after", lastId);
        }

        private Builder put(String key, String value) {
            if (value == null) {
                params.remove(key);
            } else {
                params.put(key, value);
            }
            return this;
        }

        public VoiceQuery build() {
            return new VoiceQuery(new LinkedHashMap<>(params));
        }
    }
}
