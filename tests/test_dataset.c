/* The training data pipeline (doc/training.md §7): the TOML reader, kohya's
 * dataset config, aspect-ratio buckets against kohya's own BucketManager
 * (tests/data/dataset/buckets.txt, written by tests/ref/dataset_buckets_ref.py),
 * scanning a folder of images and captions, and the latent / text cache. */
#include "check.h"
#include "dataset.h"
#include "dscache.h"
#include "error.h"
#include "image_in.h"
#include "pngout.h"
#include "toml.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static const char *at(const char *name) { return check_path(dir, name); }   /* valid until 4 more calls */

static void put(const char *name, const char *text)
{
    FILE *f = fopen(at(name), "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        printf("ERROR: cannot write %s\n", at(name));
        exit(99);
    }
}

/* a w x h PNG whose pixel (x, y) is (x, y, x + y) mod 256 */
static void put_png(const char *name, int w, int h)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)x, p[1] = (uint8_t)y, p[2] = (uint8_t)(x + y);
        }
    if (cs_png_write_rgb8(at(name), rgb, w, h, (size_t)w * 3, NULL, 0, CS_PNG_FORCE)) {
        printf("ERROR: %s\n", cs_last_error());
        exit(99);
    }
    free(rgb);
}

/* ---- TOML ---- */

static void test_toml_valid(void)
{
    const char *text =
        "# a comment\n"
        "title = \"t\\u00e9\\\"x\\\\\" # trailing\n"
        "lit = 'C:\\hoge'\n"
        "\"quoted key\" = 1_000\n"
        "hex = 0xff\noct = 0o17\nbin = 0b101\nneg = -42\n"
        "f1 = 1.5\nf2 = -2e-3\nf3 = 6.02E+23\nf4 = inf\nf5 = -nan\n"
        "yes = true\nno = false\n"
        "arr = [ 1, 'two', [3.0], ]\n"
        "multi = [\n  1, # one\n  2\n]\n"
        "inl = { a = 1, b.c = \"x\" }\n"
        "dot.ted.key = 7\r\n"
        "[general]\nresolution = [768, 512]\n"
        "[[datasets]]\nbatch_size = 2\n"
        "  [[datasets.subsets]]\n  image_dir = 'a'\n"
        "  [[datasets.subsets]]\n  image_dir = 'b'\n"
        "[[datasets]]\n"
        "[x.y]\n[x]\nz = 1\n";
    cs_toml *t = NULL;
    int rc = cs_toml_parse(text, strlen(text), "v.toml", &t);
    CHECK(rc == 0, "valid TOML refused: %s", cs_last_error());
    if (rc) return;
    const cs_toml *v = cs_toml_get(t, "title");
    CHECK(v && v->type == CS_TOML_STRING && !strcmp(v->s, "t\xc3\xa9\"x\\"), "basic string");
    v = cs_toml_get(t, "lit");
    CHECK(v && !strcmp(v->s, "C:\\hoge"), "literal string");
    v = cs_toml_get(t, "quoted key");
    CHECK(v && v->type == CS_TOML_INT && v->i == 1000, "quoted key / underscores");
    CHECK(cs_toml_get(t, "hex")->i == 255 && cs_toml_get(t, "oct")->i == 15 && cs_toml_get(t, "bin")->i == 5 &&
              cs_toml_get(t, "neg")->i == -42, "integer bases");
    CHECK(cs_toml_get(t, "f1")->f == 1.5 && cs_toml_get(t, "f2")->f == -2e-3 && cs_toml_get(t, "f3")->f == 6.02e23,
          "floats");
    CHECK(cs_toml_get(t, "f4")->type == CS_TOML_FLOAT && cs_toml_get(t, "f4")->f > 1e308, "inf");
    CHECK(cs_toml_get(t, "f5")->f != cs_toml_get(t, "f5")->f, "nan");
    CHECK(cs_toml_get(t, "yes")->i == 1 && cs_toml_get(t, "no")->type == CS_TOML_BOOL && !cs_toml_get(t, "no")->i,
          "booleans");
    v = cs_toml_get(t, "arr");
    CHECK(v && v->type == CS_TOML_ARRAY && v->n == 3 && v->items[1]->type == CS_TOML_STRING &&
              v->items[2]->type == CS_TOML_ARRAY && v->items[2]->items[0]->f == 3.0, "mixed array");
    v = cs_toml_get(t, "multi");
    CHECK(v && v->n == 2 && v->items[1]->i == 2, "array over lines");
    v = cs_toml_get(t, "inl");
    CHECK(v && v->type == CS_TOML_TABLE && cs_toml_get(v, "a")->i == 1 &&
              !strcmp(cs_toml_get(cs_toml_get(v, "b"), "c")->s, "x"), "inline table");
    v = cs_toml_get(cs_toml_get(cs_toml_get(t, "dot"), "ted"), "key");
    CHECK(v && v->i == 7 && v->line == 22 && v->col == 15, "dotted key (line %d col %d)", v ? v->line : 0,
          v ? v->col : 0);
    v = cs_toml_get(t, "datasets");
    CHECK(v && v->type == CS_TOML_ARRAY && v->n == 2, "array of tables");
    if (v && v->n == 2) {
        const cs_toml *s = cs_toml_get(v->items[0], "subsets");
        CHECK(s && s->n == 2 && !strcmp(cs_toml_get(s->items[1], "image_dir")->s, "b"), "nested array of tables");
        CHECK(v->items[1]->n == 0, "empty table");
    }
    CHECK(cs_toml_get(cs_toml_get(t, "x"), "z") && cs_toml_get(cs_toml_get(t, "x"), "y"), "[x] after [x.y]");
    cs_toml_free(t);
}

