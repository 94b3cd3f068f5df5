/*
 * mailwatch.parsing._fetch_scan: FETCH responses of the common shape read off the wire in C.
 *
 * scan(buffer, position, records, record_type, flag_sets, minutes, seconds) reads, from
 * `position`, every whole response of the shape FAST_FETCH_ITEMS matches (mailwatch/parsing/
 * imap.py: "* n FETCH (UID u FLAGS (...) INTERNALDATE "..." RFC822.SIZE s BODY[HEADER...] {len}"
 * CRLF, the literal, ")" CRLF), appends each one's record to `records` exactly as fast_record
 * builds it, and returns where it stopped: at the end of the buffer, or at the first response
 * it does not take, which the caller then reads in Python (an incomplete one, another shape,
 * or a value fast_record's caches do not hold yet: a combination of flags not in
 * `flag_sets`, a date whose minute is not in `minutes`). So it never answers differently from
 * the Python path, only takes fewer responses (the tests compare the two on generated wires).
 *
 * `seconds` is the tuple of the 60 timedeltas of _SECONDS, by second. Linear in the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
} Cursor;

/* Skip `text` if the cursor is at it. */
static int literal(Cursor *c, const char *text, Py_ssize_t size) {
    if (c->end - c->at < size || memcmp(c->at, text, (size_t)size) != 0) {
        return 0;
    }
    c->at += size;
    return 1;
}

#define LITERAL(c, text) literal((c), (text), (Py_ssize_t)sizeof(text) - 1)

/* 1 to 20 digits (\d{1,20} followed by a non-digit): their start and count, else 0. */
static int digits(Cursor *c, const unsigned char **start, Py_ssize_t *count) {
    const unsigned char *p = c->at;
    while (p < c->end && *p >= '0' && *p <= '9') {
        p++;
    }
    Py_ssize_t n = p - c->at;
    if (n < 1 || n > 20) {
        return 0;  /* (more than 20: the regex cannot match the literal that follows) */
    }
    *start = c->at;
    *count = n;
    c->at = p;
    return 1;
}

static PyObject *number(const unsigned char *start, Py_ssize_t count) {
    if (count <= 18) {
        long long value = 0;
        for (Py_ssize_t i = 0; i < count; i++) {
            value = value * 10 + (start[i] - '0');
        }
        return PyLong_FromLongLong(value);
    }
    char text[21];
    memcpy(text, start, (size_t)count);
    text[count] = '\0';
    return PyLong_FromString(text, NULL, 10);
}

/* A byte of a flag atom: [^\s()"\[\]{}] of a bytes pattern. */
static int is_flag_byte(unsigned char b) {
    return !(b == ' ' || (b >= '\t' && b <= '\r') || b == '(' || b == ')' || b == '"' ||
             b == '[' || b == ']' || b == '{' || b == '}');
}

/*
 * The response at the cursor, if it is of the common shape and complete: its record (a new
 * reference) and the cursor moved past it. NULL without an exception if not taken; NULL with
 * one on an error.
 */
