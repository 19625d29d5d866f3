package io.voxgate.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

class MultipartTest {

    @Test
    void buildsFieldsAndFileParts() {
        byte[] audio = {0, 1, 2, (byte) 0xff, '\r', '\n', '-', '-'};
        VoiceRegistration reg = VoiceRegistration.builder(audio, "prompt \"1\".wav").name("narrator")
                .consent("I, Ana, agree.").promptText("你好").language("zh").tag("a").tag("b").build();
        Multipart form = reg.toMultipart();
        String contentType = form.contentType();
        assertTrue(contentType.startsWith("multipart/form-data; boundary=voxgate-"), contentType);
        String boundary = contentType.substring(contentType.indexOf('=') + 1);
        byte[] body = form.body();
        String text = new String(body, StandardCharsets.ISO_8859_1);
        assertTrue(text.startsWith("--" + boundary + "\r\n"));
        assertTrue(text.endsWith("\r\n--" + boundary + "--\r\n"));
        String[] parts = text.split("--" + boundary);
        // "", 7 parts (name, consent, prompt_text, language, tags x2, audio_sample), "--\r\n"
        assertEquals(9, parts.length, text);
        assertEquals("\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nnarrator\r\n", parts[1]);
        String utf8 = new String(body, StandardCharsets.UTF_8);
        assertTrue(utf8.contains("name=\"prompt_text\"\r\n\r\n你好\r\n"), "text fields are UTF-8");
        assertTrue(parts[5].contains("name=\"tags\"\r\n\r\na\r\n"));
        assertTrue(parts[6].contains("name=\"tags\"\r\n\r\nb\r\n"));
        String file = parts[7];
        assertTrue(file.startsWith("\r\nContent-Disposition: form-data; name=\"audio_sample\"; filename=\"prompt %221%22.wav\"\r\n"
                + "Content-Type: application/octet-stream\r\n\r\n"), file);
        int start = file.indexOf("\r\n\r\n") + 4;
        byte[] payload = file.substring(start, file.length() - 2).getBytes(StandardCharsets.ISO_8859_1);
        assertArrayEquals(audio, payload, "file bytes are sent untouched");
        assertTrue(file.endsWith("\r\n"));
    }

    @Test
    void leavesOutUnsetFields() {
        Multipart form = VoiceRegistration.builder(new byte[] {1}, null).consent("yes").build().toMultipart();
        String text = new String(form.body(), StandardCharsets.ISO_8859_1);
        assertTrue(text.contains("name=\"name\""), "name is sent (empty) as the server expects a form field");
        assertTrue(!text.contains("prompt_text") && !text.contains("language") && !text.contains("tags"), text);
        assertTrue(text.contains("filename=\"prompt\""));
    }

    @Test
    void boundaryNeverOccursInContent() {
        // Whatever the content, the boundary chosen is not inside it.
        for (int i = 0; i < 50; i++) {
            Multipart form = new Multipart().field("x", "voxgate-").file("f", "f", "audio/wav", new byte[4096]);
            String b = form.contentType().substring(form.contentType().indexOf('=') + 1);
            byte[] body = form.body();
            int count = 0;
            for (int at = Multipart.indexOf(body, b.getBytes(StandardCharsets.US_ASCII)); at >= 0;
                    at = indexFrom(body, b.getBytes(StandardCharsets.US_ASCII), at + 1)) {
                count++;
            }
            assertEquals(3, count, "two part openings and the closing line");
        }
        assertThrows(IllegalStateException.class, () -> {
            Multipart m = new Multipart().field("a", "b");
            m.contentType();
            m.field("c", "d");
        });
    }

    @Test
    void escapesNames() {
        assertEquals("a%22b%0D%0Ac", Multipart.escape("a\"b\r\nc"));
    }

    private static int indexFrom(byte[] hay, byte[] needle, int from) {
        int at = Multipart.indexOf(Arrays.copyOfRange(hay, from, hay.length), needle);
        return at < 0 ? -1 : at + from;
    }
}
