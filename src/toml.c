/* The strict TOML subset of toml.h: a recursive-descent reader over the
 * whole text, which is first checked to be valid UTF-8. Every error names
 * the file, line and column of the offending character. */
#include "toml.h"
#include "error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* how a table or array came to be (TOML's rules on redefinition need it) */
enum {
    T_EXPLICIT = 1,   /* table: defined by a [header] (or an element of [[...]]) */
    T_DOTTED = 2,     /* table: made by a dotted key (a.b = 1) */
    T_FROZEN = 4,     /* inline table or array value: closed */
    T_AOT = 8         /* array: made by [[...]] */
};

#define MAX_KEY_PARTS 32

typedef struct {
    const char *p, *end, *name;
    const char *bol;   /* beginning of the current line */
    int line;
    int depth;
} P;

static int col_of(const P *q, const char *at)
{
    int c = 1;
    for (const char *s = q->bol; s < at; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) c++;
    return c;
}

__attribute__((format(printf, 3, 4)))
static int perr(const P *q, const char *at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cs_error(CS_EFORMAT, "%s:%d:%d: %s", q->name, q->line, col_of(q, at), msg);
}

/* a character for messages: printable ASCII as itself, else its code */
static const char *show(const P *q, char buf[16])
{
    if (q->p >= q->end) return "end of file";
    unsigned char c = (unsigned char)*q->p;
    if (c == '\n' || (c == '\r' && q->p + 1 < q->end && q->p[1] == '\n')) return "end of line";
    if (c > 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

/* ---- values ---- */

static cs_toml *node(cs_toml_type t, int line, int col)
{
    cs_toml *v = calloc(1, sizeof *v);
    if (v) v->type = t, v->line = line, v->col = col;
    return v;
}

void cs_toml_free(cs_toml *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        cs_toml_free(t->items[i]);
        if (t->keys) free(t->keys[i]);
    }
    free(t->items);
    free(t->keys);
    free(t->s);
    free(t);
}

const char *cs_toml_type_name(cs_toml_type t)
{
    static const char *n[] = {"string", "integer", "float", "boolean", "array", "table"};
    return (unsigned)t < 6 ? n[t] : "?";
}

static int grow(cs_toml *t)
{
    if (t->n < t->cap) return 0;
    size_t cap = t->cap ? 2 * t->cap : 4;
    cs_toml **it = realloc(t->items, cap * sizeof *it);
    if (!it) return cs_oom("TOML value", cap * sizeof *it);
    t->items = it;
    if (t->type == CS_TOML_TABLE) {
        char **k = realloc(t->keys, cap * sizeof *k);
        if (!k) return cs_oom("TOML value", cap * sizeof *k);
        t->keys = k;
    }
    t->cap = cap;
    return 0;
}

/* adds v (owned on success and on failure) */
static int push(cs_toml *t, char *key, cs_toml *v)
{
    int rc = grow(t);
    if (rc) {
        free(key);
        cs_toml_free(v);
        return rc;
    }
    if (t->type == CS_TOML_TABLE) t->keys[t->n] = key;
    t->items[t->n++] = v;
    return 0;
}

static long find(const cs_toml *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->keys[i], key)) return (long)i;
    return -1;
}

const cs_toml *cs_toml_get(const cs_toml *t, const char *key)
{
    if (!t || t->type != CS_TOML_TABLE) return NULL;
    long i = find(t, key);
    return i < 0 ? NULL : t->items[i];
}

/* ---- lexing ---- */

static void skip_ws(P *q)
{
    while (q->p < q->end && (*q->p == ' ' || *q->p == '\t')) q->p++;
}

static int is_ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

static int skip_comment(P *q)
{
    if (q->p >= q->end || *q->p != '#') return 0;
    for (q->p++; q->p < q->end && *q->p != '\n'; q->p++) {
        if (*q->p == '\r' && q->p + 1 < q->end && q->p[1] == '\n') continue;
        if (is_ctl((unsigned char)*q->p)) return perr(q, q->p, "control character (byte 0x%02x) in a comment", (unsigned char)*q->p);
    }
    return 0;
}

