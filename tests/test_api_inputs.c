/* The public API's generation inputs against the internal pipeline
 * (pipeline.h) on the demo networks: a KSampler per stage (with Stage B's
 * seed, its zeroed negative and denoise), LoRAs per part, image variation
 * and img2img from RGB buffers give the same bytes through cascade.h as
 * through cs_pipeline_generate with the same settings; the latent
 * callback's Stage C latent is the pipeline's in ComfyUI's NCHW form; the
 * memory chooser counts the LoRAs' float32 copies; bad
 * names, parts and values are CASCADE_E_ARG with a message; the file
 * helpers (PNG with text chunks, numbered names, .latent round trip, file
 * hashes) work. */
#include "check.h"
#include "cascade.h"
#include "fake_st.h"

#include "error.h"
#include "image_in.h"
#include "image_prep.h"
#include "init_image.h"
#include "lora.h"
#include "models.h"
#include "pipeline.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static cascade_ctx *demo_ctx(void)
{
    cascade_ctx *c = cascade_ctx_new();
    if (!c || cascade_use_demo(c) || cascade_set_int(c, CASCADE_P_SEED, 3) || cascade_set_int(c, CASCADE_P_WIDTH, 64) ||
        cascade_set_int(c, CASCADE_P_HEIGHT, 64) || cascade_set_int(c, CASCADE_P_STEPS_C, 3) ||
        cascade_set_int(c, CASCADE_P_STEPS_B, 2) || cascade_set_int(c, CASCADE_P_THREADS, 1) ||
        cascade_set_string(c, CASCADE_P_DEVICE, "cpu")) {
        fprintf(stderr, "demo context: %s\n", cascade_errmsg(c));
        exit(99);
    }
    return c;
}

static void base_params(cs_gen_params *g)
{
    cs_gen_defaults(g);
    g->prompt = "a cat";
    g->negative = "blurry";
    g->seed = 3;
    g->width = g->height = 64;
    g->c.steps = 3;
    g->b.steps = 2;
    g->c.eta = g->b.eta = 0.0f;
}

/* Stage C's latent as the pipeline hands it over (channels last) */
static float *c_latent;
static size_t c_latent_n;
static int keep_c(void *u, cs_latent_id which, const float *x, int n, int h, int w, int c)
{
    (void)u;
    if (which == CS_LATENT_C) {
        c_latent_n = (size_t)n * h * w * c;
        free(c_latent);   /* the last run's */
        c_latent = malloc(c_latent_n * sizeof *c_latent);
        memcpy(c_latent, x, c_latent_n * sizeof *c_latent);
    }
    return 0;
}

/* the internal pipeline on ctx's model files: rgb malloc'd */
static uint8_t *internal(cascade_ctx *ctx, const cs_gen_params *g, cs_lora_list *lc, cs_lora_list *lt)
{
    cs_model_paths mp = {0};
    mp.text_encoder = cascade_get_model(ctx, CASCADE_PART_TEXT_ENCODER);
    mp.stage_c = cascade_get_model(ctx, CASCADE_PART_STAGE_C);
    mp.stage_b = cascade_get_model(ctx, CASCADE_PART_STAGE_B);
    mp.stage_a = cascade_get_model(ctx, CASCADE_PART_STAGE_A);
    mp.clip_vision = cascade_get_model(ctx, CASCADE_PART_CLIP_VISION);
    mp.effnet = cascade_get_model(ctx, CASCADE_PART_EFFNET);
    mp.lora_c = lc;
    mp.lora_text = lt;
    cs_pipeline *pl = NULL;
    uint8_t *rgb = NULL;
    cs_pipeline_hooks hk = {0};
    hk.latent = keep_c;
    int rc = cs_pipeline_new(&mp, 0, &pl);
    if (!rc) rc = cs_pipeline_check(pl);
    if (!rc) rc = cs_pipeline_generate(pl, g, &hk, &rgb);
    CHECK(rc == 0, "internal pipeline: %d", rc);
    cs_pipeline_free(pl);
    return rgb;
}

static int same(cascade_images *im, const uint8_t *rgb, int w, int h)
{
    const cascade_image *img = cascade_images_get(im, 0);
    return img && rgb && cascade_image_width(img) == w && cascade_image_height(img) == h &&
           !memcmp(cascade_image_data(img), rgb, (size_t)w * h * 3);
}