static void test_toml_errors(void)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"a = 1\na = 2\n", "e.toml:2:1: duplicate key 'a' (first defined at line 1)"},
        {"a = \"abc\n", "e.toml:1:5: unterminated string"},
        {"a = 'abc", "e.toml:1:5: unterminated string"},
        {"a = \"x\\qy\"\n", "e.toml:1:7: invalid escape \\ followed by 'q'"},
        {"a = \"\\u12\"\n", "e.toml:1:6: \\u needs 4 hex digits"},
        {"a = \"\\uD800\"\n", "e.toml:1:6: \\uD800 is not a Unicode scalar value"},
        {"a = \"x\ty\x01\"\n", "e.toml:1:9: control character (byte 0x01) in a string; write it as an escape"},
        {"a = \"\"\"x\"\"\"\n", "e.toml:1:5: multi-line strings (\"\"\") are not supported"},
        {"a = 1979-05-27\n", "e.toml:1:5: dates and times are not supported"},
        {"a = 07:32:00\n", "e.toml:1:5: dates and times are not supported"},
        {"a = 012\n", "e.toml:1:5: invalid number '012' (leading zero)"},
        {"a = 1__0\n", "e.toml:1:5: invalid value '1__0'"},
        {"a = 1.\n", "e.toml:1:5: invalid number '1.'"},
        {"a = 0xfg\n", "e.toml:1:5: invalid number '0xfg'"},
        {"a = 9223372036854775808\n", "e.toml:1:5: integer '9223372036854775808' is out of range"},
        {"a = 1e999\n", "e.toml:1:5: float '1e999' is out of range"},
        {"a = yes\n", "e.toml:1:5: invalid value 'yes'"},
        {"a = \n", "e.toml:1:5: expected a value, found end of line"},
        {"a 1\n", "e.toml:1:3: expected '=' after the key 'a', found '1'"},
        {"= 1\n", "e.toml:1:1: expected a key, found '='"},
        {"a = 1 b = 2\n", "e.toml:1:7: expected the end of the line, found 'b'"},
        {"a = [1, 2\n", "e.toml:2:1: unterminated array (opened at line 1)"},
        {"a = [1 2]\n", "e.toml:1:8: expected ',' or ']' in the array (opened at line 1), found '2'"},
        {"a = {x = 1,}\n", "e.toml:1:12: trailing ',' in an inline table"},
        {"a = {x = 1\n", "e.toml:1:11: expected ',' or '}' in the inline table (inline tables are one line), found end of line"},
        {"[a]\n[a]\n", "e.toml:2:1: [a] is already defined (line 1)"},
        {"a = 1\n[a]\n", "e.toml:2:1: [a] is already defined (line 1)"},
        {"a = [1]\n[[a]]\n", "e.toml:2:1: [[a]]: 'a' is already defined as a static array (line 1)"},
        {"a = 1\n[a.b]\n", "e.toml:2:2: key 'a' is already defined as a integer (line 1), not a table"},
        {"a = {x = 1}\n[a.b]\n", "e.toml:2:2: key 'a' is already defined as a inline table (line 1), not a table"},
        {"a = {x = 1}\na.y = 2\n", "e.toml:2:1: key 'a' is already defined (line 1) and cannot be extended with a dotted key"},
        {"[a\n", "e.toml:1:3: expected ']' to close the table header, found end of line"},
        {"[[a]\n", "e.toml:1:5: expected ']]' to close the table header, found end of line"},
        {"# x\x7f\n", "e.toml:1:4: control character (byte 0x7f) in a comment"},
        {"a = 1\nb = \"\xc3\x28\"\n", "e.toml:2:6: invalid UTF-8 (byte 0xc3)"},
        {"a = 1\rb = 2\n", "e.toml:1:6: expected the end of the line, found byte 0x0d"},
        {"a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
         "e.toml:1:37: arrays or inline tables nested deeper than 32"},
        {"\"a\\u0000b\" = 1\n", "e.toml:1:1: a key holds a NUL character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_toml *t = (cs_toml *)1;
        cs_clear_error();
        int rc = cs_toml_parse(cases[i].text, strlen(cases[i].text), "e.toml", &t);
        CHECK(rc == CS_EFORMAT && !t, "case %zu: rc %d", i, rc);
        CHECK(!strcmp(cs_last_error(), cases[i].msg), "case %zu:\n  got  %s\n  want %s", i, cs_last_error(),
              cases[i].msg);
        if (!rc) cs_toml_free(t);
    }
}

