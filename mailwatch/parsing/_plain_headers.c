/*
 * mailwatch.parsing._plain_headers: one pass over a FETCH batch's header blocks, in C.
 *
 * plain_blocks(raws, names) does in one pass per block what mailwatch/parsing/imap_headers.py
 * does with a dozen whole-batch str operations (join, unfold, mark the names, count, split,
 * replace): for each raw block it checks the plain common shape and writes the block's text
 * with every line unfolded and every "Name: " (one optional blank after the colon) and line
 * end replaced by a separator. It answers None whenever a block is not plainly that shape, and
 * the caller then takes the Python path, which decides (so this may refuse more than the
 * Python path, never answer differently: the tests compare the two on generated batches).
 *
 * A block is taken only if every byte is printable ASCII (0x20-0x7E) or part of a CRLF, a tab
 * only right after a CRLF (a fold), every line is "name:" + value with the name one of
 * `names` (lower-case ASCII, compared without case), no two blanks in a row once unfolded (the
 * blank after the colon counts), no blank at a value's end, and the block ends with its one
 * empty line ("\r\n\r\n") and holds no other.
 *
 * The answer is (blocks, encoded): each block in packed form ("name\0value\0...", what
 * Headers keeps), its RFC 2047 encoded words decoded by _encoded_words.c, except the blocks
 * holding a word decoded only in Python (another charset, an odd payload: their indexes are in
 * `encoded`), left in marked form ("name\vvalue\nname\vvalue"): the caller decodes those
 * words (none can span a "\v" or "\n") and replaces both separators by NUL.
 *
 * The cost is linear in the input: each byte is looked at a bounded number of times, and each
 * line's name is compared with at most len(names) names of its length.
 */
#include "_encoded_words.h"

#include <string.h>

#define NAME_MARK '\v'
#define LINE_END '\n'

typedef struct {
    const char *text;
    Py_ssize_t size;
} Name;

typedef struct {
    char *data;
    Py_ssize_t size;
} Buffer;

static int is_name_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Whether text[0:size] is one of the names, without case (the names are lower-case). */
static int is_kept(const unsigned char *text, Py_ssize_t size, const Name *names,
                   Py_ssize_t count) {
    for (Py_ssize_t n = 0; n < count; n++) {
        if (names[n].size != size) {
            continue;
        }
        const unsigned char *name = (const unsigned char *)names[n].text;
        Py_ssize_t i = 0;
        while (i < size && lower(text[i]) == name[i]) {
            i++;
        }
        if (i == size) {
            return 1;
        }
    }
    return 0;
}

/*
 * Write the marked text of one raw block into out (room for at least size bytes: the text is
 * never longer than the raw block). Returns the text's length without its last line end, or -1
 * if the block is not plain. *encoded is set if the text holds "=?".
 */
static Py_ssize_t mark_block(const unsigned char *raw, Py_ssize_t size, const Name *names,
                             Py_ssize_t count, char *out, int *encoded) {
    Py_ssize_t i = 0, o = 0;
    *encoded = 0;
    if (size < 4 || memcmp(raw + size - 4, "\r\n\r\n", 4) != 0) {
        return -1;
    }
    for (;;) {
        /* at a line's start: the block's empty line (its last two bytes), or a header */
        if (raw[i] == '\r') {
            return (i + 2 == size && raw[i + 1] == '\n' && o > 0) ? o - 1 : -1;
        }
        Py_ssize_t start = i;
        while (i < size && is_name_byte(raw[i])) {
            i++;
        }
        if (i == start || i >= size || raw[i] != ':' || !is_kept(raw + start, i - start, names,
                                                                 count)) {
            return -1;  /* a fold, an odd name, a field not asked for, a blank before ':' */
        }
        memcpy(out + o, raw + start, (size_t)(i - start));
        o += i - start;
        out[o++] = NAME_MARK;
        i++;  /* the colon */
        Py_ssize_t value = o;
        int after_colon = 1, blank = 0;  /* blank: the last character read was a blank */
        for (;;) {
            unsigned char c = raw[i];
            if (c == '\r') {
                if (raw[i + 1] != '\n') {
                    return -1;  /* a CR alone (i + 1 < size: the block ends with CRLF CRLF) */
                }
                if (raw[i + 2] == ' ' || raw[i + 2] == '\t') {
                    i += 3;  /* a fold: unfolded, the blank that follows the line end */
                    c = ' ';
                } else {
                    if (o > value && out[o - 1] == ' ') {
                        return -1;  /* a value that ends with a blank */
                    }
                    out[o++] = LINE_END;
                    i += 2;
                    break;
                }
            } else if (c < 0x20 || c > 0x7E) {
                return -1;  /* a control character, a tab not folding, a LF alone, 8 bits */
            } else {
                i++;
            }
            if (c == ' ') {
                if (blank) {
                    return -1;  /* two blanks in a row (the one after the colon counts) */
                }
                blank = 1;
                if (after_colon) {
                    after_colon = 0;  /* the one blank after the colon is the separator's */
                    continue;
                }
            } else {
                blank = after_colon = 0;
                if (c == '?' && o > value && out[o - 1] == '=') {
                    *encoded = 1;
                }
            }
            out[o++] = (char)c;
        }
    }
}