static float *api_latent;
static int api_latent_n, api_latent_c, api_latent_h, api_latent_w, n_latents;
static int keep_api(void *u, int which, const float *x, int n, int c, int h, int w)
{
    (void)u;
    n_latents++;
    if (which == CASCADE_LATENT_C) {
        free(api_latent);   /* the last run's */
        api_latent = malloc((size_t)n * c * h * w * sizeof *x);
        memcpy(api_latent, x, (size_t)n * c * h * w * sizeof *x);
        api_latent_n = n, api_latent_c = c, api_latent_h = h, api_latent_w = w;
    }
    return 0;
}

static void test_ksampler(void)
{
    cascade_ctx *ctx = demo_ctx();
    CHECK(cascade_set_string(ctx, CASCADE_P_KSAMPLER_C, "euler_ancestral") == 0 &&
          cascade_set_string(ctx, CASCADE_P_KSAMPLER_B, "dpmpp_2m") == 0 &&
          cascade_set_string(ctx, CASCADE_P_SCHEDULER_C, "karras") == 0 &&
          cascade_set_float(ctx, CASCADE_P_DENOISE_C, 0.75) == 0 && cascade_set_int(ctx, CASCADE_P_SEED_B, 11) == 0 &&
          cascade_set_int(ctx, CASCADE_P_ZERO_NEGATIVE_B, 1) == 0, "ksampler keys: %s", cascade_errmsg(ctx));
    cascade_set_latent(ctx, keep_api, NULL);
    cascade_images *im = NULL;
    int rc = cascade_generate(ctx, "a cat", "blurry", &im);
    CHECK(rc == 0, "generate with KSamplers: %s", cascade_errmsg(ctx));
    CHECK(n_latents == 2, "latent callback: %d calls, want Stage C and Stage B", n_latents);
    cs_gen_params g;
    base_params(&g);
    g.c.ks_sampler = 2, g.b.ks_sampler = 3;   /* euler_ancestral, dpmpp_2m */
    g.c.ks_scheduler = 2, g.b.ks_scheduler = 0;   /* karras, simple */
    g.c.denoise = 0.75;
    g.seed_b = 11, g.seed_b_set = 1, g.b_uncond_zero = 1;
    uint8_t *rgb = internal(ctx, &g, NULL, NULL);
    CHECK(same(im, rgb, 64, 64), "KSamplers: the API's image differs from the pipeline's");
    /* the callback's latent: the pipeline's [n, h, w, c] as [n, c, h, w] */
    int ok = api_latent && c_latent && c_latent_n == (size_t)api_latent_n * api_latent_c * api_latent_h * api_latent_w;
    size_t hw = (size_t)api_latent_h * api_latent_w;
    for (size_t p = 0; ok && p < hw; p++)
        for (int ch = 0; ch < api_latent_c; ch++)
            ok &= api_latent[ch * hw + p] == c_latent[p * api_latent_c + ch];
    CHECK(ok, "the latent callback's Stage C latent is not the pipeline's in NCHW");
    free(api_latent), free(c_latent), free(rgb);
    api_latent = c_latent = NULL;
    cascade_images_free(im);
    /* the same without seed_b / zeroed negative differs */
    cascade_set_latent(ctx, NULL, NULL);
    cascade_set_int(ctx, CASCADE_P_SEED_B, -1);
    cascade_set_int(ctx, CASCADE_P_ZERO_NEGATIVE_B, 0);
    rc = cascade_generate(ctx, "a cat", "blurry", &im);
    g.seed_b_set = 0, g.seed_b = 0, g.b_uncond_zero = 0;
    rgb = internal(ctx, &g, NULL, NULL);
    CHECK(rc == 0 && same(im, rgb, 64, 64), "KSamplers without seed_b: the API's image differs");
    free(rgb), free(c_latent);
    c_latent = NULL;
    cascade_images_free(im);
    /* bad values: the name, one stage only, seed_b without KSamplers */
    CHECK(cascade_set_string(ctx, CASCADE_P_KSAMPLER_C, "heun") == CASCADE_E_ARG &&
          strstr(cascade_errmsg(ctx), "ksampler_c: 'heun' is not one of euler"), "ksampler heun: %s",
          cascade_errmsg(ctx));
    CHECK(cascade_set_string(ctx, CASCADE_P_SCHEDULER_B, "beta") == CASCADE_E_ARG, "scheduler beta accepted");
    CHECK(cascade_set_float(ctx, CASCADE_P_DENOISE_C, 0) == CASCADE_E_ARG, "denoise 0 accepted");
    cascade_set_string(ctx, CASCADE_P_KSAMPLER_B, NULL);
    CHECK(cascade_generate(ctx, "a cat", NULL, &im) == CASCADE_E_ARG && strstr(cascade_errmsg(ctx), "both stages"),
          "a KSampler on Stage C only: %s", cascade_errmsg(ctx));
    cascade_set_string(ctx, CASCADE_P_KSAMPLER_C, NULL);
    cascade_set_int(ctx, CASCADE_P_SEED_B, 5);
    CHECK(cascade_generate(ctx, "a cat", NULL, &im) == CASCADE_E_ARG && strstr(cascade_errmsg(ctx), "seed_b"),
          "seed_b without KSamplers: %s", cascade_errmsg(ctx));
    const char *n0 = cascade_param_choice(CASCADE_P_KSAMPLER_C, 0), *n5 = cascade_param_choice(CASCADE_P_KSAMPLER_C, 5);
    CHECK(n0 && !strcmp(n0, "euler") && n5 && !strcmp(n5, "ddpm") && !cascade_param_choice(CASCADE_P_KSAMPLER_C, 6),
          "ksampler choices");
    CHECK(!strcmp(cascade_param_choice(CASCADE_P_SCHEDULER_C, 2), "karras") &&
          !cascade_param_choice(CASCADE_P_TOKENIZER, 0) && !cascade_param_choice(CASCADE_P_WIDTH, 0), "choices");
    cascade_ctx_free(ctx);
}

