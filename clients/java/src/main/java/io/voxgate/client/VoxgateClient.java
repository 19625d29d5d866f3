package io.voxgate.client;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandler;
import java.net.http.HttpResponse.BodyHandlers;
import java.net.http.HttpResponse.BodySubscriber;
import java.net.http.HttpResponse.BodySubscribers;
import java.net.http.HttpTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.Flow;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.IntPredicate;

/**
 * A client for voxgate's HTTP API, on the JDK's {@link HttpClient} alone.
 *
 * <p>Every call has a blocking form ({@code speech}) and an asynchronous one
 * ({@code speechAsync}) returning a {@link CompletableFuture}; the blocking
 * forms throw {@link VoxgateException} (unchecked) for every failure.
 * Cancelling a returned future aborts the HTTP exchange (and with it the
 * synthesis on the server) and any retry still to come.
 *
 * <p><b>Retries.</b> A call is retried, up to {@code maxRetries} times, when
 * the connection could not be made, or voxgate answered 429 or 503 (busy,
 * rate limited): after the answer's {@code Retry-After} when it has one
 * (exactly; a {@code Retry-After} longer than {@code maxRetryAfter} is not
 * waited for: the call fails at once with that {@code retryAfter}), else after
 * an exponential backoff with full jitter (a random delay between 0 and
 * {@code min(maxBackoff, initialBackoff * 2^retry)}). Other statuses are never
 * retried, nor is a call whose response already started (voxgate only
 * answers 429/503 before any audio, so audio written to your stream is never
 * repeated), except where going on repeats nothing: a job's event stream is
 * reopened after a drop ({@link #watchJob}), and a job's audio download
 * continues with a {@code Range} request ({@link #downloadJobAudio(String,
 * OutputStream)}). Job submission carries an {@code Idempotency-Key}, so a
 * retried submit never starts a second job.
 *
 * <p>Instances are immutable and thread-safe: build one per voxgate base URL
 * and share it.
 */
public final class VoxgateClient {
    static final String USER_AGENT = "voxgate-java/1.0";

    private final String baseUrl;
    private final String authorization;
    private final HttpClient http;
    private final Duration readTimeout;
    private final int maxRetries;
    private final Duration initialBackoff;
    private final Duration maxBackoff;
    private final Duration maxRetryAfter;
    private final Executor executor;
    private final Consumer<RetryEvent> retryListener;
    private final boolean jobEvents;
    private final Duration eventIdleTimeout;

