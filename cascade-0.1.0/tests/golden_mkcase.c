/* Writes small golden cases for tests/golden_hostile.sh and the fuzz seed
 * corpus: good.io.safetensors (a LayerNorm2d case whose reference is computed
 * here in double, so it passes, strict mode included) and hostile_*.io.safetensors,
 * each broken in one way a case file can be (truncated data, wrong or huge or
 * zero shapes, negative and huge config values, missing keys, short
 * parameters, a weights path outside the folder). The runner must answer
 * every hostile case with one error line naming the file and FAIL, exit 1.
 * Usage: golden_mkcase DIR */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

/* One tensor: header entry text (without offsets) and its bytes. */
typedef struct {
    const char *name, *dtype, *shape;   /* shape: JSON list text */
    const void *data;
    size_t bytes;
} ent;

/* Writes DIR/<name>.io.safetensors; cut > 0 drops that many data bytes. */
static void put(const char *name, const char *meta, const ent *e, int n, size_t cut)
{
    char hdr[16384], path[4096];
    size_t o = (size_t)snprintf(hdr, sizeof hdr, "{\"__metadata__\":{%s}", meta), off = 0;
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(hdr + o, sizeof hdr - o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                              e[i].name, e[i].dtype, e[i].shape, off, off + e[i].bytes);
        off += e[i].bytes;
    }
    o += (size_t)snprintf(hdr + o, sizeof hdr - o, "}");
    while (o % 8) hdr[o++] = ' ';
    snprintf(path, sizeof path, "%s/%s.io.safetensors", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    uint64_t hl = o;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(hdr, 1, o, f);
    size_t left = off > cut ? off - cut : 0;
    for (int i = 0; i < n && left; i++) {
        size_t b = e[i].bytes < left ? e[i].bytes : left;
        if (b) fwrite(e[i].data, 1, b, f);
        left -= b;
    }
    if (fclose(f)) {
        perror(path);
        exit(1);
    }
}

enum { N = 2, C = 8, H = 3, W = 5, NE = N * C * H * W };
static float x[NE], y[NE], big[4096];

/* LayerNorm over channels of NCHW x, eps 1e-6, reference in double; also the
 * float32 evaluation, for the fp32_vs_fp64 record. */
static void reference(double *rel, double *mx)
{
    uint32_t s = 12345;
    for (int i = 0; i < NE; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / (1 << 24) * 4.0 - 2.0);
    }
    double d2 = 0, r2 = 0;
    *mx = 0;
    for (int n = 0; n < N; n++)
        for (int p = 0; p < H * W; p++) {
            double m = 0, v = 0;
            float mf = 0, vf = 0;
            for (int c = 0; c < C; c++) m += x[(n * C + c) * H * W + p], mf += x[(n * C + c) * H * W + p];
            m /= C, mf /= C;
            for (int c = 0; c < C; c++) {
                double d = x[(n * C + c) * H * W + p] - m;
                float df = x[(n * C + c) * H * W + p] - mf;
                v += d * d, vf += df * df;
            }
            v /= C, vf /= C;
            for (int c = 0; c < C; c++) {
                int i = (n * C + c) * H * W + p;
                double r = (x[i] - m) / sqrt(v + 1e-6);
                float rf = (x[i] - mf) / sqrtf(vf + 1e-6f);
                y[i] = (float)r;
                d2 += (rf - r) * (rf - r), r2 += r * r;
                if (fabs(rf - r) > *mx) *mx = fabs(rf - r);
            }
        }
    *rel = sqrt(d2 / r2);
}

#define BASE_META(cfg, chk, rt) \
    "\"module\":\"modules.common.LayerNorm2d\",\"config\":\"" cfg "\",\"rtol_l2\":\"" rt "\",\"atol_max\":\"1e-3\"," \
    "\"checked_outputs\":\"" chk "\""