/* ---- kohya's config ---- */

static char warned[2048];
static int n_warned;
static void warn(void *ctx, const char *msg)
{
    (void)ctx;
    n_warned++;
    snprintf(warned + strlen(warned), sizeof warned - strlen(warned), "%s\n", msg);
}

static void test_config(void)
{
    /* the example of kohya's docs/config_README-en.md, with an ignored key */
    const char *text =
        "[general]\nshuffle_caption = true\ncaption_extension = '.txt'\nkeep_tokens = 1\n"
        "# This is a DreamBooth-style dataset\n[[datasets]]\nresolution = 512\nbatch_size = 4\nkeep_tokens = 2\n"
        "  [[datasets.subsets]]\n  image_dir = 'C:\\hoge'\n  class_tokens = 'hoge girl'\n"
        "  [[datasets.subsets]]\n  image_dir = 'C:\\fuga'\n  class_tokens = 'fuga boy'\n  keep_tokens = 3\n"
        "  [[datasets.subsets]]\n  is_reg = true\n  image_dir = 'C:\\reg'\n  class_tokens = 'human'\n  keep_tokens = 1\n"
        "[[datasets]]\nresolution = [768, 512]\nbatch_size = 2\nenable_bucket = true\nmax_bucket_reso = 1536\n"
        "caption_extension = 'cap'\ncolor_aug = true\n"
        "  [[datasets.subsets]]\n  image_dir = 'C:\\piyo'\n  num_repeats = 10\n";
    cs_ds_config c;
    warned[0] = 0, n_warned = 0;
    int rc = cs_ds_config_parse(text, strlen(text), "k.toml", warn, NULL, &c);
    CHECK(rc == 0, "kohya's example refused: %s", cs_last_error());
    if (rc) return;
    CHECK(c.n == 2 && c.datasets[0].n_subsets == 3 && c.datasets[1].n_subsets == 1, "shape");
    const cs_ds_dataset *d = &c.datasets[0], *e = &c.datasets[1];
    CHECK(d->width == 512 && d->height == 512 && d->batch_size == 4 && !d->enable_bucket, "dataset 1");
    CHECK(d->min_bucket_reso == 256 && d->max_bucket_reso == 1024 && d->bucket_reso_steps == 64, "kohya's defaults");
    CHECK(d->subsets[0].keep_tokens == 2 && d->subsets[1].keep_tokens == 3 && d->subsets[2].keep_tokens == 1,
          "keep_tokens: subset, then dataset, then general");
    CHECK(d->subsets[0].shuffle_caption && !strcmp(d->subsets[0].caption_extension, ".txt"), "[general] values");
    CHECK(!strcmp(d->subsets[1].class_tokens, "fuga boy") && d->subsets[2].is_reg && !d->subsets[1].is_reg, "subset values");
    CHECK(!strcmp(d->subsets[0].image_dir, "C:\\hoge"), "image_dir");
    CHECK(e->width == 768 && e->height == 512 && e->enable_bucket && e->max_bucket_reso == 1536, "dataset 2");
    CHECK(!strcmp(e->subsets[0].caption_extension, ".cap") && e->subsets[0].num_repeats == 10 &&
              e->subsets[0].keep_tokens == 1, "dataset 2 subset: '.' added, repeats, general keep_tokens");
    CHECK(n_warned == 1 && !strcmp(warned, "k.toml:28:13: 'color_aug' is ignored (cascade does not implement it)\n"),
          "warnings: %s", warned);
    cs_ds_config_free(&c);

    /* defaults without [general] */
    const char *min = "[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\n";
    rc = cs_ds_config_parse(min, strlen(min), "m.toml", NULL, NULL, &c);
    CHECK(rc == 0 && !strcmp(c.datasets[0].subsets[0].caption_extension, ".caption") &&
              c.datasets[0].subsets[0].num_repeats == 1 && c.datasets[0].batch_size == 1 && c.datasets[0].width == 0,
          "defaults: %s", cs_last_error());
    if (!rc) cs_ds_config_free(&c);

    static const struct {
        const char *text, *msg;
        int rc;
    } bad[] = {
        {"[general]\nbogus = 1\n", "b.toml:2:9: unknown key 'bogus' in [general]", CS_EFORMAT},
        {"[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\nresolution = 5\n",
         "b.toml:4:14: 'resolution' belongs in [general] or [[datasets]], not in [[datasets.subsets]]", CS_EFORMAT},
        {"[general]\nimage_dir = 'x'\n", "b.toml:2:13: 'image_dir' belongs in [[datasets.subsets]], not in [general]",
         CS_EFORMAT},
        {"[[datasets]]\nbatch_size = '4'\n", "b.toml:2:14: 'batch_size' must be an integer, not a string", CS_EFORMAT},
        {"[[datasets]]\nresolution = [1, 2, 3]\n",
         "b.toml:2:14: 'resolution' must be an integer or [width, height], not an array", CS_EFORMAT},
        {"[[datasets]]\nenable_bucket = 1\n", "b.toml:2:17: 'enable_bucket' must be true or false, not an integer",
         CS_EFORMAT},
        {"[[datasets]]\nresolution = 0\n[[datasets.subsets]]\nimage_dir = 'x'\n",
         "b.toml:2:14: 'resolution' 0x0: each side must be 1 to 16384", CS_EFORMAT},
        {"[[datasets]]\nbatch_size = 0\n[[datasets.subsets]]\nimage_dir = 'x'\n",
         "b.toml:1:1: batch_size must be at least 1", CS_EFORMAT},
        {"[[datasets]]\nnum_repeats = -1\n[[datasets.subsets]]\nimage_dir = 'x'\n",
         "b.toml:2:15: 'num_repeats' = -1 is out of range (0 to 1000000)", CS_EFORMAT},
        {"[[datasets]]\nenable_bucket = true\nbucket_reso_steps = 48\n[[datasets.subsets]]\nimage_dir = 'x'\n",
         "b.toml:1:1: bucket_reso_steps = 48: it must be a multiple of 32 (EffNet's stride)", CS_EFORMAT},
        {"[[datasets]]\nenable_bucket = true\nmin_bucket_reso = 2048\n[[datasets.subsets]]\nimage_dir = 'x'\n",
         "b.toml:1:1: min_bucket_reso (2048) must be 1 to max_bucket_reso (1024)", CS_EFORMAT},
        {"[[datasets]]\n[[datasets.subsets]]\nmetadata_file = 'm.json'\n",
         "b.toml:3:17: 'metadata_file' (kohya's fine-tuning / ControlNet datasets) is not supported; use image_dir "
         "with caption files", CS_EUNSUP},
        {"[[datasets]]\n[[datasets.subsets]]\nnum_repeats = 2\n", "b.toml:2:1: this subset has no image_dir", CS_EFORMAT},
        {"[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\ncaption_dropout_rate = 1.5\n",
         "b.toml:2:1: caption dropout rates must be 0 to 1", CS_EFORMAT},
        {"[general]\n", "b.toml: no [[datasets]]", CS_EFORMAT},
        {"[[datasets]]\nbatch_size = 1\n", "b.toml:1:1: this dataset has no [[datasets.subsets]]", CS_EFORMAT},
        {"datasets = [1]\n", "b.toml:1:13: datasets must be tables", CS_EFORMAT},
        {"[[datasets]]\nsubsets = 3\n", "b.toml:2:11: 'subsets' must be [[datasets.subsets]] tables", CS_EFORMAT},
        {"resolution = 5\n", "b.toml:1:14: unexpected integer 'resolution' at the top level (a config has [general] "
                             "and [[datasets]])", CS_EFORMAT},
        {"[[datasets]]\n[[datasets.subsets]]\nimage_dir = \"a\\u0000b\"\n", "b.toml:3:13: 'image_dir' holds a NUL character",
         CS_EFORMAT},
        {"[general\n", "b.toml:1:9: expected ']' to close the table header, found end of line", CS_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cs_clear_error();
        rc = cs_ds_config_parse(bad[i].text, strlen(bad[i].text), "b.toml", NULL, NULL, &c);
        CHECK(rc == bad[i].rc && c.n == 0 && !c.datasets, "config case %zu: rc %d", i, rc);
        CHECK(!strcmp(cs_last_error(), bad[i].msg), "config case %zu:\n  got  %s\n  want %s", i, cs_last_error(),
              bad[i].msg);
        if (!rc) cs_ds_config_free(&c);
    }
    put("cfg.toml", "[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'y'\n");
    rc = cs_ds_config_load(at("cfg.toml"), NULL, NULL, &c);
    CHECK(rc == 0 && c.n == 1 && !strcmp(c.datasets[0].subsets[0].image_dir, "y"), "load: %s", cs_last_error());
    if (!rc) cs_ds_config_free(&c);
    rc = cs_ds_config_load(at("missing.toml"), NULL, NULL, &c);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), "missing.toml"), "missing file: %s", cs_last_error());
}

