package io.voxgate.client;

import java.net.http.HttpResponse.BodyHandler;
import java.net.http.HttpResponse.BodySubscriber;
import java.net.http.HttpResponse.BodySubscribers;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * Follows a job over {@code GET /v1/jobs/{id}/events} (docs/jobs.md): the
 * server sends {@code event: progress} with the job whenever it changes, then
 * one {@code event: done} with the final job and closes; a {@code :} comment
 * every 15 s keeps a quiet stream open. Every connection starts with the
 * job's current state, so a reconnection misses nothing.
 *
 * <p>A connection that drops (broken, ended before {@code done}, or silent for
 * longer than the idle timeout) is reopened after the server's {@code retry}
 * when it sent one, else after the client's jittered backoff; at most
 * {@code maxRetries} drops in a row (a connection that delivered an event
 * resets the count). Opening a connection goes through the client's usual
 * retries (refused connections, 429/503 with {@code Retry-After}). A
 * reconnection sends {@code Last-Event-ID} when the server gave events ids
 * (voxgate does not: its first event is the current state anyway).
 */
final class JobWatch {

    /** Calls the progress callback once per change; shared by the event stream and the polling fallback. */
    static final class Progress {
        private final Consumer<Job> onProgress;
        private Job last;
        private volatile Throwable callbackFailure;

        Progress(Consumer<Job> onProgress) {
            this.onProgress = onProgress;
        }

        /** Records {@code job}; true when it differs from the previous one. Throws what the callback threw. */
        synchronized boolean report(Job job) {
            Job previous = last;
            last = job;
            boolean changed = changed(previous, job);
            if (changed && onProgress != null) {
                try {
                    onProgress.accept(job);
                } catch (RuntimeException | Error e) {
                    callbackFailure = e;
                    throw e;
                }
            }
            return changed;
        }

        synchronized Job last() {
            return last;
        }

        /** The exception the callback threw, if it did: it ends the wait as it is. */
        Throwable callbackFailure() {
            return callbackFailure;
        }

        static boolean changed(Job previous, Job job) {
            return previous == null || !Objects.equals(previous.state(), job.state())
                    || previous.segmentsDone() != job.segmentsDone() || previous.segmentsTotal() != job.segmentsTotal()
                    || previous.fraction() != job.fraction() || previous.audioSeconds() != job.audioSeconds();
        }
    }

    private final VoxgateClient client;
    private final String id;
    private final String path;
    private final long deadline;
    private final Duration timeout;
    private final Progress progress;
    private final Duration idleTimeout;
    final CompletableFuture<Job> result = new CompletableFuture<>();
    private final AtomicReference<CompletableFuture<?>> inflight = new AtomicReference<>();
    private final AtomicReference<Connection> current = new AtomicReference<>();
    private volatile String lastEventId = "";
    private volatile long retryMillis = -1;
    private int drops; // dropped connections in a row, guarded by this

    JobWatch(VoxgateClient client, String id, long deadline, Duration timeout, Progress progress,
            Duration idleTimeout) {
        this.client = client;
        this.id = id;
        this.path = "/v1/jobs/" + VoxgateClient.segment(id) + "/events";
        this.deadline = deadline;
        this.timeout = timeout;
        this.progress = progress;
        this.idleTimeout = idleTimeout;
    }

    CompletableFuture<Job> start() {
        // however the watch ends (done, failed, timed out, cancelled), the stream is closed
        result.whenComplete((job, error) -> {
            Connection c = current.get();
            if (c != null) {
                c.abandon();
            }
            CompletableFuture<?> f = inflight.get();
            if (f != null) {
                f.cancel(true);
            }
        });
        if (deadline != Long.MAX_VALUE) {
            long left = Math.max(0, deadline - System.nanoTime());
            client.delayed(left, TimeUnit.NANOSECONDS).execute(() -> result.completeExceptionally(timedOut()));
        }
        connect();
        return result;
    }

    private VoxgateException timedOut() {
        Job job = progress.last();
        return VoxgateException.transport("job_wait_timeout", "job " + id + " is still "
                + (job == null ? "not seen" : job.state()) + " after " + timeout, null);
    }

    private void connect() {
        if (result.isDone()) {
            return;
        }
        current.set(null);
        VoxgateClient.Call call = new VoxgateClient.Call("GET", path, null, null)
                .header("Accept", "text/event-stream")
                .header("Cache-Control", "no-cache");
        String resumeFrom = lastEventId;
        if (!resumeFrom.isEmpty()) {
            call.header("Last-Event-ID", resumeFrom);
        }
        BodyHandler<String> handler = info -> {
            String type = info.headers().firstValue("content-type").orElse("");
            if (!type.toLowerCase(Locale.ROOT).startsWith("text/event-stream")) {
                return BodySubscribers.replacing("expected an event stream from GET " + path + ", got "
                        + (type.isEmpty() ? "no content type" : type));
            }
            Connection c = new Connection(resumeFrom);
            current.set(c);
            return c;
        };
        CompletableFuture<VoxgateClient.Reply<String>> f = client.execute(call, handler, null);
        inflight.set(f);
        if (result.isDone()) {
            f.cancel(true);
            return;
        }
        f.whenComplete((reply, error) -> {
            Connection c = current.get();
            if (c != null && !c.close()) {
                return; // the idle watchdog or the end of the watch has dealt with it
            }
            if (result.isDone()) {
                return;
            }
            if (error != null) {
                Throwable cause = VoxgateClient.unwrap(error);
                if (cause instanceof CancellationException) {
                    result.completeExceptionally(cause);
                } else if (cause instanceof VoxgateException && isDrop((VoxgateException) cause)) {
                    dropped((VoxgateException) cause);
                } else {
                    result.completeExceptionally(cause);
                }
                return;
            }
            if (reply.body() != null && c == null) {
                // a 2xx that is not an event stream (a proxy's page, say)
                result.completeExceptionally(new VoxgateException(reply.status(), "invalid_response", reply.body(),
                        null, null, reply.headers().firstValue("x-request-id").orElse(null), null, 0, null));
                return;
            }
            dropped(VoxgateException.transport("stream_interrupted",
                    "the event stream of job " + id + " ended before the job did", null));
        });
    }