#define LN_CFG "{\\\"normalized_shape\\\": 8, \\\"eps\\\": 1e-06}"
#define OUT_Y "[\\\"out.y\\\"]"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: golden_mkcase DIR\n");
        return 2;
    }
    dir = argv[1];
    double rel, mx;
    reference(&rel, &mx);
    char meta[2048];
    snprintf(meta, sizeof meta,
             BASE_META(LN_CFG, OUT_Y, "1e-4") ",\"tolerances\":\"{\\\"out.y\\\": {\\\"rtol_l2\\\": 1e-4, "
             "\\\"atol_max\\\": 1e-3}}\",\"fp32_vs_fp64\":\"{\\\"out.y\\\": {\\\"rel_l2\\\": %.4g, \\\"max_abs\\\": %.4g}}\"",
             rel, mx);
    ent good[2] = {{"in.x", "F32", "[2,8,3,5]", x, sizeof x}, {"out.y", "F32", "[2,8,3,5]", y, sizeof y}};
    put("good", meta, good, 2, 0);

    /* file-level damage */
    put("hostile_truncated", meta, good, 2, 100);
    ent swapped[2] = {good[0], {"out.y", "F32", "[2,8,5,3]", y, sizeof y}};
    put("hostile_out_shape_swapped", meta, swapped, 2, 0);
    ent flat[2] = {good[0], {"out.y", "F32", "[240]", y, sizeof y}};
    put("hostile_out_shape_flat", meta, flat, 2, 0);
    ent zero[2] = {{"in.x", "F32", "[0,8,3,5]", x, 0}, {"out.y", "F32", "[0,8,3,5]", y, 0}};
    put("hostile_zero_dim", meta, zero, 2, 0);
    ent huge[2] = {{"in.x", "F32", "[1,2097152,1,1]", NULL, 0}, good[1]};
    huge[0].data = calloc(2097152, 4), huge[0].bytes = 2097152 * 4;
    put("hostile_huge_dim", meta, huge, 2, 0);
    free((void *)huge[0].data);
    ent neg[2] = {{"in.x", "F32", "[2,-8,3,5]", x, sizeof x}, good[1]};
    put("hostile_negative_shape", meta, neg, 2, 0);
    ent f8[2] = {{"in.x", "F8_E4M3", "[2,8,3,5,4]", x, sizeof x}, good[1]};
    put("hostile_dtype_f8", meta, f8, 2, 0);
    ent in3[2] = {{"in.x", "F32", "[16,3,5]", x, sizeof x}, good[1]};
    put("hostile_in_not_nchw", meta, in3, 2, 0);
    put("hostile_no_input", meta, good + 1, 1, 0);
    ent noout[1] = {good[0]};
    put("hostile_no_output", meta, noout, 1, 0);

    /* metadata */
    put("hostile_no_checked", "\"module\":\"modules.common.LayerNorm2d\",\"rtol_l2\":\"1\",\"atol_max\":\"1\"", good, 2, 0);
    put("hostile_checked_empty", BASE_META(LN_CFG, "[]", "1e-4"), good, 2, 0);
    put("hostile_checked_unknown", BASE_META(LN_CFG, "[\\\"out.z\\\"]", "1e-4"), good, 2, 0);
    put("hostile_checked_not_list", BASE_META(LN_CFG, "{}", "1e-4"), good, 2, 0);
    put("hostile_rtol_text", BASE_META(LN_CFG, OUT_Y, "abc"), good, 2, 0);
    put("hostile_rtol_negative", BASE_META(LN_CFG, OUT_Y, "-1"), good, 2, 0);
    put("hostile_rtol_nan", BASE_META(LN_CFG, OUT_Y, "nan"), good, 2, 0);
    put("hostile_no_module", "\"config\":\"{}\",\"rtol_l2\":\"1\",\"atol_max\":\"1\",\"checked_outputs\":\"" OUT_Y "\"",
        good, 2, 0);
    put("hostile_unknown_module", "\"module\":\"nope\",\"rtol_l2\":\"1\",\"atol_max\":\"1\",\"checked_outputs\":\"" OUT_Y "\"",
        good, 2, 0);
    put("hostile_config_not_object", BASE_META("[1,2]", OUT_Y, "1e-4"), good, 2, 0);
    put("hostile_config_bad_json", BASE_META("{eps", OUT_Y, "1e-4"), good, 2, 0);
    put("hostile_tolerances_bad", BASE_META(LN_CFG, OUT_Y, "1e-4") ",\"tolerances\":\"{\\\"out.y\\\": {\\\"rtol_l2\\\": -1}}\"",
        good, 2, 0);
    put("hostile_fp64_bad", BASE_META(LN_CFG, OUT_Y, "1e-4") ",\"fp32_vs_fp64\":\"{\\\"out.y\\\": 3}\"", good, 2, 0);
    put("hostile_weights_path", BASE_META(LN_CFG, OUT_Y, "1e-4") ",\"weights\":\"{\\\"m\\\": \\\"../../etc/passwd\\\"}\"",
        good, 2, 0);

    /* config values and parameters, per handler */
    put("hostile_eps_negative", BASE_META("{\\\"eps\\\": -5}", OUT_Y, "1e-4"), good, 2, 0);
    ent lnw[3] = {good[0], good[1], {"w.weight", "F32", "[3]", x, 12}};
    put("hostile_ln_weight_short", meta, lnw, 3, 0);
