package io.voxgate.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.voxgate.client.EventStreamDecoder.Event;
import io.voxgate.client.StubServer.Answer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Following a job over server-sent events ({@code GET /v1/jobs/{id}/events})
 * and resuming a job's audio download, against the scripted stub server:
 * the event-stream format, drops and reconnections, fallbacks, errors.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class JobEventsTest extends StubServerTest {
    static String job(String state, int done, int total) {
        return "{\"id\": \"job_1\", \"object\": \"job\", \"state\": \"" + state + "\", \"progress\": {\"segments_done\": "
                + done + ", \"segments_total\": " + total + ", \"fraction\": " + (total == 0 ? 0.0 : (double) done / total)
                + ", \"audio_seconds\": " + (1.5 * done) + "}, \"attempts\": 1, \"request\": {\"format\": \"mp3\"}}";
    }

    static String event(String name, String data) {
        return "event: " + name + "\ndata: " + data + "\n\n";
    }

    static Answer stream(String... chunks) {
        Answer a = Answer.of(200).header("Content-Type", "text/event-stream").header("Cache-Control", "no-store");
        for (String c : chunks) {
            a.body(c);
        }
        return a;
    }

    private static Answer jobAnswer(String state, int done, int total) {
        return Answer.of(200).header("Content-Type", "application/json").body(job(state, done, total));
    }

    private static List<String> states(List<Job> jobs) {
        List<String> out = new ArrayList<>();
        jobs.forEach(j -> out.add(j.state() + " " + j.segmentsDone() + "/" + j.segmentsTotal()));
        return out;
    }

    // ---------------------------------------------------------------- the format

    private static List<Event> decode(EventStreamDecoder d, String... lines) {
        List<Event> out = new ArrayList<>();
        for (String line : lines) {
            Event e = d.feed(line);
            if (e != null) {
                out.add(e);
            }
        }
        return out;
    }

    @Test
    void decodesTheEventStreamFormat() {
        EventStreamDecoder d = new EventStreamDecoder();
        List<Event> events = decode(d,
                "\uFEFF: a comment before anything (and a byte-order mark)",
                "event: progress", "data: {\"a\": 1,", "data:  \"b\": 2}", "",
                ": keep-alive", "",
                "data: no event name", "", // the default type
                "id: 42", "event: done", "data", "data:x", "unknown: ignored", "",
                "event: dropped, no data", "", // an event without data is not dispatched
                "data: keeps id 42", "",
                "id: bad\0id", "retry: 1500", "retry: soon", "data: still 42", "",
                "id", "data: id reset", "",
                "data: never ended by a blank line");
        assertEquals(6, events.size(), events.toString());
        assertEquals(new Event("progress", "{\"a\": 1,\n \"b\": 2}", ""), events.get(0),
                "data lines joined with \\n; only the first space after the colon is dropped");
        assertEquals(new Event("message", "no event name", ""), events.get(1));
        assertEquals(new Event("done", "\nx", "42"), events.get(2), "a bare field name is an empty value");
        assertEquals(new Event("message", "keeps id 42", "42"), events.get(3), "the id persists");
        assertEquals(new Event("message", "still 42", "42"), events.get(4), "an id with a NUL is ignored");
        assertEquals(new Event("message", "id reset", ""), events.get(5));
        assertEquals(1500, d.retryMillis(), "retry in ms; non-digits ignored");
        assertEquals("", d.lastEventId());

        EventStreamDecoder resumed = new EventStreamDecoder("7"); // a reconnection's decoder keeps the id
        assertNull(resumed.feed("data: x"));
        assertEquals(new Event("message", "x", "7"), resumed.feed(""));
        assertEquals(-1, new EventStreamDecoder().retryMillis());
    }

    @Test
    void splitsLinesAtCrLfAndCrlfAcrossBuffers() {
        EventStreamDecoder.LineSplitter splitter = new EventStreamDecoder.LineSplitter();
        List<String> lines = new ArrayList<>();
        byte[] all = "data: 中文女\r\n\r\ndata: a\rdata: b\n\ndata: cut".getBytes(StandardCharsets.UTF_8);
        // one byte at a time: a CRLF and the three bytes of each character split across buffers
        for (byte b : all) {
            splitter.feed(java.nio.ByteBuffer.wrap(new byte[] {b}), lines::add);
        }
        assertEquals(List.of("data: 中文女", "", "data: a", "data: b", ""), lines,
                "CRLF is one line end; an unterminated last line is held back");
    }

    // ---------------------------------------------------------------- watching

    @Test
    void followsAJobOverServerSentEvents() {
        String running = job("running", 1, 3);
        // split across data lines (JSON allows the newline), across chunks mid-line, with CRLF endings
        String multiLine = "event: progress\r\ndata: " + running.substring(0, 40) + "\r\ndata: " + running.substring(40)
                + "\r\n\r\n";
        stub.then(stream(": keep-alive\n\n",
                event("progress", job("queued", 0, 3)),
                multiLine.substring(0, 25), multiLine.substring(25),
                event("progress", running), // the same snapshot again: reported once
                "event: heartbeat\ndata: not a job\n\n", // an event this client does not know: ignored
                "event: progress\rdata: " + job("running", 2, 3) + "\r\r",
                event("done", job("succeeded", 3, 3)))
                .delayChunks(30));
        List<Job> seen = new CopyOnWriteArrayList<>();
        Job done = client().build().watchJob("job_1", Duration.ofSeconds(30), seen::add);

        assertEquals("succeeded", done.state());
        assertEquals(3, done.segmentsDone());
        assertEquals(List.of("queued 0/3", "running 1/3", "running 2/3", "succeeded 3/3"), states(seen));
        assertSame(done, seen.get(seen.size() - 1));
        assertEquals(1, stub.received.size());
        StubServer.Received r = stub.received.get(0);
        assertEquals("GET", r.method());
        assertEquals("/v1/jobs/job_1/events", r.path());
        assertEquals("text/event-stream", r.header("Accept"));
        assertEquals("Bearer vg_test_key", r.header("Authorization"));
        assertNull(r.header("Last-Event-ID"), "no id was ever given");
        assertTrue(retries.isEmpty());
    }

    @Test
    void reconnectsAfterADropWithLastEventIdAndHonoursRetryAfter() {
        String first = "id: 7\n" + event("progress", job("running", 1, 3));
        stub.then(stream(first).cutShortOf(first.length() + 500)) // the connection breaks mid-stream
                .then(Answer.error(503, "engine_unavailable", "1")) // the reconnection is pushed back
                .then(stream("id: 8\n" + event("progress", job("running", 1, 3)),
                        "id: 9\n" + event("progress", job("running", 2, 3)),
                        event("done", job("succeeded", 3, 3))));
        List<Job> seen = new CopyOnWriteArrayList<>();
        Job done = client().build().watchJob("job_1", Duration.ofSeconds(30), seen::add);

        assertEquals("succeeded", done.state());
        assertEquals(List.of("running 1/3", "running 2/3", "succeeded 3/3"), states(seen),
                "the repeated snapshot after the reconnection is not reported again");
        assertEquals(3, stub.received.size());
        assertNull(stub.received.get(0).header("Last-Event-ID"));
        assertEquals("7", stub.received.get(1).header("Last-Event-ID"));
        assertEquals("7", stub.received.get(2).header("Last-Event-ID"));
        long gapMs = TimeUnit.NANOSECONDS.toMillis(stub.received.get(2).atNanos() - stub.received.get(1).atNanos());
        assertTrue(gapMs >= 950, "waited the 503's Retry-After (1 s): " + gapMs + " ms");

        assertEquals(2, retries.size(), retries.toString());
        assertEquals("stream_interrupted", retries.get(0).code());
        assertEquals(0, retries.get(0).status());
        assertEquals("/v1/jobs/job_1/events", retries.get(0).path());
        assertTrue(retries.get(0).delay().toMillis() <= 20, "the client's backoff: " + retries.get(0).delay());
        assertEquals(503, retries.get(1).status());
        assertEquals(Duration.ofSeconds(1), retries.get(1).delay());
    }

    @Test
    void aStreamEndingBeforeTheJobIsReopenedAfterTheServersRetry() {
        stub.then(stream("retry: 300\n\n", event("progress", job("queued", 0, 2)))) // ends cleanly, no done
                .then(stream(event("done", job("failed", 1, 2))));
        Job done = client().build().watchJob("job_1", null, null);
        assertEquals("failed", done.state(), "the final job whatever its state");
        assertEquals(2, stub.received.size());
        assertEquals(1, retries.size());
        assertEquals(Duration.ofMillis(300), retries.get(0).delay(), "the server's retry field");
        long gapMs = TimeUnit.NANOSECONDS.toMillis(stub.received.get(1).atNanos() - stub.received.get(0).atNanos());
        assertTrue(gapMs >= 290, gapMs + " ms");
    }

    @Test
    void aStreamOutlivesTheReadTimeout() {
        stub.then(stream(event("progress", job("running", 1, 4)), event("progress", job("running", 2, 4)),
                ": keep-alive\n\n", event("progress", job("running", 3, 4)), event("done", job("succeeded", 4, 4)))
                .delayChunks(250));
        List<Job> seen = new CopyOnWriteArrayList<>();
        Job done = client().readTimeout(Duration.ofMillis(300)).build().watchJob("job_1", null, seen::add);
        assertEquals("succeeded", done.state());
        assertEquals(4, seen.size());
        assertEquals(1, stub.received.size(), "the read timeout bounds the wait for headers only");
        assertTrue(retries.isEmpty());
    }

    @Test
    void aSilentStreamIsTakenForDeadAndReopened() {
        stub.then(stream(": keep-alive\n\n", event("progress", job("running", 1, 2))).delayChunks(10_000))
                .then(stream(event("done", job("succeeded", 2, 2))));
        long started = System.nanoTime();
        Job done = client().eventIdleTimeout(Duration.ofMillis(400)).build().watchJob("job_1",
                Duration.ofSeconds(30), null);
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
        assertEquals("succeeded", done.state());
        assertEquals(2, stub.received.size());
        assertTrue(ms < 5000, "reconnected after the idle timeout, not after the stalled chunk: " + ms + " ms");
    }

    @Test
    void dropsInARowAreLimitedThenWaitForJobPolls() {
        VoxgateClient client = client().maxRetries(1).build();
        String once = event("progress", job("running", 1, 3));
        stub.then(stream(": keep-alive\n\n").cutShortOf(1000)).then(stream(": keep-alive\n\n").cutShortOf(1000));
        VoxgateException e = assertThrows(VoxgateException.class, () -> client.watchJob("job_1", null, null));
        assertEquals("stream_interrupted", e.code());
        assertEquals(2, stub.received.size(), "the first connection and one reconnection");

        stub.then(stream(once).cutShortOf(1000)).then(stream(once).cutShortOf(1000))
                .then(stream(": keep-alive\n\n").cutShortOf(1000))
                .then(jobAnswer("running", 2, 3)).then(jobAnswer("succeeded", 3, 3));
        List<Job> seen = new CopyOnWriteArrayList<>();
        Job done = client.waitForJob("job_1", Duration.ofMillis(50), Duration.ofSeconds(30), seen::add);
        assertEquals("succeeded", done.state());
        assertEquals(List.of("running 1/3", "running 2/3", "succeeded 3/3"), states(seen),
                "a connection that delivered an event resets the count; a drop without one after a drop uses up"
                        + " maxRetries(1): polling takes over");
        List<String> paths = new ArrayList<>();
        stub.received.subList(2, stub.received.size()).forEach(r -> paths.add(r.path()));
        assertEquals(List.of("/v1/jobs/job_1/events", "/v1/jobs/job_1/events", "/v1/jobs/job_1/events",
                "/v1/jobs/job_1", "/v1/jobs/job_1"), paths);
    }

    @Test
    void anUnknownJobIsA404AndNotPolled() {
        stub.then(Answer.error(404, "job_not_found", null));
        VoxgateException e = assertThrows(VoxgateException.class,
                () -> client().build().watchJob("job_nope", Duration.ofSeconds(10), null));
        assertEquals(404, e.status());
        assertEquals("job_not_found", e.code());
        assertEquals("stub hint", e.hint());

        stub.then(Answer.error(404, "job_not_found", null));
        VoxgateException w = assertThrows(VoxgateException.class,
                () -> client().build().waitForJob("job_nope", Duration.ofMillis(50), Duration.ofSeconds(10), null));
        assertEquals("job_not_found", w.code());
        assertEquals(2, stub.received.size(), "no polling after a 404");
        assertTrue(retries.isEmpty());
    }

    @Test
    void anAnswerThatIsNotAnEventStreamFallsBackToPolling() {
        stub.then(Answer.of(200).header("Content-Type", "text/html").body("<html>a proxy</html>"));
        VoxgateException e = assertThrows(VoxgateException.class,
                () -> client().build().watchJob("job_1", Duration.ofSeconds(10), null));
        assertEquals("invalid_response", e.code());

        stub.then(Answer.of(200).header("Content-Type", "text/html").body("<html>a proxy</html>"))
                .then(jobAnswer("running", 1, 2)).then(jobAnswer("succeeded", 2, 2));
        Job done = client().build().waitForJob("job_1", Duration.ofMillis(50), Duration.ofSeconds(10), null);
        assertEquals("succeeded", done.state());
        assertEquals(4, stub.received.size());

        // and with events turned off, waitForJob only polls
        stub.then(jobAnswer("succeeded", 2, 2));
        client().jobEvents(false).build().waitForJob("job_1", Duration.ofMillis(50), null, null);
        assertEquals("/v1/jobs/job_1", stub.received.get(4).path());
    }

    @Test
    void theWatchTimesOutAndCallbackFailuresEndIt() {
        stub.then(stream(event("progress", job("queued", 0, 2)), ": keep-alive\n\n", ": keep-alive\n\n")
                .delayChunks(1000));
        VoxgateException e = assertThrows(VoxgateException.class,
                () -> client().build().watchJob("job_1", Duration.ofMillis(500), null));
        assertEquals("job_wait_timeout", e.code());
        assertTrue(e.getMessage().contains("queued"), e.getMessage());

        stub.then(stream(event("progress", job("running", 1, 2)), event("done", job("succeeded", 2, 2))));
        IllegalStateException boom = assertThrows(IllegalStateException.class, () -> client().build().waitForJob(
                "job_1", Duration.ofMillis(50), null, j -> {
                    throw new IllegalStateException("callback failed");
                }));
        assertEquals("callback failed", boom.getMessage());
        assertEquals(2, stub.received.size(), "a failing callback is not a reason to poll");
    }

    @Test
    void cancellingTheFutureClosesTheStream() throws Exception {
        stub.then(stream(event("progress", job("running", 1, 2)), ": keep-alive\n\n").delayChunks(5000));
        List<Job> seen = new CopyOnWriteArrayList<>();
        CompletableFuture<Job> watch = client().build().watchJobAsync("job_1", null, seen::add);
        for (int i = 0; i < 100 && seen.isEmpty(); i++) {
            Thread.sleep(50);
        }
        assertEquals(1, seen.size());
        assertTrue(watch.cancel(true));
        Thread.sleep(300);
        assertEquals(1, stub.received.size(), "no reconnection after a cancel");
    }

    // ---------------------------------------------------------------- resumed downloads

    private static final byte[] FILE = "ID3 sixteen byte file of mp3 audio".getBytes(StandardCharsets.US_ASCII);

    private static Answer audio(int status) {
        return Answer.of(status).header("Content-Type", "audio/mpeg").header("ETag", "\"v1\"")
                .header("Accept-Ranges", "bytes");
    }

    private static byte[] slice(int from, int to) {
        byte[] out = new byte[to - from];
        System.arraycopy(FILE, from, out, 0, out.length);
        return out;
    }

    @Test
    void aBrokenDownloadResumesWithARange(@TempDir Path tmp) throws IOException {
        stub.then(audio(200).chunk(slice(0, 10)).cutShortOf(FILE.length))
                .then(audio(206).header("Content-Range", "bytes 10-" + (FILE.length - 1) + "/" + FILE.length)
                        .chunk(slice(10, FILE.length)));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        AudioInfo info = client().build().downloadJobAudio("job_1", out);
        assertArrayEquals(FILE, out.toByteArray(), "every byte once");
        assertEquals(200, info.status(), "the first answer's info");
        assertEquals(AudioFormat.MP3, info.format());
        assertEquals(2, stub.received.size());
        assertEquals("/v1/jobs/job_1/audio", stub.received.get(1).path());
        assertNull(stub.received.get(0).header("Range"));
        assertEquals("bytes=10-", stub.received.get(1).header("Range"));
        assertEquals("\"v1\"", stub.received.get(1).header("If-Range"));
        assertEquals(1, retries.size());

        // to a file, where the server ignores the range and sends it all again
        stub.then(audio(200).chunk(slice(0, 12)).cutShortOf(FILE.length)).then(audio(200).chunk(FILE));
        Path file = tmp.resolve("out.mp3");
        client().build().downloadJobAudio("job_1", file);
        assertArrayEquals(FILE, Files.readAllBytes(file), "the bytes already written were skipped");
        assertEquals("bytes=12-", stub.received.get(3).header("Range"));
    }

    @Test
    void aDownloadThatCannotContinueFails() {
        stub.then(audio(200).chunk(slice(0, 10)).cutShortOf(FILE.length))
                .then(audio(200).header("ETag", "\"v2\"").chunk(FILE));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        VoxgateException e = assertThrows(VoxgateException.class,
                () -> client().build().downloadJobAudio("job_1", out));
        assertEquals("stream_interrupted", e.code());
        assertEquals(10, e.bytesDelivered());
        assertTrue(e.getMessage().contains("changed"), e.getMessage());
        assertArrayEquals(slice(0, 10), out.toByteArray());

        // breaks without progress use up the retries
        stub.then(audio(200).chunk(slice(0, 10)).cutShortOf(FILE.length));
        for (int i = 0; i < 2; i++) {
            stub.then(audio(206).header("Content-Range", "bytes 10-" + (FILE.length - 1) + "/" + FILE.length)
                    .cutShortOf(FILE.length - 10).chunk(new byte[0]));
        }
        VoxgateException used = assertThrows(VoxgateException.class,
                () -> client().maxRetries(2).build().downloadJobAudio("job_1", new ByteArrayOutputStream()));
        assertEquals("stream_interrupted", used.code());
        assertEquals(10, used.bytesDelivered());
        assertEquals(5, stub.received.size());
    }
}