    /** A connection that broke (after its answer started, or before any answer). */
    private static boolean isDrop(VoxgateException e) {
        return e.status() == 0 && ("stream_interrupted".equals(e.code()) || "io_error".equals(e.code()));
    }

    private void dropped(VoxgateException why) {
        Duration delay;
        int attempt;
        synchronized (this) {
            if (result.isDone()) {
                return;
            }
            if (drops >= client.maxRetries()) {
                String message = "the event stream of job " + id + " dropped " + (drops + 1)
                        + (drops == 0 ? " time" : " times in a row") + ": " + why.getMessage();
                result.completeExceptionally(new VoxgateException(0, "stream_interrupted", message, null, null,
                        why.requestId(), null, 0, why));
                return;
            }
            long serverRetry = retryMillis;
            delay = serverRetry >= 0 ? Duration.ofMillis(serverRetry) : client.backoff(drops);
            drops++;
            attempt = drops;
        }
        client.notifyRetry(new RetryEvent("GET", path, attempt, 0, "stream_interrupted", delay, null));
        client.delayed(delay.toNanos(), TimeUnit.NANOSECONDS).execute(this::connect);
    }

    private synchronized void onEvent(EventStreamDecoder.Event event) {
        if (result.isDone()) {
            return;
        }
        if (!"progress".equals(event.event()) && !"done".equals(event.event())) {
            return; // voxgate sends no others; a later server's new kinds are not ours to fail on
        }
        Job job;
        try {
            Map<String, Object> body = Json.parseObject(event.data());
            job = Job.of(body);
        } catch (IllegalArgumentException e) {
            result.completeExceptionally(VoxgateException.transport("invalid_response",
                    "a " + event.event() + " event of job " + id + " is not a job: " + e.getMessage(), e));
            return;
        }
        drops = 0; // the stream works
        try {
            progress.report(job);
        } catch (RuntimeException | Error e) {
            result.completeExceptionally(e);
            return;
        }
        if ("done".equals(event.event()) || job.isTerminal()) {
            result.complete(job);
        }
    }

    /**
     * One connection's body: split into lines and decoded into events as
     * each buffer arrives (everything received is handled before a failure
     * is), and watched for silence.
     */
    private final class Connection implements BodySubscriber<String> {
        private final EventStreamDecoder decoder;
        private final EventStreamDecoder.LineSplitter splitter = new EventStreamDecoder.LineSplitter();
        private final CompletableFuture<String> body = new CompletableFuture<>();
        private final AtomicBoolean closed = new AtomicBoolean();
        private volatile Flow.Subscription subscription;
        private volatile long lastActivity = System.nanoTime();

        Connection(String lastEventId) {
            this.decoder = new EventStreamDecoder(lastEventId);
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            if (closed.get()) {
                s.cancel();
                return;
            }
            watchdog(idleTimeout.toNanos());
            s.request(1);
        }

        @Override
        public void onNext(List<ByteBuffer> buffers) {
            lastActivity = System.nanoTime();
            for (ByteBuffer b : buffers) {
                if (closed.get()) {
                    return;
                }
                splitter.feed(b, this::line);
            }
            if (closed.get() || result.isDone()) {
                abandon();
            } else {
                subscription.request(1);
            }
        }

        private void line(String line) {
            if (closed.get() || result.isDone()) {
                return;
            }
            EventStreamDecoder.Event event = decoder.feed(line);
            if (line.isEmpty()) {
                lastEventId = decoder.lastEventId(); // what a reconnection resumes from
            }
            if (decoder.retryMillis() >= 0) {
                retryMillis = decoder.retryMillis();
            }
            if (event != null) {
                onEvent(event);
            }
        }

        @Override
        public void onError(Throwable t) {
            body.completeExceptionally(t); // the exchange fails with it: handled there
        }

        @Override
        public void onComplete() {
            body.complete(null); // ended without done: handled by the exchange's completion
        }

        @Override
        public CompletionStage<String> getBody() {
            return body;
        }

        /** Marks the connection finished; true for the one caller that gets to handle its end. */
        boolean close() {
            return closed.compareAndSet(false, true);
        }

        void abandon() {
            close();
            Flow.Subscription s = subscription;
            if (s != null) {
                s.cancel();
            }
        }

        private void watchdog(long delayNanos) {
            client.delayed(Math.max(delayNanos, 1), TimeUnit.NANOSECONDS).execute(() -> {
                if (closed.get() || result.isDone()) {
                    return;
                }
                long silent = System.nanoTime() - lastActivity;
                if (silent < idleTimeout.toNanos()) {
                    watchdog(idleTimeout.toNanos() - silent);
                    return;
                }
                if (!close()) {
                    return;
                }
                Flow.Subscription s = subscription;
                if (s != null) {
                    s.cancel();
                }
                CompletableFuture<?> f = inflight.get();
                if (f != null) {
                    f.cancel(true);
                }
                dropped(VoxgateException.transport("timeout", "the event stream of job " + id + " was silent for "
                        + idleTimeout.toMillis() + " ms (voxgate sends a keep-alive every 15 s)", null));
            });
        }
    }
}
