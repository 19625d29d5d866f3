package io.voxgate.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.http.HttpHeaders;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The pieces that need no server: header parsing, encoding, backoff, request bodies. */
class ClientUnitTest {

    private static HttpHeaders headers(Map<String, List<String>> map) {
        return HttpHeaders.of(map, (a, b) -> true);
    }

    @Test
    void parsesVoxgateErrorBodies() {
        byte[] body = ("{\"error\": {\"code\": \"voice_not_found\", \"message\": \"engine 'espeak' has no voice 'x'\","
                + " \"hint\": \"GET /v1/audio/voices lists them.\", \"type\": \"invalid_request_error\", \"param\": \"voice\"}}")
                .getBytes(StandardCharsets.UTF_8);
        VoxgateException e = VoxgateException.fromResponse(400, headers(Map.of("x-request-id", List.of("req-1"))), body);
        assertEquals(400, e.status());
        assertEquals("voice_not_found", e.code());
        assertEquals("engine 'espeak' has no voice 'x'", e.getMessage());
        assertEquals("GET /v1/audio/voices lists them.", e.hint());
        assertEquals("voice", e.param());
        assertEquals("req-1", e.requestId());
        assertNull(e.retryAfter());
        assertFalse(e.isRetryable());
        assertTrue(e.toString().contains("HTTP 400 voice_not_found"), e.toString());
    }

    @Test
    void keepsOtherErrorBodiesReadable() {
        VoxgateException e = VoxgateException.fromResponse(502, headers(Map.of("retry-after", List.of("3"))),
                "<html>Bad Gateway</html>".getBytes(StandardCharsets.UTF_8));
        assertEquals("http_502", e.code());
        assertEquals("HTTP 502: <html>Bad Gateway</html>", e.getMessage());
        assertEquals(Duration.ofSeconds(3), e.retryAfter());
        VoxgateException empty = VoxgateException.fromResponse(503, headers(Map.of()), new byte[0]);
        assertEquals("http_503", empty.code());
        assertTrue(empty.isRetryable());
    }

    @Test
    void parsesRetryAfter() {
        assertEquals(Duration.ofSeconds(1), VoxgateException.parseRetryAfter("1").orElseThrow());
        assertEquals(Duration.ofMillis(1500), VoxgateException.parseRetryAfter(" 1.5 ").orElseThrow());
        assertEquals(Duration.ZERO, VoxgateException.parseRetryAfter("0").orElseThrow());
        assertTrue(VoxgateException.parseRetryAfter("-1").isEmpty());
        assertTrue(VoxgateException.parseRetryAfter("soon").isEmpty());
        assertTrue(VoxgateException.parseRetryAfter(null).isEmpty());
        String inAMinute = DateTimeFormatter.RFC_1123_DATE_TIME.format(ZonedDateTime.now(ZoneOffset.UTC).plusSeconds(60));
        long s = VoxgateException.parseRetryAfter(inAMinute).orElseThrow().toSeconds();
        assertTrue(s >= 58 && s <= 60, "HTTP date: " + s);
        String past = "Wed, 21 Oct 2015 07:28:00 GMT";
        assertEquals(Duration.ZERO, VoxgateException.parseRetryAfter(past).orElseThrow());
    }

    @Test
    void readsAudioHeaders() {
        AudioInfo info = AudioInfo.of(200, headers(Map.of(
                "content-type", List.of("audio/wav"), "x-sample-rate", List.of("24000"), "x-channels", List.of("1"),
                "x-audio-format", List.of("wav"), "x-voxgate-engine", List.of("espeak"),
                "x-voxgate-voice", List.of("%E4%B8%AD%E6%96%87%E5%A5%B3"),
                "x-voxgate-warning", List.of("voice_matched: spoke with en-us-f3", "markup_lowered: x"),
                "x-request-id", List.of("abc"))));
        assertEquals(AudioFormat.WAV, info.format());
        assertEquals(24000, info.sampleRate());
        assertEquals(1, info.channels());
        assertEquals("espeak", info.engine());
        assertEquals("中文女", info.voice());
        assertEquals(2, info.warnings().size());
        assertTrue(info.hasWarning("voice_matched"));
        assertFalse(info.hasWarning("voice"));
        assertEquals("abc", info.requestId());
        AudioInfo bare = AudioInfo.of(200, headers(Map.of("content-type", List.of("audio/mpeg"))));
        assertEquals(AudioFormat.MP3, bare.format(), "format from the content type when X-Audio-Format is absent");
        assertEquals(0, bare.sampleRate());
    }

    @Test
    void percentDecodesOnlyWhatIsEncoded() {
        assertEquals("en-us-f3", AudioInfo.percentDecode("en-us-f3"));
        assertEquals("a+b", AudioInfo.percentDecode("a+b"));
        assertEquals("100%", AudioInfo.percentDecode("100%"), "malformed: returned as is");
        assertEquals("%zz", AudioInfo.percentDecode("%zz"));
        assertNull(AudioInfo.percentDecode(null));
    }

