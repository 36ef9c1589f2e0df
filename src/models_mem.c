/* How much memory a stage needs, how much this process may use, and the
 * choice of variant per stage. Stages are loaded one at a time (each file is
 * mmapped, run, unmapped), so the need of a combination is the max over its
 * stages, not the sum. */
#include "models.h"

#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB (1024.0 * 1024.0)
#define GiB (1024.0 * MiB)
#define OVERHEAD ((uint64_t)(64 * MiB))   /* code, thread stacks, tokenizer, arena slack */

void cs_netid_nominal(cs_net net, cs_dtype dtype, cs_netid *ni)
{
    memset(ni, 0, sizeof *ni);
    ni->net = net;
    ni->dtype = dtype;
    cs_expect *e;
    int n;
    if (cs_net_expected(net, &e, &n)) return;
    for (int i = 0; i < n; i++) {
        int64_t m = 1;
        for (int d = 0; d < e[i].ndim; d++) m *= e[i].shape[d];
        /* parameters at dtype; BatchNorm buffers stay F32, counters I64 */
        size_t es = e[i].kind == CS_EXP_PARAM ? cs_dtype_size(dtype) : e[i].kind == CS_EXP_INT64 ? 8 : 4;
        ni->weight_bytes += (uint64_t)m * es;
        ni->n_tensors++;
        if (e[i].kind == CS_EXP_PARAM) {
            ni->params += m;
            if (m > ni->largest) ni->largest = m;
        }
    }
    free(e);
}

static uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static uint64_t max2(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Floats live at the peak of one Stage B/C forward with batch B (spec §3.3,
 * §4.3): the skips of every level, then at one level x/residual/temporary
 * plus the larger of a ResBlock (concat + two 4C hiddens) and an AttnBlock
 * (q, kv input, k, v, output and the full score matrix). */
static uint64_t unet_floats(const cs_unet_cfg *g, int W, int H, uint64_t B)
{
    uint64_t h, w, Lc, skips = 0, peak = 0, extra;
    if (g->stage == 'C') {
        h = (uint64_t)cs_latent_c(H);
        w = (uint64_t)cs_latent_c(W);
        Lc = 85;
        extra = B * Lc * (uint64_t)g->c_cond * 3 + B * h * w * 16 * 6;   /* cond tokens; latents */
    } else {
        uint64_t hb = (uint64_t)cs_latent_b(H), wb = (uint64_t)cs_latent_b(W);
        h = cdiv(hb, 2);
        w = cdiv(wb, 2);
        Lc = 4;
        /* effnet mapper at full level-0 resolution: 16 -> 4c0 -> c0; latents */
        extra = B * h * w * (16 + 5 * (uint64_t)g->c_hidden[0]) + B * hb * wb * 4 * 6;
    }
    for (int l = 0; l < g->levels; l++) {
        uint64_t s = g->stage == 'C' ? 1 : (uint64_t)1 << l;
        uint64_t T = cdiv(h, s) * cdiv(w, s), C = (uint64_t)g->c_hidden[l];
        skips += B * T * C;
        uint64_t res = B * T * 2 * C + 2 * B * T * 4 * C, att = 0;
        if (strchr(g->level_config[l], 'A'))
            att = 2 * B * T * C + 3 * B * (T + Lc) * C + B * (uint64_t)g->nhead[l] * T * (T + Lc);
        peak = max2(peak, 3 * B * T * C + max2(res, att));
    }
    return skips + peak + extra;
}

static uint64_t act_bytes(cs_net net, int W, int H, int N)
{
    uint64_t n = (uint64_t)N, B = 2 * n;   /* CFG runs cond + uncond together */
    const cs_unet_cfg *g = cs_net_unet_cfg(net);
    if (g) return 4 * unet_floats(g, W, H, B);
    uint64_t hb = (uint64_t)cs_latent_b(H), wb = (uint64_t)cs_latent_b(W), T = hb * wb;
    uint64_t hc = (uint64_t)cs_latent_c(H), wc = (uint64_t)cs_latent_c(W);
    switch (net) {
    case CS_NET_STAGE_A: {
        /* one image's decode: 384 @ T, 192 @ 4T, RGB @ 16T; the pipeline decodes
         * one image at a time in exact tiles under a budget, so cap it; plus the
         * batch's latents and float image */
        uint64_t p1 = 3 * T * 384 + 2 * T * 1536;
        uint64_t p2 = T * 384 + 3 * 4 * T * 192 + 2 * 4 * T * 768;
        uint64_t p3 = 4 * T * (192 + 12) + 2 * 16 * T * 3;
        uint64_t one = 4 * max2(p1, max2(p2, p3)), cap = (uint64_t)(512 * MiB);
        return (one < cap ? one : cap) + 4 * n * T * (4 + 16 * 3);
    }
    case CS_NET_TEXT_G:   /* prompt + negative, 77 tokens */
        return 4 * (6 * B * 77 * 1280 + 2 * B * 77 * 5120 + B * 20 * 77 * 77);
    case CS_NET_EFFNET: {   /* the input image at 3/4 of the output size */
        uint64_t h2 = cdiv((uint64_t)H * 3 / 4, 2), w2 = cdiv((uint64_t)W * 3 / 4, 2);
        return 4 * (n * h2 * w2 * (3 * 4 + 24 * 4) + n * h2 * w2 / 4 * 192 * 3);
    }
    case CS_NET_PREVIEWER:
        return 4 * (n * 64 * hc * wc * 128 * 3 + n * hc * wc * 512 * 3);
    case CS_NET_CLIP_VISION:
        return 4 * (n * 257 * 1024 * 8 + n * 16 * 257 * 257);
    default:
        return 0;
    }
}

void cs_mem_need_of(const cs_netid *ni, int width, int height, int batch, cs_mem_need *out)
{
    memset(out, 0, sizeof *out);
    out->weights = ni->weight_bytes;
    if (ni->dtype != CS_F32 || ni->mixed) out->scratch = (uint64_t)ni->largest * 4;
    out->acts = act_bytes(ni->net, width, height, batch < 1 ? 1 : batch) + OVERHEAD;
    out->total = out->weights + out->scratch + out->acts;
}

/* a device context, cuBLASLt workspace and 16-bit copies of activations */
#define DEV_OVERHEAD ((uint64_t)768 << 20)

void cs_mem_need_dev(const cs_netid *ni, int width, int height, int batch, int dev_prec, cs_mem_need *out)
{
    memset(out, 0, sizeof *out);
    out->weights = (uint64_t)ni->params * (dev_prec == 0 ? 4 : 2);
    out->acts = act_bytes(ni->net, width, height, batch < 1 ? 1 : batch);
    out->scratch = DEV_OVERHEAD + (dev_prec == 0 ? 0 : out->acts / 4);
    out->total = out->weights + out->scratch + out->acts;
}

static void need_of(const cs_choice_req *req, const cs_netid *ni, cs_mem_need *out)
{
    if (req->dev_prec >= 0) cs_mem_need_dev(ni, req->width, req->height, req->batch, req->dev_prec, out);
    else cs_mem_need_of(ni, req->width, req->height, req->batch, out);
}

/* need_of for part p of the request, with its LoRA copies (host memory) */
static void need_part(const cs_choice_req *req, int p, const cs_netid *ni, cs_mem_need *out)
{
    need_of(req, ni, out);
    if (req->dev_prec < 0) {
        out->weights += req->extra[p];
        out->total += req->extra[p];
    }
}

/* ---- memory available ---- */

static int read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = 0;
    return 0;
}

static int read_u64(const char *path, uint64_t *v)
{
    char b[64];
    if (read_text(path, b, sizeof b)) return -1;
    if (!strncmp(b, "max", 3)) {
        *v = UINT64_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(b, &end, 10);
    if (errno || end == b) return -1;
    *v = x;
    return 0;
}

/* Value of "key N" in a memory.stat / meminfo style file. */
static int read_key(const char *path, const char *key, uint64_t *v)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    size_t kl = strlen(key);
    int rc = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && (line[kl] == ' ' || line[kl] == ':')) {
            *v = strtoull(line + kl + 1, NULL, 10);
            rc = 0;
            break;
        }
    fclose(f);
    return rc;
}

/* Free room under the cgroup limit: limit - (usage - inactive file cache),
 * the working-set rule; UINT64_MAX when unlimited or unknown. */
