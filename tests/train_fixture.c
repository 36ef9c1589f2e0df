/* Files for tests/cli_train.sh: a tiny random CLIP text encoder whose widths
 * fit the golden tiny Stage C (c_clip_text 80, pooled 72), and a folder of
 * small PNGs with .txt captions (three 64x64, one 96x64: two buckets).
 * usage: train_fixture DIR -> DIR/text_encoder.safetensors, DIR/images/
 *
 * train_fixture --check-lora STAGE_C LORA: checks a LoRA that `cascade train
 * --network_module networks.lora` saved (float32) through the library: it
 * reads back into a network of its ss_network_dim / ss_network_alpha
 * (cs_lora_net_load: every module, shapes, alpha), every lora_up was
 * trained (non-zero; kohya starts them at 0) but clip_img_mapper's (its
 * input is zeros, as kohya trains: no gradient reaches it), and src/lora.c's merge (what
 * `cascade generate --lora` uses) changes every module and gives the
 * training model's weights bit for bit. Prints the facts; exit 1 on a
 * failure. */
#include "demo.h"
#include "error.h"
#include "lora.h"
#include "lora_train.h"
#include "pngout.h"
#include "stage_c.h"

#include <math.h>

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

static int check_lora(const char *sc, const char *path)
{
    cs_st_file *wf = NULL, *lf = NULL;
    cs_stage_c *m = NULL;
    cs_lora_net *net = NULL;
    cs_lora_patch *p = NULL;
    int bad = 0;
    if (cs_st_open(sc, &wf) || cs_stage_c_load_train(wf, NULL, &m) || cs_st_open(path, &lf)) goto fail;
    const char *dim = cs_st_meta(lf, "ss_network_dim"), *alpha = cs_st_meta(lf, "ss_network_alpha");
    if (!dim || !alpha) {
        fprintf(stderr, "%s: no ss_network_dim / ss_network_alpha\n", path);
        bad = 1;
        goto out;
    }
    cs_lora_train_cfg lc;
    cs_lora_train_cfg_default(&lc);
    lc.dim = atoi(dim), lc.alpha = atof(alpha);
    /* loading sets A and B; the merge makes the model's weights W' (what sampling reads) */
    if (cs_lora_net_new(m, &lc, &net) || cs_lora_net_load(net, path) || cs_lora_net_merge(net)) goto fail;
    int nm = cs_lora_net_count(net), zero_up = 0;
    for (int i = 0; i < nm; i++) {
        cs_lora_module mo;
        cs_lora_net_module(net, i, &mo);
        double s = 0;
        for (int64_t j = 0; j < mo.up_shape[0] * mo.rank; j++) s += fabs(mo.up[j]);
        zero_up += s == 0 && strcmp(mo.name, "lora_unet_clip_img_mapper");
    }
    printf("modules %d tensors %d untrained_up %d\n", nm, cs_st_count(lf), zero_up);
    cs_lora lo = {path, 1.0f, 0};
    cs_lora_list list = {1, &lo, 0, NULL, NULL, 0};
    cs_net_info in;
    cs_stage_c_info(m, &in);
    if (cs_lora_merge(wf, in.prefix, 0, "Stage C", &list, &p)) goto fail;
    int touched = 0, differ = 0;
    for (int i = 0; i < cs_st_count(wf); i++) {
        const cs_tensor *got = cs_lora_patch_at(p, i), *want = cs_stage_c_train_weight(m, i);
        if (!got) continue;
        touched++;
        differ += memcmp(got->data, want->data, (size_t)cs_tensor_numel(got) * sizeof(float)) != 0;
    }
    printf("merged_modules %d merged_tensors %d differ %d\n", lo.changed, touched, differ);
    bad = zero_up || lo.changed != nm || !touched || differ || cs_st_count(lf) != 3 * nm;
    goto out;
fail:
    fprintf(stderr, "%s\n", cs_last_error());
    bad = 1;
out:
    cs_lora_patch_free(p);
    cs_lora_net_free(net);
    cs_stage_c_free(m);
    cs_st_close(lf);
    cs_st_close(wf);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--check-lora")) return check_lora(argv[2], argv[3]);
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