    @Test
    void encodesPathSegments() {
        assertEquals("voice_abc-1.2~x", VoxgateClient.segment("voice_abc-1.2~x"));
        assertEquals("%E4%B8%AD%E6%96%87%E5%A5%B3", VoxgateClient.segment("中文女"));
        assertEquals("a%2Fb%20c%3F", VoxgateClient.segment("a/b c?"));
        assertThrows(IllegalArgumentException.class, () -> VoxgateClient.segment(""));
    }

    @Test
    void backoffIsFullJitterBelowTheCap() {
        VoxgateClient client = VoxgateClient.builder().baseUrl("http://127.0.0.1:1/")
                .initialBackoff(Duration.ofMillis(100)).maxBackoff(Duration.ofMillis(1000)).build();
        assertEquals("http://127.0.0.1:1", client.baseUrl(), "trailing slash removed");
        for (int retry = 0; retry < 70; retry++) {
            long ceiling = Math.min(1000, retry >= 62 ? 1000 : 100L << Math.min(retry, 20));
            for (int i = 0; i < 200; i++) {
                long d = client.backoff(retry).toMillis();
                assertTrue(d >= 0 && d <= ceiling, "retry " + retry + ": " + d);
            }
        }
        // full jitter: values spread over the range, not stuck at the ceiling
        long min = Long.MAX_VALUE;
        long max = 0;
        for (int i = 0; i < 500; i++) {
            long d = client.backoff(5).toMillis();
            min = Math.min(min, d);
            max = Math.max(max, d);
        }
        assertTrue(min < 200 && max > 800, min + ".." + max);
    }

    @Test
    void validatesTheBuilder() {
        assertThrows(IllegalStateException.class, () -> VoxgateClient.builder().build());
        assertThrows(IllegalArgumentException.class, () -> VoxgateClient.builder().baseUrl("ftp://x"));
        assertThrows(IllegalArgumentException.class, () -> VoxgateClient.builder().maxRetries(-1));
        assertThrows(IllegalArgumentException.class, () -> VoxgateClient.builder().readTimeout(Duration.ZERO));
    }

    @Test
    void buildsRequestBodies() {
        SpeechRequest speech = SpeechRequest.builder("Hi").model("tts-1").voice("alloy").format(AudioFormat.WAV)
                .speed(1.5).sampleRate(16000).instructions("slowly").language("en").build();
        assertEquals("{\"input\":\"Hi\",\"model\":\"tts-1\",\"voice\":\"alloy\",\"response_format\":\"wav\","
                + "\"speed\":1.5,\"sample_rate\":16000,\"instructions\":\"slowly\",\"language\":\"en\"}",
                Json.write(speech.toJson()));
        assertEquals(AudioFormat.WAV, speech.format());
        TtsRequest tts = TtsRequest.builder("你好").mode(Mode.CROSS_LINGUAL).speakerId("中文女")
                .referenceAudio(new byte[] {1, 2, 3}).format(AudioFormat.PCM).build();
        assertEquals("{\"text\":\"你好\",\"mode\":\"cross_lingual\",\"speaker_id\":\"中文女\",\"reference_audio\":\"AQID\","
                + "\"format\":\"pcm\"}", Json.write(tts.toJson()));
        JobRequest job = JobRequest.builder("Long text.").engine("sim").format(AudioFormat.MP3)
                .subtitles(SubtitleFormat.SRT, SubtitleFormat.VTT).idempotencyKey("order-1").build();
        assertEquals("{\"text\":\"Long text.\",\"engine\":\"sim\",\"format\":\"mp3\",\"subtitles\":[\"srt\",\"vtt\"]}",
                Json.write(job.toJson()));
        assertEquals("order-1", job.idempotencyKey());
    }

    @Test
    void readsJobsAndVoices() {
        Job job = Job.of(Json.parseObject("{\"id\": \"job_1\", \"state\": \"running\", \"progress\": {\"segments_done\": 2,"
                + " \"segments_total\": 4, \"fraction\": 0.5, \"audio_seconds\": 3.25}, \"attempts\": 1,"
                + " \"request\": {\"format\": \"wav\"}, \"error\": null}"));
        assertEquals("job_1", job.id());
        assertEquals(2, job.segmentsDone());
        assertEquals(4, job.segmentsTotal());
        assertEquals(0.5, job.fraction());
        assertEquals(3.25, job.audioSeconds());
        assertEquals(AudioFormat.WAV, job.format());
        assertFalse(job.isTerminal());
        assertNull(job.errorCode());
        Voice voice = Voice.of(Json.parseObject("{\"id\": \"voice_1\", \"name\": \"n\", \"type\": \"audio_sample\","
                + " \"duration_s\": 4.5, \"tags\": [\"a\"], \"notes\": [], \"intake\": {\"snr_db\": 30}}"));
        assertEquals("voice_1", voice.id());
        assertEquals(4.5, voice.durationSeconds());
        assertEquals(List.of("a"), voice.tags());
        assertEquals(30L, voice.intake().get("snr_db"));
        assertFalse(voice.isBuiltin());
    }
}
