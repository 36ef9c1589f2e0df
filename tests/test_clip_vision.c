/* CLIP vision tower (src/clip_vision.c) beyond the golden case: a batch
 * gives each image the embedding it gets alone, the config is read off
 * the shapes (image size from the positions), and broken files -- a
 * missing or mis-shaped tensor, a stray one, an unsupported activation, a
 * config asking for more layers than the file has -- are one error naming
 * the file and the problem. Files are written with the demo writer. */
#include "check.h"
#include "clip_vision.h"
#include "demo_vision.h"
#include "error.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256], path[300];

/* writes the tiny tower, with tensor `drop` left out / `reshape` given a wrong
 * first dimension / an extra tensor, and meta pairs */
static void write_net(const char *drop, const char *reshape, int extra, const char *const *meta, int n_meta)
{
    cs_demo_list l;
    if (cs_demo_clip_vision(64, 2, 128, 16, 28, 14, &l)) exit(99);
    for (int i = 0; i < l.n; i++) {
        if (drop && !strcmp(l.t[i].name, drop)) l.t[i--] = l.t[--l.n];
        else if (reshape && !strcmp(l.t[i].name, reshape)) l.t[i].shape[0]++;
    }
    if (extra) {
        l.t[l.n] = l.t[0];
        snprintf(l.t[l.n].name, sizeof l.t[l.n].name, "vision_model.extra.weight");
        l.n++;   /* the list has room: it grows in blocks */
    }
    snprintf(path, sizeof path, "%s/v.safetensors", dir);
    if (cs_demo_write(path, &l, "F32", 5, meta, n_meta)) {
        printf("ERROR: %s\n", cs_last_error());
        exit(99);
    }
    cs_demo_list_free(&l);
}

static void refused(const char *what, const char *needle)
{
    cs_clip_vision *m;
    int rc = cs_clip_vision_open(path, &m);
    CHECK(rc < 0 && strstr(cs_last_error(), "v.safetensors") && strstr(cs_last_error(), needle),
          "%s: rc %d, '%s' (expected '%s')", what, rc, cs_last_error(), needle);
    if (!rc) cs_clip_vision_free(m);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cs_vision.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 99;

    write_net(NULL, NULL, 0, NULL, 0);
    cs_clip_vision *m;
    int rc = cs_clip_vision_open(path, &m);
    CHECK(rc == 0, "load: %s", cs_last_error());
    if (!rc) {
        const cs_clip_vision_config *c = cs_clip_vision_get_config(m);
        CHECK(c->width == 64 && c->layers == 2 && c->heads == 1 && c->mlp == 128 && c->image == 28 && c->patch == 14 &&
                  c->proj == 16 && c->quick_gelu == 1,
              "config from shapes: width %d layers %d heads %d mlp %d image %d patch %d proj %d", c->width, c->layers,
              c->heads, c->mlp, c->image, c->patch, c->proj);
        size_t per = 28 * 28 * 3;
        float px[3 * 28 * 28 * 3], e3[3 * 16], e1[16];
        for (size_t i = 0; i < 3 * per; i++) px[i] = (float)sin(0.37 * (double)i) * 1.5f;
        cs_clip_vision_out o3 = {e3, NULL, NULL}, o1 = {e1, NULL, NULL};
        CHECK(cs_clip_vision_forward(m, px, 3, &o3) == 0, "forward 3: %s", cs_last_error());
        for (int k = 0; k < 3; k++) {
            CHECK(cs_clip_vision_forward(m, px + k * per, 1, &o1) == 0, "forward 1: %s", cs_last_error());
            CHECK(!memcmp(e1, e3 + k * 16, sizeof e1), "image %d: its embedding alone differs from in the batch", k);
        }
        float d = 0;
        for (int j = 0; j < 16; j++) d += fabsf(e3[j] - e3[16 + j]);
        CHECK(d > 1e-3f, "two different images gave the same embedding");
        cs_clip_vision_free(m);
    }
    write_net("vision_model.post_layernorm.weight", NULL, 0, NULL, 0);
    refused("missing", "missing vision_model.post_layernorm.weight");
    write_net(NULL, "vision_model.encoder.layers.1.mlp.fc2.weight", 0, NULL, 0);
    refused("mis-shaped", "vision_model.encoder.layers.1.mlp.fc2.weight: shape [65,128], expected [64,128]");
    write_net(NULL, NULL, 1, NULL, 0);
    refused("stray", "unexpected vision_model.extra.weight");
    const char *gelu_tanh[] = {"config", "{\"hidden_act\": \"gelu_pytorch_tanh\"}"};
    write_net(NULL, NULL, 0, gelu_tanh, 1);
    refused("activation", "hidden_act \"gelu_pytorch_tanh\" is not supported");
    const char *many[] = {"config", "{\"vision_config\": {\"num_hidden_layers\": 3}}"};
    write_net(NULL, NULL, 0, many, 1);
    refused("layers", "missing vision_model.encoder.layers.2.");
    const char *odd[] = {"config", "{\"image_size\": 30}"};
    write_net(NULL, NULL, 0, odd, 1);
    refused("image size", "no usable CLIP vision config");
    unlink(path);
    rmdir(dir);
    printf(failures ? "%d failure(s)\n" : "ok\n", failures);
    return check_exit();
}
