package io.voxgate.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JsonTest {

    @Test
    void parsesEveryKindOfValue() {
        Map<String, Object> m = Json.parseObject(
                " {\"s\": \"x\", \"i\": -12, \"f\": 1.5e2, \"t\": true, \"n\": null, \"a\": [1, [], {}], \"o\": {\"k\": false}} ");
        assertEquals("x", m.get("s"));
        assertEquals(-12L, m.get("i"));
        assertEquals(150.0, m.get("f"));
        assertEquals(Boolean.TRUE, m.get("t"));
        assertTrue(m.containsKey("n"));
        assertNull(m.get("n"));
        assertEquals(Arrays.asList(1L, List.of(), Map.of()), m.get("a"));
        assertEquals(Map.of("k", false), m.get("o"));
        assertEquals(List.of("s", "i", "f", "t", "n", "a", "o"), new ArrayList<>(m.keySet()), "insertion order kept");
    }

    @Test
    void parsesNumbers() {
        assertEquals(0L, Json.parse("0"));
        assertEquals(-0.0, Json.parse("-0.0"));
        assertEquals(9223372036854775807L, Json.parse("9223372036854775807"));
        assertEquals(-9223372036854775808L, Json.parse("-9223372036854775808"));
        assertEquals(new BigInteger("9223372036854775808"), Json.parse("9223372036854775808"));
        assertEquals(0.25, Json.parse("2.5E-1"));
        assertEquals(1e300, Json.parse("1e+300"));
        for (String bad : new String[] {"01", "-", "1.", ".5", "1e", "+1", "0x10", "1.e5", "--1", "NaN", "Infinity"}) {
            assertThrows(Json.ParseException.class, () -> Json.parse(bad), bad);
        }
    }

    @Test
    void parsesStringEscapes() {
        assertEquals("\" \\ / \b \f \n \r \t", Json.parse("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\""));
        assertEquals("é中", Json.parse("\"\\u00e9\\u4E2D\""));
        assertEquals("😀", Json.parse("\"\\ud83d\\ude00\""), "a surrogate pair makes one code point");
        assertEquals("中文女 😀", Json.parse("\"中文女 😀\""), "raw UTF-16 text passes through");
        assertEquals("", Json.parse("\"\""));
    }

    @Test
    void refusesMalformedDocuments() {
        String[] bad = {
            "", "   ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "\"open", "\"bad \\x escape\"",
            "\"\\u12\"", "\"\\u12g4\"", "\"tab\there\"", "tru", "nul", "[1] x", "{} {}", "'single'", "[", "[,]",
        };
        for (String text : bad) {
            assertThrows(Json.ParseException.class, () -> Json.parse(text), text);
        }
        assertThrows(Json.ParseException.class, () -> Json.parseObject("[1]"), "an array is not an object");
    }

    @Test
    void reportsWhereTheProblemIs() {
        Json.ParseException e = assertThrows(Json.ParseException.class, () -> Json.parse("[1, 2, x]"));
        assertEquals(7, e.offset());
    }

    @Test
    void limitsNesting() {
        String deep = "[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1);
        assertThrows(Json.ParseException.class, () -> Json.parse(deep));
        String fine = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
        assertTrue(Json.parse(fine) instanceof List);
    }

    @Test
    void writesEscapes() {
        assertEquals("\"a\\\"b\\\\c\\n\\r\\t\\b\\f\"", Json.write("a\"b\\c\n\r\t\b\f"));
        assertEquals("\"\\u0000\\u001f\"", Json.write("\u0000\u001f"));
        assertEquals("\"/ é 中文女 😀\"", Json.write("/ é 中文女 😀"), "non-ASCII is written as is (UTF-8 on the wire)");
        assertEquals("\"\\u2028\\u2029\"", Json.write("\u2028\u2029"));
        assertEquals("\"\\ud800x\"", Json.write("\ud800x"), "a lone surrogate is escaped, not mangled");
    }

    @Test
    void writesValues() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("input", "Hello");
        m.put("speed", 1.25);
        m.put("rate", 24000);
        m.put("big", new BigInteger("123456789012345678901234567890"));
        m.put("f", 0.1f);
        m.put("ok", true);
        m.put("none", null);
        m.put("list", List.of(1, "two", List.of()));
        m.put("array", new Object[] {Mode.SFT});
        assertEquals("{\"input\":\"Hello\",\"speed\":1.25,\"rate\":24000,\"big\":123456789012345678901234567890,"
                + "\"f\":0.1,\"ok\":true,\"none\":null,\"list\":[1,\"two\",[]],\"array\":[\"SFT\"]}", Json.write(m));
        assertEquals("1.0E-7", Json.write(1e-7));
        assertThrows(IllegalArgumentException.class, () -> Json.write(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> Json.write(Double.POSITIVE_INFINITY));
        assertThrows(IllegalArgumentException.class, () -> Json.write(Map.of(1, "x")), "keys must be strings");
        assertThrows(IllegalArgumentException.class, () -> Json.write(new Object()));
    }

    @Test
    void roundTrips() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("text", "Line 1\nLine 2 \"quoted\" \\ 中文 😀 \u0001");
        m.put("n", -42L);
        m.put("x", 3.14159);
        m.put("nested", Map.of("list", List.of(true, false)));
        m.put("nothing", null);
        assertEquals(m, Json.parse(Json.write(m)));
        List<Object> self = new ArrayList<>();
        self.add(self);
        assertThrows(RuntimeException.class, () -> Json.write(self), "a cycle is refused, not a stack overflow");
    }
}