static void test_lora(const char *data)   /* at most 2999 bytes */
{
    char peft[4096], stack[4096];
    snprintf(peft, sizeof peft, "%s/lora/peft.safetensors", data);
    snprintf(stack, sizeof stack, "%s/lora/stack_b.safetensors", data);
    cascade_ctx *ctx = demo_ctx();
    CHECK(cascade_add_lora(ctx, CASCADE_PART_STAGE_C, peft, 0.8) == 0 &&
          cascade_add_lora(ctx, CASCADE_PART_STAGE_C, stack, -0.5) == 0, "add_lora: %s", cascade_errmsg(ctx));
    cascade_images *im = NULL;
    CHECK(cascade_generate(ctx, "a cat", "blurry", &im) == 0, "generate with LoRAs: %s", cascade_errmsg(ctx));
    cs_lora v[2] = {{peft, 0.8f, 0}, {stack, -0.5f, 0}};
    cs_lora_list lc = {2, v, 0, NULL, NULL, 0};
    cs_gen_params g;
    base_params(&g);
    uint8_t *rgb = internal(ctx, &g, &lc, NULL);
    CHECK(same(im, rgb, 64, 64), "LoRAs: the API's image differs from the pipeline's");
    uint8_t *plain = internal(ctx, &g, NULL, NULL);
    CHECK(!same(im, plain, 64, 64), "the LoRAs changed nothing");
    free(rgb), free(plain), free(c_latent);
    c_latent = NULL;
    cascade_images_free(im);
    CHECK(cascade_add_lora(ctx, CASCADE_PART_STAGE_A, peft, 1) == CASCADE_E_ARG &&
          strstr(cascade_errmsg(ctx), "takes no LoRA"), "LoRA on Stage A: %s", cascade_errmsg(ctx));
    CHECK(cascade_add_lora(ctx, CASCADE_PART_STAGE_B, peft, 1.0 / 0.0) == CASCADE_E_ARG, "LoRA strength inf accepted");
    /* a LoRA whose keys match nothing fails the generation, unless lenient */
    char un[4096];
    snprintf(un, sizeof un, "%s/lora/unmatched.safetensors", data);
    cascade_clear_loras(ctx);
    cascade_add_lora(ctx, CASCADE_PART_STAGE_C, un, 1);
    CHECK(cascade_generate(ctx, "a cat", NULL, &im) < 0 && strstr(cascade_errmsg(ctx), "match no"),
          "unmatched LoRA: %s", cascade_errmsg(ctx));
    cascade_images_free(im);
    cascade_set_int(ctx, CASCADE_P_LORA_LENIENT, 1);
    CHECK(cascade_generate(ctx, "a cat", NULL, &im) == 0, "lenient unmatched LoRA: %s", cascade_errmsg(ctx));
    cascade_images_free(im);
    cascade_ctx_free(ctx);
}

/* the memory chooser counts the LoRAs' float32 copies (the CLI's variant
 * choice did; through cascade.h it must too) */
