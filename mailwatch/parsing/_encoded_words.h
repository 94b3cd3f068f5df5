/* RFC 2047 encoded words decoded in C where that is plainly exact: see _encoded_words.c. */
#ifndef MAILWATCH_ENCODED_WORDS_H
#define MAILWATCH_ENCODED_WORDS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/*
 * Decode the encoded words of in[0:size] (a marked block) into out as UTF-8; joined is
 * scratch. Both hold at least size bytes (the answer is never longer). Returns the length
 * written, or -1 if a word is not one decoded here exactly (the caller decodes in Python).
 */
Py_ssize_t decode_words(const char *in, Py_ssize_t size, char *joined, char *out);

#endif