/* at a line end (\n or \r\n): consumes it; returns 1, 0 if not at one */
static int newline(P *q)
{
    const char *s = q->p;
    if (s < q->end && *s == '\r' && s + 1 < q->end && s[1] == '\n') s++;
    if (s >= q->end || *s != '\n') return 0;
    q->p = s + 1;
    q->line++;
    q->bol = q->p;
    return 1;
}

/* whitespace, comments and newlines (inside arrays) */
static int skip_all(P *q)
{
    for (;;) {
        skip_ws(q);
        int rc = skip_comment(q);
        if (rc) return rc;
        if (!newline(q)) return 0;
    }
}

/* after a key/value or header: nothing but a comment before the line ends */
static int end_of_line(P *q)
{
    skip_ws(q);
    int rc = skip_comment(q);
    if (rc) return rc;
    if (q->p >= q->end || newline(q)) return 0;
    char b[16];
    return perr(q, q->p, "expected the end of the line, found %s", show(q, b));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t u)
{
    if (u < 0x80) return o[0] = (char)u, 1;
    if (u < 0x800) return o[0] = (char)(0xC0 | u >> 6), o[1] = (char)(0x80 | (u & 63)), 2;
    if (u < 0x10000)
        return o[0] = (char)(0xE0 | u >> 12), o[1] = (char)(0x80 | ((u >> 6) & 63)), o[2] = (char)(0x80 | (u & 63)), 3;
    o[0] = (char)(0xF0 | u >> 18), o[1] = (char)(0x80 | ((u >> 12) & 63));
    o[2] = (char)(0x80 | ((u >> 6) & 63)), o[3] = (char)(0x80 | (u & 63));
    return 4;
}

/* a "basic" or 'literal' string at q->p (one line); *out malloc'ed */
static int string(P *q, char **out, size_t *len)
{
    const char *start = q->p;
    char quote = *q->p;
    if (q->end - q->p >= 3 && q->p[1] == quote && q->p[2] == quote)
        return perr(q, start, "multi-line strings (%c%c%c) are not supported", quote, quote, quote);
    q->p++;
    /* the decoded text is never longer than the source */
    const char *e = q->p;
    while (e < q->end && *e != '\n') e++;
    char *o = malloc((size_t)(e - q->p) + 1);
    if (!o) return cs_oom("TOML string", (size_t)(e - q->p) + 1);
    size_t n = 0;
    for (;;) {
        if (q->p >= q->end || *q->p == '\n' || (*q->p == '\r' && q->p + 1 < q->end && q->p[1] == '\n')) {
            free(o);
            return perr(q, start, "unterminated string");
        }
        unsigned char c = (unsigned char)*q->p;
        if (c == (unsigned char)quote) {
            q->p++;
            break;
        }
        if (is_ctl(c)) {
            free(o);
            return perr(q, q->p, "control character (byte 0x%02x) in a string; write it as an escape", c);
        }
        if (c != '\\' || quote == '\'') {
            o[n++] = (char)c;
            q->p++;
            continue;
        }
        const char *esc = q->p++;
        char k = q->p < q->end ? *q->p++ : 0;
        switch (k) {
        case 'b': o[n++] = '\b'; break;
        case 't': o[n++] = '\t'; break;
        case 'n': o[n++] = '\n'; break;
        case 'f': o[n++] = '\f'; break;
        case 'r': o[n++] = '\r'; break;
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case 'u': case 'U': {
            int digits = k == 'u' ? 4 : 8;
            uint32_t u = 0;
            for (int i = 0; i < digits; i++) {
                int h = q->p < q->end ? hexval(*q->p) : -1;
                if (h < 0) {
                    free(o);
                    return perr(q, esc, "\\%c needs %d hex digits", k, digits);
                }
                u = u * 16 + (uint32_t)h;
                q->p++;
            }
            if (u > 0x10FFFF || (u >= 0xD800 && u <= 0xDFFF)) {
                free(o);
                return perr(q, esc, "\\%c%0*X is not a Unicode scalar value", k, digits, (unsigned)u);
            }
            /* \uXXXX (6 bytes) encodes to at most 3, \UXXXXXXXX (10) to 4 */
            n += put_utf8(o + n, u);
            break;
        }
        default: {
            char b[16];
            q->p = esc + 1;
            free(o);
            return perr(q, esc, "invalid escape \\ followed by %s", show(q, b));
        }
        }
    }
    o[n] = 0;
    *out = o;
    *len = n;
    return 0;
}