static void test_lora_memory(const char *data, const char *tmp)   /* data: at most 2999 bytes */
{
    char peft[4096], dir[4096], f[4200];
    snprintf(peft, sizeof peft, "%s/lora/peft.safetensors", data);
    snprintf(dir, sizeof dir, "%s/models", tmp);
    /* released layouts with no data (sparse files): a set the chooser takes */
    static const struct { cs_net net; const char *name; } files[] = {
        {CS_NET_STAGE_C_LITE, "stage_c_lite_bf16"}, {CS_NET_STAGE_B_LITE, "stage_b_lite_bf16"},
        {CS_NET_STAGE_A, "stage_a"}, {CS_NET_TEXT_G, "text_encoder"}};
    int rc = mkdir(dir, 0777);
    for (int i = 0; !rc && i < 4; i++) {
        snprintf(f, sizeof f, "%s/%s.safetensors", dir, files[i].name);
        rc = ft_write_net(f, files[i].net, files[i].net == CS_NET_STAGE_A ? CS_F32 : CS_BF16, FT_OFFICIAL);
    }
    CHECK(rc == 0, "fake model files in %s", dir);
    cascade_ctx *c2 = cascade_ctx_new();
    cascade_models *m = NULL;
    cascade_choice *a = NULL, *b = NULL;
    if (!rc) rc = cascade_set_string(c2, CASCADE_P_MODELS_DIR, dir);
    if (!rc) rc = cascade_models_scan(c2, &m);
    if (!rc) rc = cascade_models_choose(c2, m, 256, 256, 1, &a);
    if (!rc) rc = cascade_add_lora(c2, CASCADE_PART_STAGE_C, peft, 1);
    if (!rc) rc = cascade_models_choose(c2, m, 256, 256, 1, &b);
    CHECK(rc == 0, "choose: %s", cascade_errmsg(c2));
    cs_lora v = {peft, 1.0f, 0};
    cs_lora_list l = {1, &v, 0, NULL, NULL, 0};
    uint64_t extra = 0;
    CHECK(cs_lora_extra_bytes(&l, &extra) == 0 && extra > 0, "the LoRA's extra bytes");
    long long na = cascade_choice_int(a, CASCADE_PART_STAGE_C, CASCADE_CH_NEED);
    long long nb = cascade_choice_int(b, CASCADE_PART_STAGE_C, CASCADE_CH_NEED);
    long long ba = cascade_choice_int(a, CASCADE_PART_STAGE_B, CASCADE_CH_NEED);
    long long bb = cascade_choice_int(b, CASCADE_PART_STAGE_B, CASCADE_CH_NEED);
    CHECK(na > 0 && nb == na + (long long)extra && ba == bb, "Stage C need %lld -> %lld with a LoRA of %llu bytes "
          "(Stage B %lld -> %lld)", na, nb, (unsigned long long)extra, ba, bb);
    cascade_choice_free(a);
    cascade_choice_free(b);
    cascade_models_free(m);
    cascade_ctx_free(c2);
}

/* the calls the CLI's workflow planner uses in place of the engine's own:
 * a part check with the scan's message, a checked file read, an image's
 * size, the input limits as constants */
