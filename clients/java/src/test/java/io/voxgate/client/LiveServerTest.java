package io.voxgate.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The client against a real voxgate server, started by
 * tests/e2e/test_java_client.py with three engines: {@code espeak} (the real
 * embedded speech engine, default), {@code sim} (simulated, for paced
 * streams and jobs) and {@code busy} (simulated, capacity 1 and no queue, to
 * be overloaded). System properties: {@code voxgate.url}, and
 * {@code voxgate.promptWav} (a real speech recording made by voxgate's own
 * engine, 3-15 s, for voice registration).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class LiveServerTest {
    static final String SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back home again.";

    private static String url;
    private static byte[] prompt;
    private static VoxgateClient client;

    @BeforeAll
    static void connect() throws IOException {
        url = System.getProperty("voxgate.url", System.getenv("VOXGATE_URL"));
        org.junit.jupiter.api.Assumptions.assumeTrue(url != null && !url.isBlank(),
                "set -Dvoxgate.url to a running voxgate (tests/e2e/test_java_client.py does)");
        String promptPath = System.getProperty("voxgate.promptWav");
        prompt = promptPath == null ? null : Files.readAllBytes(Path.of(promptPath));
        client = VoxgateClient.builder().baseUrl(url).connectTimeout(Duration.ofSeconds(5))
                .readTimeout(Duration.ofSeconds(60)).build();
    }

    // ---------------------------------------------------------------- audio checks

    /** The fields of a canonical PCM WAV header. */
    record Wav(int format, int channels, int sampleRate, int bits, int dataOffset) {
    }

    static Wav parseWav(byte[] b) {
        assertTrue(b.length > 44, "a WAV file is longer than its header: " + b.length);
        assertEquals("RIFF", ascii(b, 0, 4));
        assertEquals("WAVE", ascii(b, 8, 4));
        ByteBuffer le = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        int at = 12;
        Wav fmt = null;
        while (at + 8 <= b.length) {
            String id = ascii(b, at, 4);
            int size = le.getInt(at + 4);
            if (id.equals("fmt ")) {
                fmt = new Wav(le.getShort(at + 8), le.getShort(at + 10), le.getInt(at + 12), le.getShort(at + 22), -1);
            } else if (id.equals("data")) {
                assertNotNull(fmt, "fmt chunk before data");
                return new Wav(fmt.format(), fmt.channels(), fmt.sampleRate(), fmt.bits(), at + 8);
            }
            at += 8 + size + (size & 1);
        }
        throw new AssertionError("no data chunk");
    }

    private static String ascii(byte[] b, int off, int len) {
        return new String(b, off, len, StandardCharsets.US_ASCII);
    }

    /** Checks the first MPEG audio frame header and returns its sample rate. */
    static int mp3SampleRate(byte[] b) {
        assertTrue(b.length > 4);
        assertFalse(ascii(b, 0, 3).equals("ID3"), "voxgate writes no ID3 tag");
        assertEquals(0xff, b[0] & 0xff, "frame sync");
        assertEquals(0xe0, b[1] & 0xe0, "frame sync");
        int version = (b[1] >> 3) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
        int layer = (b[1] >> 1) & 3; // 1: Layer III
        assertEquals(1, layer, "Layer III");
        int index = (b[2] >> 2) & 3;
        int[][] rates = {{11025, 12000, 8000}, null, {22050, 24000, 16000}, {44100, 48000, 32000}};
        assertNotNull(rates[version], "valid MPEG version");
        return rates[version][index];
    }

    // ---------------------------------------------------------------- health

    @Test
    void healthAndReadiness() {
        Health health = client.health();
        assertTrue(health.ok());
        assertEquals("ok", health.status());
        Health ready = client.readiness();
        assertTrue(ready.ok());
        assertEquals("ready", ready.status());
        assertEquals(Boolean.TRUE, ready.engines().get("espeak"));
        assertEquals(Boolean.TRUE, ready.engines().get("sim"));
    }

    // ---------------------------------------------------------------- speech

    @Test
    void speechAsWav() {
        Speech speech = client.speech(SpeechRequest.builder("Hello from the Java client.").voice("alloy")
                .format(AudioFormat.WAV).build());
        Wav wav = parseWav(speech.audio());
        assertEquals(1, wav.format(), "PCM");
        assertEquals(1, wav.channels());
        assertEquals(16, wav.bits());
        assertEquals(24000, wav.sampleRate());
        assertEquals(24000, speech.info().sampleRate());
        assertEquals(AudioFormat.WAV, speech.info().format());
        assertEquals("espeak", speech.info().engine());
        assertNotNull(speech.info().voice());
        assertNotNull(speech.info().requestId());
        int samples = (speech.audio().length - wav.dataOffset()) / 2;
        assertTrue(samples > 24000 / 2, "more than half a second of speech: " + samples);

        Speech slow = client.speech(SpeechRequest.builder("Sixteen kilohertz.").format(AudioFormat.WAV)
                .sampleRate(16000).speed(0.8).build());
        assertEquals(16000, parseWav(slow.audio()).sampleRate());
        assertEquals(16000, slow.info().sampleRate());
    }

    @Test
    void speechAsMp3() {
        Speech speech = client.speech(SpeechRequest.builder("An MP3 file, please.").model("tts-1").voice("onyx")
                .format(AudioFormat.MP3).build());
        assertEquals(AudioFormat.MP3, speech.info().format());
        assertEquals("audio/mpeg", speech.info().contentType());
        assertEquals(speech.info().sampleRate(), mp3SampleRate(speech.audio()));
        assertTrue(speech.audio().length > 1000);
    }

    /** Counts writes, and how many came before the call had completed. */
    static final class RecordingStream extends OutputStream {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        final List<Long> writes = new CopyOnWriteArrayList<>();
        final CountDownLatch first = new CountDownLatch(1);
        volatile CompletableFuture<?> call;
        volatile int writesBeforeDone;

        @Override
        public void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) {
            bytes.write(b, off, len);
            writes.add(System.nanoTime());
            CompletableFuture<?> c = call;
            if (c == null || !c.isDone()) {
                writesBeforeDone++;
            }
            first.countDown();
        }
    }

    @Test
    void streamingWritesAudioAsItIsSynthesized() {
        // espeak: one chunk per sentence
        RecordingStream out = new RecordingStream();
        String text = "One sentence first. Then a second one. A third sentence follows. And a fourth. The end.";
        CompletableFuture<AudioInfo> call = client.speechToAsync(
                SpeechRequest.builder(text).format(AudioFormat.PCM).build(), out);
        out.call = call;
        AudioInfo info = call.join();
        assertEquals(AudioFormat.PCM, info.format());
        assertEquals(24000, info.sampleRate());
        assertEquals(0, out.bytes.size() % 2, "whole 16-bit samples");
        assertTrue(out.bytes.size() > 24000 * 2, "seconds of audio: " + out.bytes.size());
        assertTrue(out.writesBeforeDone >= 2, "written in pieces as it came: " + out.writes.size());

        // the simulated engine paces its chunks (200 ms of audio every 60 ms): many writes, the first early
        RecordingStream paced = new RecordingStream();
        String longer = "This simulated sentence is long enough to arrive in many small chunks over time.";
        CompletableFuture<AudioInfo> pacedCall = client.speechToAsync(
                SpeechRequest.builder(longer).model("sim").format(AudioFormat.WAV).build(), paced);
        paced.call = pacedCall;
        AudioInfo pacedInfo = pacedCall.join();
        long done = System.nanoTime();
        assertEquals("sim", pacedInfo.engine());
        parseWav(paced.bytes.toByteArray());
        assertTrue(paced.writesBeforeDone >= 5, "several writes before completion: " + paced.writes.size());
        assertTrue(TimeUnit.NANOSECONDS.toMillis(done - paced.writes.get(0)) >= 300,
                "the first chunk reached the stream well before the last");
    }

    @Test
    void openSpeechReadsAsItArrives() throws IOException {
        try (AudioStream stream = client.openSpeech(SpeechRequest.builder("Read me from an input stream.")
                .format(AudioFormat.WAV).build())) {
            assertEquals(AudioFormat.WAV, stream.info().format());
            InputStream in = stream.body();
            byte[] audio = in.readAllBytes();
            assertEquals(stream.info().sampleRate(), parseWav(audio).sampleRate());
        }
    }

    @Test
    void asyncCallsRunConcurrently() {
        List<CompletableFuture<Speech>> calls = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            calls.add(client.speechAsync(SpeechRequest.builder("Concurrent request number " + i + ".")
                    .format(AudioFormat.FLAC).build()));
        }
        CompletableFuture.allOf(calls.toArray(new CompletableFuture<?>[0])).join();
        for (CompletableFuture<Speech> c : calls) {
            Speech s = c.join();
            assertEquals("fLaC", ascii(s.audio(), 0, 4));
            assertEquals(AudioFormat.FLAC, s.info().format());
        }
    }

    @Test
    void nativeTts() {
        Speech sft = client.tts(TtsRequest.builder("你好，世界。").speakerId("中文女").format(AudioFormat.WAV).build());
        assertEquals(sft.info().sampleRate(), parseWav(sft.audio()).sampleRate());
        assertEquals(22050, sft.info().sampleRate(), "the engine's own rate by default on /v1/tts");
        assertEquals("espeak", sft.info().engine());

        ByteArrayOutputStream out = new ByteArrayOutputStream();
        AudioInfo streamed = client.ttsTo(TtsRequest.builder("Streamed natively. In two sentences.")
                .format(AudioFormat.PCM).sampleRate(16000).pitch(2).volume(0.8).build(), out);
        assertEquals(16000, streamed.sampleRate());
        assertTrue(out.size() > 16000, "audio arrived: " + out.size());

        org.junit.jupiter.api.Assumptions.assumeTrue(prompt != null, "no prompt WAV given");
        Speech matched = client.tts(TtsRequest.builder("Spoken with the voice of the prompt.").referenceAudio(prompt)
                .referenceText(SENTENCE).format(AudioFormat.WAV).build());
        parseWav(matched.audio());
        assertTrue(matched.info().hasWarning("voice_matched"),
                "espeak cannot clone and says so: " + matched.info().warnings());
    }

    // ---------------------------------------------------------------- voices

    @Test
    void registersUsesAndDeletesAVoice() {
        org.junit.jupiter.api.Assumptions.assumeTrue(prompt != null, "no prompt WAV given");
        Voice voice = client.registerVoice(VoiceRegistration.builder(prompt, "prompt.wav").contentType("audio/wav")
                .name("java-narrator").consent("I, Jane Doe, agree that voxgate may speak with my voice for tests.")
                .promptText(SENTENCE).language("en").tag("java").tag("e2e").build());
        assertTrue(voice.id().startsWith("voice_"), voice.id());
        assertEquals("java-narrator", voice.name());
        assertEquals("audio_sample", voice.type());
        assertEquals(SENTENCE, voice.promptText());
        assertEquals("given", voice.transcriptSource());
        assertEquals(List.of("java", "e2e"), voice.tags());
        assertTrue(voice.durationSeconds() >= 3 && voice.durationSeconds() <= 15, "kept " + voice.durationSeconds());
        assertTrue(voice.intake().containsKey("snr_db"), "the intake report came back: " + voice.intake());

        Voice fetched = client.getVoice(voice.id());
        assertEquals(voice.id(), fetched.id());
        assertEquals("java-narrator", fetched.name());

        Page<Voice> registered = client.listVoices(VoiceQuery.builder().type("audio_sample").limit(1000).build());
        assertTrue(registered.data().stream().anyMatch(v -> v.id().equals(voice.id())));
        Page<Voice> builtin = client.listVoices(VoiceQuery.builder().type("builtin").engine("espeak").limit(3).build());
        assertEquals(3, builtin.data().size());
        assertTrue(builtin.hasMore());
        assertTrue(builtin.data().stream().allMatch(Voice::isBuiltin));
        Page<Voice> next = client.listVoices(VoiceQuery.builder().type("builtin").engine("espeak").limit(3)
                .after(builtin.lastId()).build());
        assertFalse(next.data().get(0).id().equals(builtin.data().get(0).id()), "the next page moves on");

        Speech speech = client.speech(SpeechRequest.builder("Now in the registered voice.").voice(voice.id())
                .format(AudioFormat.WAV).build());
        parseWav(speech.audio());
        assertTrue(speech.info().hasWarning("voice_matched"), speech.info().warnings().toString());

        assertTrue(client.deleteVoice(voice.id()));
        VoxgateException gone = assertThrows(VoxgateException.class, () -> client.getVoice(voice.id()));
        assertEquals(404, gone.status());
        VoxgateException unusable = assertThrows(VoxgateException.class, () -> client.speech(
                SpeechRequest.builder("Hello.").voice(voice.id()).build()));
        assertEquals("voice_not_found", unusable.code());
    }

    @Test
    void refusesBadPromptsWithTypedErrors() {
        VoxgateException notAudio = assertThrows(VoxgateException.class, () -> client.registerVoice(
                VoiceRegistration.builder("this is not audio".getBytes(StandardCharsets.UTF_8), "x.wav")
                        .name("bad").consent("I agree.").build()));
        assertEquals(400, notAudio.status());
        assertEquals("prompt_invalid", notAudio.code());
        assertNotNull(notAudio.hint());

        org.junit.jupiter.api.Assumptions.assumeTrue(prompt != null, "no prompt WAV given");
        VoxgateException tooShort = assertThrows(VoxgateException.class, () -> client.registerVoice(
                VoiceRegistration.builder(firstSecond(prompt), "short.wav").name("short").consent("I agree.").build()));
        assertEquals("prompt_too_short", tooShort.code());
        assertNotNull(tooShort.requestId());
    }

    /** The first second of a 16-bit mono WAV, as a WAV. */
    static byte[] firstSecond(byte[] wavFile) {
        Wav wav = parseWav(wavFile);
        int n = Math.min(wav.sampleRate() * 2, wavFile.length - wav.dataOffset());
        ByteBuffer out = ByteBuffer.allocate(44 + n).order(ByteOrder.LITTLE_ENDIAN);
        out.put("RIFF".getBytes(StandardCharsets.US_ASCII)).putInt(36 + n).put("WAVE".getBytes(StandardCharsets.US_ASCII));
        out.put("fmt ".getBytes(StandardCharsets.US_ASCII)).putInt(16).putShort((short) 1).putShort((short) 1)
                .putInt(wav.sampleRate()).putInt(wav.sampleRate() * 2).putShort((short) 2).putShort((short) 16);
        out.put("data".getBytes(StandardCharsets.US_ASCII)).putInt(n).put(wavFile, wav.dataOffset(), n);
        return out.array();
    }

    // ---------------------------------------------------------------- jobs

    @Test
    void jobRoundTrip(@TempDir Path tmp) throws IOException {
        StringBuilder text = new StringBuilder();
        for (int i = 1; i <= 8; i++) {
            text.append("This is sentence number ").append(i).append(" of the chapter. ");
        }
        Job job = client.submitJob(JobRequest.builder(text.toString()).engine("sim").format(AudioFormat.WAV)
                .subtitles(SubtitleFormat.SRT, SubtitleFormat.VTT).build());
        assertTrue(job.id().startsWith("job_"));
        assertTrue(job.segmentsTotal() >= 4, "several segments: " + job.segmentsTotal());
        assertNotNull(job.idempotencyKey(), "the client sent a generated Idempotency-Key");

        List<Job> seen = new CopyOnWriteArrayList<>();
        // waitForJob follows the job's events: the poll interval (the fallback's) never comes into play
        Job done = client.waitForJob(job.id(), Duration.ofMinutes(10), Duration.ofSeconds(90), seen::add);
        assertEquals("succeeded", done.state(), String.valueOf(done.raw()));
        assertTrue(done.isSucceeded());
        assertEquals(1.0, done.fraction());
        assertEquals(done.segmentsTotal(), done.segmentsDone());
        assertEquals(done, seen.get(seen.size() - 1), "the callback saw the final state");
        double last = -1;
        int between = 0;
        for (Job j : seen) {
            assertTrue(j.fraction() >= last, "progress never goes back: " + seen);
            last = j.fraction();
            if (j.fraction() > 0 && j.fraction() < 1) {
                between++;
            }
        }
        assertTrue(between >= 2, "progress seen increasing along the way: " + fractions(seen));

        ByteArrayOutputStream audio = new ByteArrayOutputStream();
        AudioInfo info = client.downloadJobAudio(job.id(), audio);
        assertEquals(AudioFormat.WAV, info.format());
        Wav wav = parseWav(audio.toByteArray());
        assertEquals(24000, wav.sampleRate());
        double seconds = (audio.size() - wav.dataOffset()) / 2.0 / wav.sampleRate();
        assertEquals(done.audioSeconds(), seconds, 0.05);

        Path file = tmp.resolve("chapter.wav");
        client.downloadJobAudio(job.id(), file);
        assertArrayEquals(audio.toByteArray(), Files.readAllBytes(file));

        String srt = client.jobSubtitles(job.id(), SubtitleFormat.SRT);
        assertEquals(done.segmentsTotal(), srt.split("-->", -1).length - 1, srt);
        assertTrue(srt.startsWith("1\n00:00:00,000 --> "), srt);
        String vtt = client.jobSubtitles(job.id(), SubtitleFormat.VTT);
        assertTrue(vtt.startsWith("WEBVTT"), vtt);

        Page<Job> mine = client.listJobs(100, null, "succeeded");
        assertTrue(mine.data().stream().anyMatch(j -> j.id().equals(job.id())));
    }

    @Test
    void followsAJobOverServerSentEvents() {
        StringBuilder text = new StringBuilder();
        for (int i = 1; i <= 8; i++) {
            text.append("Sentence ").append(i).append(" of a chapter followed as events. ");
        }
        Job job = client.submitJob(JobRequest.builder(text.toString()).engine("sim").format(AudioFormat.WAV).build());

        List<Job> seen = new CopyOnWriteArrayList<>();
        Job done = client.watchJob(job.id(), Duration.ofSeconds(90), seen::add);
        assertEquals("succeeded", done.state(), String.valueOf(done.raw()));
        assertEquals(job.id(), done.id());
        assertEquals(1.0, done.fraction());
        assertEquals(done.segmentsTotal(), done.segmentsDone());
        assertTrue(done.audioSeconds() > 0);
        assertEquals(done, seen.get(seen.size() - 1), "the last callback is the final job");
        assertTrue(seen.get(0).fraction() < 1.0, "followed from before the end: " + fractions(seen));
        int between = 0;
        for (int i = 1; i < seen.size(); i++) {
            Job before = seen.get(i - 1);
            Job now = seen.get(i);
            assertTrue(now.fraction() >= before.fraction() && now.segmentsDone() >= before.segmentsDone()
                    && now.audioSeconds() >= before.audioSeconds(), "progress never goes back: " + fractions(seen));
            assertTrue(!now.state().equals(before.state()) || now.segmentsDone() != before.segmentsDone()
                    || now.fraction() != before.fraction() || now.audioSeconds() != before.audioSeconds(),
                    "each callback is a change: " + fractions(seen));
            if (now.fraction() > 0 && now.fraction() < 1) {
                between++;
            }
        }
        assertTrue(between >= 2, "progress reported along the way: " + fractions(seen));

        // an ended job: its done event at once, asynchronously
        Job again = client.watchJobAsync(job.id(), Duration.ofSeconds(30), null).join();
        assertEquals("succeeded", again.state());
        assertEquals(done.segmentsDone(), again.segmentsDone());

        VoxgateException unknown = assertThrows(VoxgateException.class,
                () -> client.watchJob("job_does_not_exist", Duration.ofSeconds(10), null));
        assertEquals(404, unknown.status());
        assertEquals("job_not_found", unknown.code());
        assertNotNull(unknown.requestId());
    }

    private static List<Double> fractions(List<Job> jobs) {
        List<Double> out = new ArrayList<>();
        jobs.forEach(j -> out.add(j.fraction()));
        return out;
    }

    @Test
    void theSameIdempotencyKeyGivesTheSameJob() {
        String key = "java-" + UUID.randomUUID();
        Job first = client.submitJob(JobRequest.builder("Submitted twice. Done once.").engine("sim")
                .idempotencyKey(key).build());
        Job again = client.submitJob(JobRequest.builder("Submitted twice. Done once.").engine("sim")
                .idempotencyKey(key).build());
        assertEquals(first.id(), again.id());
        assertEquals(key, again.idempotencyKey());
        client.waitForJob(first.id(), Duration.ofMillis(100), Duration.ofSeconds(60), null);
    }

    @Test
    void cancelsAJob() {
        StringBuilder text = new StringBuilder();
        for (int i = 1; i <= 60; i++) {
            text.append("Sentence ").append(i).append(" of a very long book that nobody will finish. ");
        }
        Job job = client.submitJob(JobRequest.builder(text.toString()).engine("sim").build());
        Job cancelling = client.cancelJob(job.id());
        assertEquals(job.id(), cancelling.id());
        Job ended = client.waitForJob(job.id(), Duration.ofMillis(100), Duration.ofSeconds(60), null);
        assertEquals("cancelled", ended.state());
        assertTrue(ended.segmentsDone() < ended.segmentsTotal());
        VoxgateException e = assertThrows(VoxgateException.class,
                () -> client.downloadJobAudio(job.id(), new ByteArrayOutputStream()));
        assertEquals(409, e.status());
        assertEquals("job_not_finished", e.code());
    }

    // ---------------------------------------------------------------- errors and overload

    @Test
    void errorsAreTyped() {
        VoxgateException voice = assertThrows(VoxgateException.class,
                () -> client.speech(SpeechRequest.builder("Hello.").voice("nobody-at-all").build()));
        assertEquals(400, voice.status());
        assertEquals("voice_not_found", voice.code());
        assertEquals("voice", voice.param());
        assertTrue(voice.getMessage().contains("nobody-at-all"), voice.getMessage());
        assertNotNull(voice.hint());
        assertNotNull(voice.requestId());
        assertFalse(voice.isRetryable());

        VoxgateException model = assertThrows(VoxgateException.class,
                () -> client.speech(SpeechRequest.builder("Hello.").model("no-such-model").build()));
        assertEquals(404, model.status());
        assertEquals("model_not_found", model.code());

        VoxgateException empty = assertThrows(VoxgateException.class,
                () -> client.speech(SpeechRequest.builder("   ").build()));
        assertEquals("text_empty", empty.code());

        VoxgateException speed = assertThrows(VoxgateException.class,
                () -> client.tts(TtsRequest.builder("Hello.").speed(9).build()));
        assertEquals(400, speed.status());

        VoxgateException job = assertThrows(VoxgateException.class, () -> client.getJob("job_does_not_exist"));
        assertEquals(404, job.status());
        assertEquals("job_not_found", job.code());
    }

    @Test
    void aRealOverloadIsRetriedAfterRetryAfter() throws InterruptedException {
        // "busy" has one slot and no queue: while one request holds the slot,
        // the next is refused at once with 503 engine_overloaded + Retry-After.
        RecordingStream holder = new RecordingStream();
        CompletableFuture<AudioInfo> holding = client.speechToAsync(SpeechRequest.builder(
                "This request holds the only slot of the busy engine for a couple of seconds.").model("busy")
                .format(AudioFormat.PCM).build(), holder);
        assertTrue(holder.first.await(30, TimeUnit.SECONDS), "the holder started streaming");

        VoxgateClient impatient = VoxgateClient.builder().baseUrl(url).maxRetries(0).build();
        VoxgateException refused = assertThrows(VoxgateException.class, () -> impatient.speech(
                SpeechRequest.builder("Refused while the engine is busy.").model("busy").build()));
        assertEquals(503, refused.status());
        assertEquals("engine_overloaded", refused.code());
        assertNotNull(refused.retryAfter(), "503 carries Retry-After");
        assertTrue(refused.retryAfter().toMillis() >= 1000, refused.retryAfter().toString());
        assertTrue(refused.isRetryable());

        List<RetryEvent> retries = new CopyOnWriteArrayList<>();
        VoxgateClient patient = VoxgateClient.builder().baseUrl(url).maxRetries(10)
                .maxRetryAfter(Duration.ofSeconds(30)).retryListener(retries::add).build();
        Speech speech = patient.speech(SpeechRequest.builder("Served once the slot is free.").model("busy")
                .format(AudioFormat.WAV).build());
        parseWav(speech.audio());
        assertFalse(retries.isEmpty(), "it was refused first, then retried");
        for (RetryEvent e : retries) {
            assertEquals(503, e.status());
            assertEquals("engine_overloaded", e.code());
            assertEquals(e.retryAfter(), e.delay(), "waited what the server asked");
        }
        holding.join();
    }
}