static int is_bare(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* key ( . key )*: parts[] malloc'ed, at[] where each starts */
static int keypath(P *q, char **parts, const char **at, int *n)
{
    *n = 0;
    for (;;) {
        skip_ws(q);
        if (*n == MAX_KEY_PARTS) return perr(q, q->p, "more than %d parts in a dotted key", MAX_KEY_PARTS);
        at[*n] = q->p;
        char *k;
        size_t len;
        if (q->p < q->end && (*q->p == '"' || *q->p == '\'')) {
            int rc = string(q, &k, &len);
            if (rc) return rc;
            if (strlen(k) != len) {
                free(k);
                return perr(q, at[*n], "a key holds a NUL character");
            }
        } else {
            const char *s = q->p;
            while (q->p < q->end && is_bare(*q->p)) q->p++;
            if (q->p == s) {
                char b[16];
                return perr(q, s, "expected a key, found %s", show(q, b));
            }
            k = strndup(s, (size_t)(q->p - s));
            if (!k) return cs_oom("TOML key", (size_t)(q->p - s));
        }
        parts[(*n)++] = k;
        skip_ws(q);
        if (q->p >= q->end || *q->p != '.') return 0;
        q->p++;
    }
}

static void free_parts(char **parts, int n)
{
    for (int i = 0; i < n; i++) free(parts[i]);
}

static int value(P *q, cs_toml **out);

/* the key path parts[0..n) = v inside table t (dotted keys make tables);
 * v and the parts are owned */
static int assign(P *q, cs_toml *t, char **parts, const char **at, int n, cs_toml *v)
{
    int rc = 0, i = 0;
    for (; i < n - 1; i++) {
        long k = find(t, parts[i]);
        if (k < 0) {
            cs_toml *s = node(CS_TOML_TABLE, q->line, col_of(q, at[i]));
            if (!s) {
                rc = cs_oom("TOML table", sizeof *s);
                goto out;
            }
            s->flags = T_DOTTED;
            rc = push(t, parts[i], s);
            parts[i] = NULL;
            if (rc) goto out;
            t = s;
        } else if (t->items[k]->type == CS_TOML_TABLE && (t->items[k]->flags & T_DOTTED)) {
            t = t->items[k];
        } else {
            rc = perr(q, at[i], "key '%s' is already defined (line %d) and cannot be extended with a dotted key",
                      parts[i], t->items[k]->line);
            goto out;
        }
    }
    long k = find(t, parts[i]);
    if (k >= 0) {
        rc = perr(q, at[i], "duplicate key '%s' (first defined at line %d)", parts[i], t->items[k]->line);
        goto out;
    }
    rc = push(t, parts[i], v);
    parts[i] = NULL;
    v = NULL;
out:
    cs_toml_free(v);
    free_parts(parts, n);
    return rc;
}

/* key = value, inside t */
static int keyval(P *q, cs_toml *t)
{
    char *parts[MAX_KEY_PARTS];
    const char *at[MAX_KEY_PARTS];
    int n = 0;
    int rc = keypath(q, parts, at, &n);
    if (rc) {
        free_parts(parts, n);
        return rc;
    }
    skip_ws(q);
    if (q->p >= q->end || *q->p != '=') {
        char b[16];
        rc = perr(q, q->p, "expected '=' after the key '%s', found %s", parts[n - 1], show(q, b));
        free_parts(parts, n);
        return rc;
    }
    q->p++;
    skip_ws(q);
    cs_toml *v = NULL;
    rc = value(q, &v);
    if (rc) {
        free_parts(parts, n);
        return rc;
    }
    return assign(q, t, parts, at, n, v);
}

/* digits with single '_' between them; base 10/16/8/2. Returns the end. */
static const char *digits(const char *s, const char *e, int base)
{
    const char *start = s;
    while (s < e) {
        int d = hexval(*s);
        if (d >= 0 && d < base) {
            s++;
            continue;
        }
        if (*s == '_' && s > start && s + 1 < e && hexval(s[1]) >= 0 && hexval(s[1]) < base && s[-1] != '_') {
            s++;
            continue;
        }
        break;
    }
    return s;
}

/* numbers, booleans, inf / nan */
static int scalar(P *q, cs_toml *v)
{
    const char *s = q->p, *e = s;
    while (e < q->end && (is_bare(*e) || *e == '+' || *e == '.')) e++;
    size_t len = (size_t)(e - s);
    if (!len) {
        char b[16];
        return perr(q, s, "expected a value, found %s", show(q, b));
    }
    q->p = e;
    if ((len == 4 && !memcmp(s, "true", 4)) || (len == 5 && !memcmp(s, "false", 5))) {
        v->type = CS_TOML_BOOL;
        v->i = len == 4;
        return 0;
    }
    /* 1979-05-27, 07:32:00: TOML dates and times */
    if ((len >= 5 && digits(s, s + 4, 10) == s + 4 && s[4] == '-') || (e < q->end && *e == ':'))
        return perr(q, s, "dates and times are not supported");
    const char *b = s;
    if (*b == '+' || *b == '-') b++;
    if ((size_t)(e - b) == 3 && (!memcmp(b, "inf", 3) || !memcmp(b, "nan", 3))) {
        v->type = CS_TOML_FLOAT;
        v->f = b[0] == 'i' ? (double)INFINITY : (double)NAN;
        if (*s == '-') v->f = -v->f;
        return 0;
    }
    char buf[80];
    if (len >= sizeof buf) return perr(q, s, "number too long (%zu characters)", len);
    if (b == s && len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
        int base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
        if (digits(s + 2, e, base) != e || e == s + 2) return perr(q, s, "invalid number '%.*s'", (int)len, s);
        size_t n = 0;
        for (const char *c = s + 2; c < e; c++)
            if (*c != '_') buf[n++] = *c;
        buf[n] = 0;
        errno = 0;
        unsigned long long u = strtoull(buf, NULL, base);
        if (errno || u > INT64_MAX) return perr(q, s, "integer '%.*s' is out of range", (int)len, s);
        v->type = CS_TOML_INT;
        v->i = (int64_t)u;
        return 0;
    }
    /* decimal: int part without leading zeros, then .frac and/or exponent */
    const char *d = digits(b, e, 10);
    int is_float = 0;
    if (d == b) return perr(q, s, "invalid value '%.*s'", (int)len, s);
    if (d - b > 1 && *b == '0') return perr(q, s, "invalid number '%.*s' (leading zero)", (int)len, s);
    if (d < e && *d == '.') {
        const char *f = digits(d + 1, e, 10);
        if (f == d + 1) return perr(q, s, "invalid number '%.*s'", (int)len, s);
        d = f, is_float = 1;
    }
    if (d < e && (*d == 'e' || *d == 'E')) {
        const char *x = d + 1;
        if (x < e && (*x == '+' || *x == '-')) x++;
        const char *f = digits(x, e, 10);
        if (f == x) return perr(q, s, "invalid number '%.*s'", (int)len, s);
        d = f, is_float = 1;
    }
    if (d != e) return perr(q, s, "invalid value '%.*s'", (int)len, s);
    size_t n = 0;
    for (const char *c = s; c < e; c++)
        if (*c != '_') buf[n++] = *c;
    buf[n] = 0;
    errno = 0;
    if (is_float) {
        /* the C locale's '.', which a library may assume (we never call setlocale) */
        double f = strtod(buf, NULL);
        if (errno == ERANGE && (f > 1 || f < -1)) return perr(q, s, "float '%.*s' is out of range", (int)len, s);
        v->type = CS_TOML_FLOAT;
        v->f = f;
    } else {
        long long i = strtoll(buf, NULL, 10);
        if (errno) return perr(q, s, "integer '%.*s' is out of range", (int)len, s);
        v->type = CS_TOML_INT;
        v->i = i;
    }
    return 0;
}

static int array(P *q, cs_toml *v)
{
    v->type = CS_TOML_ARRAY;
    v->flags = T_FROZEN;
    q->p++;   /* [ */
    for (;;) {
        int rc = skip_all(q);
        if (rc) return rc;
        if (q->p >= q->end) return perr(q, q->p, "unterminated array (opened at line %d)", v->line);
        if (*q->p == ']') {
            q->p++;
            return 0;
        }
        cs_toml *it = NULL;
        if ((rc = value(q, &it)) || (rc = push(v, NULL, it))) return rc;
        if ((rc = skip_all(q))) return rc;
        if (q->p >= q->end) return perr(q, q->p, "unterminated array (opened at line %d)", v->line);
        if (*q->p == ',') {
            q->p++;
            continue;
        }
        if (*q->p == ']') continue;
        char b[16];
        return perr(q, q->p, "expected ',' or ']' in the array (opened at line %d), found %s", v->line, show(q, b));
    }
}

static int inline_table(P *q, cs_toml *v)
{
    v->type = CS_TOML_TABLE;
    q->p++;   /* { */
    skip_ws(q);
    if (q->p < q->end && *q->p == '}') {
        q->p++;
        v->flags = T_FROZEN;
        return 0;
    }
    for (;;) {
        int rc = keyval(q, v);
        if (rc) return rc;
        skip_ws(q);
        char c = q->p < q->end ? *q->p : 0;
        if (c == ',') {
            q->p++;
            skip_ws(q);
            if (q->p < q->end && *q->p == '}') return perr(q, q->p, "trailing ',' in an inline table");
            continue;
        }
        if (c == '}') {
            q->p++;
            v->flags = T_FROZEN;
            return 0;
        }
        char b[16];
        return perr(q, q->p, "expected ',' or '}' in the inline table (inline tables are one line), found %s", show(q, b));
    }
}

static int value(P *q, cs_toml **out)
{
    if (q->depth >= CS_TOML_MAX_DEPTH) return perr(q, q->p, "arrays or inline tables nested deeper than %d", CS_TOML_MAX_DEPTH);
    cs_toml *v = node(CS_TOML_STRING, q->line, col_of(q, q->p));
    if (!v) return cs_oom("TOML value", sizeof *v);
    int rc;
    char c = q->p < q->end ? *q->p : 0;
    q->depth++;
    if (c == '"' || c == '\'') rc = string(q, &v->s, &v->len);
    else if (c == '[') rc = array(q, v);
    else if (c == '{') rc = inline_table(q, v);
    else rc = scalar(q, v);
    q->depth--;
    if (rc) {
        cs_toml_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* [a.b] or [[a.b]]: *cur becomes the table that follows */
static int header(P *q, cs_toml *root, cs_toml **cur)
{
    const char *start = q->p;
    int aot = q->end - q->p >= 2 && q->p[1] == '[';
    q->p += aot ? 2 : 1;
    char *parts[MAX_KEY_PARTS];
    const char *at[MAX_KEY_PARTS];
    int n = 0, rc = keypath(q, parts, at, &n);
    if (rc) goto out;
    skip_ws(q);
    if (q->end - q->p < 1 + aot || q->p[0] != ']' || (aot && q->p[1] != ']')) {
        char b[16];
        if (aot && q->p < q->end && *q->p == ']') q->p++;   /* [[a] */
        rc = perr(q, q->p, "expected '%s' to close the table header, found %s", aot ? "]]" : "]", show(q, b));
        goto out;
    }
    q->p += 1 + aot;
    int line = q->line, col = col_of(q, start);
    cs_toml *t = root;
    for (int i = 0; i < n; i++) {
        long k = find(t, parts[i]);
        int last = i == n - 1;
        if (k < 0) {
            cs_toml *s = node(last && aot ? CS_TOML_ARRAY : CS_TOML_TABLE, line, col_of(q, at[i]));
            if (!s) {
                rc = cs_oom("TOML table", sizeof *s);
                goto out;
            }
            s->flags = last ? (aot ? T_AOT : T_EXPLICIT) : 0;
            rc = push(t, parts[i], s);
            parts[i] = NULL;
            if (rc) goto out;
            t = s;
        } else {
            cs_toml *s = t->items[k];
            if (last && !aot) {
                if (s->type != CS_TOML_TABLE || s->flags) {
                    rc = perr(q, start, "[%s] is already defined (line %d)", parts[i], s->line);
                    goto out;
                }
                s->flags = T_EXPLICIT;
                s->line = line, s->col = col;
                t = s;
                continue;
            }
            if (last && (s->type != CS_TOML_ARRAY || !(s->flags & T_AOT))) {
                rc = perr(q, start, "[[%s]]: '%s' is already defined as a %s (line %d)", parts[i], parts[i],
                          s->type == CS_TOML_ARRAY ? "static array" : cs_toml_type_name(s->type), s->line);
                goto out;
            }
            if (s->type == CS_TOML_ARRAY && (s->flags & T_AOT)) {
                if (last) {
                    t = s;
                    break;
                }
                t = s->items[s->n - 1];
            } else if (s->type == CS_TOML_TABLE && !(s->flags & T_FROZEN)) {
                t = s;
            } else {
                rc = perr(q, at[i], "key '%s' is already defined as a %s (line %d), not a table", parts[i],
                          s->type == CS_TOML_TABLE ? "inline table" : cs_toml_type_name(s->type), s->line);
                goto out;
            }
        }
    }
    if (aot) {   /* t is the array: a new element */
        cs_toml *e = node(CS_TOML_TABLE, line, col);
        if (!e) {
            rc = cs_oom("TOML table", sizeof *e);
            goto out;
        }
        e->flags = T_EXPLICIT;
        if ((rc = push(t, NULL, e))) goto out;
        t = e;
    }
    *cur = t;
out:
    free_parts(parts, n);
    return rc;
}

/* the byte offset of the first invalid UTF-8 sequence, or len */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t u, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) n = 2, u = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) n = 3, u = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) n = 4, u = c & 0x07, min = 0x10000;
        else return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            u = u << 6 | (s[i + k] & 0x3F);
        }
        if (u < min || u > 0x10FFFF || (u >= 0xD800 && u <= 0xDFFF)) return i;
        i += n;
    }
    return len;
}

