package io.voxgate.client;

import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * A voice: a built-in speaker ({@code type} {@code builtin}) or one registered
 * from a prompt ({@code audio_sample}; docs/voices.md).
 *
 * @param id               the id to use as {@code voice}: {@code voice_...} or a speaker id
 * @param name             its name
 * @param type             {@code builtin} or {@code audio_sample}
 * @param engine           the engine it belongs to or is meant for, or null
 * @param language         its language, or null
 * @param promptText       registered voices: the prompt's transcript, or null
 * @param transcriptSource registered voices: {@code given}, {@code asr:<kind>}, {@code edited}, {@code none}
 * @param durationSeconds  registered voices: seconds of speech kept, or null
 * @param consent          registered voices: the consent statement, or null
 * @param tags             its tags
 * @param notes            on registration: what to know (e.g. a transcript to check)
 * @param intake           on registration: the prompt intake report (SNR, trimming, warnings...), or empty
 * @param raw              every field of the answer, as parsed JSON
 */
public record Voice(String id, String name, String type, String engine, String language, String promptText,
        String transcriptSource, Double durationSeconds, String consent, List<String> tags, List<String> notes,
        Map<String, Object> intake, Map<String, Object> raw) {

    public Voice {
        tags = tags == null ? List.of() : List.copyOf(tags);
        notes = notes == null ? List.of() : List.copyOf(notes);
        intake = intake == null ? Map.of() : Collections.unmodifiableMap(intake);
        raw = raw == null ? Map.of() : Collections.unmodifiableMap(raw);
    }

    public boolean isBuiltin() {
        return "builtin".equals(type);
    }

    static Voice of(Map<String, Object> m) {
        return new Voice(Json.str(m, "id"), Json.str(m, "name"), Json.str(m, "type"), Json.str(m, "engine"),
                Json.str(m, "language"), Json.str(m, "prompt_text"), Json.str(m, "transcript_source"),
                Json.dbl(m, "duration_s"), Json.str(m, "consent"), Json.strings(m, "tags"),
                Json.strings(m, "notes"), Json.obj(m, "intake"), m);
    }
}
