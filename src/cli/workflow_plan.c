/* A Stable Cascade graph -> one `cascade generate` run. The graph is read
 * backwards from its image output: SaveImage <- VAEDecode <- Stage B's
 * KSampler <- StableCascade_StageB_Conditioning <- Stage C's KSampler, and
 * every input of those down to the loaders. Shapes the pipeline cannot run
 * (two image chains, a Stage B prompt other than Stage C's, ...) are one
 * error naming the node; model, LoRA and image names resolve to files here,
 * before anything heavy runs. */
#include "cli.h"
#include "workflow.h"

#include "cascade.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const json_t *api;
    const wf_env *env;
    opts *o;
    wf_plan_info *info;
    cascade_ctx *ctx;        /* the scan's, the checks' (their messages) */
    cascade_models *set;     /* NULL with --demo */
    int lora_model_c, lora_model_b;   /* LoRAs found on each model chain */
} plan;

static const char *ctype(const json_t *nd)
{
    const char *t = json_string_value(json_object_get(nd, "class_type"));
    return t ? t : "?";
}

static int nerr(const plan *p, const char *id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int nerr(const plan *p, const char *id, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cli_error(CASCADE_E_IO, "%s: node %s (%s): %s", p->env->what, id, ctype(json_object_get(p->api, id)), msg);
}

/* the node and slot linked to input name of node id; 0 if it is a link */
static int link_of(const plan *p, const char *id, const char *name, const char **src, int *slot)
{
    const json_t *v = json_object_get(json_object_get(json_object_get(p->api, id), "inputs"), name);
    if (!json_is_array(v) || json_array_size(v) != 2)
        return nerr(p, id, "input '%s' is not connected", name);
    *src = json_string_value(json_array_get(v, 0));
    *slot = (int)json_integer_value(json_array_get(v, 1));
    return 0;
}

static const json_t *widget(const plan *p, const char *id, const char *name)
{
    return json_object_get(json_object_get(json_object_get(p->api, id), "inputs"), name);
}

static int get_str(const plan *p, const char *id, const char *name, const char **out)
{
    *out = json_string_value(widget(p, id, name));
    return *out ? 0 : nerr(p, id, "input '%s' is missing or not text", name);
}

static int get_num(const plan *p, const char *id, const char *name, double lo, double hi, double *out)
{
    const json_t *v = widget(p, id, name);
    if (!json_is_number(v))
        return nerr(p, id, "input '%s' is missing or not a number", name);
    *out = json_number_value(v);
    if (!(*out >= lo && *out <= hi))
        return nerr(p, id, "%s %g is out of range (%g .. %g)", name, *out, lo, hi);
    return 0;
}

static int get_int(const plan *p, const char *id, const char *name, long long lo, long long hi, long long *out)
{
    const json_t *v = widget(p, id, name);
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        *out = (long long)json_real_value(v);
    else if (json_is_integer(v))
        *out = json_integer_value(v);
    else
        return nerr(p, id, "input '%s' is missing or not a whole number", name);
    if (*out < lo || *out > hi)
        return nerr(p, id, "%s %lld is out of range (%lld .. %lld)", name, *out, lo, hi);
    return 0;
}

static int is(const plan *p, const char *id, const char *type)
{
    return !strcmp(ctype(json_object_get(p->api, id)), type);
}

/* ---- names -> files ---- */

static int exists_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* a model name (ComfyUI's relative name, maybe with subfolders) -> a file
 * the scan found, checked to hold part */
static int resolve_model(plan *p, const char *id, const char *name, cascade_part part, char *path)
{
    if (p->env->demo) {
        snprintf(path, GEN_PATH, "%s", name);
        return 0;
    }
    char want[GEN_PATH];
    snprintf(want, sizeof want, "/%s", name);
    for (char *c = want; *c; c++)
        if (*c == '\\') *c = '/';
    const char *found = NULL;
    size_t wl = strlen(want);
    for (int i = 0; i < cascade_models_count(p->set) && !found; i++) {
        const char *f = cascade_models_path(p->set, i);
        size_t fl = strlen(f);
        if (fl >= wl && !strcmp(f + fl - wl, want))
            found = f;
    }
    if (!found && exists_file(name))
        found = name;
    if (!found)
        return nerr(p, id, "model '%s' not found (%s)", name, cascade_models_looked(p->set, -1));
    snprintf(path, GEN_PATH, "%s", found);
    if (cascade_model_check(p->ctx, part, path))
        return nerr(p, id, "'%s' cannot serve as the %s: %s", name, cascade_part_title(part), cascade_errmsg(p->ctx));
    return 0;
}

/* LoRA names: ComfyUI's models/loras/ below each search root, or a path */
static int resolve_lora(plan *p, const char *id, const char *name, char **out)
{
    char path[GEN_PATH];
    static const char *sub[] = {"loras/", "models/loras/", ""};
    const char *root;
    for (int r = 0; p->set && (root = cascade_models_root(p->set, r, NULL)) != NULL; r++)
        for (size_t k = 0; k < sizeof sub / sizeof *sub; k++) {
            snprintf(path, sizeof path, "%s/%s%s", root, sub[k], name);
            if (exists_file(path))
                goto found;
        }
    if (!exists_file(name))
        return nerr(p, id, "LoRA '%s' not found (looked in loras/ and models/loras/ of the model folders)", name);
    snprintf(path, sizeof path, "%s", name);
found:
    if (!(*out = strdup(path)))
        return cli_error(CASCADE_E_NOMEM, "out of memory");
    return 0;
}

/* LoadImage / LoadLatent names (kind "image" / "latent"): --input DIR, the
 * workflow's folder, the current folder */
static int resolve_input(plan *p, const char *id, const char *kind, const char *name, char *path)
{
    const char *dirs[] = {p->env->input_dir, p->env->file_dir, "."};
    if (name[0] == '/' && exists_file(name)) {
        snprintf(path, GEN_PATH, "%s", name);
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (!dirs[i])
            continue;
        snprintf(path, GEN_PATH, "%s/%s", dirs[i], name);
        if (exists_file(path))
            return 0;
    }
    return nerr(p, id, "%s '%s' not found (looked in%s%s, the workflow's folder and the current folder)", kind, name,
                p->env->input_dir ? " --input " : "", p->env->input_dir ? p->env->input_dir : "");
}

static int resolve_image(plan *p, const char *id, const char *name, char *path)
{
    return resolve_input(p, id, "image", name, path);
}

/* ---- chains ---- */

static int add_lora(plan *p, const char *id, int part, const char *name, double s)
{
    opts *o = p->o;
    if (p->env->demo)
        return nerr(p, id, "LoRAs need real model files (not --demo)");
    if (o->n_lora[part] == GEN_MAX_LORA)
        return nerr(p, id, "more than %d LoRAs on one model", GEN_MAX_LORA);
    char *path;
    int rc = resolve_lora(p, id, name, &path);
    if (rc)
        return rc;
    /* walked from the sampler back to the loader: the last found applies first */
    gen_lora *v = o->lora[part];
    memmove(v + 1, v, (size_t)o->n_lora[part] * sizeof *v);
    v[0] = (gen_lora){path, (float)s};
    o->n_lora[part]++;
    return 0;
}

/* MODEL input of a sampler back to its loader; part C or B */
static int model_chain(plan *p, const char *id, const char *input, cascade_part part)
{
    const char *src;
    int slot, rc;
    if ((rc = link_of(p, id, input, &src, &slot)) != 0)
        return rc;
    gen_stage *sp = part == CASCADE_PART_STAGE_C ? &p->o->g.c : &p->o->g.b;
    int shift_seen = 0;
    for (int hops = 0; hops < 256; hops++) {
        const char *name;
        double v, s2;
        if (is(p, src, "LoraLoader") || is(p, src, "LoraLoaderModelOnly")) {
            if ((rc = get_str(p, src, "lora_name", &name)) || (rc = get_num(p, src, "strength_model", -100, 100, &v)))
                return rc;
            if (v != 0 && (rc = add_lora(p, src, part == CASCADE_PART_STAGE_C ? 0 : 1, name, v)))
                return rc;
            (void)s2;
        } else if (is(p, src, "ModelSamplingStableCascade")) {
            if ((rc = get_num(p, src, "shift", 1e-6, 1e4, &v)) != 0)
                return rc;
            if (!shift_seen)   /* the one nearest the sampler wins, as in ComfyUI */
                sp->shift = (float)v;
            shift_seen = 1;
        } else if (is(p, src, "UNETLoader") || is(p, src, "CheckpointLoaderSimple")) {
            if ((rc = get_str(p, src, is(p, src, "UNETLoader") ? "unet_name" : "ckpt_name", &name)) != 0)
                return rc;
            snprintf(part == CASCADE_PART_STAGE_C ? p->info->stage_c_name : p->info->stage_b_name, 256, "%s", name);
            return resolve_model(p, src, name, part, p->info->path[part]);
        } else {
            return nerr(p, id, "input '%s' must come from a model loader (UNETLoader, CheckpointLoaderSimple, "
                        "LoraLoader, ModelSamplingStableCascade), not node %s (%s)", input, src,
                        ctype(json_object_get(p->api, src)));
        }
        if ((rc = link_of(p, src, "model", &src, &slot)) != 0)
            return rc;
    }
    return nerr(p, id, "model chain too long");
}

static int clip_chain(plan *p, const char *id)
{
    const char *src, *name;
    int slot, rc;
    if ((rc = link_of(p, id, "clip", &src, &slot)) != 0)
        return rc;
    for (int hops = 0; hops < 256; hops++) {
        double v;
        if (is(p, src, "LoraLoader")) {
            if ((rc = get_str(p, src, "lora_name", &name)) || (rc = get_num(p, src, "strength_clip", -100, 100, &v)))
                return rc;
            if (v != 0 && (rc = add_lora(p, src, 2, name, v)))
                return rc;
            if ((rc = link_of(p, src, "clip", &src, &slot)) != 0)
                return rc;
            continue;
        }
        if (is(p, src, "CLIPLoader")) {
            const char *type;
            if ((rc = get_str(p, src, "clip_name", &name)) || (rc = get_str(p, src, "type", &type)))
                return rc;
            if (strcmp(type, "stable_cascade"))
                return nerr(p, src, "type '%s': Stable Cascade's text encoder is type stable_cascade", type);
        } else if (is(p, src, "CheckpointLoaderSimple")) {
            if ((rc = get_str(p, src, "ckpt_name", &name)) != 0)
                return rc;
        } else {
            return nerr(p, id, "input 'clip' must come from CLIPLoader, CheckpointLoaderSimple or LoraLoader, not "
                        "node %s (%s)", src, ctype(json_object_get(p->api, src)));
        }
        if (p->info->text_name[0] && strcmp(p->info->text_name, name))
            return nerr(p, src, "a second text encoder '%s' (the workflow already uses '%s'): not supported", name,
                        p->info->text_name);
        snprintf(p->info->text_name, 256, "%s", name);
        return resolve_model(p, src, name, CASCADE_PART_TEXT_ENCODER, p->info->path[CASCADE_PART_TEXT_ENCODER]);
    }
    return nerr(p, id, "clip chain too long");
}

static int vae_chain(plan *p, const char *id, cascade_part part, char *name_out)
{
    const char *src, *name;
    int slot, rc;
    if ((rc = link_of(p, id, "vae", &src, &slot)) != 0)
        return rc;
    if (is(p, src, "VAELoader")) {
        if ((rc = get_str(p, src, "vae_name", &name)) != 0)
            return rc;
    } else if (is(p, src, "CheckpointLoaderSimple")) {
        if ((rc = get_str(p, src, "ckpt_name", &name)) != 0)
            return rc;
    } else {
        return nerr(p, id, "input 'vae' must come from VAELoader or CheckpointLoaderSimple");
    }
    snprintf(name_out, 256, "%s", name);
    return resolve_model(p, src, name, part, p->info->path[part]);
}

/* a text conditioning: CLIPTextEncode (its text), through unCLIPConditioning
 * when images is set (each adds an image) */
static int text_of(plan *p, const char *id, const char *input, int images, const char **text, const char **tnode)
{
    const char *src;
    int slot, rc;
    if ((rc = link_of(p, id, input, &src, &slot)) != 0)
        return rc;
    while (is(p, src, "unCLIPConditioning")) {
        if (!images)
            return nerr(p, src, "unCLIPConditioning is supported on Stage C's positive prompt only");
        const char *cv, *img, *name;
        double s;
        int sl;
        if ((rc = get_num(p, src, "strength", -10, 10, &s)) || (rc = link_of(p, src, "clip_vision_output", &cv, &sl)))
            return rc;
        if (!is(p, cv, "CLIPVisionEncode"))
            return nerr(p, src, "clip_vision_output must come from CLIPVisionEncode");
        const char *crop = json_string_value(widget(p, cv, "crop"));
        if (crop && strcmp(crop, "center"))
            return nerr(p, cv, "crop '%s': only center (CLIP's own preprocessing) is supported", crop);
        if ((rc = link_of(p, cv, "image", &img, &sl)))
            return rc;
        if (!is(p, img, "LoadImage"))
            return nerr(p, cv, "input 'image' must come from LoadImage");
        if ((rc = get_str(p, img, "image", &name)))
            return rc;
        opts *o = p->o;
        if (o->n_images == GEN_MAX_IMAGES)
            return nerr(p, src, "more than %d images", GEN_MAX_IMAGES);
        /* walked outermost first; ComfyUI appends each to the list: keep its order */
        memmove(o->image_path[1], o->image_path[0], (size_t)o->n_images * GEN_PATH);
        memmove(o->image_strength + 1, o->image_strength, (size_t)o->n_images * sizeof(float));
        if ((rc = resolve_image(p, img, name, o->image_path[0])))
            return rc;
        o->image_strength[0] = (float)s;
        o->n_images++;
        const char *loader;
        if ((rc = link_of(p, cv, "clip_vision", &loader, &sl)))
            return rc;
        if (!is(p, loader, "CLIPVisionLoader") || (rc = get_str(p, loader, "clip_name", &name)))
            return rc ? rc : nerr(p, cv, "input 'clip_vision' must come from CLIPVisionLoader");
        snprintf(p->info->cv_name, 256, "%s", name);
        if ((rc = resolve_model(p, loader, name, CASCADE_PART_CLIP_VISION, p->info->path[CASCADE_PART_CLIP_VISION])))
            return rc;
        if ((rc = link_of(p, src, "conditioning", &src, &slot)))
            return rc;
    }
    if (!is(p, src, "CLIPTextEncode"))
        return nerr(p, id, "input '%s' must be a CLIPTextEncode%s, not node %s (%s)", input,
                    images ? " (through unCLIPConditioning)" : "", src, ctype(json_object_get(p->api, src)));
    if ((rc = get_str(p, src, "text", text)) || (rc = clip_chain(p, src)))
        return rc;
    const char *style = json_string_value(widget(p, src, "cascade_prompt_style"));
    if (style && (p->o->g.prompt_style = gen_prompt_style(style)) < 0)
        return nerr(p, src, "cascade_prompt_style '%s': official or comfyui", style);
    *tnode = src;
    return 0;
}

/* a KSampler / KSamplerAdvanced node's settings */
static int sampler_of(plan *p, const char *id, gen_stage *sp, uint64_t *seed)
{
    int adv = is(p, id, "KSamplerAdvanced"), rc;
    long long steps, sd;
    double cfg, denoise = 1.0;
    const char *sname, *sched;
    if ((rc = get_int(p, id, adv ? "noise_seed" : "seed", 0, INT64_MAX, &sd)) ||
        (rc = get_int(p, id, "steps", 1, 10000, &steps)) || (rc = get_num(p, id, "cfg", -FLT_MAX, FLT_MAX, &cfg)) ||
        (rc = get_str(p, id, "sampler_name", &sname)) || (rc = get_str(p, id, "scheduler", &sched)))
        return rc;
    if (adv) {
        const char *add, *left;
        long long st, en;
        if ((rc = get_str(p, id, "add_noise", &add)) || (rc = get_str(p, id, "return_with_leftover_noise", &left)) ||
            (rc = get_int(p, id, "start_at_step", 0, 10000, &st)) ||
            (rc = get_int(p, id, "end_at_step", 0, LLONG_MAX, &en)))
            return rc;
        if (strcmp(add, "enable") || strcmp(left, "disable") || st != 0 || en < steps)
            return nerr(p, id, "only add_noise enable, start_at_step 0, end_at_step >= steps and "
                        "return_with_leftover_noise disable are supported (a whole KSampler run)");
    } else if ((rc = get_num(p, id, "denoise", 0, 1, &denoise))) {
        return rc;
    } else if (denoise <= 0) {
        return nerr(p, id, "denoise 0 does nothing: use a value in (0, 1]");
    }
    const char *ks = gen_choice(CASCADE_P_KSAMPLER_C, sname), *sc = gen_choice(CASCADE_P_SCHEDULER_C, sched);
    /* the _gpu variant only builds its Brownian tree on x's device: on the
     * CPU, where ComfyUI's latents are ours, it is dpmpp_2m_sde */
    if (sname && !strcmp(sname, "dpmpp_2m_sde_gpu"))
        ks = gen_choice(CASCADE_P_KSAMPLER_C, "dpmpp_2m_sde");
    if (!ks)
        return nerr(p, id, "sampler '%s' is not supported (euler, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, lcm, "
                    "ddpm)", sname);
    if (!sc)
        return nerr(p, id, "scheduler '%s' is not supported (simple, normal, karras, exponential, sgm_uniform)",
                    sched);
    sp->steps = (int)steps;
    sp->cfg = (float)cfg;
    sp->ksampler = ks;
    sp->scheduler = sc;
    sp->denoise = denoise;
    sp->cfg_rho = 0.0f;
    /* cascade's own samplers, written by cascade into its PNGs (ComfyUI
     * ignores inputs its nodes do not have) */
    const char *own = json_string_value(widget(p, id, "cascade_sampler"));
    if (own) {
        double rho = 0.7, eta = 0.0;
        if (!strcmp(own, "ddpm")) sp->sampler = CASCADE_SAMPLER_DDPM;
        else if (!strcmp(own, "ddim")) sp->sampler = CASCADE_SAMPLER_DDIM;
        else if (!strcmp(own, "lcm")) sp->sampler = CASCADE_SAMPLER_LCM;
        else return nerr(p, id, "cascade_sampler '%s': ddpm, ddim or lcm", own);
        if ((widget(p, id, "cascade_cfg_rho") && (rc = get_num(p, id, "cascade_cfg_rho", 0, 1, &rho))) ||
            (widget(p, id, "cascade_eta") && (rc = get_num(p, id, "cascade_eta", 0, 1, &eta))))
            return rc;
        sp->ksampler = NULL;
        sp->cfg_rho = (float)rho;
        sp->eta = sp->sampler == CASCADE_SAMPLER_DDIM ? (float)eta : 1.0f;
    }
    *seed = (uint64_t)sd;
    return 0;
}

/* the one image output: SaveImage nodes (all of one image), else PreviewImage */
static int find_output(plan *p, const char **decode)
{
    const char *id, *save = NULL, *img = NULL;
    json_t *nd;
    for (int pass = 0; pass < 2 && !save; pass++)
        json_object_foreach((json_t *)p->api, id, nd) {
            if (!is(p, id, pass ? "PreviewImage" : "SaveImage"))
                continue;
            const char *src;
            int slot, rc;
            if ((rc = link_of(p, id, "images", &src, &slot)))
                return rc;
            if (img && strcmp(img, src))
                return nerr(p, id, "a second image output (node %s): cascade run makes one image chain", save);
            img = src;
            if (!save) save = id;
        }
    if (!save)
        return cli_error(CASCADE_E_IO, "%s: the workflow has no SaveImage or PreviewImage node: nothing to make", p->env->what);
    const char *pre = "ComfyUI";
    if (is(p, save, "SaveImage")) {
        int rc = get_str(p, save, "filename_prefix", &pre);
        if (rc)
            return rc;
        if (!*pre || strchr(pre, '/') || strchr(pre, '\\') || strchr(pre, '%') || strlen(pre) > 200)
            return nerr(p, save, "filename_prefix '%s': cascade takes a plain name (no folders, no %%date%% fields)",
                        pre);
        const json_t *r = widget(p, save, "cascade_round");
        if (json_is_true(r))
            p->o->g.round = 1;
    }
    snprintf(p->info->prefix, sizeof p->info->prefix, "%s", pre);
    if (!is(p, img, "VAEDecode"))
        return nerr(p, save, "input 'images' must come from VAEDecode (Stage A), not node %s (%s)", img,
                    ctype(json_object_get(p->api, img)));
    *decode = img;
    return 0;
}

/* SaveLatent's prefix, as ComfyUI's get_save_image_path takes it: a name,
 * maybe below subfolders of the output folder (its default is
 * "latents/ComfyUI"); never outside it, no %date% fields */
static int check_latent_prefix(const plan *p, const char *id, const char *pre)
{
    const char *why = NULL;
    if (!*pre || strlen(pre) > 200)
        why = "empty or longer than 200 characters";
    else if (pre[0] == '/' || strchr(pre, '\\') || strchr(pre, '%'))
        why = "cascade takes a name or sub/folder/name below -o (no absolute path, backslash or %date% field)";
    for (const char *c = pre; !why && *c;) {
        size_t n = strcspn(c, "/");
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            why = "an empty, '.' or '..' part (files stay inside the -o folder)";
        c += n;
        if (*c == '/' && !*++c)
            why = "ends with '/' (no file name)";
    }
    return why ? nerr(p, id, "filename_prefix '%s': %s", pre, why) : 0;
}

/* every SaveLatent: the latent of Stage C's or Stage B's KSampler (ksc, ksb;
 * NULL when the graph has none), img2img's encoded image (output 0 of enc,
 * the StageC_VAEEncode node, or NULL), or a LoadLatent file */
static int save_latents(plan *p, const char *ksc, const char *ksb, const char *enc)
{
    const char *id;
    json_t *nd;
    json_object_foreach((json_t *)p->api, id, nd) {
        if (!is(p, id, "SaveLatent"))
            continue;
        const char *src, *pre, *name;
        int slot, rc;
        if ((rc = link_of(p, id, "samples", &src, &slot)) || (rc = get_str(p, id, "filename_prefix", &pre)) ||
            (rc = check_latent_prefix(p, id, pre)))
            return rc;
        if (p->info->n_save == WF_MAX_SAVE_LATENT)
            return nerr(p, id, "more than %d SaveLatent nodes", WF_MAX_SAVE_LATENT);
        wf_save_latent *sl = &p->info->save[p->info->n_save];
        memset(sl, 0, sizeof *sl);
        snprintf(sl->node, sizeof sl->node, "%s (SaveLatent)", id);
        snprintf(sl->prefix, sizeof sl->prefix, "%s", pre);
        if (enc && !strcmp(src, enc) && slot == 0) {
            sl->src = WF_LATENT_ENCODED;
        } else if (ksc && !strcmp(src, ksc)) {
            sl->src = WF_LATENT_C;
        } else if (ksb && !strcmp(src, ksb)) {
            sl->src = WF_LATENT_B;
        } else if (is(p, src, "LoadLatent")) {
            if (ksc)
                return nerr(p, id, "a LoadLatent -> SaveLatent copy beside the image chain: not supported (run it as "
                            "a workflow of its own)");
            sl->src = WF_LATENT_FILE;
            if ((rc = get_str(p, src, "latent", &name)) || (rc = resolve_input(p, src, "latent", name, sl->file)))
                return rc;
        } else {
            return nerr(p, id, "input 'samples' must come from Stage C's or Stage B's KSampler of the image chain, "
                        "output 0 of its StableCascade_StageC_VAEEncode, or LoadLatent, not node %s (%s)", src,
                        ctype(json_object_get(p->api, src)));
        }
        p->info->n_save++;
    }
    return 0;
}

/* no image output: a graph of LoadLatent -> SaveLatent only (copies into
 * the current format); samplers need the image chain */
static int latents_only(plan *p)
{
    const char *id;
    json_t *nd;
    int n = 0;
    json_object_foreach((json_t *)p->api, id, nd) {
        if (is(p, id, "SaveImage") || is(p, id, "PreviewImage"))
            return 0;
        n += is(p, id, "SaveLatent");
    }
    if (!n)
        return 0;
    int rc = save_latents(p, NULL, NULL, NULL);
    return rc ? rc : 1;
}

/* the Stage C latent: EmptyLatentImage, or StageC_VAEEncode (img2img) */
static int latent_c(plan *p, const char *ks, int *w, int *h, int *comp)
{
    const char *src;
    int slot, rc;
    long long v;
    if ((rc = link_of(p, ks, "latent_image", &src, &slot)))
        return rc;
    if (slot != 0)
        return nerr(p, ks, "latent_image must be output 0 (stage_c) of node %s", src);
    if (is(p, src, "StableCascade_EmptyLatentImage")) {
        long long ww, hh, b;
        if ((rc = get_int(p, src, "width", 8, gen_max_side(), &ww)) || (rc = get_int(p, src, "height", 8, gen_max_side(), &hh)) ||
            (rc = get_int(p, src, "compression", 4, 128, &v)) || (rc = get_int(p, src, "batch_size", 1, gen_max_batch(), &b)))
            return rc;
        *w = (int)ww, *h = (int)hh, *comp = (int)v;
        p->o->g.batch = (int)b;
        return 0;
    }
    if (!is(p, src, "StableCascade_StageC_VAEEncode"))
        return nerr(p, ks, "latent_image must come from StableCascade_EmptyLatentImage or "
                    "StableCascade_StageC_VAEEncode, not node %s (%s)", src, ctype(json_object_get(p->api, src)));
    if ((rc = get_int(p, src, "compression", 4, 128, &v)))
        return rc;
    *comp = (int)v;
    const char *img, *name;
    int sl;
    if ((rc = link_of(p, src, "image", &img, &sl)))
        return rc;
    int sw = 0, sh = 0;
    if (is(p, img, "ImageScale")) {   /* cascade writes this: the size of the run */
        long long ww, hh;
        if ((rc = get_int(p, img, "width", 8, 16384, &ww)) || (rc = get_int(p, img, "height", 8, 16384, &hh)))
            return rc;
        sw = (int)ww, sh = (int)hh;
        if ((rc = link_of(p, img, "image", &img, &sl)))
            return rc;
    }
    if (!is(p, img, "LoadImage") || (rc = get_str(p, img, "image", &name)))
        return rc ? rc : nerr(p, src, "input 'image' must come from LoadImage (optionally through ImageScale)");
    char *path = p->info->init_path;
    if ((rc = resolve_image(p, img, name, path)))
        return rc;
    p->o->init_image = path;
    /* LoadImage straight into the encoder (ComfyUI's example): resized as
     * ComfyUI does; through ImageScale (cascade's own graphs) as --init-image */
    p->o->init_comfy = !sw;
    if (!sw) {   /* ComfyUI: the image's own size */
        if ((rc = cascade_image_size(p->ctx, path, &sw, &sh)))
            return cli_error(rc, "%s", cascade_errmsg(p->ctx));
    }
    *w = sw, *h = sh;
    if ((rc = vae_chain(p, src, CASCADE_PART_EFFNET, p->info->effnet_name)))
        return rc;
    return 0;
}

int wf_plan(const json_t *api, const wf_env *env, opts *o, wf_plan_info *info)
{
    plan p = {api, env, o, info, NULL, NULL, 0, 0};
    memset(info, 0, sizeof *info);
    int rc = wf_check(api, env->what);
    if (rc)
        return rc;
    if ((rc = latents_only(&p)) != 0) {
        info->latents_only = rc > 0;
        return rc < 0 ? rc : 0;
    }
    /* a context of its own: the scan sees only --models, nothing the
     * CLI's context holds */
    if (!(p.ctx = cascade_ctx_new()))
        return cli_error(CASCADE_E_NOMEM, "out of memory");
    if (!env->demo && ((rc = cascade_set_string(p.ctx, CASCADE_P_MODELS_DIR, env->models_dir)) ||
                       (rc = cascade_models_scan(p.ctx, &p.set)))) {
        rc = cli_error(rc, "%s", cascade_errmsg(p.ctx));
        cascade_ctx_free(p.ctx);
        return rc;
    }
    const char *dec = NULL, *ksb, *ksc, *src;
    int slot;
    const char *pos_c, *neg_c, *pos_b, *tn_pc, *tn_nc, *tn_pb;
    uint64_t seed_c = 0, seed_b = 0;
    if ((rc = find_output(&p, &dec)) || (rc = link_of(&p, dec, "samples", &ksb, &slot)))
        goto out;
    if (!is(&p, ksb, "KSampler") && !is(&p, ksb, "KSamplerAdvanced")) {
        rc = nerr(&p, dec, "input 'samples' must come from Stage B's KSampler, not node %s (%s)", ksb,
                  ctype(json_object_get(api, ksb)));
        goto out;
    }
    snprintf(info->node_b, sizeof info->node_b, "%s (%s)", ksb, ctype(json_object_get(api, ksb)));
    if ((rc = vae_chain(&p, dec, CASCADE_PART_STAGE_A, info->stage_a_name)) || (rc = sampler_of(&p, ksb, &o->g.b, &seed_b)) ||
        (rc = model_chain(&p, ksb, "model", CASCADE_PART_STAGE_B)))
        goto out;
    /* Stage B's positive: StageB_Conditioning(Stage C's prompt, Stage C's result) */
    const char *bc;
    if ((rc = link_of(&p, ksb, "positive", &bc, &slot)))
        goto out;
    if (!is(&p, bc, "StableCascade_StageB_Conditioning")) {
        rc = nerr(&p, ksb, "positive must come from StableCascade_StageB_Conditioning (Stage C's result)");
        goto out;
    }
    if ((rc = link_of(&p, bc, "stage_c", &ksc, &slot)))
        goto out;
    if (!is(&p, ksc, "KSampler") && !is(&p, ksc, "KSamplerAdvanced")) {
        rc = nerr(&p, bc, "input 'stage_c' must come from Stage C's KSampler, not node %s (%s)", ksc,
                  ctype(json_object_get(api, ksc)));
        goto out;
    }
    snprintf(info->node_c, sizeof info->node_c, "%s (%s)", ksc, ctype(json_object_get(api, ksc)));
    if ((rc = sampler_of(&p, ksc, &o->g.c, &seed_c)) || (rc = model_chain(&p, ksc, "model", CASCADE_PART_STAGE_C)) ||
        (rc = text_of(&p, ksc, "positive", 1, &pos_c, &tn_pc)) || (rc = text_of(&p, ksc, "negative", 0, &neg_c, &tn_nc)) ||
        (rc = text_of(&p, bc, "conditioning", 0, &pos_b, &tn_pb)))
        goto out;
    if (strcmp(pos_b, pos_c)) {
        rc = nerr(&p, bc, "Stage B's prompt differs from Stage C's: cascade encodes one prompt for both stages");
        goto out;
    }
    /* Stage B's negative: ConditioningZeroOut, or Stage C's negative prompt */
    if ((rc = link_of(&p, ksb, "negative", &src, &slot)))
        goto out;
    if (is(&p, src, "ConditioningZeroOut")) {
        o->g.b_uncond_zero = 1;
    } else {
        const char *neg_b, *tn;
        if ((rc = text_of(&p, ksb, "negative", 0, &neg_b, &tn)))
            goto out;
        if (strcmp(neg_b, neg_c)) {
            rc = nerr(&p, ksb, "Stage B's negative prompt differs from Stage C's: not supported (use Stage C's or "
                      "ConditioningZeroOut)");
            goto out;
        }
    }
    if (!o->g.c.ksampler != !o->g.b.ksampler) {
        rc = nerr(&p, ksb, "cascade_sampler on one stage only: not supported");
        goto out;
    }
    /* sizes: Stage C's latent, and Stage B's from the same source */
    int w = 0, h = 0, comp = 42;
    if ((rc = latent_c(&p, ksc, &w, &h, &comp)))
        goto out;
    const char *lb, *lc;
    int sb, sc;
    if ((rc = link_of(&p, ksb, "latent_image", &lb, &sb)) || (rc = link_of(&p, ksc, "latent_image", &lc, &sc)))
        goto out;
    if (strcmp(lb, lc) || sb != 1) {
        rc = nerr(&p, ksb, "latent_image must be output 1 (stage_b) of the node that gives Stage C its latent (%s)", lc);
        goto out;
    }
    w = w / 8 * 8, h = h / 8 * 8;   /* ComfyUI's Stage B latent is (side // 8) * 2 */
    int lw = cascade_latent_side(w, CASCADE_LATENT_C), lh = cascade_latent_side(h, CASCADE_LATENT_C);
    if (w < 8 || h < 8 || w / comp != lw || h / comp != lh) {
        rc = nerr(&p, lc, "size %dx%d with compression %d gives a %dx%d Stage C latent; cascade's pipeline makes "
                  "%dx%d at that size (compression 42 matches it at the usual sizes)", w, h, comp, w / comp, h / comp,
                  lw, lh);
        goto out;
    }
    o->g.width = w, o->g.height = h;
    o->size_given = 1;   /* also with --demo */
    info->compression = comp;
    if ((rc = save_latents(&p, ksc, ksb, is(&p, lc, "StableCascade_StageC_VAEEncode") ? lc : NULL)))
        goto out;
    o->g.prompt = pos_c;
    o->g.negative = neg_c;
    o->prompt = pos_c;
    o->have_prompt = 1;
    o->g.seed = seed_c;
    o->seed_given = 1;
    if (seed_b != seed_c) {
        o->g.seed_b = seed_b;
        o->g.seed_b_set = 1;
    }
    if (o->g.b_uncond_zero && !o->g.c.ksampler) {
        rc = nerr(&p, ksb, "ConditioningZeroOut with cascade_sampler: not supported");
        goto out;
    }
    if (o->init_image)
        o->strength = 0.6;   /* unused with ComfyUI's samplers (denoise decides) */
    for (int k = 0; k < CASCADE_PART_COUNT; k++)
        if (info->path[k][0] && !env->demo)
            o->file[k] = info->path[k];
out:
    cascade_models_free(p.set);
    cascade_ctx_free(p.ctx);
    return rc;
}