int cs_toml_parse(const char *text, size_t len, const char *name, cs_toml **out)
{
    *out = NULL;
    P q = {text, text + len, name ? name : "TOML", text, 1, 0};
    size_t bad = utf8_check((const unsigned char *)text, len);
    if (bad < len) {
        for (const char *s = text; s < text + bad; s++)
            if (*s == '\n') q.line++, q.bol = s + 1;
        return perr(&q, text + bad, "invalid UTF-8 (byte 0x%02x)", (unsigned char)text[bad]);
    }
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) q.p += 3, q.bol = q.p;   /* a BOM */
    cs_toml *root = node(CS_TOML_TABLE, 1, 1), *cur;
    if (!root) return cs_oom("TOML table", sizeof *root);
    root->flags = T_EXPLICIT;
    cur = root;
    int rc = 0;
    while (!rc) {
        skip_ws(&q);
        if (q.p >= q.end) break;
        char c = *q.p;
        if (c == '#' || c == '\n' || c == '\r') rc = end_of_line(&q);
        else if (c == '[') {
            if (!(rc = header(&q, root, &cur))) rc = end_of_line(&q);
        } else if (!(rc = keyval(&q, cur))) {
            rc = end_of_line(&q);
        }
    }
    if (rc) {
        cs_toml_free(root);
        return rc;
    }
    *out = root;
    return 0;
}