/* ---- buckets against kohya ---- */

static void test_buckets(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("ERROR: cannot read %s\n", path);
        exit(99);
    }
    char line[8192];
    cs_bucketer b;
    memset(&b, 0, sizeof b);
    int n_sel = 0, n_cfg = 0, have = 0;
    while (fgets(line, sizeof line, f)) {
        int w, h, mn, mx, st, noup, n, off;
        if (sscanf(line, "bucketer %d %d %d %d %d %d %d%n", &w, &h, &mn, &mx, &st, &noup, &n, &off) == 7) {
            cs_bucket_free(&b);
            have = !cs_bucket_init(&b, w, h, mn, mx, st, noup);
            CHECK(have, "bucketer %dx%d: %s", w, h, cs_last_error());
            CHECK(have && b.n == (size_t)n, "bucketer %dx%d %d..%d/%d: %zu buckets, kohya %d", w, h, mn, mx, st, b.n, n);
            const char *p = line + off;
            for (int i = 0; have && i < n && (size_t)i < b.n; i++) {
                int rw, rh, k;
                if (sscanf(p, "%d %d%n", &rw, &rh, &k) != 2) break;
                p += k;
                CHECK(b.resos[i][0] == rw && b.resos[i][1] == rh, "bucket %d: %dx%d, kohya %dx%d", i, b.resos[i][0],
                      b.resos[i][1], rw, rh);
            }
            n_cfg++;
        } else if (sscanf(line, "fixed %d %d", &w, &h) == 2) {
            cs_bucket_free(&b);
            have = !cs_bucket_init_fixed(&b, w, h);
            n_cfg++;
        } else {
            int iw, ih, bw, bh, rw, rh, reso[2], rs[2];
            if (sscanf(line, "select %d %d %d %d %d %d", &iw, &ih, &bw, &bh, &rw, &rh) != 6 || !have) continue;
            int rc = cs_bucket_select(&b, iw, ih, reso, rs);
            CHECK(!rc && reso[0] == bw && reso[1] == bh && rs[0] == rw && rs[1] == rh,
                  "image %dx%d: bucket %dx%d resized %dx%d, kohya %dx%d %dx%d", iw, ih, reso[0], reso[1], rs[0], rs[1],
                  bw, bh, rw, rh);
            n_sel++;
        }
    }
    fclose(f);
    cs_bucket_free(&b);
    CHECK(n_cfg == 9 && n_sel == 9 * 22, "read %d bucketers, %d selections", n_cfg, n_sel);
    /* a side below the step after scaling is refused, not a 0-pixel bucket */
    cs_bucket_init(&b, 1024, 1024, 256, 2048, 64, 1);
    int reso[2], rs[2];
    CHECK(cs_bucket_select(&b, 40, 2000, reso, rs) == CS_EARG &&
              !strcmp(cs_last_error(), "image 40x2000: a side is below bucket_reso_steps (64) after scaling"),
          "narrow image: %s", cs_last_error());
    cs_bucket_free(&b);
}