static uint64_t cgroup_room(char *desc, size_t len)
{
    char cg[4096], path[4600], rel[2048] = "";
    uint64_t lim, cur, inact, best = UINT64_MAX;
    int v1 = 0;
    if (!read_text("/proc/self/cgroup", cg, sizeof cg)) {
        for (char *line = strtok(cg, "\n"); line; line = strtok(NULL, "\n")) {
            if (!strncmp(line, "0::", 3) && !rel[0]) snprintf(rel, sizeof rel, "%s", line + 3);
            char *m = strstr(line, ":memory:");
            if (m) {
                snprintf(rel, sizeof rel, "%s", m + 8);
                v1 = 1;
            }
        }
    }
    if (!v1) {   /* v2: the limit of this cgroup and of every ancestor applies */
        char dir[2100];
        snprintf(dir, sizeof dir, "%s", rel);
        for (;;) {
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", dir);
            if (!read_u64(path, &lim) && lim != UINT64_MAX) {
                snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", dir);
                if (read_u64(path, &cur)) cur = 0;
                snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.stat", dir);
                if (read_key(path, "inactive_file", &inact) || inact > cur) inact = 0;
                uint64_t room = lim > cur - inact ? lim - (cur - inact) : 0;
                if (room < best) {
                    best = room;
                    snprintf(desc, len, "cgroup v2 limit %.1f GiB at %.100s", lim / GiB, dir[0] ? dir : "/");
                }
            }
            char *slash = strrchr(dir, '/');
            if (!slash || !dir[0] || !strcmp(dir, "/")) break;
            *slash = 0;
        }
        return best;
    }
    const char *cand[2] = {rel, ""};   /* in containers the mount is often the cgroup itself */
    for (int i = 0; i < 2; i++) {
        char stat[2400];
        snprintf(stat, sizeof stat, "/sys/fs/cgroup/memory%s/memory.stat", cand[i]);
        if (read_key(stat, "hierarchical_memory_limit", &lim)) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", cand[i]);
            if (read_u64(path, &lim)) continue;
        }
        if (lim >= ((uint64_t)1 << 60)) return UINT64_MAX;   /* "unlimited" in v1 */
        snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", cand[i]);
        if (read_u64(path, &cur)) cur = 0;
        if (read_key(stat, "total_inactive_file", &inact) || inact > cur) inact = 0;
        snprintf(desc, len, "cgroup v1 limit %.1f GiB", lim / GiB);
        return lim > cur - inact ? lim - (cur - inact) : 0;
    }
    return UINT64_MAX;
}

static int parse_size(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || !isfinite(x) || x < 0) return -1;
    double m = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': m = 1024.0; end++; break;
    case 'M': m = MiB; end++; break;
    case 'G': m = GiB; end++; break;
    case 'T': m = GiB * 1024.0; end++; break;
    default: return -1;
    }
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    if (x * m >= 9.2e18) return -1;   /* beyond uint64_t (and any real machine) */
    *v = (uint64_t)(x * m);
    return 0;
}

int cs_mem_available(uint64_t *have, char *src, size_t len)
{
    const char *env = getenv("CASCADE_MEMORY");
    if (env && *env) {
        if (parse_size(env, have))
            return cs_error(CS_EARG, "CASCADE_MEMORY='%s': expected a size such as 12G or 800M", env);
        snprintf(src, len, "CASCADE_MEMORY=%s", env);
        return 0;
    }
    uint64_t kb;
    if (read_key("/proc/meminfo", "MemAvailable", &kb))
        return cs_error(CS_EIO, "/proc/meminfo: no MemAvailable (set CASCADE_MEMORY=SIZE)");
    uint64_t mem = kb * 1024;
    char desc[200] = "";
    uint64_t room = cgroup_room(desc, sizeof desc);
    if (room < mem) {
        *have = room;
        snprintf(src, len, "%s, %.1f GiB free in it (MemAvailable %.1f GiB)", desc, room / GiB, mem / GiB);
    } else {
        *have = mem;
        snprintf(src, len, "MemAvailable%s%s", desc[0] ? "; " : "", desc);
    }
    return 0;
}

uint64_t cs_mem_margin(uint64_t have)
{
    uint64_t m = have / 10;
    return m < (uint64_t)(256 * MiB) ? (uint64_t)(256 * MiB) : m;
}

/* ---- choice ---- */

static const char *const var_names[] = {"auto", "full", "bf16", "lite", "lite-bf16"};

