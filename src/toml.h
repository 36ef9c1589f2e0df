/* A small strict TOML reader: the part of TOML 1.0 that kohya's dataset
 * configs use (sd-scripts docs/config_README-en.md), for src/dataset.c.
 * Debian 12 has no C TOML library (libcpptoml is C++), hence our own.
 *
 * Taken: comments; bare, "basic" and 'literal' keys, dotted keys; [tables]
 * and [[arrays of tables]]; basic strings (escapes \b \t \n \f \r \" \\
 * \uXXXX \UXXXXXXXX) and literal strings; integers (decimal with _ between
 * digits, 0x / 0o / 0b); floats (fraction, exponent, inf, nan); true/false;
 * arrays (over several lines, trailing comma, comments inside); inline
 * tables. Refused with a message: multi-line strings, dates and times,
 * anything else TOML does not allow (duplicate keys, a table defined twice,
 * leading zeros, invalid UTF-8, control characters, ...), and nesting of
 * arrays / inline tables deeper than CS_TOML_MAX_DEPTH.
 *
 * Errors are one line: "NAME:LINE:COL: problem" (CS_EFORMAT), columns count
 * characters from 1. */
#ifndef CS_TOML_H
#define CS_TOML_H

#include <stddef.h>
#include <stdint.h>

#define CS_TOML_MAX_DEPTH 32

typedef enum { CS_TOML_STRING, CS_TOML_INT, CS_TOML_FLOAT, CS_TOML_BOOL, CS_TOML_ARRAY, CS_TOML_TABLE } cs_toml_type;

typedef struct cs_toml cs_toml;
struct cs_toml {
    cs_toml_type type;
    int line, col;        /* where the value (a table: its header or first key) starts */
    char *s;              /* STRING: NUL-terminated UTF-8 (len without the NUL) */
    size_t len;
    int64_t i;            /* INT, BOOL (0/1) */
    double f;             /* FLOAT */
    size_t n;             /* ARRAY / TABLE: number of items */
    cs_toml **items;      /* ARRAY / TABLE: the values, in file order */
    char **keys;          /* TABLE: the key of each item */
    size_t cap;
    unsigned flags;       /* parser state (how a table / array was made) */
};

/* Parses text[0..len) (need not be NUL-terminated); name is used in error
 * messages. *out is the root table. Returns 0, CS_EFORMAT or CS_ENOMEM. */
int cs_toml_parse(const char *text, size_t len, const char *name, cs_toml **out);
void cs_toml_free(cs_toml *t);   /* NULL is fine */

/* The value of key in table t, or NULL (also when t is not a table). */
const cs_toml *cs_toml_get(const cs_toml *t, const char *key);
/* "string", "integer", "float", "boolean", "array", "table" */
const char *cs_toml_type_name(cs_toml_type t);

#endif
