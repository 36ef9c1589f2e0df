/* Files for tests/cli_train.sh: a tiny random CLIP text encoder whose widths
 * fit the golden tiny Stage C (c_clip_text 80, pooled 72), and a folder of
 * small PNGs with .txt captions (three 64x64, one 96x64: two buckets).
 * usage: train_fixture DIR -> DIR/text_encoder.safetensors, DIR/images/ */
#include "demo.h"
#include "pngout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int image(const char *dir, const char *name, int w, int h, int seed, const char *caption)
{
    char p[4200];
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) return -1;
    for (int y = 0; y < h; y++)   /* smooth gradients and a seeded pattern */
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * w + x) * 3 + c] = (uint8_t)((x * (c + 1) * 3 + y * (seed + 2) * 2 + seed * 40 * c) & 255);
    snprintf(p, sizeof p, "%s/%s.png", dir, name);
    int rc = cs_png_write_rgb8(p, rgb, w, h, (size_t)w * 3, NULL, 0, 0);
    free(rgb);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/%s.txt", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fprintf(f, "%s\n", caption);
    return fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: train_fixture DIR\n");
        return 2;
    }
    char p[4200];
    const char *cfg = "{\"hidden_size\": 80, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                      "\"num_attention_heads\": 1, \"max_position_embeddings\": 77, \"projection_dim\": 72, "
                      "\"layer_norm_eps\": 1e-05, \"hidden_act\": \"gelu\", \"vocab_size\": 49408, "
                      "\"bos_token_id\": 49406, \"eos_token_id\": 49407, \"pad_token_id\": 49407}";
    const char *meta[] = {"config", cfg};
    cs_demo_list l;
    mkdir(argv[1], 0777);
    snprintf(p, sizeof p, "%s/text_encoder.safetensors", argv[1]);
    if (cs_demo_clip(80, 2, 160, 72, &l) || cs_demo_write(p, &l, "BF16", 7, meta, 1)) {
        fprintf(stderr, "train_fixture: cannot write %s\n", p);
        return 1;
    }
    cs_demo_list_free(&l);
    snprintf(p, sizeof p, "%s/images", argv[1]);
    mkdir(p, 0777);
    if (image(p, "a", 64, 64, 1, "a red square") || image(p, "b", 64, 64, 2, "a blue circle") ||
        image(p, "c", 64, 64, 3, "green stripes") || image(p, "d", 96, 64, 4, "a wide landscape")) {
        fprintf(stderr, "train_fixture: cannot write the images in %s\n", p);
        return 1;
    }
    return 0;
}