int cs_variant_parse(const char *s, cs_variant *v)
{
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, var_names[i])) {
            *v = (cs_variant)i;
            return 0;
        }
    return cs_error(CS_EARG, "unknown variant '%s' (auto, full, bf16, lite, lite-bf16)", s);
}

const char *cs_variant_name(cs_variant v) { return v >= 0 && v <= CS_VAR_LITE_BF16 ? var_names[v] : "?"; }

cs_variant cs_variant_of(const cs_netid *ni)
{
    int wide = ni->dtype == CS_F32 && !ni->mixed;
    if (cs_net_is_lite(ni->net)) return wide ? CS_VAR_LITE : CS_VAR_LITE_BF16;
    return wide ? CS_VAR_FULL : CS_VAR_BF16;
}

/* Lower is better: full before lite, F32 before BF16 before F16. On a
 * device computing in 16 bits every file becomes the same 16-bit copy, so
 * the 16-bit file (half the reading) comes first there. */
static int quality(const cs_netid *ni, int dev_prec)
{
    int d = ni->mixed ? 3 : ni->dtype == CS_F32 ? 0 : ni->dtype == CS_BF16 ? 1 : 2;
    if (dev_prec > 0 && !ni->mixed) d = ni->dtype == CS_F32 ? 2 : ni->dtype == CS_BF16 ? 0 : 1;
    return cs_net_is_lite(ni->net) * 4 + d;
}

void cs_choice_req_init(cs_choice_req *r)
{
    memset(r, 0, sizeof *r);
    r->width = r->height = 1024;
    r->batch = 1;
    r->dev_prec = -1;
}

static int required(cs_part p, const cs_choice_req *req)
{
    return p <= CS_PART_TEXT || (p == CS_PART_EFFNET && req->want_effnet) ||
           (p == CS_PART_PREVIEWER && req->want_previewer);
}

static void describe(const cs_model_file *f, char *b, size_t len)
{
    snprintf(b, len, "%s%s%s", cs_net_title(f->info.net), f->info.mixed ? " mixed" : " ",
             f->info.mixed ? "" : cs_dtype_name(f->info.dtype));
}

static int choose_part(const cs_model_set *s, const cs_choice_req *req, cs_part p, uint64_t usable, cs_choice *out)
{
    int cand[64], nc = 0, minroot = 1 << 30;
    out->file[p] = -1;
    if (s->forced[p] >= 0) {
        out->file[p] = s->forced[p];
        const cs_model_file *f = &s->files[s->forced[p]];
        need_part(req, p, &f->info, &out->need[p]);
        snprintf(out->why[p], sizeof out->why[p], "given on the command line");
        return 0;
    }
    for (int i = 0; i < s->n; i++)
        if (!s->files[i].problem && cs_net_part(s->files[i].info.net) == p && s->files[i].root < minroot)
            minroot = s->files[i].root;
    cs_variant want = p <= CS_PART_STAGE_B ? req->variant[p] : CS_VAR_AUTO;
    char present[400] = "";
    size_t po = 0;
    for (int i = 0; i < s->n && nc < 64; i++) {
        const cs_model_file *f = &s->files[i];
        if (f->problem || cs_net_part(f->info.net) != p || f->root != minroot) continue;
        if (po < sizeof present)
            po += (size_t)snprintf(present + po, sizeof present - po, "%s%s", po ? ", " : "",
                                   cs_variant_name(cs_variant_of(&f->info)));
        if (want != CS_VAR_AUTO && cs_variant_of(&f->info) != want) continue;
        cand[nc++] = i;
    }
    if (!nc) {
        if (want != CS_VAR_AUTO && present[0])
            return cs_error(CS_EMODEL, "no %s file of variant '%s' (present: %s in %s)", cs_part_title(p),
                            cs_variant_name(want), present, s->roots[minroot]);
        if (!required(p, req)) return 0;
        return cs_error(CS_EMODEL, "no %s found (%s)", cs_part_title(p), cs_models_looked(s));
    }
    for (int a = 1; a < nc; a++)   /* stable insertion sort by quality */
        for (int b = a; b > 0 && quality(&s->files[cand[b]].info, req->dev_prec) <
                                     quality(&s->files[cand[b - 1]].info, req->dev_prec);
             b--) {
            int t = cand[b];
            cand[b] = cand[b - 1];
            cand[b - 1] = t;
        }
    int pick = -1, smallest = cand[0];
    cs_mem_need nd, best_nd = {0}, small_nd;
    char skipped[200] = "";
    need_part(req, p, &s->files[cand[0]].info, &small_nd);
    for (int k = 0; k < nc; k++) {
        need_part(req, p, &s->files[cand[k]].info, &nd);
        if (nd.total < small_nd.total) {
            small_nd = nd;
            smallest = cand[k];
        }
        if (pick < 0 && nd.total <= usable) {
            pick = cand[k];
            best_nd = nd;
        } else if (pick < 0) {   /* remember the next better one, for the message */
            char d[96];
            describe(&s->files[cand[k]], d, sizeof d);
            snprintf(skipped, sizeof skipped, "; %s needs %.1f GiB > %.1f GiB usable%s", d, nd.total / GiB,
                     usable / GiB, req->dev_prec >= 0 ? " on the device" : "");
        }
    }
    char d[96];
    if (pick >= 0) {
        out->file[p] = pick;
        out->need[p] = best_nd;
        describe(&s->files[pick], d, sizeof d);
        snprintf(out->why[p], sizeof out->why[p], "%s: %s present that fits%s", d,
                 want != CS_VAR_AUTO ? "the requested variant" : nc > 1 ? "the best" : "the only one", skipped);
    } else {
        out->file[p] = smallest;
        out->need[p] = small_nd;
        describe(&s->files[smallest], d, sizeof d);
        snprintf(out->why[p], sizeof out->why[p], "%s: nothing present fits, this is the smallest", d);
    }
    return 0;
}

