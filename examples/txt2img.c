/* txt2img: the smallest complete libcascade program.
 *   txt2img [--demo] [-o FILE] PROMPT
 * Finds the model files (or, with --demo, uses tiny random networks), runs
 * Stable Cascade and writes a PNG. Build:
 *   cc txt2img.c $(pkg-config --cflags --libs cascade) -o txt2img */
#include <cascade.h>

#include <stdio.h>
#include <string.h>

static int progress(void *user, cascade_stage stage, int step, int steps, double elapsed)
{
    static const char *const name[] = {"text", "Stage C", "Stage B", "Stage A", "preview"};
    (void)user;
    if (step > 0) fprintf(stderr, "\r%-8s %d/%d  %.1f s", name[stage], step, steps, elapsed);
    if (step == steps) fputc('\n', stderr);
    return 0;   /* non-zero would cancel */
}

int main(int argc, char **argv)
{
    const char *out = "txt2img.png", *prompt = NULL;
    int demo = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--demo")) demo = 1;
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else prompt = argv[i];
    }
    if (!prompt) {
        fprintf(stderr, "usage: txt2img [--demo] [-o FILE] PROMPT\n");
        return 2;
    }
    cascade_ctx *ctx = cascade_ctx_new();
    if (!ctx) return 1;
    cascade_images *images = NULL;
    int rc = demo ? cascade_use_demo(ctx) : cascade_find_models(ctx);
    if (rc == 0) rc = cascade_set_int(ctx, CASCADE_P_SEED, 42);
    cascade_set_progress(ctx, progress, NULL);
    if (rc == 0) rc = cascade_generate(ctx, prompt, NULL, &images);
    if (rc == 0) rc = cascade_image_write_png(ctx, cascade_images_get(images, 0), out, CASCADE_PNG_FORCE);
    if (rc == 0) printf("%s\n", out);
    else fprintf(stderr, "txt2img: %s\n", cascade_errmsg(ctx));
    cascade_images_free(images);
    cascade_ctx_free(ctx);
    return rc == 0 ? 0 : 1;
}