static void test_helpers(const char *data, const char *tmp)   /* after test_lora_memory: tmp/models */
{
    char a[4200], b[4200], f[4200], want[1024];
    snprintf(a, sizeof a, "%s/models/stage_a.safetensors", tmp);
    snprintf(b, sizeof b, "%s/models/stage_b_lite_bf16.safetensors", tmp);
    cascade_ctx *ctx = cascade_ctx_new();
    CHECK(cascade_model_check(ctx, CASCADE_PART_STAGE_A, a) == 0, "stage_a as Stage A: %s", cascade_errmsg(ctx));
    CHECK(cascade_model_check(ctx, CASCADE_PART_STAGE_B, b) == 0, "stage_b as Stage B: %s", cascade_errmsg(ctx));
    /* the message a scan gives for a file set for the wrong part */
    cs_model_set *set = NULL;
    int rc = cs_models_scan_roots(NULL, NULL, 0, &set);
    CHECK(rc == 0 && cs_models_force(set, CS_PART_STAGE_A, b) == CS_EMODEL, "the scan took Stage B as Stage A");
    snprintf(want, sizeof want, "%s", cs_last_error());
    cs_models_free(set);
    CHECK(cascade_model_check(ctx, CASCADE_PART_STAGE_A, b) == CASCADE_E_MODEL && !strcmp(cascade_errmsg(ctx), want),
          "Stage B as Stage A: '%s', the scan says '%s'", cascade_errmsg(ctx), want);
    snprintf(f, sizeof f, "%s/models/nope.safetensors", tmp);
    CHECK(cascade_model_check(ctx, CASCADE_PART_STAGE_A, f) < 0 && strstr(cascade_errmsg(ctx), f), "a missing model: %s",
          cascade_errmsg(ctx));
    snprintf(f, sizeof f, "%s/lora/peft.safetensors", data);
    CHECK(cascade_model_check(ctx, CASCADE_PART_STAGE_C, f) == CASCADE_E_MODEL, "a LoRA taken as Stage C");
    CHECK(cascade_model_check(ctx, CASCADE_PART_COUNT, a) == CASCADE_E_ARG, "part COUNT accepted");
    /* file read: the bytes, the size cap, no FIFO */
    snprintf(f, sizeof f, "%s/read.json", tmp);
    FILE *o = fopen(f, "wb");
    if (o) fputs("{\"a\": 1}", o), fclose(o);
    char *buf = NULL;
    size_t len = 0;
    CHECK(cascade_file_read(NULL, f, "workflow", 64, &buf, &len) == 0 && buf && len == 8 && !strcmp(buf, "{\"a\": 1}"),
          "file read: %s", cascade_last_error());
    cascade_free(buf);
    CHECK(cascade_file_read(ctx, f, "workflow", 7, &buf, NULL) == CASCADE_E_FORMAT && !buf &&
          strstr(cascade_errmsg(ctx), "8 bytes, more than the 7 bytes a workflow may have"), "size cap: %s",
          cascade_errmsg(ctx));
    snprintf(f, sizeof f, "%s/fifo", tmp);
    CHECK(mkfifo(f, 0600) == 0 && cascade_file_read(ctx, f, "workflow", 64, &buf, NULL) == CASCADE_E_IO &&
          strstr(cascade_errmsg(ctx), "not a regular file (a FIFO)"), "a FIFO: %s", cascade_errmsg(ctx));
    /* image size: as the image reader sees it, with its message */
    unsigned char px[5 * 3 * 3] = {0};
    snprintf(f, sizeof f, "%s/size", tmp);
    char got[4200];
    int w = 0, h = 0;
    CHECK(cascade_png_write(ctx, px, 5, 3, 15, NULL, 0, f, CASCADE_PNG_NUMBERED, got, sizeof got) == 0 &&
          cascade_image_size(ctx, got, &w, &h) == 0 && w == 5 && h == 3, "image size %dx%d: %s", w, h, cascade_errmsg(ctx));
    cs_image im;
    CHECK(cs_image_read(a, &im) < 0, "a model read as an image");
    snprintf(want, sizeof want, "%s", cs_last_error());
    CHECK(cascade_image_size(ctx, a, &w, &h) < 0 && !strcmp(cascade_errmsg(ctx), want), "not an image: '%s' vs '%s'",
          cascade_errmsg(ctx), want);
    /* the limits: CASCADE_MAX_LORAS a part, CASCADE_MAX_IMAGES images */
    snprintf(f, sizeof f, "%s/lora/peft.safetensors", data);
    for (int i = 0; i < CASCADE_MAX_LORAS; i++)
        CHECK(cascade_add_lora(ctx, CASCADE_PART_STAGE_B, f, 0.5) == 0, "LoRA %d: %s", i + 1, cascade_errmsg(ctx));
    CHECK(cascade_add_lora(ctx, CASCADE_PART_STAGE_B, f, 0.5) == CASCADE_E_ARG, "LoRA %d accepted", CASCADE_MAX_LORAS + 1);
    for (int i = 0; i < CASCADE_MAX_IMAGES; i++)
        CHECK(cascade_add_image_rgb(ctx, px, 5, 3, 15, 1) == 0, "image %d: %s", i + 1, cascade_errmsg(ctx));
    CHECK(cascade_add_image_rgb(ctx, px, 5, 3, 15, 1) == CASCADE_E_ARG, "image %d accepted", CASCADE_MAX_IMAGES + 1);
    cascade_ctx_free(ctx);
}

