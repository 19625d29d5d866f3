package io.voxgate.client;

import java.util.Locale;

/** The audio formats voxgate answers in (docs/api.md, "Formats"). */
public enum AudioFormat {
    MP3, OPUS, AAC, FLAC, WAV,
    /** Headerless signed 16-bit little-endian mono; the rate is in {@link AudioInfo#sampleRate()}. */
    PCM;

    /** The name on the wire: {@code mp3}, {@code wav}, ... */
    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** The format for a wire name, or null when it is none of these. */
    public static AudioFormat fromWire(String name) {
        if (name == null) {
            return null;
        }
        for (AudioFormat f : values()) {
            if (f.wireName().equalsIgnoreCase(name.strip())) {
                return f;
            }
        }
        return null;
    }
}
