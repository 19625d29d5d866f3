package io.voxgate.client;

import java.io.OutputStream;
import java.net.http.HttpHeaders;
import java.net.http.HttpResponse.BodyHandler;
import java.net.http.HttpResponse.BodySubscribers;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code GET /v1/jobs/{id}/audio} into the caller's stream, resumed with
 * {@code Range: bytes=N-} (and {@code If-Range} with the first answer's
 * {@code ETag}) when the connection breaks midway (docs/jobs.md: the route
 * serves byte ranges). Nothing reaches the stream twice:
 * <ul>
 *   <li>206 from where the bytes stopped: appended;</li>
 *   <li>206 from earlier: the overlap is skipped;</li>
 *   <li>200 (a server or blob store that ignores ranges, or an {@code If-Range}
 *       that no longer matches): read from the start with the bytes already
 *       delivered skipped, unless its {@code ETag} differs from the first one
 *       (then the download fails: the file changed);</li>
 *   <li>416 whose length is what was delivered: the file was complete.</li>
 * </ul>
 * At most {@code maxRetries} breaks in a row (an attempt that delivered bytes
 * resets the count), each after the client's jittered backoff; each request
 * has the usual retries (refused connections, 429/503 with Retry-After).
 */
final class JobDownload {
    private static final Pattern CONTENT_RANGE = Pattern.compile("bytes\\s+(?:(\\d+)-(\\d+)|\\*)/(\\d+|\\*)",
            Pattern.CASE_INSENSITIVE);

    private final VoxgateClient client;
    private final String id;
    private final String path;
    private final OutputStream out;
    final CompletableFuture<AudioInfo> result = new CompletableFuture<>();
    private final AtomicReference<CompletableFuture<?>> inflight = new AtomicReference<>();
    private volatile long delivered;
    private volatile AudioInfo info;
    private volatile String etag;
    private volatile int failures;
    private volatile int resumes;

    JobDownload(VoxgateClient client, String id, OutputStream out) {
        this.client = client;
        this.id = id;
        this.path = "/v1/jobs/" + VoxgateClient.segment(id) + "/audio";
        this.out = out;
    }

    CompletableFuture<AudioInfo> start() {
        result.whenComplete((v, e) -> {
            if (result.isCancelled()) {
                CompletableFuture<?> f = inflight.get();
                if (f != null) {
                    f.cancel(true);
                }
            }
        });
        attempt();
        return result;
    }

    private void attempt() {
        if (result.isDone()) {
            return;
        }
        long offset = delivered;
        VoxgateClient.Call call = new VoxgateClient.Call("GET", path, null, null);
        if (offset > 0) {
            call.header("Range", "bytes=" + offset + "-");
            String tag = etag;
            if (tag != null && !tag.startsWith("W/")) {
                call.header("If-Range", tag);
            }
            call.accept(s -> (s >= 200 && s < 300) || s == 416);
        }
        AtomicLong written = new AtomicLong();
        BodyHandler<String> handler = response -> {
            int status = response.statusCode();
            HttpHeaders h = response.headers();
            if (info == null) {
                info = AudioInfo.of(status, h);
                etag = h.firstValue("etag").orElse(null);
            }
            if (offset == 0) {
                return into(written, 0);
            }
            if (status == 206) {
                long[] range = contentRange(h);
                if (range == null || range[0] < 0 || range[0] > offset) {
                    return BodySubscribers.replacing("the resumed download answered the range "
                            + h.firstValue("content-range").orElse("(none)") + " for bytes=" + offset + "-");
                }
                return into(written, offset - range[0]);
            }
            if (status == 416) {
                long[] range = contentRange(h);
                return BodySubscribers.replacing(range != null && range[1] == offset ? null
                        : "the server has no bytes from " + offset + " on (" + h.firstValue("content-range")
                                .orElse("no Content-Range") + ")");
            }
            String tag = h.firstValue("etag").orElse(null);
            String first = etag;
            if (first != null && tag != null && !first.equals(tag)) {
                return BodySubscribers.replacing("the audio changed while it was downloaded (ETag " + first
                        + ", now " + tag + ")");
            }
            return into(written, offset); // the whole file again: skip what was delivered
        };
        CompletableFuture<VoxgateClient.Reply<String>> f = client.execute(call, handler, written);
        inflight.set(f);
        if (result.isDone()) {
            f.cancel(true);
            return;
        }
        f.whenComplete((reply, error) -> {
            delivered += written.get();
            if (error == null) {
                if (reply.body() == null) {
                    result.complete(info);
                } else {
                    result.completeExceptionally(interrupted(reply.body(), null));
                }
                return;
            }
            Throwable cause = VoxgateClient.unwrap(error);
            if (!(cause instanceof VoxgateException)) {
                result.completeExceptionally(cause);
                return;
            }
            VoxgateException v = (VoxgateException) cause;
            boolean broke = v.status() == 0 && ("stream_interrupted".equals(v.code()) || "io_error".equals(v.code()));
            if (!broke) {
                result.completeExceptionally(v);
                return;
            }
            if (written.get() > 0) {
                failures = 0; // it moved on: keep resuming
            }
            if (failures >= client.maxRetries()) {
                result.completeExceptionally(delivered == 0 ? v : interrupted(v.getMessage(), v));
                return;
            }
            Duration delay = client.backoff(failures);
            failures++;
            resumes++;
            client.notifyRetry(new RetryEvent("GET", path, resumes, 0, v.code(), delay, null));
            client.delayed(delay.toNanos(), TimeUnit.NANOSECONDS).execute(this::attempt);
        });
    }

    private java.net.http.HttpResponse.BodySubscriber<String> into(AtomicLong written, long skip) {
        VoxgateClient.OutputStreamSubscriber sub = new VoxgateClient.OutputStreamSubscriber(out, written, skip);
        return BodySubscribers.mapping(sub, n -> sub.skipLeft() > 0
                ? "the answer ended before the " + delivered + " bytes already delivered" : null);
    }

    private VoxgateException interrupted(String why, Throwable cause) {
        long total = delivered;
        return new VoxgateException(0, "stream_interrupted", "the audio of job " + id + " stopped after " + total
                + " bytes" + (resumes > 0 ? " (resumed " + resumes + (resumes == 1 ? " time" : " times") + ")" : "")
                + ": " + why, null, null, null, null, total, cause);
    }

    /** {@code bytes first-last/total} as {first, total}; {@code bytes * /total} as {-1, total}; total -1 for *. */
    static long[] contentRange(HttpHeaders h) {
        String value = h.firstValue("content-range").orElse(null);
        if (value == null) {
            return null;
        }
        Matcher m = CONTENT_RANGE.matcher(value.strip());
        if (!m.matches()) {
            return null;
        }
        try {
            long first = m.group(1) == null ? -1 : Long.parseLong(m.group(1));
            long total = "*".equals(m.group(3)) ? -1 : Long.parseLong(m.group(3));
            return new long[] {first, total};
        } catch (NumberFormatException e) {
            return null;
        }
    }
}
