package io.voxgate.client;

import java.io.ByteArrayOutputStream;
import java.net.http.HttpHeaders;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * What voxgate says about the audio it sends, from the response headers
 * (docs/api.md, "Response headers").
 *
 * @param status      the HTTP status (200, or 206 for a range)
 * @param contentType {@code Content-Type}, e.g. {@code audio/wav}
 * @param format      {@code X-Audio-Format} (or from the content type); null if unknown
 * @param sampleRate  {@code X-Sample-Rate}; 0 when absent (job downloads)
 * @param channels    {@code X-Channels}; 0 when absent
 * @param engine      {@code X-Voxgate-Engine}, percent-decoded
 * @param voice       {@code X-Voxgate-Voice}, percent-decoded ({@code 中文女})
 * @param warnings    every {@code X-Voxgate-Warning}, e.g. {@code voice_matched: ...}
 * @param requestId   {@code X-Request-ID}
 * @param cache       {@code X-Voxgate-Cache}: hit, miss, shared, or null
 * @param etag        {@code ETag} (whole files and cache hits), or null
 */
public record AudioInfo(int status, String contentType, AudioFormat format, int sampleRate, int channels,
        String engine, String voice, List<String> warnings, String requestId, String cache, String etag) {

    public AudioInfo {
        warnings = warnings == null ? List.of() : List.copyOf(warnings);
    }

    /** True when one of the warnings has this code ({@code voice_matched}, {@code markup_lowered}, ...). */
    public boolean hasWarning(String code) {
        for (String w : warnings) {
            if (w.equals(code) || w.startsWith(code + ":")) {
                return true;
            }
        }
        return false;
    }

    static AudioInfo of(int status, HttpHeaders h) {
        String contentType = h.firstValue("content-type").orElse(null);
        AudioFormat format = AudioFormat.fromWire(h.firstValue("x-audio-format").orElse(null));
        if (format == null && contentType != null) {
            format = fromContentType(contentType);
        }
        return new AudioInfo(status, contentType, format, intHeader(h, "x-sample-rate"), intHeader(h, "x-channels"),
                percentDecode(h.firstValue("x-voxgate-engine").orElse(null)),
                percentDecode(h.firstValue("x-voxgate-voice").orElse(null)),
                h.allValues("x-voxgate-warning"), h.firstValue("x-request-id").orElse(null),
                h.firstValue("x-voxgate-cache").orElse(null), h.firstValue("etag").orElse(null));
    }

    private static AudioFormat fromContentType(String contentType) {
        String t = contentType.toLowerCase(java.util.Locale.ROOT);
        if (t.startsWith("audio/mpeg")) {
            return AudioFormat.MP3;
        }
        if (t.startsWith("audio/ogg")) {
            return AudioFormat.OPUS;
        }
        if (t.startsWith("audio/aac")) {
            return AudioFormat.AAC;
        }
        if (t.startsWith("audio/flac")) {
            return AudioFormat.FLAC;
        }
        if (t.startsWith("audio/wav") || t.startsWith("audio/x-wav") || t.startsWith("audio/wave")) {
            return AudioFormat.WAV;
        }
        if (t.startsWith("audio/pcm") || t.startsWith("audio/l16")) {
            return AudioFormat.PCM;
        }
        return null;
    }

    private static int intHeader(HttpHeaders h, String name) {
        try {
            return Integer.parseInt(h.firstValue(name).orElse("0").strip());
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    /** Undoes the percent-encoding of non-ASCII names; '+' stays '+'. Malformed input is returned as is. */
    static String percentDecode(String s) {
        if (s == null || s.indexOf('%') < 0) {
            return s;
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '%' && i + 2 < s.length()) {
                int hi = Character.digit(s.charAt(i + 1), 16);
                int lo = Character.digit(s.charAt(i + 2), 16);
                if (hi < 0 || lo < 0) {
                    return s;
                }
                out.write(hi * 16 + lo);
                i += 2;
            } else if (c == '%' || c > 0x7f) {
                return s;
            } else {
                out.write(c);
            }
        }
        return out.toString(StandardCharsets.UTF_8);
    }
}
