package io.voxgate.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.voxgate.client.StubServer.Answer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Retries, timeouts and stream failures against a scripted stub server:
 * what a live voxgate cannot be made to do on cue. (The live suite also
 * checks a real overload.)
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RetryTest extends StubServerTest {
    private static final byte[] AUDIO = "RIFF....WAVEfmt ".getBytes(StandardCharsets.US_ASCII);

    private static Answer audio() {
        return Answer.of(200).header("Content-Type", "audio/wav").header("X-Sample-Rate", "24000")
                .header("X-Audio-Format", "wav").chunk(AUDIO);
    }

    private static SpeechRequest hello() {
        return SpeechRequest.builder("Hello.").format(AudioFormat.WAV).build();
    }

    @Test
    void retries503AfterExactlyRetryAfter() {
        stub.then(Answer.error(503, "engine_overloaded", "1")).then(Answer.error(503, "engine_overloaded", "1"))
                .then(audio());
        Speech speech = client().build().speech(hello());

        assertArrayEquals(AUDIO, speech.audio());
        assertEquals(24000, speech.info().sampleRate());
        assertEquals(3, stub.received.size(), "two refusals, then the answer");
        for (int i = 1; i < 3; i++) {
            long gapMs = TimeUnit.NANOSECONDS.toMillis(stub.received.get(i).atNanos() - stub.received.get(i - 1).atNanos());
            assertTrue(gapMs >= 950, "waited Retry-After (1 s) before attempt " + (i + 1) + ": " + gapMs + " ms");
            assertTrue(gapMs < 5000, "not much longer either: " + gapMs + " ms");
        }
        assertEquals(2, retries.size());
        for (int i = 0; i < 2; i++) {
            RetryEvent e = retries.get(i);
            assertEquals(i + 1, e.attempt());
            assertEquals(503, e.status());
            assertEquals("engine_overloaded", e.code());
            assertEquals(Duration.ofSeconds(1), e.retryAfter());
            assertEquals(Duration.ofSeconds(1), e.delay(), "Retry-After is honoured exactly, not jittered");
            assertEquals("POST", e.method());
            assertEquals("/v1/audio/speech", e.path());
        }
        byte[] first = stub.received.get(0).body();
        for (StubServer.Received r : stub.received) {
            assertArrayEquals(first, r.body(), "every attempt sends the same body");
            assertEquals("Bearer vg_test_key", r.header("Authorization"));
            assertEquals("application/json", r.header("Content-Type"));
            assertTrue(r.header("User-Agent").startsWith("voxgate-java/"));
        }
    }

    @Test
    void neverRetries400() {
        stub.then(Answer.error(400, "voice_not_found", null)).then(audio());
        VoxgateException e = assertThrows(VoxgateException.class, () -> client().build().speech(hello()));
        assertEquals(400, e.status());
        assertEquals("voice_not_found", e.code());
        assertEquals("stub says voice_not_found", e.getMessage());
        assertEquals("stub hint", e.hint());
        assertEquals("stub-voice_not_found", e.requestId());
        assertFalse(e.isRetryable());
        assertEquals(1, stub.received.size(), "a 400 is final");
        assertTrue(retries.isEmpty());
        assertNotNull(e.getCause(), "the blocking call's exception wraps the async one, for both stack traces");
    }

    @Test
    void neverRetriesOtherServerErrors() {
        stub.then(Answer.error(500, "engine_failed", null)).then(Answer.error(502, "upstream_error", "1"))
                .then(audio());
        VoxgateClient client = client().build();
        assertEquals("engine_failed", assertThrows(VoxgateException.class, () -> client.speech(hello())).code());
        assertEquals("upstream_error", assertThrows(VoxgateException.class, () -> client.speech(hello())).code());
        assertEquals(2, stub.received.size());
        assertTrue(retries.isEmpty());
    }

    @Test
    void retries429WithJitteredBackoffThenGivesUp() {
        for (int i = 0; i < 3; i++) {
            stub.then(Answer.error(429, "rate_limited", null));
        }
        VoxgateClient client = client().maxRetries(2).build();
        VoxgateException e = assertThrows(VoxgateException.class, () -> client.speech(hello()));
        assertEquals(429, e.status());
        assertEquals("rate_limited", e.code());
        assertTrue(e.isRetryable(), "retryable, but the retries are used up");
        assertEquals(3, stub.received.size(), "first attempt + maxRetries");
        assertEquals(2, retries.size());
        assertTrue(retries.get(0).delay().toMillis() <= 20, "first ceiling: initialBackoff");
        assertTrue(retries.get(1).delay().toMillis() <= 40, "then doubled");
    }

    @Test
    void aRetryAfterBeyondTheCapFailsAtOnce() {
        stub.then(Answer.error(429, "quota_exceeded", "3600")).then(audio());
        long started = System.nanoTime();
        VoxgateException e = assertThrows(VoxgateException.class,
                () -> client().maxRetryAfter(Duration.ofSeconds(30)).build().speech(hello()));
        assertEquals("quota_exceeded", e.code());
        assertEquals(Duration.ofHours(1), e.retryAfter(), "for the caller to schedule");
        assertEquals(1, stub.received.size());
        assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(10));
    }

    @Test
    void retriesRefusedConnections() throws IOException {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort(); // closed again: connections are refused
        }
        VoxgateClient client = client().baseUrl("http://127.0.0.1:" + port).maxRetries(2).build();
        VoxgateException e = assertThrows(VoxgateException.class, () -> client.speech(hello()));
        assertEquals("connect_failed", e.code());
        assertTrue(e.isTransportError());
        assertEquals(0, e.status());
        assertEquals(2, retries.size());
        assertEquals(0, retries.get(0).status());
        assertEquals("connect_failed", retries.get(0).code());
    }

    @Test
    void aRetriedSubmitKeepsItsIdempotencyKey() {
        String job = "{\"id\": \"job_1\", \"object\": \"job\", \"state\": \"queued\", \"progress\": {\"segments_done\": 0,"
                + " \"segments_total\": 3, \"fraction\": 0.0, \"audio_seconds\": 0.0}, \"attempts\": 0}";
        stub.then(Answer.error(503, "engine_unavailable", "0"))
                .then(Answer.of(202).header("Content-Type", "application/json").body(job))
                .then(Answer.of(202).header("Content-Type", "application/json").body(job));
        VoxgateClient client = client().build();

        Job submitted = client.submitJob(JobRequest.builder("Long text.").build());
        assertEquals("job_1", submitted.id());
        assertEquals(3, submitted.segmentsTotal());
        assertEquals(2, stub.received.size());
        String key = stub.received.get(0).header("Idempotency-Key");
        assertTrue(Pattern.matches("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", key), key);
        assertEquals(key, stub.received.get(1).header("Idempotency-Key"), "the retry reuses the key");

        client.submitJob(JobRequest.builder("Long text.").idempotencyKey("order-42").build());
        assertEquals("order-42", stub.received.get(2).header("Idempotency-Key"));
    }

    /** Records each write and whether the call had completed when it happened. */
    private static final class RecordingStream extends OutputStream {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        final List<Long> writes = new CopyOnWriteArrayList<>();
        volatile CompletableFuture<?> call;
        volatile int writesBeforeDone;

        @Override
        public void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) {
            bytes.write(b, off, len);
            writes.add(System.nanoTime());
            CompletableFuture<?> c = call;
            if (c == null || !c.isDone()) {
                writesBeforeDone++;
            }
        }
    }

    @Test
    void streamsChunksIntoTheOutputStreamAsTheyArrive() {
        Answer slow = Answer.of(200).header("Content-Type", "audio/pcm").header("X-Sample-Rate", "24000")
                .header("X-Audio-Format", "pcm").delayChunks(150);
        for (int i = 0; i < 6; i++) {
            slow.chunk(new byte[] {(byte) i, (byte) i, (byte) i, (byte) i});
        }
        stub.then(slow);
        RecordingStream out = new RecordingStream();
        CompletableFuture<AudioInfo> call = client().build().speechToAsync(hello(), out);
        out.call = call;
        AudioInfo info = call.join();
        long done = System.nanoTime();

        assertEquals(AudioFormat.PCM, info.format());
        assertEquals(24, out.bytes.size());
        assertTrue(out.writes.size() >= 4, "chunks written as they came: " + out.writes.size() + " writes");
        assertEquals(out.writes.size(), out.writesBeforeDone, "every write happened before the call completed");
        long firstToDoneMs = TimeUnit.NANOSECONDS.toMillis(done - out.writes.get(0));
        assertTrue(firstToDoneMs >= 400, "the first chunk was written long before the end: " + firstToDoneMs + " ms");
    }

    @Test
    void readTimeoutBoundsTheWaitForHeadersOnly() {
        stub.then(Answer.of(200).header("Content-Type", "audio/pcm").delayHeaders(3000).chunk(AUDIO));
        VoxgateClient client = client().readTimeout(Duration.ofMillis(500)).build();
        VoxgateException e = assertThrows(VoxgateException.class, () -> client.speech(hello()));
        assertEquals("timeout", e.code());
        assertEquals(1, stub.received.size(), "a timeout is not retried: the server may be working on it");

        Answer longBody = Answer.of(200).header("Content-Type", "audio/pcm").delayChunks(400);
        for (int i = 0; i < 4; i++) {
            longBody.chunk(AUDIO);
        }
        stub.then(longBody);
        assertEquals(4 * AUDIO.length, client.speech(hello()).audio().length,
                "a body that streams longer than the read timeout is not cut");
    }

    @Test
    void aStreamCutMidwayFailsAndIsNotRetried() throws Exception {
        // A raw socket: voxgate cuts a failed stream by closing the connection
        // before the chunked body's last chunk. com.sun.net.httpserver cannot.
        try (ServerSocket server = new ServerSocket(0, 5, InetAddress.getLoopbackAddress())) {
            int[] accepted = {0};
            Thread t = new Thread(() -> {
                while (!server.isClosed()) {
                    try (Socket s = server.accept()) {
                        accepted[0]++;
                        readRequest(s.getInputStream());
                        OutputStream o = s.getOutputStream();
                        o.write(("HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\nX-Sample-Rate: 24000\r\n"
                                + "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n").getBytes(StandardCharsets.US_ASCII));
                        o.flush();
                        Thread.sleep(200);
                    } catch (IOException | InterruptedException e) {
                        return;
                    }
                }
            });
            t.setDaemon(true);
            t.start();
            VoxgateClient client = client().baseUrl("http://127.0.0.1:" + server.getLocalPort()).build();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            VoxgateException e = assertThrows(VoxgateException.class, () -> client.speechTo(hello(), out));
            assertEquals("stream_interrupted", e.code());
            assertEquals(4, e.bytesDelivered());
            assertEquals("abcd", out.toString(StandardCharsets.US_ASCII), "what arrived was passed on");
            Thread.sleep(300);
            assertEquals(1, accepted[0], "audio was written to the caller: never retried");
            assertTrue(retries.isEmpty());

            // the same cut, read whole: an error, never a short file
            VoxgateException whole = assertThrows(VoxgateException.class, () -> client.speech(hello()));
            assertEquals("stream_interrupted", whole.code());
        }
    }

    private static void readRequest(InputStream in) throws IOException {
        StringBuilder head = new StringBuilder();
        while (!head.toString().endsWith("\r\n\r\n")) {
            int c = in.read();
            if (c < 0) {
                return;
            }
            head.append((char) c);
        }
        int length = 0;
        for (String line : head.toString().split("\r\n")) {
            if (line.toLowerCase().startsWith("content-length:")) {
                length = Integer.parseInt(line.substring(15).strip());
            }
        }
        in.readNBytes(length);
    }

    @Test
    void aFailingOutputStreamIsReportedAsSuch() {
        stub.then(audio());
        OutputStream broken = new OutputStream() {
            @Override
            public void write(int b) throws IOException {
                throw new IOException("disk full");
            }

            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                throw new IOException("disk full");
            }
        };
        VoxgateException e = assertThrows(VoxgateException.class, () -> client().build().speechTo(hello(), broken));
        assertEquals("output_error", e.code());
        assertTrue(e.getMessage().contains("disk full"), e.getMessage());
        assertEquals(1, stub.received.size());
    }

    @Test
    void cancellingStopsAPendingRetry() throws Exception {
        stub.then(Answer.error(503, "engine_overloaded", "1")).then(audio());
        CompletableFuture<Speech> call = client().build().speechAsync(hello());
        for (int i = 0; i < 200 && stub.received.isEmpty(); i++) {
            Thread.sleep(50);
        }
        Thread.sleep(200); // the 503 is in; the client now waits out Retry-After
        assertTrue(call.cancel(true));
        Thread.sleep(1500);
        assertEquals(1, stub.received.size(), "the retry after Retry-After never went out");
    }

    @Test
    void readinessAnswersNotReadyWithoutRetrying() {
        stub.then(Answer.of(503).header("Content-Type", "application/json").header("Retry-After", "1")
                .body("{\"status\": \"not_ready\", \"engines\": {\"espeak\": true, \"cosyvoice\": false}}"));
        Health h = client().build().readiness();
        assertFalse(h.ok());
        assertEquals("not_ready", h.status());
        assertEquals(Boolean.FALSE, h.engines().get("cosyvoice"));
        assertEquals(1, stub.received.size());
    }

    @Test
    void anUnreadableSuccessIsReported() {
        stub.then(Answer.of(200).header("Content-Type", "text/html").body("<html>proxy login</html>"));
        VoxgateException e = assertThrows(VoxgateException.class, () -> client().build().getJob("job_1"));
        assertEquals("invalid_response", e.code());
        assertEquals(200, e.status());
    }
}
