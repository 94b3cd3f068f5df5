/*
 * RFC 2047 encoded words of one marked header block, decoded in C where that is plainly exact.
 *
 * decode_words() does what mailwatch.core.headers.decode_header_value does to the text
 * (_BETWEEN_WORDS, then _ENCODED_WORD with _decode_word) for the words it can decode exactly:
 * charset UTF-8 ("utf-8" or "utf8", any case, an RFC 2231 "*language" suffix ignored), "Q"
 * with every "=" followed by two hex digits, "B" with only base64 letters and the padding
 * Python's own padding makes whole. Any other word (another charset, an odd payload, bytes
 * that are not UTF-8 or that decode to a line break, a vertical tab or a NUL) makes it answer
 * "not handled", and the caller decodes the block in Python, which decides.
 *
 * The text is the scanner's marked ASCII (see _plain_headers.c): printable ASCII, "\v" after
 * each name and "\n" after each value but the last. Both are whitespace, so no word spans
 * them, and no "=?" follows a "\n" (a name does), so whitespace between two words is only ever
 * within one value. Linear: every byte is read a bounded number of times.
 */
#include "_encoded_words.h"

#include <string.h>

static int is_space(unsigned char c) {  /* str.isspace() for the ASCII range */
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
}

static int is_blank(unsigned char c) {  /* the class of _BETWEEN_WORDS: [ \t\r\n] */
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Whether the charset names UTF-8 as _lookup_codec reads it: "utf-8"/"utf8", any case. */
static int is_utf8(const char *charset, Py_ssize_t size) {
    const char *star = memchr(charset, '*', (size_t)size);
    if (star != NULL) {
        size = star - charset;
    }
    if (size != 5 && size != 4) {
        return 0;
    }
    char name[5];
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)charset[i];
        name[i] = (char)((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c);
    }
    return memcmp(name, size == 5 ? "utf-8" : "utf8", (size_t)size) == 0;
}

/* The payload of a "Q" word as a2b_qp(header=True) decodes it; -1 if any "=" is odd. */
static Py_ssize_t decode_q(const char *in, Py_ssize_t size, char *out) {
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '=') {
            if (i + 2 >= size) {
                return -1;  /* "=" without two characters after it */
            }
            int high = hex_value((unsigned char)in[i + 1]);
            int low = hex_value((unsigned char)in[i + 2]);
            if (high < 0 || low < 0) {
                return -1;
            }
            out[o++] = (char)(high << 4 | low);
            i += 2;
        } else {
            out[o++] = c == '_' ? ' ' : (char)c;
        }
    }
    return o;
}

/* The payload of a "B" word as _decode_word pads and decodes it; -1 unless plainly whole. */
static Py_ssize_t decode_b(const char *in, Py_ssize_t size, char *out) {
    Py_ssize_t body = size;
    while (body > 0 && in[body - 1] == '=') {
        body--;
    }
    Py_ssize_t padding = size - body, rest = body % 4;
    if (rest == 1 || padding > (4 - rest) % 4) {
        return -1;  /* "Incorrect padding", or padding past a whole quantum */
    }
    Py_ssize_t o = 0;
    unsigned int bits = 0;
    int held = 0;
    for (Py_ssize_t i = 0; i < body; i++) {
        int value = base64_value((unsigned char)in[i]);
        if (value < 0) {
            return -1;  /* a character a2b_base64 would skip or refuse */
        }
        bits = (bits << 6 | (unsigned int)value) & 0xFFFFFF;
        held += 6;
        if (held >= 8) {
            held -= 8;
            out[o++] = (char)(bits >> held & 0xFF);
        }
    }
    return o;
}

/* Whether bytes are UTF-8 that Python's strict decoder accepts, with no "\n", "\v" or NUL. */
static int is_plain_utf8(const unsigned char *s, Py_ssize_t size) {
    Py_ssize_t i = 0;
    while (i < size) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == '\n' || c == '\v' || c == '\0') {
                return 0;
            }
            i++;
            continue;
        }
        Py_ssize_t more;
        unsigned char low = 0x80, high = 0xBF;  /* the allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            low = c == 0xE0 ? 0xA0 : 0x80;   /* no overlong form */
            high = c == 0xED ? 0x9F : 0xBF;  /* no surrogate */
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            low = c == 0xF0 ? 0x90 : 0x80;
            high = c == 0xF4 ? 0x8F : 0xBF;  /* nothing past U+10FFFF */
        } else {
            return 0;
        }
        if (i + more >= size) {
            return 0;  /* cut short */
        }
        if (s[i + 1] < low || s[i + 1] > high) {
            return 0;
        }
        for (Py_ssize_t k = 2; k <= more; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
                return 0;
            }
        }
        i += more + 1;
    }
    return 1;
}

/*
 * At in[at] == '=' and in[at + 1] == '?': the end of the encoded word starting there, with
 * its parts, or -1 if _ENCODED_WORD does not match there.
 */
static Py_ssize_t match_word(const char *in, Py_ssize_t size, Py_ssize_t at,
                             Py_ssize_t *charset_end, Py_ssize_t *payload_start,
                             Py_ssize_t *payload_end) {
    Py_ssize_t c = at + 2;
    while (c < size && in[c] != '?' && !is_space((unsigned char)in[c])) {
        c++;
    }
    if (c == at + 2 || c + 2 >= size || in[c] != '?' || in[c + 2] != '?') {
        return -1;
    }
    char encoding = in[c + 1];
    if (encoding != 'b' && encoding != 'B' && encoding != 'q' && encoding != 'Q') {
        return -1;
    }
    Py_ssize_t p = c + 3;
    while (p < size && in[p] != '?' && !is_space((unsigned char)in[p])) {
        p++;
    }
    if (p + 1 >= size || in[p] != '?' || in[p + 1] != '=') {
        return -1;
    }
    *charset_end = c;
    *payload_start = c + 3;
    *payload_end = p;
    return p + 2;
}

Py_ssize_t decode_words(const char *in, Py_ssize_t size, char *joined, char *out) {
    /* _BETWEEN_WORDS: blanks between "?=" and "=?" dropped */
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < size;) {
        if (in[i] == '?' && i + 1 < size && in[i + 1] == '=') {
            Py_ssize_t j = i + 2;
            while (j < size && is_blank((unsigned char)in[j])) {
                j++;
            }
            if (j > i + 2 && j + 1 < size && in[j] == '=' && in[j + 1] == '?') {
                joined[n++] = '?';
                joined[n++] = '=';
                i = j;
                continue;
            }
        }
        joined[n++] = in[i++];
    }
    /* _ENCODED_WORD: each word, left to right, decoded in place of its text */
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t charset_end, payload_start, payload_end, end = -1;
        if (joined[i] == '=' && i + 1 < n && joined[i + 1] == '?') {
            end = match_word(joined, n, i, &charset_end, &payload_start, &payload_end);
        }
        if (end < 0) {
            out[o++] = joined[i++];
            continue;
        }
        if (!is_utf8(joined + i + 2, charset_end - (i + 2))) {
            return -1;
        }
        const char *payload = joined + payload_start;
        Py_ssize_t length = payload_end - payload_start, decoded;
        if (joined[charset_end + 1] == 'q' || joined[charset_end + 1] == 'Q') {
            decoded = decode_q(payload, length, out + o);
        } else {
            decoded = decode_b(payload, length, out + o);
        }
        if (decoded < 0 || !is_plain_utf8((const unsigned char *)out + o, decoded)) {
            return -1;
        }
        o += decoded;
        i = end;
    }
    return o;
}