/* ---- scanning ---- */

static void test_scan(void)
{
    char sub[600];
    snprintf(sub, sizeof sub, "%s/img", dir);
    mkdir(sub, 0755);
    put_png("img/a.png", 64, 64);          /* caption a.txt */
    put_png("img/b.PNG", 128, 64);         /* no caption: class_tokens */
    put_png("img/c_1_2_3_4.png", 64, 128); /* kohya's face-crop name: caption c.txt */
    put_png("img/.hidden.png", 64, 64);    /* skipped, as glob skips it */
    put("img/a.txt", "  a cat, sitting \nsecond line ignored\n");
    put("img/c.txt", "tall");
    put("img/notes.md", "not an image");
    mkdir(at("img/folder.png"), 0755);      /* a folder named like an image */
    snprintf(sub, sizeof sub, "%s/reg", dir);
    mkdir(sub, 0755);
    put_png("reg/r.png", 64, 64);
    put("reg/r.txt", "person");

    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "[general]\ncaption_extension = 'txt'\nresolution = 64\nbatch_size = 2\n"
             "[[datasets]]\nenable_bucket = true\nmin_bucket_reso = 32\nmax_bucket_reso = 128\nbucket_reso_steps = 32\n"
             "  [[datasets.subsets]]\n  image_dir = '%s/img'\n  num_repeats = 3\n  class_tokens = 'dog'\n"
             "  caption_prefix = 'pre'\n"
             "  [[datasets.subsets]]\n  image_dir = '%s/reg'\n  is_reg = true\n  num_repeats = 2\n",
             dir, dir);
    cs_ds_config c;
    int rc = cs_ds_config_parse(cfg, strlen(cfg), "s.toml", NULL, NULL, &c);
    CHECK(rc == 0, "scan config: %s", cs_last_error());
    if (rc) return;
    cs_dataset *ds = NULL;
    warned[0] = 0, n_warned = 0;
    rc = cs_ds_scan(&c, warn, NULL, &ds);
    CHECK(rc == 0, "scan: %s", cs_last_error());
    if (!rc) {
        CHECK(ds->n_images == 4, "%zu images", ds->n_images);
        const cs_ds_image *im = ds->images;
        CHECK(strstr(im[0].path, "/a.png") && !strcmp(im[0].caption, "pre a cat, sitting"), "a: %s '%s'", im[0].path,
              im[0].caption);
        CHECK(strstr(im[1].path, "/b.PNG") && !strcmp(im[1].caption, "pre dog"), "b: '%s'", im[1].caption);
        CHECK(strstr(im[2].path, "/c_1_2_3_4.png") && !strcmp(im[2].caption, "pre tall"), "c: '%s'", im[2].caption);
        CHECK(im[3].is_reg && !strcmp(im[3].caption, "person"), "reg image");
        CHECK(im[1].width == 128 && im[1].height == 64 && im[1].xxh64 != im[0].xxh64, "sizes and hashes");
        /* kohya's buckets for 64x64, 32..128 step 32: 32x96 32x128 64x64 96x32 128x32. b (aspect 2) is as
         * far from 64x64 as from 96x32: the first wins; c (0.5) is nearest to 32x96 (0.333) */
        CHECK(im[0].bucket_w == 64 && im[0].bucket_h == 64, "a bucket %dx%d", im[0].bucket_w, im[0].bucket_h);
        CHECK(im[1].bucket_w == 64 && im[1].bucket_h == 64 && im[1].resized_w == 128 && im[1].resized_h == 64,
              "b bucket %dx%d resized %dx%d", im[1].bucket_w, im[1].bucket_h, im[1].resized_w, im[1].resized_h);
        CHECK(im[2].bucket_w == 32 && im[2].bucket_h == 96 && im[2].resized_w == 48 && im[2].resized_h == 96,
              "c bucket %dx%d resized %dx%d", im[2].bucket_w, im[2].bucket_h, im[2].resized_w, im[2].resized_h);
        /* 9 training images with repeats; the reg image grows from 2 to 9 */
        CHECK(im[3].num_repeats == 9, "reg repeats %d", im[3].num_repeats);
        CHECK(ds->n_buckets == 2, "%zu buckets", ds->n_buckets);
        size_t total = 0;
        for (size_t i = 0; i < ds->n_batches; i++) total += ds->batches[i].n;
        CHECK(total == 18, "%zu images in batches", total);
        /* sorted by (w, h): 32x96 (c x3), 64x64 (a x3, b x3, r x9) */
        if (ds->n_buckets == 2) {
            CHECK(ds->buckets[0].w == 32 && ds->buckets[0].n == 3 && ds->buckets[1].n == 15, "bucket order and counts");
            CHECK(ds->buckets[1].idx[0] == 0 && ds->buckets[1].idx[2] == 0 && ds->buckets[1].idx[3] == 1 &&
                      ds->buckets[1].idx[6] == 3, "image order in a bucket");
        }
        CHECK(ds->n_batches == 2 + 8, "%zu batches", ds->n_batches);
        CHECK(ds->batches[1].bucket == 0 && ds->batches[1].first == 2 && ds->batches[1].n == 1, "short last batch");
        /* the shuffle permutes, keeps every image, and depends on the epoch */
        cs_ds_shuffle(ds, 1, 0);
        size_t sum = 0, same = 0;
        for (size_t i = 0; i < ds->buckets[1].n; i++) sum += ds->buckets[1].idx[i];
        CHECK(sum == 3 * 1 + 9 * 3, "shuffle kept the images");
        cs_ds_batch first[10];
        memcpy(first, ds->batches, sizeof first);
        cs_ds_shuffle(ds, 1, 1);
        for (size_t i = 0; i < 10; i++) same += first[i].bucket == ds->batches[i].bucket && first[i].first == ds->batches[i].first;
        CHECK(same < 10, "another epoch, another order");
        CHECK(n_warned == 0, "warnings: %s", warned);
        cs_ds_free(ds);
    }
    cs_ds_config_free(&c);

    /* a plain folder: .txt captions, no resolution yet */
    rc = cs_ds_config_folder(at("img"), &c);
    CHECK(rc == 0, "folder config");
    rc = cs_ds_scan(&c, warn, NULL, &ds);
    CHECK(rc == CS_EARG && !strcmp(cs_last_error(), "dataset 1: resolution is required"), "no resolution: %s",
          cs_last_error());
    c.datasets[0].width = c.datasets[0].height = 64;
    warned[0] = 0, n_warned = 0;
    rc = cs_ds_scan(&c, warn, NULL, &ds);
    CHECK(rc == 0 && ds->n_images == 3 && ds->n_buckets == 1 && ds->images[1].bucket_w == 64 &&
              ds->images[1].resized_w == 128 && !strcmp(ds->images[1].caption, ""),
          "folder scan: %s", cs_last_error());
    CHECK(n_warned == 1 && strstr(warned, "b.PNG: no caption file (.txt) and no class_tokens: an empty caption"),
          "missing caption warning: %s", warned);
    cs_ds_free(ds);
    cs_ds_config_free(&c);

    /* refusals */
    struct {
        const char *setup, *name, *msg;
    } bad[] = {
        {"nodir", NULL, "image_dir '%s/nodir': No such file or directory"},
        {"web", "x.webp", "%s/web/x.webp: WebP and BMP images are not supported (PNG and JPEG are); convert it or move "
                          "it out of image_dir"},
        {"empty", "e.png", "%s/empty/e.txt: the caption file is empty"},
        {"broken", "k.png", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char d[600], want[1200], name[700];
        snprintf(d, sizeof d, "%s/%s", dir, bad[i].setup);
        if (i) mkdir(d, 0755);
        if (i == 1) snprintf(name, sizeof name, "%s/%s", bad[i].setup, bad[i].name), put(name, "RIFF");
        if (i == 2) {
            snprintf(name, sizeof name, "%s/e.png", bad[i].setup);
            put_png(name, 32, 32);
            snprintf(name, sizeof name, "%s/e.txt", bad[i].setup);
            put(name, "");
        }
        if (i == 3) snprintf(name, sizeof name, "%s/k.png", bad[i].setup), put(name, "\x89PNG\r\n\x1a\nbroken");
        rc = cs_ds_config_folder(d, &c);
        c.datasets[0].width = c.datasets[0].height = 64;
        cs_clear_error();
        rc = cs_ds_scan(&c, NULL, NULL, &ds);
        CHECK(rc < 0 && !ds, "bad scan %zu: rc %d", i, rc);
        if (bad[i].msg) {
            snprintf(want, sizeof want, bad[i].msg, dir);
            CHECK(!strcmp(cs_last_error(), want), "bad scan %zu:\n  got  %s\n  want %s", i, cs_last_error(), want);
        } else {
            CHECK(strstr(cs_last_error(), "k.png") != NULL, "bad scan %zu names the file: %s", i, cs_last_error());
        }
        cs_ds_config_free(&c);
    }
}

