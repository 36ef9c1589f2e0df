/* Tokenizer tests: every case of shared/golden/text/tokenizer_cases.json
 * (untruncated ids and the 77-token truncation), the 77-token padding and
 * mask, invalid UTF-8, missing/corrupt vocabulary files, the byte fallback,
 * decoding, and a long prompt. Exit 77 = skip (shared data missing, unless
 * CI is set: then 99). */
#include "check.h"
#include "error.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *shared_dir(void)
{
    const char *env = getenv("SHARED_DIR");   /* set by make check */
    return env ? env : "../shared";
}

static int same(const int32_t *a, size_t na, json_t *b)
{
    if (na != json_array_size(b)) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i] != json_integer_value(json_array_get(b, i))) return 0;
    return 1;
}

static void print_ids(const char *what, const int32_t *a, size_t n)
{
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", a[i]);
    fputc('\n', stderr);
}

static void test_golden_cases(const cs_tokenizer *tok, const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    CHECK(root, "%s: %s", path, err.text);
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_array_size(cases) >= 80, "expected >= 80 cases, got %zu", json_array_size(cases));
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids"), *want77 = json_object_get(c, "ids_77");
        int32_t *ids, ids77[77], mask[77];
        size_t n, nfull;
        int rc = cs_tokenize(tok, text, &ids, &n);
        CHECK(rc == 0, "case %zu: %s", i, cs_last_error());
        if (rc) continue;
        if (!same(ids, n, want)) {
            CHECK(0, "case %zu %s: ids differ", i, json_dumps(json_object_get(c, "text"), JSON_ENCODE_ANY));
            print_ids("got", ids, n);
        }
        rc = cs_tokens_77(tok, text, ids77, mask, &nfull);
        CHECK(rc == 0 && nfull == n, "case %zu: tokens_77", i);
        size_t m = json_array_size(want77);
        CHECK(same(ids77, m, want77), "case %zu: ids_77 differ", i);
        for (size_t k = 0; k < 77; k++) {
            CHECK(mask[k] == (k < m), "case %zu: mask[%zu]", i, k);
            if (k >= m) CHECK(ids77[k] == CS_TOK_EOS, "case %zu: pad[%zu]=%d", i, k, ids77[k]);
        }
        free(ids);
    }
    printf("golden cases: %zu checked\n", json_array_size(cases));
    json_decref(root);
}

static void test_basics(const cs_tokenizer *tok)
{
    int32_t ids[77], mask[77];
    size_t n;
    CHECK(cs_tokens_77(tok, "", ids, mask, &n) == 0 && n == 2, "empty prompt");
    CHECK(ids[0] == 49406 && ids[1] == 49407 && mask[1] == 1 && mask[2] == 0 && ids[76] == 49407,
          "empty prompt layout");
    CHECK(!strcmp(cs_token_str(tok, 320), "a</w>") && !strcmp(cs_token_str(tok, 512), "in"),
          "token strings");
    CHECK(cs_token_str(tok, -1) == NULL && cs_token_str(tok, 1 << 20) == NULL, "out of range");

    /* spec §5 row not in the golden file */
    int32_t *v;
    const int32_t want[] = {49406, 3306, 267, 1002, 748, 272, 273, 274, 275, 585, 568, 847, 713, 49407};
    CHECK(cs_tokenize(tok, "Hello,  World!! 1234 it's  DON'T", &v, &n) == 0 && n == 14 &&
          !memcmp(v, want, sizeof want), "spec hello row");
    free(v);

    /* special-token strings become their ids */
    CHECK(cs_tokenize(tok, "a<|endoftext|>cat", &v, &n) == 0 && n == 5 && v[1] == 320 &&
          v[2] == 49407 && v[3] == 2368, "special in text");
    free(v);

    /* reference ids from HF transformers 5.24 CLIPTokenizer (fast) on the same files:
     * U+180E is not whitespace; specials are matched on the raw text, case-sensitively */
    static const struct { const char *text; int n; int32_t ids[12]; } hf[] = {
        {"a\xe1\xa0\x8e b", 7, {49406, 320, 157, 254, 492, 321, 49407}},
        {"x <|endoftext|>\xcc\xb8 y", 7, {49406, 343, 49407, 136, 372, 344, 49407}},
        {"<|startoftext|>hi<|ENDOFTEXT|>", 10, {49406, 49406, 1883, 27, 347, 40786, 4160, 91, 285, 49407}},
    };
    for (size_t i = 0; i < sizeof hf / sizeof *hf; i++) {
        CHECK(cs_tokenize(tok, hf[i].text, &v, &n) == 0 && n == (size_t)hf[i].n &&
              !memcmp(v, hf[i].ids, n * sizeof *v), "HF case %zu", i);
        if (v && n != (size_t)hf[i].n) print_ids("got", v, n);
        free(v);
    }

    /* decode round trip */
    char *s;
    CHECK(cs_tokenize(tok, "A photo of a Café!", &v, &n) == 0, "tokenize");
    CHECK(cs_detokenize(tok, v, n, &s) == 0 && !strcmp(s, "a photo of a café !"), "decode: '%s'", s);
    free(s);
    free(v);
}