static PyObject *response(Cursor *c, PyTypeObject *record_type, PyObject *flag_sets,
                          PyObject *minutes, PyObject *seconds) {
    const unsigned char *sequence, *uid, *size, *length;
    Py_ssize_t sequence_n, uid_n, size_n, length_n;
    if (!LITERAL(c, "* ") || !digits(c, &sequence, &sequence_n) ||
        !LITERAL(c, " FETCH (UID ") || !digits(c, &uid, &uid_n) || !LITERAL(c, " FLAGS (")) {
        return NULL;
    }
    const unsigned char *flags = c->at;
    if (c->at < c->end && *c->at != ')') {
        for (;;) {  /* atoms, each followed by one space and another atom, or by ")" */
            const unsigned char *atom = c->at;
            while (c->at < c->end && is_flag_byte(*c->at)) {
                c->at++;
            }
            if (c->at == atom) {
                return NULL;
            }
            if (c->at + 1 < c->end && *c->at == ' ' && is_flag_byte(c->at[1])) {
                c->at++;
                continue;
            }
            break;
        }
    }
    Py_ssize_t flags_n = c->at - flags;
    if (!LITERAL(c, ") INTERNALDATE \"")) {
        return NULL;
    }
    const unsigned char *date = c->at;
    while (c->at < c->end && *c->at != '"' && *c->at != '\\' && *c->at != '\r' &&
           *c->at != '\n') {
        c->at++;
    }
    Py_ssize_t date_n = c->at - date;
    if (!LITERAL(c, "\" RFC822.SIZE ") || !digits(c, &size, &size_n) ||
        !LITERAL(c, " BODY[HEADER")) {
        return NULL;
    }
    while (c->at < c->end && *c->at != ']' && *c->at != '\r' && *c->at != '\n') {
        c->at++;
    }
    if (!LITERAL(c, "] {") || !digits(c, &length, &length_n) || !LITERAL(c, "}\r\n")) {
        return NULL;
    }
    if (length_n > 18) {
        return NULL;  /* a literal longer than any buffer */
    }
    Py_ssize_t header_n = 0;
    for (Py_ssize_t i = 0; i < length_n; i++) {
        header_n = header_n * 10 + (length[i] - '0');
    }
    const unsigned char *header = c->at;
    if (c->end - header < header_n + 3 || memcmp(header + header_n, ")\r\n", 3) != 0) {
        return NULL;  /* incomplete, or more items after the literal */
    }
    /* the seconds and the minute of the date, as parse_internaldate remembers them */
    if (date_n != 26 || date[18] < '0' || date[18] > '5' || date[19] < '0' || date[19] > '9') {
        return NULL;
    }
    PyObject *second = PyTuple_GET_ITEM(seconds, (date[18] - '0') * 10 + (date[19] - '0'));
    char key[24];
    memcpy(key, date, 18);
    memcpy(key + 18, date + 20, 6);
    PyObject *key_bytes = PyBytes_FromStringAndSize(key, 24);
    if (key_bytes == NULL) {
        return NULL;
    }
    PyObject *minute = PyDict_GetItemWithError(minutes, key_bytes);  /* borrowed */
    Py_DECREF(key_bytes);
    if (minute == NULL) {
        return NULL;
    }
    PyObject *flag_set;  /* borrowed */
    if (flags_n == 0) {
        flag_set = PyDict_GetItemWithError(flag_sets, Py_None);
    } else {
        PyObject *flags_bytes = PyBytes_FromStringAndSize((const char *)flags, flags_n);
        if (flags_bytes == NULL) {
            return NULL;
        }
        flag_set = PyDict_GetItemWithError(flag_sets, flags_bytes);
        Py_DECREF(flags_bytes);
    }
    if (flag_set == NULL) {
        return NULL;
    }
    PyObject *items[7] = {
        number(sequence, sequence_n),
        number(uid, uid_n),
        Py_NewRef(flag_set),
        PyNumber_Add(minute, second),
        number(size, size_n),
        PyBytes_FromStringAndSize((const char *)header, header_n),
        Py_NewRef(Py_None),
    };
    PyObject *record = NULL;
    for (int i = 0; i < 7; i++) {
        if (items[i] == NULL) {
            goto failed;
        }
    }
    record = record_type->tp_alloc(record_type, 7);  /* what tuple.__new__(cls, items) makes */
    if (record == NULL) {
        goto failed;
    }
    for (int i = 0; i < 7; i++) {
        PyTuple_SET_ITEM(record, i, items[i]);  /* the record takes each reference */
    }
    c->at = header + header_n + 3;
    return record;
failed:
    for (int i = 0; i < 7; i++) {
        Py_XDECREF(items[i]);
    }
    return NULL;
}

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7 || !PyBytes_Check(args[0]) || !PyList_Check(args[2]) ||
        !PyType_Check(args[3]) || !PyType_IsSubtype((PyTypeObject *)args[3], &PyTuple_Type) ||
        !PyDict_Check(args[4]) || !PyDict_Check(args[5]) || !PyTuple_Check(args[6]) ||
        PyTuple_GET_SIZE(args[6]) != 60) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(buffer: bytes, position: int, records: list, record_type: "
                        "tuple subclass, flag_sets: dict, minutes: dict, seconds: 60-tuple)");
        return NULL;
    }
    Py_ssize_t position = PyLong_AsSsize_t(args[1]);
    if (position == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (position < 0 || position > size) {
        PyErr_SetString(PyExc_ValueError, "position outside the buffer");
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Cursor c = {base + position, base + size};
    while (c.at < c.end) {
        Cursor at = c;
        PyObject *record = response(&at, (PyTypeObject *)args[3], args[4], args[5], args[6]);
        if (record == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            break;  /* not taken here: the caller reads it */
        }
        int appended = PyList_Append(args[2], record);
        Py_DECREF(record);
        if (appended < 0) {
            return NULL;
        }
        c = at;
    }
    return PyLong_FromSsize_t(c.at - base);
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(buffer, position, records, record_type, flag_sets, minutes, seconds) -> int: see "
     "the module's comment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mailwatch.parsing._fetch_scan",
    "FETCH responses of the common shape read off the wire (see mailwatch.parsing.imap_scan).",
    0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fetch_scan(void) {
    return PyModuleDef_Init(&module_def);
}
