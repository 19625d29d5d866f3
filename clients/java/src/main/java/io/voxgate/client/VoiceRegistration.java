package io.voxgate.client;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * What {@code POST /v1/audio/voices} needs to register a voice: 3-15 s of
 * clear speech in any common container (WAV, MP3, FLAC, Ogg/Opus, M4A, WebM;
 * at least 16 kHz), a name, and the speaker's consent statement (or the id
 * of a consent recording). See docs/voices.md for the checks the prompt goes
 * through.
 */
public final class VoiceRegistration {
    final byte[] audio;
    final String filename;
    final String contentType;
    final String name;
    final String consent;
    final String promptText;
    final String language;
    final String engine;
    final List<String> tags;

    private VoiceRegistration(Builder b) {
        this.audio = b.audio;
        this.filename = b.filename;
        this.contentType = b.contentType;
        this.name = b.name;
        this.consent = b.consent;
        this.promptText = b.promptText;
        this.language = b.language;
        this.engine = b.engine;
        this.tags = List.copyOf(b.tags);
    }

    /** A registration from the bytes of an audio file. */
    public static Builder builder(byte[] audioFile, String filename) {
        return new Builder(audioFile, filename);
    }

    /** A registration from an audio file on disk (read now). */
    public static Builder builder(Path audioFile) {
        try {
            return new Builder(Files.readAllBytes(audioFile), audioFile.getFileName().toString());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + audioFile, e);
        }
    }

    /** The multipart form, built by hand (fields first, then the file). */
    Multipart toMultipart() {
        Multipart form = new Multipart();
        form.field("name", name);
        form.field("consent", consent);
        form.field("prompt_text", promptText);
        form.field("language", language);
        form.field("engine", engine);
        for (String tag : tags) {
            form.field("tags", tag);
        }
        form.file("audio_sample", filename, contentType, audio);
        return form;
    }

    public static final class Builder {
        private final byte[] audio;
        private final String filename;
        private String contentType = "application/octet-stream";
        private String name = "";
        private String consent = "";
        private String promptText;
        private String language;
        private String engine;
        private final List<String> tags = new ArrayList<>();

        private Builder(byte[] audio, String filename) {
            this.audio = Objects.requireNonNull(audio, "audio");
            this.filename = filename == null || filename.isBlank() ? "prompt" : filename;
        }

        /** The file's media type; voxgate decides from the bytes anyway. */
        public Builder contentType(String contentType) {
            this.contentType = Objects.requireNonNull(contentType);
            return this;
        }

        public Builder name(String name) {
            this.name = Objects.requireNonNull(name);
            return this;
        }

        /** Who agrees to what, in the speaker's words, or a {@code cons_...} id. Required. */
        public Builder consent(String consent) {
            this.consent = Objects.requireNonNull(consent);
            return this;
        }

        /** What the prompt says; without it voxgate transcribes the prompt itself. */
        public Builder promptText(String promptText) {
            this.promptText = promptText;
            return this;
        }

        public Builder language(String language) {
            this.language = language;
            return this;
        }

        /** The engine the voice is meant for. */
        public Builder engine(String engine) {
            this.engine = engine;
            return this;
        }

        public Builder tag(String tag) {
            tags.add(Objects.requireNonNull(tag));
            return this;
        }

        public VoiceRegistration build() {
            return new VoiceRegistration(this);
        }
    }
}
