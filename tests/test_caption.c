/* kohya's caption options (src/caption.c): the outcomes that need no
 * random draw against kohya's own process_caption
 * (tests/data/caption/kohya.txt, written by tests/ref/caption_ref.py), then
 * the random parts by their statistics: shuffles keep the tags and the
 * first keep_tokens in place and reach every order about equally often;
 * dropout rates hold; the same key gives the same caption. */
#include "caption.h"
#include "check.h"

#include <string.h>

static void unesc(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

static int kohya_cases(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) { /* in the tree: never a skip */
        printf("ERROR: %s: cannot open\n", path);
        return 99;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        cs_ds_subset s;
        memset(&s, 0, sizeof s);
        int epoch;
        if (!t2 || sscanf(line, "%d %d %lf %d %lf %d", &s.shuffle_caption, &s.keep_tokens, &s.caption_dropout_rate,
                          &s.caption_dropout_every_n_epochs, &s.caption_tag_dropout_rate, &epoch) != 6) {
            CHECK(0, "bad line: %s", line);
            continue;
        }
        *t1 = *t2 = 0;
        unesc(t1 + 1), unesc(t2 + 1);
        for (uint64_t k = 0; k < 3; k++) {
            char *out = NULL;
            CHECK(!cs_caption_process(&s, t1 + 1, epoch, cs_caption_key(7, k, 0), &out) && out, "process");
            CHECK(out && !strcmp(out, t2 + 1), "%s (epoch %d) '%s': '%s', kohya '%s'", line, epoch, t1 + 1,
                  out ? out : "", t2 + 1);
            free(out);
        }
        n++;
    }
    fclose(f);
    CHECK(n == 126, "%d cases", n);
    return 0;
}

/* tags of "t0, t1, ..., t4" shuffled with keep_tokens 2: t0 t1 stay, the
 * 6 orders of t2..t4 come up ~1/6 each over 6000 keys */
static void shuffles(void)
{
    cs_ds_subset s;
    memset(&s, 0, sizeof s);
    s.shuffle_caption = 1, s.keep_tokens = 2;
    const char *cap = "t0, t1,t2 , t3, t4";
    int count[6] = {0}, N = 6000;
    for (int k = 0; k < N; k++) {
        char *o = NULL;
        if (cs_caption_process(&s, cap, 1, cs_caption_key(11, (uint64_t)k, 3), &o)) {
            CHECK(0, "process");
            return;
        }
        int a, b, c;
        int ok = sscanf(o, "t0, t1, t%d, t%d, t%d", &a, &b, &c) == 3 && strlen(o) == 18;
        ok = ok && a != b && b != c && a != c && a >= 2 && b >= 2 && c >= 2 && a <= 4 && b <= 4 && c <= 4;
        CHECK(ok, "'%s' is not t0, t1 and t2..t4 in some order", o);
        if (ok) count[(a - 2) * 2 + (b > c)]++;
        free(o);
    }
    /* binomial(6000, 1/6): sd 29; 6 sd */
    for (int i = 0; i < 6; i++) CHECK(abs(count[i] - N / 6) < 175, "order %d came %d times of %d", i, count[i], N);
}

static void rates(void)
{
    cs_ds_subset s;
    memset(&s, 0, sizeof s);
    s.caption_dropout_rate = 0.3;
    int N = 10000, dropped = 0, kept_tags = 0;
    for (int k = 0; k < N; k++) {
        char *o = NULL;
        if (cs_caption_process(&s, "a, b", 1, cs_caption_key(5, (uint64_t)k, 0), &o)) return;
        dropped += !*o;
        CHECK(!*o || !strcmp(o, "a, b"), "'%s'", o);
        free(o);
    }
    CHECK(abs(dropped - 3000) < 6 * 46, "caption dropout 0.3: %d of %d", dropped, N); /* sd 46 */
    memset(&s, 0, sizeof s);
    s.caption_tag_dropout_rate = 0.25, s.keep_tokens = 1;
    for (int k = 0; k < N; k++) {
        char *o = NULL;
        if (cs_caption_process(&s, "k, a, b, c, d", 1, cs_caption_key(5, (uint64_t)k, 1), &o)) return;
        CHECK(!strncmp(o, "k", 1), "keep_tokens: '%s'", o);
        for (const char *p = o; (p = strchr(p, ',')); p++) kept_tags++;
        free(o);
    }
    /* 4 tags each kept with p = 0.75: mean 30000, sd 87 */
    CHECK(abs(kept_tags - 30000) < 6 * 87, "tag dropout 0.25: %d of 40000 tags kept", kept_tags);
}

static void keys(void)
{
    cs_ds_subset s;
    memset(&s, 0, sizeof s);
    s.shuffle_caption = 1;
    const char *cap = "a, b, c, d, e, f, g, h";
    char *x = NULL, *y = NULL, *z = NULL;
    int differ = 0;
    for (uint64_t k = 0; k < 20; k++) {
        cs_caption_process(&s, cap, 1, cs_caption_key(1, k, 0), &x);
        cs_caption_process(&s, cap, 1, cs_caption_key(1, k, 0), &y);
        cs_caption_process(&s, cap, 1, cs_caption_key(2, k, 0), &z);
        CHECK(x && y && !strcmp(x, y), "the same key gave '%s' and '%s'", x, y);
        differ += x && z && strcmp(x, z) != 0;
        free(x), free(y), free(z);
    }
    CHECK(differ >= 18, "another seed changed %d of 20 shuffles of 8 tags", differ);
    CHECK(cs_caption_key(1, 2, 3) != cs_caption_key(1, 3, 2) && cs_caption_key(1, 0, 1) != cs_caption_key(1, 1, 0),
          "keys of other places collide");
    CHECK(!cs_caption_varies(&s) == 0, "shuffle varies");
    memset(&s, 0, sizeof s);
    s.keep_tokens = 3;
    CHECK(!cs_caption_varies(&s), "keep_tokens alone does not vary");
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/caption/kohya.txt", top && *top ? top : ".");
    int rc = kohya_cases(path);
    if (rc) return rc;
    shuffles();
    rates();
    keys();
    return check_exit();
}
