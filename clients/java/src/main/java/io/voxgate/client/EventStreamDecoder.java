package io.voxgate.client;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.function.Consumer;

/**
 * A {@code text/event-stream} decoder fed one line at a time (without its
 * line ending: {@link LineSplitter} splits at CR, LF or CRLF), as the HTML
 * standard's "interpreting an event stream" says:
 * <ul>
 *   <li>a line starting with {@code :} is a comment (voxgate's keep-alive) and ignored;</li>
 *   <li>{@code field: value} (one optional space after the colon is dropped;
 *       a line without a colon is a field with an empty value);</li>
 *   <li>{@code event} names the event ({@code message} when absent);</li>
 *   <li>{@code data} lines accumulate, joined with {@code \n};</li>
 *   <li>{@code id} sets the last event id (kept for the following events and
 *       for a reconnection's {@code Last-Event-ID}; ignored if it holds a NUL);</li>
 *   <li>{@code retry} (digits only) sets the reconnection delay in milliseconds;</li>
 *   <li>other fields are ignored;</li>
 *   <li>a blank line dispatches the event, unless no data was given (then
 *       the event name is dropped, as a browser does).</li>
 * </ul>
 * A leading byte-order mark is dropped. An event not ended by a blank line
 * when the stream ends is never dispatched.
 */
final class EventStreamDecoder {

    /**
     * Splits a byte stream into UTF-8 lines at CR, LF or CRLF (a CRLF split
     * across two buffers included). The terminators are ASCII, never part of
     * a multi-byte character, so a line's bytes are decoded whole. A last
     * line without a terminator is never handed out (the stream ended inside
     * an event, which is then not dispatched anyway).
     */
    static final class LineSplitter {
        private byte[] line = new byte[256];
        private int length;
        private boolean afterCr;

        void feed(ByteBuffer bytes, Consumer<String> lines) {
            while (bytes.hasRemaining()) {
                byte b = bytes.get();
                if (afterCr) {
                    afterCr = false;
                    if (b == '\n') {
                        continue; // the LF of a CRLF
                    }
                }
                if (b == '\r' || b == '\n') {
                    afterCr = b == '\r';
                    String text = new String(line, 0, length, StandardCharsets.UTF_8);
                    length = 0;
                    lines.accept(text);
                } else {
                    if (length == line.length) {
                        line = Arrays.copyOf(line, line.length * 2);
                    }
                    line[length++] = b;
                }
            }
        }
    }

    /** One dispatched event. {@code lastEventId} is "" when no id was ever set. */
    record Event(String event, String data, String lastEventId) {
    }

    private final StringBuilder data = new StringBuilder();
    private boolean hasData;
    private String event = "";
    private String lastEventId;
    private long retryMillis = -1;
    private boolean first = true;

    EventStreamDecoder() {
        this("");
    }

    /** Starts with the last event id of an earlier connection (the stream's id persists across them). */
    EventStreamDecoder(String lastEventId) {
        this.lastEventId = lastEventId == null ? "" : lastEventId;
    }

    /** Feeds one line; returns the event a blank line completes, else null. */
    Event feed(String line) {
        if (first) {
            first = false;
            if (line.startsWith("\uFEFF")) {
                line = line.substring(1);
            }
        }
        if (line.isEmpty()) {
            return dispatch();
        }
        if (line.charAt(0) == ':') {
            return null; // a comment: keep-alive
        }
        int colon = line.indexOf(':');
        String field;
        String value;
        if (colon < 0) {
            field = line;
            value = "";
        } else {
            field = line.substring(0, colon);
            int from = colon + 1;
            if (from < line.length() && line.charAt(from) == ' ') {
                from++;
            }
            value = line.substring(from);
        }
        switch (field) {
            case "event":
                event = value;
                break;
            case "data":
                if (hasData) {
                    data.append('\n');
                }
                data.append(value);
                hasData = true;
                break;
            case "id":
                if (value.indexOf('\0') < 0) {
                    lastEventId = value;
                }
                break;
            case "retry":
                if (!value.isEmpty() && value.chars().allMatch(c -> c >= '0' && c <= '9')) {
                    try {
                        retryMillis = Long.parseLong(value);
                    } catch (NumberFormatException tooLong) {
                        // not a delay anyone means
                    }
                }
                break;
            default:
                break; // unknown fields are ignored
        }
        return null;
    }

    private Event dispatch() {
        if (!hasData) {
            event = "";
            return null;
        }
        Event e = new Event(event.isEmpty() ? "message" : event, data.toString(), lastEventId);
        data.setLength(0);
        hasData = false;
        event = "";
        return e;
    }

    /** The id of the last event seen ("" for none): what {@code Last-Event-ID} carries. */
    String lastEventId() {
        return lastEventId;
    }

    /** The server's {@code retry} in milliseconds, or -1 when it sent none. */
    long retryMillis() {
        return retryMillis;
    }
}