/* ---- the EffNet input: crop, flip, normalisation ---- */

static void test_effnet_input(void)
{
    put_png("img/wide.png", 96, 64);
    cs_ds_image im = {0};
    im.path = (char *)at("img/wide.png");
    im.width = 96, im.height = 64, im.bucket_w = 64, im.bucket_h = 64, im.resized_w = 96, im.resized_h = 64;
    float x[64 * 64 * 3], y[64 * 64 * 3];
    int rc = cs_ds_effnet_input(&im, 0, x);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), "changed since the data set was scanned"), "hash check: %s",
          cs_last_error());
    cs_image img;
    cs_image_read(im.path, &img);
    im.xxh64 = img.xxh64;
    cs_image_free(&img);
    rc = cs_ds_effnet_input(&im, 0, x) || cs_ds_effnet_input(&im, 1, y);
    CHECK(rc == 0, "effnet input: %s", cs_last_error());
    /* centre crop from x = 16; pixel (c, r) holds (c, r, c + r) */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    double worst = 0;
    for (int r = 0; r < 64; r += 7)
        for (int c = 0; c < 64; c += 5)
            for (int k = 0; k < 3; k++) {
                int sx = 16 + c, v[3] = {sx, r, (sx + r) & 255};
                int fx = 16 + 63 - c, fv[3] = {fx, r, (fx + r) & 255};
                double e = fabs(x[(r * 64 + c) * 3 + k] - (v[k] / 255.0 - mean[k]) / sd[k]);
                double ef = fabs(y[(r * 64 + c) * 3 + k] - (fv[k] / 255.0 - mean[k]) / sd[k]);
                worst = fmax(worst, fmax(e, ef));
            }
    CHECK(worst < 1e-5, "crop / flip / normalisation off by %g", worst);
}