static void test_images(void)
{
    unsigned char pic[40 * 48 * 3 + 16];
    for (size_t i = 0; i < sizeof pic; i++) pic[i] = (unsigned char)(i * 37 + (i / 97));
    cascade_ctx *ctx = demo_ctx();
    /* stride 48 * 3 + 2: rows apart, not packed */
    CHECK(cascade_add_image_rgb(ctx, pic, 40, 36, 48 * 3 + 2, 0.5) == 0, "add_image_rgb: %s", cascade_errmsg(ctx));
    CHECK(cascade_set_init_image_rgb(ctx, pic, 48, 40, 48 * 3) == 0, "init image rgb: %s", cascade_errmsg(ctx));
    cascade_set_float(ctx, CASCADE_P_STRENGTH, 0.7);
    cascade_images *im = NULL;
    CHECK(cascade_generate(ctx, "a cat", "blurry", &im) == 0, "generate with images: %s", cascade_errmsg(ctx));
    const char *ji = cascade_input_json(ctx, CASCADE_INPUT_IMAGES);
    CHECK(ji && !strcmp(ji, "[{\"file\":\"\",\"xxh64\":\"\",\"size\":\"40x36\",\"strength\":0.5}]"), "images json %s", ji);
    const char *jn = cascade_input_json(ctx, CASCADE_INPUT_INIT);
    CHECK(jn && strstr(jn, "\"size\":\"48x40\",\"strength\":0.7"), "init json %s", jn ? jn : "NULL");
    /* the same through the pipeline */
    float *px = cs_alloc((size_t)224 * 224 * 3 * sizeof(float)), *init = NULL, st = 0.5f;
    unsigned char packed[40 * 36 * 3];
    for (int r = 0; r < 36; r++) memcpy(packed + r * 120, pic + r * (48 * 3 + 2), 120);
    int rc = cs_clip_preprocess(packed, 36, 40, 224, px);
    if (!rc) rc = cs_init_image_prepare(pic, 48, 40, 64, 64, 0, &init);
    CHECK(rc == 0, "preprocessing: %d", rc);
    cs_gen_params g;
    base_params(&g);
    g.n_images = 1, g.image_size = 224, g.image_pixels = px, g.image_strength = &st;
    g.init_rgb = init, g.init_strength = 0.7;
    uint8_t *rgb = internal(ctx, &g, NULL, NULL);
    CHECK(same(im, rgb, 64, 64), "images: the API's image differs from the pipeline's");
    free(rgb), free(c_latent), cs_free(px), cs_free(init);
    c_latent = NULL;
    cascade_images_free(im);
    /* strength 1: text to image, the init image unused */
    cascade_set_float(ctx, CASCADE_P_STRENGTH, 1);
    CHECK(cascade_input_json(ctx, CASCADE_INPUT_INIT) == NULL, "strength 1 still records the init image");
    CHECK(cascade_add_image(ctx, "/nonexistent/x.png", 1) < 0 && strstr(cascade_errmsg(ctx), "/nonexistent/x.png"),
          "a missing image: %s", cascade_errmsg(ctx));
    CHECK(cascade_add_image_rgb(ctx, pic, 4, 4, 4 * 3, 11) == CASCADE_E_ARG && strstr(cascade_errmsg(ctx), "-10..10"),
          "image strength 11: %s", cascade_errmsg(ctx));
    CHECK(cascade_add_image_rgb(ctx, pic, 4, 4, 5, 1) == CASCADE_E_ARG, "stride 5 for width 4 accepted");
    CHECK(cascade_set_float(ctx, CASCADE_P_STRENGTH, 0) == CASCADE_E_ARG, "strength 0 accepted");
    cascade_clear_images(ctx);
    CHECK(cascade_input_json(ctx, CASCADE_INPUT_IMAGES) == NULL, "cleared images still recorded");
    cascade_ctx_free(ctx);
}

static int preview_fails(void *u, int step, int steps, const unsigned char *rgb, int n, int w, int h)
{
    (void)u, (void)step, (void)steps, (void)rgb, (void)n, (void)w, (void)h;
    return CASCADE_E_IO;
}

static int profile_lines;
static void count_line(void *u, const char *line) { (void)u, (void)line, profile_lines++; }

/* what a client that shows its plan before running needs (cascade generate):
 * cascade_check, cascade_models_use, a preview callback's own failure, the
 * device peak and the profile table */