static int grow(Buffer *buffer, Py_ssize_t size) {
    if (buffer->size >= size) {
        return 0;
    }
    char *data = PyMem_Realloc(buffer->data, (size_t)size);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->size = size;
    return 0;
}

/* The packed text (both separators made NUL) of marked UTF-8 text[0:size], as a str. */
static PyObject *packed_text(char *text, Py_ssize_t size) {
    int ascii = 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == NAME_MARK || c == LINE_END) {
            text[i] = '\0';
        } else if (c >= 0x80) {
            ascii = 0;
        }
    }
    if (!ascii) {
        return PyUnicode_DecodeUTF8(text, size, NULL);  /* checked UTF-8: decode_words */
    }
    PyObject *packed = PyUnicode_New(size, 127);
    if (packed != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(packed), text, (size_t)size);
    }
    return packed;
}

/* Names from the tuple of bytes (each lower-case); -1 with an exception if not such. */
static Py_ssize_t read_names(PyObject *tuple, Name **names) {
    if (!PyTuple_Check(tuple)) {
        PyErr_SetString(PyExc_TypeError, "names must be a tuple of bytes");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(tuple);
    *names = PyMem_New(Name, count ? count : 1);
    if (*names == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t n = 0; n < count; n++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, n);
        if (!PyBytes_Check(item)) {
            PyMem_Free(*names);
            PyErr_SetString(PyExc_TypeError, "names must be a tuple of bytes");
            return -1;
        }
        (*names)[n].text = PyBytes_AS_STRING(item);
        (*names)[n].size = PyBytes_GET_SIZE(item);
    }
    return count;
}

static PyObject *plain_blocks(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "plain_blocks(raws, names) takes 2 arguments");
        return NULL;
    }
    PyObject *raws = PySequence_Fast(args[0], "raws must be a sequence of bytes");
    if (raws == NULL) {
        return NULL;
    }
    Name *names = NULL;
    Py_ssize_t count = read_names(args[1], &names);
    if (count < 0) {
        Py_DECREF(raws);
        return NULL;
    }
    Py_ssize_t total = PySequence_Fast_GET_SIZE(raws);
    PyObject **items = PySequence_Fast_ITEMS(raws);
    Buffer buffer = {NULL, 0}, joined = {NULL, 0}, decoded = {NULL, 0};
    PyObject *blocks = PyList_New(total);
    PyObject *encoded = PyList_New(0);
    PyObject *result = NULL;
    if (blocks == NULL || encoded == NULL) {
        goto done;
    }
    for (Py_ssize_t b = 0; b < total; b++) {
        PyObject *item = items[b];
        if (!PyBytes_Check(item)) {
            if (PyByteArray_Check(item)) {
                result = Py_NewRef(Py_None);  /* bytes-like, not bytes: the Python path reads it */
            } else {
                PyErr_SetString(PyExc_TypeError, "raws must be a sequence of bytes");
            }
            goto done;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(item);
        if (grow(&buffer, size) < 0) {
            goto done;
        }
        int has_words = 0;
        Py_ssize_t length = mark_block((const unsigned char *)PyBytes_AS_STRING(item), size,
                                       names, count, buffer.data, &has_words);
        if (length < 0) {
            result = Py_NewRef(Py_None);  /* not plain: the Python path decides */
            goto done;
        }
        if (has_words) {
            if (grow(&joined, length) < 0 || grow(&decoded, length) < 0) {
                goto done;
            }
            Py_ssize_t words = decode_words(buffer.data, length, joined.data, decoded.data);
            if (words >= 0) {  /* every word decoded here: packed, as the others */
                PyObject *text = packed_text(decoded.data, words);
                if (text == NULL) {
                    goto done;
                }
                PyList_SET_ITEM(blocks, b, text);
                continue;
            }
            PyObject *index = PyLong_FromSsize_t(b);
            if (index == NULL || PyList_Append(encoded, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
            PyObject *text = PyUnicode_New(length, 127);  /* marked: Python decodes it */
            if (text == NULL) {
                goto done;
            }
            memcpy(PyUnicode_1BYTE_DATA(text), buffer.data, (size_t)length);
            PyList_SET_ITEM(blocks, b, text);
            continue;
        }
        PyObject *text = packed_text(buffer.data, length);
        if (text == NULL) {
            goto done;
        }
        PyList_SET_ITEM(blocks, b, text);
    }
    result = PyTuple_Pack(2, blocks, encoded);
done:
    PyMem_Free(buffer.data);
    PyMem_Free(joined.data);
    PyMem_Free(decoded.data);
    PyMem_Free(names);
    Py_XDECREF(blocks);
    Py_XDECREF(encoded);
    Py_DECREF(raws);
    return result;
}

static PyMethodDef methods[] = {
    {"plain_blocks", (PyCFunction)(void (*)(void))plain_blocks, METH_FASTCALL,
     "plain_blocks(raws, names) -> (blocks, encoded) | None: see the module's comment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mailwatch.parsing._plain_headers",
    "One pass over a FETCH batch's header blocks (see mailwatch.parsing.imap_headers).", 0,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__plain_headers(void) {
    return PyModuleDef_Init(&module_def);
}