static void test_invalid_utf8(const cs_tokenizer *tok)
{
    const char *bad[] = {"abc\xff", "caf\xc3", "\xc0\xaf overlong", "\xed\xa0\x80 surrogate",
                         "\xf4\x90\x80\x80 too big", "ok \x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t *v = (int32_t *)1;
        size_t n = 7;
        int rc = cs_tokenize(tok, bad[i], &v, &n);
        CHECK(rc == CS_EARG && v == NULL && n == 0, "invalid UTF-8 %zu accepted", i);
        CHECK(strstr(cs_last_error(), "invalid UTF-8 at byte") != NULL, "message: %s", cs_last_error());
    }
    int32_t ids[77], mask[77];
    CHECK(cs_tokens_77(tok, "abc\xff", ids, mask, NULL) == CS_EARG, "tokens_77 invalid");
}

static void write_file(const char *path, const char *data)
{
    size_t n = strlen(data);
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

/* Copies the real vocab, writes a broken merges/vocab next to it and checks the message. */
static void test_bad_files(const char *tokdir)
{
    cs_tokenizer *t = (cs_tokenizer *)1;
    CHECK(cs_tokenizer_load("/nonexistent/dir", &t) == CS_EIO && t == NULL, "missing dir");
    CHECK(strstr(cs_last_error(), "/nonexistent/dir/vocab.json") != NULL, "msg: %s", cs_last_error());

    char dir[] = "/tmp/cs_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char vp[256], mp[256], src[4200];
    snprintf(vp, sizeof vp, "%s/vocab.json", dir);
    snprintf(mp, sizeof mp, "%s/merges.txt", dir);

    /* vocab present, merges missing */
    snprintf(src, sizeof src, "%s/vocab.json", tokdir);
    FILE *f = fopen(src, "rb");
    CHECK(f != NULL, "open %s", src);
    static char big[4 << 20];
    size_t vn = f ? fread(big, 1, sizeof big - 1, f) : 0;
    if (f) fclose(f);
    big[vn] = 0;
    write_file(vp, big);
    CHECK(cs_tokenizer_load(dir, &t) == CS_EIO && strstr(cs_last_error(), "merges.txt"),
          "missing merges: %s", cs_last_error());

    write_file(mp, "#version: 0.2\ni n\nt h\nbogus\n");
    CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT && strstr(cs_last_error(), "merges.txt: line 4"),
          "bad merges line: %s", cs_last_error());
    write_file(mp, "#version: 0.2\ni n\nzz\xc3\xa9q x\n");
    CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT && strstr(cs_last_error(), "not in vocab"),
          "unknown merge token: %s", cs_last_error());
    write_file(mp, "#version: 0.2\ni n\nt h\n");
    CHECK(cs_tokenizer_load(dir, &t) == 0, "small merges: %s", cs_last_error());
    if (t != (cs_tokenizer *)1) {
        int32_t *v;
        size_t n;
        /* "thin" with only in, th: th + in</w>? no: "in</w>" is not a merge -> th, i, n</w> */
        CHECK(cs_tokenize(t, "thin", &v, &n) == 0 && n == 5, "small merges tokenize");
        free(v);
        cs_tokenizer_free(t);
    }

    write_file(vp, "{\"a\": 1, ");
    CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT && strstr(cs_last_error(), "vocab.json: line"),
          "corrupt json: %s", cs_last_error());
    write_file(vp, "[1,2,3]");
    CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT && strstr(cs_last_error(), "vocab.json"),
          "json array: %s", cs_last_error());
    /* truncate the real vocab so byte symbols go missing: keep it valid JSON */
    json_t *vj = json_loadb(big, vn, 0, NULL);
    if (vj) {
        json_object_del(vj, "\xc4\x80");   /* byte 0x00 symbol */
        json_dump_file(vj, vp, JSON_COMPACT);
        CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT && strstr(cs_last_error(), "byte symbol"),
              "missing byte symbol: %s", cs_last_error());
        json_object_set_new(vj, "\xc4\x80", json_integer(320));   /* duplicate id */
        json_dump_file(vj, vp, JSON_COMPACT);
        CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT && strstr(cs_last_error(), "id 320"),
              "duplicate id: %s", cs_last_error());
        /* an id out of range: the message names the token (it was read after
         * the JSON was freed; the sanitizer build catches that) */
        json_object_del(vj, "\xc4\x80");
        json_object_set_new(vj, "a_token_with_a_long_name", json_integer(99999999999));
        json_dump_file(vj, vp, JSON_COMPACT);
        CHECK(cs_tokenizer_load(dir, &t) == CS_EFORMAT &&
              strstr(cs_last_error(), "\"a_token_with_a_long_name\": id is"), "id out of range: %s", cs_last_error());
        json_decref(vj);
    }
    unlink(vp);
    unlink(mp);
    rmdir(dir);
}