static void test_run_calls(const char *dir)
{
    cascade_ctx *ctx = demo_ctx();
    CHECK(cascade_check(ctx) == 0, "check of the demo: %s", cascade_errmsg(ctx));
    cascade_images *im = NULL;
    cascade_set_preview(ctx, preview_fails, NULL);
    int rc = cascade_generate(ctx, "a cat", NULL, &im);
    CHECK(rc == CASCADE_E_IO && strstr(cascade_errmsg(ctx), "preview callback"),
          "a preview callback's CASCADE_E_IO: %d %s", rc, cascade_errmsg(ctx));
    cascade_set_preview(ctx, NULL, NULL);
    CHECK(cascade_generate(ctx, "a cat", NULL, &im) == 0, "generate: %s", cascade_errmsg(ctx));
    cascade_images_free(im);
    CHECK(cascade_info_int(CASCADE_INFO_DEVICE_PEAK) == -1, "device peak on the CPU: %lld",
          cascade_info_int(CASCADE_INFO_DEVICE_PEAK));
    cascade_profile_report(count_line, NULL);
    CHECK(profile_lines == 0, "a profile table of %d lines without $CASCADE_PROFILE on the CPU", profile_lines);
    /* test_lora_memory's folder of sparse files of the released layouts: scan, choose, use */
    char folder[4200];
    snprintf(folder, sizeof folder, "%s/models", dir);
    cascade_ctx *c2 = cascade_ctx_new();
    cascade_models *m = NULL;
    cascade_choice *ch = NULL;
    cascade_set_string(c2, CASCADE_P_MODELS_DIR, folder);
    rc = cascade_models_scan(c2, &m);
    if (!rc) rc = cascade_models_choose(c2, m, 64, 64, 1, &ch);
    CHECK(rc == 0, "scan and choose: %s", cascade_errmsg(c2));
    CHECK(cascade_get_model(c2, CASCADE_PART_STAGE_C) == NULL, "a choice is not taken before cascade_models_use");
    CHECK(cascade_models_use(c2, m, ch) == 0, "models_use: %s", cascade_errmsg(c2));
    const char *got = cascade_get_model(c2, CASCADE_PART_STAGE_C);
    const char *want = cascade_models_path(m, (int)cascade_choice_int(ch, CASCADE_PART_STAGE_C, CASCADE_CH_FILE));
    CHECK(got && want && !strcmp(got, want), "models_use took %s for Stage C, not %s", got ? got : "NULL",
          want ? want : "NULL");
    CHECK(cascade_models_use(c2, m, NULL) == CASCADE_E_ARG, "models_use without a choice");
    /* a Stage B where Stage C belongs fails the check, before any weight is loaded */
    cascade_set_model(ctx, CASCADE_PART_STAGE_C, cascade_get_model(ctx, CASCADE_PART_STAGE_B));
    CHECK(cascade_check(ctx) < 0, "check passed a Stage B as Stage C");
    cascade_choice_free(ch);
    cascade_models_free(m);
    cascade_ctx_free(c2);
    cascade_ctx_free(ctx);
}

