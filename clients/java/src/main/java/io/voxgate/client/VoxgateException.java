package io.voxgate.client;

import java.net.http.HttpHeaders;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Map;
import java.util.Optional;

/**
 * Everything that goes wrong in a call: an error answered by voxgate (its
 * {@code {"error": {"code", "message", "hint"}}} body, with the HTTP status),
 * or a failure to get an answer at all (then {@link #status()} is 0).
 *
 * <p>Program against {@link #code()}: voxgate's codes are stable strings
 * (docs/errors.md). Codes made by the client itself, for failures without an
 * HTTP answer:
 * <ul>
 *   <li>{@code connect_failed}: the connection could not be made (after retries);</li>
 *   <li>{@code timeout}: no response headers within the read timeout;</li>
 *   <li>{@code stream_interrupted}: an audio body ended early (voxgate cuts a
 *       stream that fails midway; see {@link #bytesDelivered()}), a job
 *       download could not be resumed, or a job's event stream dropped more
 *       than {@code maxRetries} times in a row;</li>
 *   <li>{@code output_error}: the caller's {@code OutputStream} (or file) failed;</li>
 *   <li>{@code io_error}: any other transport failure;</li>
 *   <li>{@code interrupted}: the calling thread was interrupted;</li>
 *   <li>{@code job_wait_timeout}: {@code watchJob} or {@code waitForJob} gave up waiting;</li>
 *   <li>{@code invalid_response}: a 2xx answer the client could not read;</li>
 *   <li>{@code http_<status>}: an error status without voxgate's error body
 *       (a proxy's HTML page, say).</li>
 * </ul>
 *
 * <p>Unchecked, so that it passes through lambdas and Spring's exception
 * handling unchanged.
 */
public class VoxgateException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String code;
    private final String hint;
    private final String param;
    private final String requestId;
    private final Duration retryAfter;
    private final long bytesDelivered;

    public VoxgateException(int status, String code, String message, String hint, String param,
            String requestId, Duration retryAfter, long bytesDelivered, Throwable cause) {
        super(message, cause);
        this.status = status;
        this.code = code;
        this.hint = hint;
        this.param = param;
        this.requestId = requestId;
        this.retryAfter = retryAfter;
        this.bytesDelivered = bytesDelivered;
    }

    /** A failure without an HTTP answer (status 0). */
    static VoxgateException transport(String code, String message, Throwable cause) {
        return new VoxgateException(0, code, message, null, null, null, null, 0, cause);
    }

    /** The exception for an error answer: voxgate's body when it is one, else {@code http_<status>}. */
    static VoxgateException fromResponse(int status, HttpHeaders headers, byte[] body) {
        String text = body == null ? "" : new String(body, StandardCharsets.UTF_8);
        String requestId = headers.firstValue("x-request-id").orElse(null);
        Duration retryAfter = parseRetryAfter(headers.firstValue("retry-after").orElse(null)).orElse(null);
        String code = null;
        String message = null;
        String hint = null;
        String param = null;
        try {
            Map<String, Object> error = Json.obj(Json.parseObject(text), "error");
            if (error != null) {
                code = Json.str(error, "code");
                message = Json.str(error, "message");
                hint = Json.str(error, "hint");
                param = Json.str(error, "param");
            }
        } catch (IllegalArgumentException notJson) {
            // not voxgate's body: keep the text (shortened) as the message
        }
        if (code == null) {
            code = "http_" + status;
        }
        if (message == null) {
            String snippet = text.strip();
            message = "HTTP " + status + (snippet.isEmpty() ? "" : ": "
                    + (snippet.length() > 300 ? snippet.substring(0, 300) + "..." : snippet));
        }
        return new VoxgateException(status, code, message, hint, param, requestId, retryAfter, 0, null);
    }

    /**
     * {@code Retry-After} as a duration: whole or decimal seconds, or an
     * HTTP date (then the time from now, at least zero).
     */
    static Optional<Duration> parseRetryAfter(String value) {
        if (value == null || value.isBlank()) {
            return Optional.empty();
        }
        String v = value.strip();
        try {
            double seconds = Double.parseDouble(v);
            if (seconds >= 0 && !Double.isInfinite(seconds)) {
                return Optional.of(Duration.ofMillis((long) Math.ceil(seconds * 1000)));
            }
            return Optional.empty();
        } catch (NumberFormatException notSeconds) {
            try {
                ZonedDateTime at = ZonedDateTime.parse(v, DateTimeFormatter.RFC_1123_DATE_TIME);
                Duration d = Duration.between(ZonedDateTime.now(at.getZone()), at);
                return Optional.of(d.isNegative() ? Duration.ZERO : d);
            } catch (DateTimeParseException notDate) {
                return Optional.empty();
            }
        }
    }

    /** The HTTP status, or 0 when no answer was received. */
    public int status() {
        return status;
    }

    /** voxgate's stable error code ({@code voice_not_found}, {@code engine_overloaded}, ...). */
    public String code() {
        return code;
    }

    /** What to do about it, when voxgate said. */
    public String hint() {
        return hint;
    }

    /** The request field at fault, when voxgate said ({@code voice}, {@code input}, ...). */
    public String param() {
        return param;
    }

    /** The {@code X-Request-ID} of the answer: quote it when reporting a problem. */
    public String requestId() {
        return requestId;
    }

    /** The answer's {@code Retry-After}, or null when it had none. */
    public Duration retryAfter() {
        return retryAfter;
    }

    /** For {@code stream_interrupted}: how many audio bytes reached the caller first. */
    public long bytesDelivered() {
        return bytesDelivered;
    }

    /** True when no HTTP answer was received (connection, timeout, I/O). */
    public boolean isTransportError() {
        return status == 0;
    }

    /**
     * True for failures that the client retries itself (429, 503, a connection
     * not made): when one reaches you, the retries were used up or the
     * {@code Retry-After} was longer than the client may wait.
     */
    public boolean isRetryable() {
        return status == 429 || status == 503 || "connect_failed".equals(code);
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("VoxgateException[");
        s.append(status == 0 ? "no answer" : "HTTP " + status).append(' ').append(code).append("]: ")
                .append(getMessage());
        if (hint != null) {
            s.append(" (hint: ").append(hint).append(')');
        }
        if (requestId != null) {
            s.append(" [request ").append(requestId).append(']');
        }
        return s.toString();
    }
}
