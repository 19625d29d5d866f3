package io.voxgate.client;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;

/**
 * A {@code multipart/form-data} body (RFC 7578), built by hand: text fields
 * as UTF-8, files as raw bytes. The boundary is random and checked against
 * every part, so no content can end a part early.
 */
final class Multipart {
    private static final SecureRandom RANDOM = new SecureRandom();

    private record Part(String name, String filename, String contentType, byte[] data) {
    }

    private final List<Part> parts = new ArrayList<>();
    private String boundary;

    /** A text field; null values are left out. */
    Multipart field(String name, String value) {
        checkOpen();
        if (value != null) {
            parts.add(new Part(name, null, null, value.getBytes(StandardCharsets.UTF_8)));
        }
        return this;
    }

    Multipart file(String name, String filename, String contentType, byte[] data) {
        checkOpen();
        parts.add(new Part(name, filename, contentType, data));
        return this;
    }

    private void checkOpen() {
        if (boundary != null) {
            throw new IllegalStateException("the boundary is chosen: add every part before contentType()/body()");
        }
    }

    /** The header value, with the boundary (chosen on first use, against the parts added so far). */
    String contentType() {
        return "multipart/form-data; boundary=" + boundary();
    }

    byte[] body() {
        String b = boundary();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (Part p : parts) {
            StringBuilder head = new StringBuilder();
            head.append("--").append(b).append("\r\n");
            head.append("Content-Disposition: form-data; name=\"").append(escape(p.name)).append('"');
            if (p.filename != null) {
                head.append("; filename=\"").append(escape(p.filename)).append('"');
            }
            head.append("\r\n");
            if (p.filename != null) {
                head.append("Content-Type: ").append(p.contentType).append("\r\n");
            }
            head.append("\r\n");
            out.writeBytes(head.toString().getBytes(StandardCharsets.UTF_8));
            out.writeBytes(p.data);
            out.writeBytes("\r\n".getBytes(StandardCharsets.US_ASCII));
        }
        out.writeBytes(("--" + b + "--\r\n").getBytes(StandardCharsets.US_ASCII));
        return out.toByteArray();
    }

    private String boundary() {
        while (boundary == null) {
            byte[] r = new byte[16];
            RANDOM.nextBytes(r);
            StringBuilder s = new StringBuilder("voxgate-");
            for (byte x : r) {
                s.append(String.format("%02x", x & 0xff));
            }
            String candidate = s.toString();
            byte[] needle = candidate.getBytes(StandardCharsets.US_ASCII);
            boolean clash = false;
            for (Part p : parts) {
                if (indexOf(p.data, needle) >= 0) {
                    clash = true;
                    break;
                }
            }
            if (!clash) {
                boundary = candidate;
            }
        }
        return boundary;
    }

    /**
     * Quotes and line breaks in names would end the header early: percent-encode
     * them, as browsers do (WHATWG HTML, "multipart/form-data encoding algorithm").
     */
    static String escape(String s) {
        return s.replace("\"", "%22").replace("\r", "%0D").replace("\n", "%0A");
    }

    static int indexOf(byte[] haystack, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= haystack.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (haystack[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }
}