static void test_files(const char *dir)
{
    cascade_ctx *ctx = cascade_ctx_new();
    unsigned char px[4 * 2 * 3] = {1, 2, 3, 4, 5, 6};
    const char *text[] = {"prompt", "{\"1\":{}}", "workflow", "{}"};
    char path[4096], got[4096], want[4096];
    snprintf(path, sizeof path, "%s/wf", dir);
    CHECK(cascade_png_write(ctx, px, 4, 2, 12, text, 2, path, CASCADE_PNG_NUMBERED | CASCADE_PNG_COMFY_NAMES, got,
                            sizeof got) == 0, "png numbered: %s", cascade_errmsg(ctx));
    snprintf(want, sizeof want, "%s/wf_00001_.png", dir);
    CHECK(!strcmp(got, want), "numbered name %s", got);
    CHECK(cascade_png_write(ctx, px, 4, 2, 12, text, 2, path, CASCADE_PNG_NUMBERED, got, sizeof got) == 0 &&
          strstr(got, "/wf_00001.png"), "cascade numbering: %s", got);
    FILE *f = fopen(want, "rb");
    char buf[4096] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    CHECK(memmem(buf, n, "workflow\0{}", 11) != NULL, "no workflow text chunk in %s", want);
    CHECK(cascade_png_write(ctx, px, 4, 2, 12, text, 2, want, 0, NULL, 0) < 0 && strstr(cascade_errmsg(ctx), "exists"),
          "an existing file replaced without CASCADE_PNG_FORCE: %s", cascade_errmsg(ctx));
    CHECK(cascade_png_write(ctx, px, 4, 2, 12, text, 2, want, CASCADE_PNG_FORCE, NULL, 0) == 0, "force: %s",
          cascade_errmsg(ctx));
    const char *bad[] = {"", "x"};
    CHECK(cascade_png_write(ctx, px, 4, 2, 12, bad, 1, path, CASCADE_PNG_NUMBERED, NULL, 0) == CASCADE_E_ARG &&
          strstr(cascade_errmsg(ctx), "no key"), "empty key: %s", cascade_errmsg(ctx));
    CHECK(cascade_png_write(ctx, px, 4, 2, 12, NULL, 0, path, CASCADE_PNG_COMFY_NAMES, NULL, 0) == CASCADE_E_ARG,
          "COMFY_NAMES without NUMBERED accepted");
    char longname[600];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK(cascade_check_output_name(ctx, longname) == CASCADE_E_ARG && strstr(cascade_errmsg(ctx), "too long"),
          "a 599-byte name: %s", cascade_errmsg(ctx));
    CHECK(cascade_check_output_name(ctx, want) == 0, "a short name refused");
    /* .latent round trip */
    float x[2 * 16 * 3 * 2];
    for (int i = 0; i < 192; i++) x[i] = (float)i * 0.25f - 3;
    snprintf(path, sizeof path, "%s/lat", dir);
    const char *meta[] = {"prompt", "{}"};
    CHECK(cascade_latent_write(ctx, x, 2, 16, 3, 2, meta, 1, path, got, sizeof got) == 0 && strstr(got, "lat_00001_.latent"),
          "latent write: %s", cascade_errmsg(ctx));
    float *y = NULL;
    int dn, dc, dh, dw;
    CHECK(cascade_latent_read(ctx, got, &y, &dn, &dc, &dh, &dw) == 0 && dn == 2 && dc == 16 && dh == 3 && dw == 2 &&
          !memcmp(x, y, sizeof x), "latent read back: %s", cascade_errmsg(ctx));
    cascade_free(y);
    /* latent sides: the pipeline's at every side (ImageScale nodes reach 16384); below 1 refused */
    int side_ok = 1;
    for (int px = 1; px <= 20000; px++)
        side_ok &= cascade_latent_side(px, CASCADE_LATENT_C) == cs_latent_c(px) &&
                   cascade_latent_side(px, CASCADE_LATENT_B) == cs_latent_b(px);
    CHECK(side_ok && cascade_latent_side(1024, CASCADE_LATENT_C) == 24 && cascade_latent_side(1024, CASCADE_LATENT_B) == 256,
          "cascade_latent_side differs from the pipeline's sizes");
    CHECK(cascade_latent_side(0, CASCADE_LATENT_C) == CASCADE_E_ARG && cascade_latent_side(-8, CASCADE_LATENT_B) == CASCADE_E_ARG &&
              cascade_latent_side(64, CASCADE_LATENT_ENCODED) == CASCADE_E_ARG,
          "cascade_latent_side took a side out of range or another latent");
    CHECK(cascade_latent_read(ctx, want, &y, &dn, &dc, &dh, &dw) < 0 && !y, "a PNG read as a latent");
    /* hashes: computed without the cache, then through it (remembered), then from it */
    unsigned long long h0 = 0, h1 = 0, h2 = 0;
    CHECK(cascade_file_hash(NULL, got, CASCADE_HASH_NO_CACHE, &h0) == 0, "hash: %s", cascade_last_error());
    CHECK(cascade_file_hash(ctx, got, CASCADE_HASH_CACHED_ONLY, &h1) == 0, "cache knew a new file");
    CHECK(cascade_file_hash(ctx, got, 0, &h1) == 0 && h1 == h0, "hash through the cache %llx vs %llx", h1, h0);
    CHECK(cascade_file_hash(ctx, got, 0, &h2) == 1 && h2 == h0, "hash from the cache");
    CHECK(cascade_file_hash(ctx, "/nonexistent", 0, &h2) < 0 && strstr(cascade_errmsg(ctx), "/nonexistent"),
          "missing file hash: %s", cascade_errmsg(ctx));
    cascade_ctx_free(ctx);
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char data[3000], dir[] = "/tmp/test_api_inputs.XXXXXX";
    snprintf(data, sizeof data, "%.2900s/tests/data", top ? top : ".");
    if (!mkdtemp(dir)) return 99;
    char cache[4200];
    snprintf(cache, sizeof cache, "XDG_CACHE_HOME=%s", dir);
    putenv(cache);
    test_ksampler();
    test_lora(data);
    test_lora_memory(data, dir);
    test_helpers(data, dir);
    test_images();
    test_files(dir);
    test_run_calls(dir);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return check_exit();
}