int cs_models_choose(const cs_model_set *s, const cs_choice_req *req, cs_choice *out)
{
    memset(out, 0, sizeof *out);
    for (int p = 0; p < CS_PART_COUNT; p++) out->file[p] = -1;
    int rc;
    if (req->dev_prec >= 0) {
        out->have = req->dev_have;
        snprintf(out->have_src, sizeof out->have_src, "free on %.150s", req->dev_name);
    } else if (req->have) {
        out->have = req->have;
        snprintf(out->have_src, sizeof out->have_src, "given");
    } else if ((rc = cs_mem_available(&out->have, out->have_src, sizeof out->have_src))) {
        return rc;
    }
    out->margin = cs_mem_margin(out->have);
    uint64_t usable = out->have > out->margin ? out->have - out->margin : 0;
    out->need_part = -1;
    for (int p = 0; p < CS_PART_COUNT; p++) {
        if (p == CS_PART_CLIP_VISION) continue;   /* only for image variations, chosen by the caller */
        if ((rc = choose_part(s, req, (cs_part)p, usable, out))) return rc;
        if (out->file[p] >= 0 && out->need[p].total > out->need_max) {
            out->need_max = out->need[p].total;
            out->need_part = p;
        }
    }
    out->fits = out->need_max <= usable;
    return 0;
}

cs_variant cs_models_recommend(const cs_choice_req *req, uint64_t have, uint64_t *need)
{
    static const cs_variant order[] = {CS_VAR_FULL, CS_VAR_BF16, CS_VAR_LITE, CS_VAR_LITE_BF16};
    uint64_t margin = cs_mem_margin(have), m = 0;
    for (int i = 0; i < 4; i++) {
        int lite = order[i] >= CS_VAR_LITE;
        cs_dtype dt = order[i] == CS_VAR_FULL || order[i] == CS_VAR_LITE ? CS_F32 : CS_BF16;
        const struct { cs_net net; cs_dtype dt; } parts[] = {
            {lite ? CS_NET_STAGE_C_LITE : CS_NET_STAGE_C, dt}, {lite ? CS_NET_STAGE_B_LITE : CS_NET_STAGE_B, dt},
            {CS_NET_STAGE_A, CS_F32}, {CS_NET_TEXT_G, CS_BF16},
        };
        m = 0;
        for (int k = 0; k < 4; k++) {
            cs_netid ni;
            cs_mem_need nd;
            cs_netid_nominal(parts[k].net, parts[k].dt, &ni);
            need_of(req, &ni, &nd);
            m = max2(m, nd.total);
        }
        if (m + margin <= have || i == 3) {
            if (need) *need = m;
            return order[i];
        }
    }
    return CS_VAR_LITE_BF16;
}