    private VoxgateClient(Builder b) {
        this.baseUrl = b.baseUrl;
        this.authorization = b.apiKey == null || b.apiKey.isBlank() ? null : "Bearer " + b.apiKey.strip();
        this.readTimeout = b.readTimeout;
        this.maxRetries = b.maxRetries;
        this.initialBackoff = b.initialBackoff;
        this.maxBackoff = b.maxBackoff;
        this.maxRetryAfter = b.maxRetryAfter;
        this.executor = b.executor;
        this.retryListener = b.retryListener;
        this.jobEvents = b.jobEvents;
        this.eventIdleTimeout = b.eventIdleTimeout;
        if (b.httpClient != null) {
            this.http = b.httpClient;
        } else {
            HttpClient.Builder hb = HttpClient.newBuilder()
                    // HTTP/1.1: no h2c upgrade dance on plain http, and what
                    // proxies in front of voxgate speak.
                    .version(HttpClient.Version.HTTP_1_1)
                    .followRedirects(HttpClient.Redirect.NEVER)
                    .connectTimeout(b.connectTimeout);
            if (b.executor != null) {
                hb.executor(b.executor);
            }
            this.http = hb.build();
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The base URL calls go to, without a trailing slash. */
    public String baseUrl() {
        return baseUrl;
    }

    // ================================================================= speech

    /** {@code POST /v1/audio/speech}: the whole file in memory. */
    public Speech speech(SpeechRequest request) {
        return await(speechAsync(request));
    }

    public CompletableFuture<Speech> speechAsync(SpeechRequest request) {
        Call call = Call.json("POST", "/v1/audio/speech", speechBody(request));
        return map(execute(call, BodyHandlers.ofByteArray(), null),
                r -> new Speech(r.body(), AudioInfo.of(r.status(), r.headers())));
    }

    /**
     * {@code POST /v1/audio/speech}, streamed into {@code out} as the audio
     * arrives (sentence by sentence): each chunk is written and flushed when
     * it comes, so a player or an HTTP response downstream gets it at once.
     * {@code out} is not closed. Returns once the whole file was written.
     */
    public AudioInfo speechTo(SpeechRequest request, OutputStream out) {
        return await(speechToAsync(request, out));
    }

    /**
     * Asynchronous {@link #speechTo}. Chunks are written from the HTTP
     * client's threads (or the builder's executor): keep {@code out} fast, or
     * give the client an executor sized for slow consumers.
     */
    public CompletableFuture<AudioInfo> speechToAsync(SpeechRequest request, OutputStream out) {
        return streamTo(Call.json("POST", "/v1/audio/speech", speechBody(request)), out);
    }

    /**
     * {@code POST /v1/audio/speech}, returned as soon as the headers arrive;
     * read the audio from {@link AudioStream#body()} as it comes, and close it.
     */
    public AudioStream openSpeech(SpeechRequest request) {
        return await(openSpeechAsync(request));
    }

    public CompletableFuture<AudioStream> openSpeechAsync(SpeechRequest request) {
        return openStream(Call.json("POST", "/v1/audio/speech", speechBody(request)));
    }

    private static Map<String, Object> speechBody(SpeechRequest request) {
        Map<String, Object> body = request.toJson();
        body.remove("stream_format"); // this client reads raw audio, not server-sent events
        return body;
    }

    // ================================================================= native /v1/tts

    /** Native {@code POST /v1/tts} ({@code stream: false}): one complete file. */
    public Speech tts(TtsRequest request) {
        return await(ttsAsync(request));
    }

    public CompletableFuture<Speech> ttsAsync(TtsRequest request) {
        Call call = Call.json("POST", "/v1/tts", ttsBody(request, false));
        return map(execute(call, BodyHandlers.ofByteArray(), null),
                r -> new Speech(r.body(), AudioInfo.of(r.status(), r.headers())));
    }

    /** Native {@code POST /v1/tts} ({@code stream: true}), written into {@code out} as it arrives. */
    public AudioInfo ttsTo(TtsRequest request, OutputStream out) {
        return await(ttsToAsync(request, out));
    }

    public CompletableFuture<AudioInfo> ttsToAsync(TtsRequest request, OutputStream out) {
        return streamTo(Call.json("POST", "/v1/tts", ttsBody(request, true)), out);
    }

    /** Native {@code POST /v1/tts} ({@code stream: true}) as an {@link AudioStream}. */
    public AudioStream openTts(TtsRequest request) {
        return await(openTtsAsync(request));
    }

    public CompletableFuture<AudioStream> openTtsAsync(TtsRequest request) {
        return openStream(Call.json("POST", "/v1/tts", ttsBody(request, true)));
    }

    private static Map<String, Object> ttsBody(TtsRequest request, boolean stream) {
        Map<String, Object> body = request.toJson();
        body.put("stream", stream);
        body.remove("stream_format");
        return body;
    }

    // ================================================================= voices

    /** {@code POST /v1/audio/voices} (multipart): register a voice from a prompt recording. */
    public Voice registerVoice(VoiceRegistration registration) {
        return await(registerVoiceAsync(registration));
    }

    public CompletableFuture<Voice> registerVoiceAsync(VoiceRegistration registration) {
        Multipart form = registration.toMultipart();
        String contentType = form.contentType();
        Call call = new Call("POST", "/v1/audio/voices", form.body(), contentType);
        return map(json(call), r -> Voice.of(r.body()));
    }

    /** {@code GET /v1/audio/voices}: built-in speakers first, then registered voices. */
    public Page<Voice> listVoices(VoiceQuery query) {
        return await(listVoicesAsync(query));
    }

    public Page<Voice> listVoices() {
        return listVoices(VoiceQuery.all());
    }

    public CompletableFuture<Page<Voice>> listVoicesAsync(VoiceQuery query) {
        Call call = new Call("GET", "/v1/audio/voices" + queryString(query.params), null, null);
        return map(json(call), r -> page(r.body(), Voice::of));
    }

    /** {@code GET /v1/audio/voices/{id}}: a registered voice or a built-in speaker. */
    public Voice getVoice(String id) {
        return await(getVoiceAsync(id));
    }

    public CompletableFuture<Voice> getVoiceAsync(String id) {
        Call call = new Call("GET", "/v1/audio/voices/" + segment(id), null, null);
        return map(json(call), r -> Voice.of(r.body()));
    }

    /** {@code DELETE /v1/audio/voices/{id}}: the voice, its prompt audio and every engine's features. */
    public boolean deleteVoice(String id) {
        return await(deleteVoiceAsync(id));
    }

    public CompletableFuture<Boolean> deleteVoiceAsync(String id) {
        Call call = new Call("DELETE", "/v1/audio/voices/" + segment(id), null, null);
        return map(json(call), r -> Json.bool(r.body(), "deleted"));
    }

    // ================================================================= jobs

    /**
     * {@code POST /v1/jobs}: queue a long synthesis; answers at once with the
     * job. Sends {@code Idempotency-Key} (the request's, or a fresh UUID), the
     * same on every retry, so a retried submit returns the first job.
     */
    public Job submitJob(JobRequest request) {
        return await(submitJobAsync(request));
    }

    public CompletableFuture<Job> submitJobAsync(JobRequest request) {
        String key = request.idempotencyKey() != null ? request.idempotencyKey() : UUID.randomUUID().toString();
        Call call = Call.json("POST", "/v1/jobs", request.toJson()).header("Idempotency-Key", key);
        return map(json(call), r -> Job.of(r.body()));
    }

    /** {@code GET /v1/jobs/{id}}. */
    public Job getJob(String id) {
        return await(getJobAsync(id));
    }

    public CompletableFuture<Job> getJobAsync(String id) {
        return map(json(new Call("GET", "/v1/jobs/" + segment(id), null, null)), r -> Job.of(r.body()));
    }

    /** {@code GET /v1/jobs}: your jobs, newest first. {@code after} and {@code state} may be null. */
    public Page<Job> listJobs(int limit, String after, String state) {
        return await(listJobsAsync(limit, after, state));
    }

    public CompletableFuture<Page<Job>> listJobsAsync(int limit, String after, String state) {
        Map<String, String> q = new LinkedHashMap<>();
        q.put("limit", Integer.toString(limit));
        if (after != null) {
            q.put("after", after);
        }
        if (state != null) {
            q.put("state", state);
        }
        return map(json(new Call("GET", "/v1/jobs" + queryString(q), null, null)), r -> page(r.body(), Job::of));
    }

    /** {@code DELETE /v1/jobs/{id}}: cancel (a running job stops within its current segment). */
    public Job cancelJob(String id) {
        return await(cancelJobAsync(id));
    }

    public CompletableFuture<Job> cancelJobAsync(String id) {
        return map(json(new Call("DELETE", "/v1/jobs/" + segment(id), null, null)), r -> Job.of(r.body()));
    }

    /**
     * Waits until the job ends (succeeded, failed or cancelled: check
     * {@link Job#isSucceeded()}) and returns it, calling {@code onProgress}
     * (may be null) with each snapshot that differs from the previous one,
     * the first and the last included.
     *
     * <p>Follows the job's server-sent events as {@link #watchJob} does (no
     * request per poll, and every change as soon as voxgate sees it); when
     * the event stream cannot be used (not answered as {@code
     * text/event-stream}, a 5xx, or dropped more than {@code maxRetries}
     * times in a row), it falls back to polling {@code GET /v1/jobs/{id}}
     * every {@code pollInterval}, each poll with the usual retries. With
     * {@code Builder.jobEvents(false)} it only polls. 401, 403 and 404 end
     * the wait with that error.
     *
     * <p>{@code timeout} null: no limit; else fails with {@code
     * job_wait_timeout} (the job goes on). An exception thrown by
     * {@code onProgress} ends the wait with that exception.
     */
    public Job waitForJob(String id, Duration pollInterval, Duration timeout, Consumer<Job> onProgress) {
        return await(waitForJobAsync(id, pollInterval, timeout, onProgress));
    }

    public CompletableFuture<Job> waitForJobAsync(String id, Duration pollInterval, Duration timeout,
            Consumer<Job> onProgress) {
        Objects.requireNonNull(pollInterval, "pollInterval");
        segment(id);
        long deadline = deadline(timeout);
        JobWatch.Progress progress = new JobWatch.Progress(onProgress);
        CompletableFuture<Job> result = new CompletableFuture<>();
        AtomicReference<CompletableFuture<?>> inflight = new AtomicReference<>();
        propagateCancel(result, inflight);
        if (!jobEvents) {
            poll(id, pollInterval, deadline, timeout, progress, result, inflight);
            return result;
        }
        CompletableFuture<Job> watch = new JobWatch(this, id, deadline, timeout, progress, eventIdleTimeout).start();
        inflight.set(watch);
        watch.whenComplete((job, error) -> {
            if (error == null) {
                result.complete(job);
                return;
            }
            Throwable cause = unwrap(error);
            if (cause instanceof VoxgateException && progress.callbackFailure() == null
                    && canPollInstead((VoxgateException) cause)) {
                poll(id, pollInterval, deadline, timeout, progress, result, inflight);
            } else {
                result.completeExceptionally(cause);
            }
        });
        return result;
    }

    /** Whether a failed event stream leaves polling worth a try (as the Python SDK's jobs.wait decides). */
    private static boolean canPollInstead(VoxgateException e) {
        int status = e.status();
        String code = e.code();
        return status != 401 && status != 403 && status != 404 && !"job_wait_timeout".equals(code)
                && !"interrupted".equals(code);
    }

    private void poll(String id, Duration pollInterval, long deadline, Duration timeout, JobWatch.Progress progress,
            CompletableFuture<Job> result, AtomicReference<CompletableFuture<?>> inflight) {
        Runnable[] poll = new Runnable[1];
        poll[0] = () -> {
            if (result.isDone()) {
                return;
            }
            CompletableFuture<Job> f = getJobAsync(id);
            inflight.set(f);
            f.whenComplete((job, error) -> {
                if (error != null) {
                    result.completeExceptionally(unwrap(error));
                    return;
                }
                try {
                    progress.report(job);
                } catch (RuntimeException | Error e) {
                    result.completeExceptionally(e);
                    return;
                }
                if (job.isTerminal()) {
                    result.complete(job);
                    return;
                }
                long left = deadline == Long.MAX_VALUE ? Long.MAX_VALUE : deadline - System.nanoTime();
                if (left <= 0) {
                    result.completeExceptionally(VoxgateException.transport("job_wait_timeout",
                            "job " + id + " is still " + job.state() + " after " + timeout, null));
                    return;
                }
                long delay = Math.min(pollInterval.toNanos(), left);
                delayed(delay, TimeUnit.NANOSECONDS).execute(poll[0]);
            });
        };
        poll[0].run();
    }

    /**
     * Follows the job over server-sent events ({@code GET /v1/jobs/{id}/events})
     * until it ends, and returns the final job (check {@link Job#isSucceeded()}).
     * {@code onProgress} (may be null) gets each snapshot that differs from the
     * previous one, the first (the job's state when the stream opens) and the
     * last included; an exception it throws ends the watch with that exception.
     *
     * <p>A dropped connection (broken, ended before the job, or silent for
     * longer than {@code eventIdleTimeout}) is reopened: after the server's
     * {@code retry} when it sent one, else after the client's jittered backoff,
     * at most {@code maxRetries} drops in a row (a connection that delivered an
     * event resets the count), each reopening with the usual retries (refused
     * connections; 429/503 after their {@code Retry-After}) and with {@code
     * Last-Event-ID} when the server gave its events ids. voxgate starts every
     * stream with the job's current state, so nothing is missed. Errors are
     * {@link VoxgateException}s: 404 {@code job_not_found}, {@code
     * stream_interrupted} when the drops are used up, {@code invalid_response}
     * for an answer that is not an event stream, {@code job_wait_timeout}
     * after {@code timeout} (null: no limit). {@link #waitForJob} falls back to
     * polling where this fails.
     */
    public Job watchJob(String id, Duration timeout, Consumer<Job> onProgress) {
        return await(watchJobAsync(id, timeout, onProgress));
    }

    /** Asynchronous {@link #watchJob}: holds no thread while waiting; {@code onProgress} runs on the HTTP client's threads. */
    public CompletableFuture<Job> watchJobAsync(String id, Duration timeout, Consumer<Job> onProgress) {
        segment(id);
        return new JobWatch(this, id, deadline(timeout), timeout, new JobWatch.Progress(onProgress),
                eventIdleTimeout).start();
    }

    private static long deadline(Duration timeout) {
        if (timeout == null) {
            return Long.MAX_VALUE;
        }
        // no limit for anything over a century (nor an overflow)
        if (timeout.compareTo(Duration.ofDays(36500)) > 0) {
            return Long.MAX_VALUE;
        }
        return System.nanoTime() + Math.max(0, timeout.toNanos());
    }

    /**
     * {@code GET /v1/jobs/{id}/audio} into {@code out}, as it arrives
     * ({@code out} is not closed). Fails with 409 {@code job_not_finished}
     * unless the job succeeded. If the connection breaks midway, the download
     * continues where it stopped with a {@code Range} request (voxgate serves
     * byte ranges of job audio), at most {@code maxRetries} breaks in a row:
     * no byte reaches {@code out} twice, and the returned info is the first
     * answer's. Fails with {@code stream_interrupted} (see
     * {@link VoxgateException#bytesDelivered()}) when it cannot continue.
     */
    public AudioInfo downloadJobAudio(String id, OutputStream out) {
        return await(downloadJobAudioAsync(id, out));
    }

    public CompletableFuture<AudioInfo> downloadJobAudioAsync(String id, OutputStream out) {
        Objects.requireNonNull(out, "out");
        return new JobDownload(this, id, out).start();
    }

    /** The job's audio into a file (replaced if it exists; removed again if the download fails). */
    public AudioInfo downloadJobAudio(String id, Path file) {
        return await(downloadJobAudioAsync(id, file));
    }

    public CompletableFuture<AudioInfo> downloadJobAudioAsync(String id, Path file) {
        OutputStream out;
        try {
            out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 16);
        } catch (IOException e) {
            return CompletableFuture.failedFuture(
                    VoxgateException.transport("output_error", "cannot write " + file + ": " + e, e));
        }
        CompletableFuture<AudioInfo> download = downloadJobAudioAsync(id, out);
        CompletableFuture<AudioInfo> result = download.handle((info, error) -> {
            try {
                out.close();
            } catch (IOException e) {
                if (error == null) {
                    error = VoxgateException.transport("output_error", "cannot write " + file + ": " + e, e);
                }
            }
            if (error != null) {
                try {
                    Files.deleteIfExists(file);
                } catch (IOException ignored) {
                    // the original failure is what matters
                }
                throw new CompletionException(unwrap(error));
            }
            return info;
        });
        result.whenComplete((v, e) -> {
            if (result.isCancelled()) {
                download.cancel(true);
            }
        });
        return result;
    }

    /** {@code GET /v1/jobs/{id}/subtitles.srt|vtt}: cues timed from the audio produced. */
    public String jobSubtitles(String id, SubtitleFormat format) {
        return await(jobSubtitlesAsync(id, format));
    }

    public CompletableFuture<String> jobSubtitlesAsync(String id, SubtitleFormat format) {
        Call call = new Call("GET", "/v1/jobs/" + segment(id) + "/subtitles." + format.extension(), null, null);
        return map(execute(call, BodyHandlers.ofString(StandardCharsets.UTF_8), null), Reply::body);
    }

    // ================================================================= health

    /** {@code GET /healthz}: the process answers. Not retried; fails with a {@link VoxgateException} when down. */
    public Health health() {
        return await(healthAsync());
    }

    public CompletableFuture<Health> healthAsync() {
        Call call = new Call("GET", "/healthz", null, null).noRetry();
        return map(json(call), r -> Health.of(r.status(), r.body()));
    }

    /**
     * {@code GET /readyz}: every engine is ready. A 503 (not ready) is an
     * answer here, not an error: {@link Health#ok()} is false. Not retried.
     */
    public Health readiness() {
        return await(readinessAsync());
    }

    public CompletableFuture<Health> readinessAsync() {
        Call call = new Call("GET", "/readyz", null, null).noRetry().accept(s -> s == 200 || s == 503);
        return map(json(call), r -> Health.of(r.status(), r.body()));
    }

    // ================================================================= transport

    /** One HTTP request, rebuilt for every attempt. */
    static final class Call {
        final String method;
        final String path;
        final byte[] body;
        final String contentType;
        final Map<String, String> headers = new LinkedHashMap<>();
        boolean retry = true;
        IntPredicate accept = s -> s >= 200 && s < 300;

        Call(String method, String path, byte[] body, String contentType) {
            this.method = method;
            this.path = path;
            this.body = body;
            this.contentType = contentType;
        }

        static Call json(String method, String path, Map<String, Object> body) {
            return new Call(method, path, Json.write(body).getBytes(StandardCharsets.UTF_8), "application/json");
        }

        Call header(String name, String value) {
            headers.put(name, value);
            return this;
        }

        Call noRetry() {
            retry = false;
            return this;
        }

        Call accept(IntPredicate statuses) {
            accept = statuses;
            return this;
        }
    }

    /** A response whose status was accepted. */
    record Reply<T>(int status, HttpHeaders headers, T body) {
    }

    /** Either the accepted body, or the bytes of an error answer. */
    private record Outcome<T>(T value, byte[] error) {
    }

    /** The caller's OutputStream failed (as opposed to the network). */
    private static final class OutputFailure extends IOException {
        private static final long serialVersionUID = 1L;

        OutputFailure(IOException cause) {
            super(cause.getMessage(), cause);
        }
    }

    private CompletableFuture<Reply<Map<String, Object>>> json(Call call) {
        call.header("Accept", "application/json");
        return map(execute(call, BodyHandlers.ofByteArray(), null), r -> {
            try {
                return new Reply<>(r.status(), r.headers(),
                        Json.parseObject(new String(r.body(), StandardCharsets.UTF_8)));
            } catch (IllegalArgumentException e) {
                throw new VoxgateException(r.status(), "invalid_response",
                        "expected a JSON object from " + call.method + " " + call.path + ": " + e.getMessage(), null,
                        null, r.headers().firstValue("x-request-id").orElse(null), null, 0, e);
            }
        });
    }

    private CompletableFuture<AudioInfo> streamTo(Call call, OutputStream out) {
        Objects.requireNonNull(out, "out");
        AtomicLong delivered = new AtomicLong();
        BodyHandler<Long> handler = info -> new OutputStreamSubscriber(out, delivered);
        return map(execute(call, handler, delivered), r -> AudioInfo.of(r.status(), r.headers()));
    }

    private CompletableFuture<AudioStream> openStream(Call call) {
        return map(execute(call, BodyHandlers.ofInputStream(), null),
                r -> new AudioStream(AudioInfo.of(r.status(), r.headers()), r.body()));
    }

    /**
     * Sends {@code call}, retrying as the class comment says, and completes
     * with the accepted response or a {@link VoxgateException}.
     *
     * @param delivered bytes already handed to the caller (streaming), or null
     */
    <T> CompletableFuture<Reply<T>> execute(Call call, BodyHandler<T> handler, AtomicLong delivered) {
        CompletableFuture<Reply<T>> result = new CompletableFuture<>();
        AtomicReference<CompletableFuture<?>> inflight = new AtomicReference<>();
        propagateCancel(result, inflight);
        attempt(call, handler, delivered, 0, result, inflight);
        return result;
    }

    private <T> void attempt(Call call, BodyHandler<T> handler, AtomicLong delivered, int retries,
            CompletableFuture<Reply<T>> result, AtomicReference<CompletableFuture<?>> inflight) {
        if (result.isDone()) {
            return; // cancelled while waiting to retry
        }
        HttpRequest request;
        try {
            request = build(call);
        } catch (RuntimeException e) {
            result.completeExceptionally(e);
            return;
        }
        AtomicBoolean headersSeen = new AtomicBoolean();
        BodyHandler<Outcome<T>> wrapped = info -> {
            headersSeen.set(true);
            if (call.accept.test(info.statusCode())) {
                return BodySubscribers.mapping(handler.apply(info), v -> new Outcome<>(v, null));
            }
            return BodySubscribers.mapping(BodySubscribers.ofByteArray(), b -> new Outcome<>(null, b));
        };
        CompletableFuture<HttpResponse<Outcome<T>>> sent;
        try {
            sent = http.sendAsync(request, wrapped);
        } catch (RuntimeException e) {
            result.completeExceptionally(e);
            return;
        }
        inflight.set(sent);
        if (result.isDone()) {
            sent.cancel(true);
            return;
        }
        sent.whenComplete((response, error) -> {
            if (error != null) {
                Throwable cause = unwrap(error);
                long written = delivered == null ? 0 : delivered.get();
                if (cause instanceof CancellationException) {
                    result.completeExceptionally(cause);
                } else if (isConnectFailure(cause) && !headersSeen.get() && written == 0 && canRetry(call, retries)) {
                    retry(call, handler, delivered, retries, result, inflight, 0, "connect_failed", null);
                } else {
                    result.completeExceptionally(transportError(call, cause, headersSeen.get(), written));
                }
                return;
            }
            Outcome<T> outcome = response.body();
            if (outcome.error() == null) {
                result.complete(new Reply<>(response.statusCode(), response.headers(), outcome.value()));
                return;
            }
            VoxgateException failure = VoxgateException.fromResponse(response.statusCode(), response.headers(),
                    outcome.error());
            int status = response.statusCode();
            long written = delivered == null ? 0 : delivered.get();
            if ((status == 429 || status == 503) && written == 0 && canRetry(call, retries)) {
                Duration retryAfter = failure.retryAfter();
                if (retryAfter == null || retryAfter.compareTo(maxRetryAfter) <= 0) {
                    retry(call, handler, delivered, retries, result, inflight, status, failure.code(), retryAfter);
                    return;
                }
            }
            result.completeExceptionally(failure);
        });
    }

    private boolean canRetry(Call call, int retries) {
        return call.retry && retries < maxRetries;
    }

    private <T> void retry(Call call, BodyHandler<T> handler, AtomicLong delivered, int retries,
            CompletableFuture<Reply<T>> result, AtomicReference<CompletableFuture<?>> inflight, int status,
            String code, Duration retryAfter) {
        Duration delay = retryAfter != null ? retryAfter : backoff(retries);
        notifyRetry(new RetryEvent(call.method, call.path, retries + 1, status, code, delay, retryAfter));
        delayed(delay.toNanos(), TimeUnit.NANOSECONDS)
                .execute(() -> attempt(call, handler, delivered, retries + 1, result, inflight));
    }

    /** Full jitter: uniform in [0, min(maxBackoff, initialBackoff * 2^retries)]. */
    Duration backoff(int retries) {
        long initial = Math.max(0, initialBackoff.toMillis());
        long cap = Math.max(0, maxBackoff.toMillis());
        long ceiling = retries >= 62 || initial > (Long.MAX_VALUE >> retries) ? cap : Math.min(cap, initial << retries);
        return Duration.ofMillis(ceiling == 0 ? 0 : ThreadLocalRandom.current().nextLong(ceiling + 1));
    }

    /** Tells the retry listener, if any; a listener that throws does not break the call. */
    void notifyRetry(RetryEvent event) {
        if (retryListener != null) {
            try {
                retryListener.accept(event);
            } catch (RuntimeException ignored) {
                // a listener must not break the call
            }
        }
    }

    int maxRetries() {
        return maxRetries;
    }

    Executor delayed(long amount, TimeUnit unit) {
        return executor == null ? CompletableFuture.delayedExecutor(amount, unit)
                : CompletableFuture.delayedExecutor(amount, unit, executor);
    }

    private HttpRequest build(Call call) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + call.path))
                .timeout(readTimeout)
                .header("User-Agent", USER_AGENT);
        if (authorization != null) {
            b.header("Authorization", authorization);
        }
        call.headers.forEach(b::header);
        if (call.body != null) {
            b.header("Content-Type", call.contentType);
            b.method(call.method, HttpRequest.BodyPublishers.ofByteArray(call.body));
        } else {
            b.method(call.method, HttpRequest.BodyPublishers.noBody());
        }
        return b.build();
    }

    private static boolean isConnectFailure(Throwable t) {
        for (int i = 0; t != null && i < 8; i++, t = t.getCause()) {
            if (t instanceof ConnectException || t instanceof HttpConnectTimeoutException) {
                return true;
            }
        }
        return false;
    }

    private static Throwable transportError(Call call, Throwable cause, boolean headersSeen, long written) {
        if (cause instanceof VoxgateException) {
            return cause;
        }
        String what = call.method + " " + call.path;
        if (cause instanceof OutputFailure) {
            return new VoxgateException(0, "output_error", "writing the audio of " + what + " failed after "
                    + written + " bytes: " + cause.getCause(), null, null, null, null, written, cause.getCause());
        }
        if (isConnectFailure(cause)) {
            return VoxgateException.transport("connect_failed", "could not connect for " + what + ": " + cause,
                    cause);
        }
        if (cause instanceof HttpTimeoutException) {
            return VoxgateException.transport("timeout", "no response to " + what + " within the read timeout",
                    cause);
        }
        if (cause instanceof IOException && headersSeen) {
            return new VoxgateException(0, "stream_interrupted", "the response to " + what + " ended early after "
                    + written + " bytes delivered (the server cut the stream: a failure midway): " + cause, null,
                    null, null, null, written, cause);
        }
        if (cause instanceof IOException) {
            return VoxgateException.transport("io_error", what + " failed: " + cause, cause);
        }
        return cause;
    }

    static Throwable unwrap(Throwable t) {
        while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    /** Cancelling {@code result} cancels whatever exchange is in flight for it. */
    private static void propagateCancel(CompletableFuture<?> result, AtomicReference<CompletableFuture<?>> inflight) {
        result.whenComplete((v, e) -> {
            if (result.isCancelled()) {
                CompletableFuture<?> f = inflight.get();
                if (f != null) {
                    f.cancel(true);
                }
            }
        });
    }

    /** {@code thenApply} that passes a cancellation back to the source (and so to the exchange). */
    private static <A, B> CompletableFuture<B> map(CompletableFuture<A> source, Function<A, B> f) {
        CompletableFuture<B> out = source.thenApply(f);
        out.whenComplete((v, e) -> {
            if (out.isCancelled()) {
                source.cancel(true);
            }
        });
        return out;
    }

    /**
     * Waits for an async call; failures come out as the {@link VoxgateException}
     * (a copy whose stack trace is the caller's; the original is its cause).
     */
    static <T> T await(CompletionStage<T> stage) {
        CompletableFuture<T> future = stage.toCompletableFuture();
        try {
            return future.get();
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            throw VoxgateException.transport("interrupted", "interrupted while waiting for voxgate", e);
        } catch (ExecutionException e) {
            Throwable cause = unwrap(e);
            if (cause instanceof VoxgateException) {
                VoxgateException v = (VoxgateException) cause;
                throw new VoxgateException(v.status(), v.code(), v.getMessage(), v.hint(), v.param(), v.requestId(),
                        v.retryAfter(), v.bytesDelivered(), v);
            }
            if (cause instanceof RuntimeException) {
                throw (RuntimeException) cause;
            }
            if (cause instanceof Error) {
                throw (Error) cause;
            }
            throw VoxgateException.transport("io_error", String.valueOf(cause), cause);
        }
    }

    private static <T> Page<T> page(Map<String, Object> body, Function<Map<String, Object>, T> item) {
        List<T> data = new ArrayList<>();
        Object list = body.get("data");
        if (list instanceof List) {
            for (Object o : (List<?>) list) {
                if (o instanceof Map) {
                    @SuppressWarnings("unchecked")
                    Map<String, Object> m = (Map<String, Object>) o;
                    data.add(item.apply(m));
                }
            }
        }
        return new Page<>(data, Json.bool(body, "has_more"), Json.str(body, "first_id"), Json.str(body, "last_id"));
    }

    /** Percent-encodes one path segment (UTF-8; unreserved characters kept). */
    static String segment(String s) {
        Objects.requireNonNull(s, "id");
        if (s.isEmpty()) {
            throw new IllegalArgumentException("empty id");
        }
        StringBuilder out = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
                    || c == '_' || c == '~') {
                out.append((char) c);
            } else {
                out.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
                        .append(Character.toUpperCase(Character.forDigit(c & 0xf, 16)));
            }
        }
        return out.toString();
    }

    private static String queryString(Map<String, String> params) {
        if (params.isEmpty()) {
            return "";
        }
        StringBuilder q = new StringBuilder();
        params.forEach((k, v) -> q.append(q.length() == 0 ? '?' : '&').append(URLEncoder.encode(k, StandardCharsets.UTF_8))
                .append('=').append(URLEncoder.encode(v, StandardCharsets.UTF_8)));
        return q.toString();
    }

    /**
     * Writes each chunk to the caller's stream as it arrives, then asks for
     * the next; the first {@code skip} bytes are dropped (a resumed download's
     * overlap).
     */
    static final class OutputStreamSubscriber implements BodySubscriber<Long> {
        private final OutputStream out;
        private final AtomicLong delivered;
        private final CompletableFuture<Long> body = new CompletableFuture<>();
        private Flow.Subscription subscription;
        private byte[] scratch = new byte[0];
        private long skip;

        OutputStreamSubscriber(OutputStream out, AtomicLong delivered) {
            this(out, delivered, 0);
        }

        OutputStreamSubscriber(OutputStream out, AtomicLong delivered, long skip) {
            this.out = out;
            this.delivered = delivered;
            this.skip = skip;
        }

        /** Bytes still to be skipped: more than 0 when the body was shorter than the skip. */
        long skipLeft() {
            return skip;
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            s.request(1);
        }

        @Override
        public void onNext(List<ByteBuffer> buffers) {
            try {
                int wrote = 0;
                for (ByteBuffer b : buffers) {
                    if (skip > 0) {
                        int dropped = (int) Math.min(skip, b.remaining());
                        b.position(b.position() + dropped);
                        skip -= dropped;
                    }
                    int n = b.remaining();
                    if (n == 0) {
                        continue;
                    }
                    if (b.hasArray()) {
                        out.write(b.array(), b.arrayOffset() + b.position(), n);
                    } else {
                        if (scratch.length < n) {
                            scratch = new byte[Math.max(n, 8192)];
                        }
                        b.get(scratch, 0, n);
                        out.write(scratch, 0, n);
                    }
                    wrote += n;
                }
                if (wrote > 0) {
                    out.flush();
                    delivered.addAndGet(wrote);
                }
            } catch (IOException | RuntimeException e) {
                subscription.cancel();
                body.completeExceptionally(
                        new OutputFailure(e instanceof IOException ? (IOException) e : new IOException(e)));
                return;
            }
            subscription.request(1);
        }

        @Override
        public void onError(Throwable t) {
            body.completeExceptionally(t);
        }

        @Override
        public void onComplete() {
            body.complete(delivered.get());
        }

        @Override
        public CompletionStage<Long> getBody() {
            return body;
        }
    }

    // ================================================================= builder

    /** Settings of a client; only {@link #baseUrl} is required. */
    public static final class Builder {
        private String baseUrl;
        private String apiKey;
        private Duration connectTimeout = Duration.ofSeconds(10);
        private Duration readTimeout = Duration.ofSeconds(60);
        private int maxRetries = 3;
        private Duration initialBackoff = Duration.ofMillis(500);
        private Duration maxBackoff = Duration.ofSeconds(30);
        private Duration maxRetryAfter = Duration.ofSeconds(60);
        private Executor executor;
        private HttpClient httpClient;
        private Consumer<RetryEvent> retryListener;
        private boolean jobEvents = true;
        private Duration eventIdleTimeout = Duration.ofSeconds(30);

        private Builder() {
        }

        /** Where voxgate answers: {@code http://127.0.0.1:8080}, or a prefix behind a proxy. */
        public Builder baseUrl(String baseUrl) {
            URI uri = URI.create(Objects.requireNonNull(baseUrl, "baseUrl").strip());
            if (!"http".equalsIgnoreCase(uri.getScheme()) && !"https".equalsIgnoreCase(uri.getScheme())) {
                throw new IllegalArgumentException("baseUrl must be an http(s) URL: " + baseUrl);
            }
            String s = uri.toString();
            while (s.endsWith("/")) {
                s = s.substring(0, s.length() - 1);
            }
            this.baseUrl = s;
            return this;
        }

        /** An API key ({@code vg_...}) or a JWT, sent as {@code Authorization: Bearer ...}. */
        public Builder apiKey(String apiKey) {
            this.apiKey = apiKey;
            return this;
        }

        /** How long to wait for a TCP (and TLS) connection (default 10 s). */
        public Builder connectTimeout(Duration timeout) {
            this.connectTimeout = positive(timeout, "connectTimeout");
            return this;
        }

        /**
         * Per attempt: how long to wait for the response headers (default 60 s).
         * voxgate sends them with the first audio, so this bounds the time to
         * first audio; a body that streams for longer is not cut.
         */
        public Builder readTimeout(Duration timeout) {
            this.readTimeout = positive(timeout, "readTimeout");
            return this;
        }

        /** Retries after the first attempt (default 3; 0 turns retrying off). */
        public Builder maxRetries(int maxRetries) {
            if (maxRetries < 0) {
                throw new IllegalArgumentException("maxRetries must be >= 0");
            }
            this.maxRetries = maxRetries;
            return this;
        }

        /** The first backoff ceiling, doubled on every retry (default 500 ms). */
        public Builder initialBackoff(Duration backoff) {
            this.initialBackoff = nonNegative(backoff, "initialBackoff");
            return this;
        }

        /** The largest backoff ceiling (default 30 s). */
        public Builder maxBackoff(Duration backoff) {
            this.maxBackoff = nonNegative(backoff, "maxBackoff");
            return this;
        }

        /**
         * The longest {@code Retry-After} the client waits for (default 60 s).
         * A longer one (a daily quota used up, say) fails the call at once; the
         * exception carries the {@code retryAfter} for you to schedule.
         */
        public Builder maxRetryAfter(Duration max) {
            this.maxRetryAfter = nonNegative(max, "maxRetryAfter");
            return this;
        }

        /**
         * Runs the HTTP client's work (reading responses, writing streamed
         * audio into your OutputStream, job progress callbacks), retry delays
         * and polling. Default: the JDK HttpClient's own pool, and the common
         * pool for delays.
         */
        public Builder executor(Executor executor) {
            this.executor = executor;
            return this;
        }

        /**
         * Use this {@link HttpClient} (a proxy, an SSLContext, ...) instead of
         * building one; {@code connectTimeout} and the executor for HTTP work
         * are then the given client's own.
         */
        public Builder httpClient(HttpClient httpClient) {
            this.httpClient = httpClient;
            return this;
        }

        /** Told before each retry (for logging or metrics); must be quick and not throw. */
        public Builder retryListener(Consumer<RetryEvent> listener) {
            this.retryListener = listener;
            return this;
        }

        /**
         * Whether {@code waitForJob} follows the job's server-sent events
         * (default true), falling back to polling when they cannot be used;
         * false: it only polls (for a proxy that buffers event streams).
         */
        public Builder jobEvents(boolean enabled) {
            this.jobEvents = enabled;
            return this;
        }

        /**
         * How long a job's event stream may stay silent before the client
         * takes the connection for dead and reconnects (default 30 s: voxgate
         * sends a keep-alive comment every 15 s on a quiet stream).
         */
        public Builder eventIdleTimeout(Duration timeout) {
            this.eventIdleTimeout = positive(timeout, "eventIdleTimeout");
            return this;
        }

        public VoxgateClient build() {
            if (baseUrl == null) {
                throw new IllegalStateException("baseUrl is required");
            }
            return new VoxgateClient(this);
        }

        private static Duration positive(Duration d, String name) {
            if (d == null || d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException(name + " must be positive");
            }
            return d;
        }

        private static Duration nonNegative(Duration d, String name) {
            if (d == null || d.isNegative()) {
                throw new IllegalArgumentException(name + " must be >= 0");
            }
            return d;
        }
    }
}