/* ---- the cache ---- */

static int n_computed;
static int compute(void *ctx, cs_dscache_tensor *t, int n)
{
    n_computed++;
    float base = *(float *)ctx;
    for (int i = 0; i < n; i++) {
        size_t m = 1;
        for (int d = 0; d < t[i].ndim; d++) m *= (size_t)t[i].shape[d];
        for (size_t k = 0; k < m; k++) t[i].data[k] = base + (float)(i * 1000 + (int)k);
    }
    return 0;
}

static int fail_compute(void *ctx, cs_dscache_tensor *t, int n)
{
    return cs_error(CS_EIO, "encoder failed");
}

static int count_tmp(const char *d)
{
    DIR *dd = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dd && (e = readdir(dd)))
        if (strstr(e->d_name, ".tmp")) n++;
    if (dd) closedir(dd);
    return n;
}

static void test_cache(void)
{
    char cdir[600], path[1024], desc[256], desc2[256];
    snprintf(cdir, sizeof cdir, "%s/cache", dir);
    cs_ds_image im = {0};
    im.xxh64 = 0x1234, im.bucket_w = 64, im.bucket_h = 32, im.resized_w = 70, im.resized_h = 32;
    cs_dscache_latent_desc(&im, 0xabcdef, 0, desc, sizeof desc);
    CHECK(!strcmp(desc, "latent v1 image=0000000000001234 model=0000000000abcdef bucket=64x32 resized=70x32 flip=0"),
          "latent key: %s", desc);
    cs_dscache_text_desc("a cat", 0xabcdef, "official", desc2, sizeof desc2);
    CHECK(!strncmp(desc2, "text v1 caption=", 16) && strstr(desc2, ":5 model=0000000000abcdef style=official"),
          "text key: %s", desc2);
    float a[6], b[3], base = 0.5f;
    cs_dscache_tensor t[2] = {{"latent", 2, {2, 3}, a}, {"pooled", 1, {3}, b}};
    int st = -1;
    n_computed = 0;
    int rc = cs_dscache_get(cdir, "latent", desc, t, 2, compute, &base, &st);
    CHECK(rc == 0 && st == CS_DSCACHE_MISS && n_computed == 1 && a[5] == 5.5f && b[2] == 1002.5f, "miss: %s",
          cs_last_error());
    memset(a, 0, sizeof a), memset(b, 0, sizeof b);
    rc = cs_dscache_get(cdir, "latent", desc, t, 2, compute, &base, &st);
    CHECK(rc == 0 && st == CS_DSCACHE_HIT && n_computed == 1 && a[5] == 5.5f && b[2] == 1002.5f, "hit");
    CHECK(count_tmp(cdir) == 0, "no temporary files left");
    cs_dscache_path(cdir, "latent", desc, path, sizeof path);

    /* another key: a miss of its own */
    cs_dscache_latent_desc(&im, 0xabcdef, 1, desc2, sizeof desc2);
    rc = cs_dscache_get(cdir, "latent", desc2, t, 2, compute, &base, &st);
    CHECK(rc == 0 && st == CS_DSCACHE_MISS && n_computed == 2, "flip is another key");

    /* corruptions: each is detected and recomputed */
    struct stat sb;
    stat(path, &sb);
    for (int k = 0; k < 5; k++) {
        FILE *f = fopen(path, "r+b");
        if (k == 0) ftruncate(fileno(f), sb.st_size - 4);            /* short */
        if (k == 1) fseek(f, sb.st_size - 1, SEEK_SET), fputc(0x7f, f); /* a data byte */
        if (k == 2) ftruncate(fileno(f), 0);                          /* empty */
        if (k == 3) fseek(f, 12, SEEK_SET), fputc('#', f);            /* the header */
        fclose(f);
        if (k == 4) {   /* a valid file of another key under this name */
            char other[1024];
            cs_dscache_path(cdir, "latent", desc2, other, sizeof other);
            rename(other, path);
        }
        int before = n_computed;
        memset(a, 0, sizeof a);
        rc = cs_dscache_get(cdir, "latent", desc, t, 2, compute, &base, &st);
        CHECK(rc == 0 && st == CS_DSCACHE_BAD && n_computed == before + 1 && a[5] == 5.5f,
              "corruption %d: rc %d status %d", k, rc, st);
        rc = cs_dscache_get(cdir, "latent", desc, t, 2, compute, &base, &st);
        CHECK(rc == 0 && st == CS_DSCACHE_HIT, "corruption %d: rewritten", k);
        stat(path, &sb);
    }
    /* other shapes for the same key are not trusted */
    cs_dscache_tensor t3[2] = {{"latent", 2, {3, 2}, a}, {"pooled", 1, {3}, b}};
    rc = cs_dscache_get(cdir, "latent", desc, t3, 2, compute, &base, &st);
    CHECK(rc == 0 && st == CS_DSCACHE_BAD, "other shape: status %d", st);
    /* a failing encoder: its error, nothing written */
    cs_dscache_text_desc("never", 1, "official", desc2, sizeof desc2);
    rc = cs_dscache_get(cdir, "text", desc2, t, 2, fail_compute, NULL, &st);
    cs_dscache_path(cdir, "text", desc2, path, sizeof path);
    CHECK(rc == CS_EIO && !strcmp(cs_last_error(), "encoder failed") && access(path, F_OK) != 0, "failed compute");
    CHECK(count_tmp(cdir) == 0, "no temporary files left");
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char ref[1024];
    snprintf(ref, sizeof ref, "%s/tests/data/dataset/buckets.txt", top ? top : ".");
    snprintf(dir, sizeof dir, "/tmp/cs_dataset_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("ERROR: mkdtemp\n");
        return 99;
    }
    test_toml_valid();
    test_toml_errors();
    test_config();
    test_buckets(ref);
    test_scan();
    test_effnet_input();
    test_cache();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("warning: could not remove %s\n", dir);
    return check_exit();
}