static void test_bytes_fallback(void)
{
    cs_tokenizer *t;
    CHECK(cs_tokenizer_bytes(&t) == 0, "bytes: %s", cs_last_error());
    int32_t *v;
    size_t n;
    CHECK(cs_tokenize(t, "a cat", &v, &n) == 0 && n == 6, "bytes tokenize n=%zu", n);
    /* 'a</w>' = 64+256, 'c' = 66, 'a' = 64, 't</w>' = 83+256 (same ids as the CLIP vocab) */
    const int32_t want[] = {49406, 320, 66, 64, 339, 49407};
    CHECK(n == 6 && !memcmp(v, want, sizeof want), "bytes ids");
    free(v);
    CHECK(cs_tokenizer_size(t) == 49408 && !strcmp(cs_token_str(t, 220), "\xc4\xa0"), "bytes vocab");
    cs_tokenizer_free(t);
}

static void test_long_prompt(const cs_tokenizer *tok)
{
    /* 200k characters: many repeated words plus one 20k-letter word */
    size_t len = 200000;
    char *s = malloc(len + 1);
    for (size_t i = 0; i < len; i++) s[i] = i < 20000 ? 'x' : "a photo of a cat, "[i % 18];
    s[len] = 0;
    clock_t t0 = clock();
    int32_t *v;
    size_t n;
    CHECK(cs_tokenize(tok, s, &v, &n) == 0 && n > 50000, "long prompt n=%zu", n);
    double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("long prompt: %zu tokens in %.3f s\n", n, sec);
    CHECK(sec < 10, "long prompt too slow: %.1f s", sec);
    free(v);
    free(s);
}

/* One 120k-letter word of varied letters (the worst case of BPE: merges
 * find new pairs everywhere, ~n rounds of n pairs): before words were merged
 * in pieces of CS_TOK_WORD_MAX bytes this took seconds, and minutes for a
 * 1 MB prompt. The pieces must still give the same tokens as the whole for
 * words up to the limit (the golden cases cover normal text). */
static void test_long_word(const cs_tokenizer *tok)
{
    size_t len = 120000;
    char *s = malloc(len + 1);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        s[i] = (char)('a' + (x >> 16) % 26);
    }
    s[len] = 0;
    clock_t t0 = clock();
    int32_t *v;
    size_t n;
    CHECK(cs_tokenize(tok, s, &v, &n) == 0 && n > len / 8, "long word n=%zu", n);
    double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("long word: %zu bytes, %zu tokens in %.3f s\n", len, n, sec);
    CHECK(sec < 1.5, "a %zu-byte word took %.1f s (BPE must not be quadratic in the word length)", len, sec);
    free(v);
    /* a word of exactly CS_TOK_WORD_MAX letters is one piece: its tokens
     * detokenize back to the word */
    s[CS_TOK_WORD_MAX] = 0;
    char *back = NULL;
    CHECK(cs_tokenize(tok, s, &v, &n) == 0 && cs_detokenize(tok, v, n, &back) == 0 && back &&
              !strncmp(back, s, CS_TOK_WORD_MAX), "word of %d letters round trip", CS_TOK_WORD_MAX);
    free(back);
    free(v);
    free(s);
}

int main(void)
{
    char dir[4096], cases[4096];
    snprintf(dir, sizeof dir, "%s/tokenizer", shared_dir());
    snprintf(cases, sizeof cases, "%s/golden/text/tokenizer_cases.json", shared_dir());
    test_bytes_fallback();
    char vocab[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    if (access(cases, R_OK) || access(vocab, R_OK)) {
        fprintf(stderr, "SKIP: shared tokenizer data missing (%s, %s)\n", vocab, cases);
        return check_under_ci() ? 99 : (failures ? 1 : 77);
    }
    cs_tokenizer *tok;
    if (cs_tokenizer_load(dir, &tok)) {   /* the files are there: a load failure is a bug */
        fprintf(stderr, "FAIL: %s\n", cs_last_error());
        return 1;
    }
    test_golden_cases(tok, cases);
    test_basics(tok);
    test_invalid_utf8(tok);
    test_bad_files(dir);
    test_long_prompt(tok);
    test_long_word(tok);
    cs_tokenizer_free(tok);
    if (failures) fprintf(stderr, "%d failures\n", failures);
    else printf("all tokenizer tests passed\n");
    return check_exit();
}