#define OP_META(mod, cfg) \
    "\"module\":\"" mod "\",\"config\":\"" cfg "\",\"rtol_l2\":\"1\",\"atol_max\":\"1\",\"checked_outputs\":\"" OUT_Y "\""
    ent grn[4] = {{"in.x", "F32", "[2,3,5,8]", x, sizeof x}, good[1], {"w.gamma", "F32", "[1,1,1,2]", x, 8},
                  {"w.beta", "F32", "[1,1,1,2]", x, 8}};
    put("hostile_grn_gamma_short", OP_META("modules.common.GlobalResponseNorm", "{}"), grn, 4, 0);
    put("hostile_interp_huge", OP_META("torch.nn.functional.interpolate",
                                       "{\\\"mode\\\": \\\"bilinear\\\", \\\"align_corners\\\": true, \\\"size\\\": [1000000000, 1000000000]}"),
        good, 2, 0);
    put("hostile_interp_negative", OP_META("torch.nn.functional.interpolate",
                                           "{\\\"mode\\\": \\\"bilinear\\\", \\\"align_corners\\\": true, \\\"size\\\": [-5, 7]}"),
        good, 2, 0);
    put("hostile_interp_scale_huge", OP_META("torch.nn.functional.interpolate",
                                             "{\\\"mode\\\": \\\"bilinear\\\", \\\"align_corners\\\": true, \\\"scale_factor\\\": 1e300}"),
        good, 2, 0);
    put("hostile_shuffle_huge", OP_META("torch.nn.PixelShuffle", "{\\\"upscale_factor\\\": 1000000}"), good, 2, 0);
    put("hostile_unshuffle_zero", OP_META("torch.nn.PixelUnshuffle", "{\\\"downscale_factor\\\": 0}"), good, 2, 0);
    ent conv[4] = {good[0], good[1], {"w.weight", "F32", "[8,8,1,1]", big, 256}, {"w.bias", "F32", "[2]", big, 8}};
    put("hostile_conv_bias_short", OP_META("torch.nn.Conv2d", "{}"), conv, 4, 0);
    put("hostile_conv_pad_huge", OP_META("torch.nn.Conv2d", "{\\\"padding\\\": 1000000000}"), conv, 3, 0);
    put("hostile_conv_stride_negative", OP_META("torch.nn.Conv2d", "{\\\"stride\\\": -2}"), conv, 3, 0);
    put("hostile_convt_pad_huge", OP_META("torch.nn.ConvTranspose2d", "{\\\"padding\\\": 100}"), conv, 3, 0);
    ent remb[2] = {{"in.r", "F32", "[6]", x, 24}, {"out.emb", "F32", "[6,64]", big, 6 * 64 * 4}};
    put("hostile_remb_c_r_huge",
        "\"module\":\"modules.stage_c.StageC.gen_r_embedding\",\"config\":\"{\\\"c_r\\\": 1073741824}\",\"rtol_l2\":\"1\","
        "\"atol_max\":\"1\",\"checked_outputs\":\"[\\\"out.emb\\\"]\"",
        remb, 2, 0);
    ent ts[3] = {good[0], good[1], {"in.t", "F32", "[2,3]", x, 24}};
    put("hostile_tsblock_t_short", OP_META("modules.common.TimestepBlock", "{\\\"c\\\": 8, \\\"conds\\\": []}"), ts, 3, 0);
    ent attn[3] = {good[0], good[1], {"in.kv", "F32", "[2,3,4]", x, 96}};
    put("hostile_attn_nhead_zero", OP_META("modules.common.AttnBlock", "{\\\"c\\\": 8, \\\"c_cond\\\": 4, \\\"nhead\\\": 0}"),
        attn, 3, 0);
    ent seeds[1] = {{"seed1.draw0", "F32", "[2,8,3,5]", x, sizeof x}};
    put("hostile_rng_checked_missing",
        "\"module\":\"torch_cpu_randn\",\"rtol_l2\":\"1\",\"atol_max\":\"1\",\"checked_outputs\":\"[\\\"seed1.draw0\\\", "
        "\\\"seed1.draw1\\\"]\"",
        seeds, 1, 0);
    return 0;
}
