/* The run as a ComfyUI graph of standard nodes, for the "prompt" (API form)
 * and "workflow" (UI form) text chunks of every PNG cascade writes: the
 * layout of ComfyUI's Stable Cascade examples (UNETLoader x2, CLIPLoader
 * type stable_cascade, VAELoader, two KSamplers joined by
 * StableCascade_StageB_Conditioning). What ComfyUI cannot express (the
 * official samplers, cfg_rho, the official prompt reading, rounding) goes
 * into extra inputs named cascade_* that ComfyUI ignores and `cascade run`
 * reads. */
#include "cli.h"
#include "workflow.h"

#include "cascade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    json_t *api;
    int next;
} graph;

static const char *add(graph *g, const char *type, json_t *inputs, char *id)
{
    snprintf(id, 16, "%d", g->next++);
    json_object_set_new(g->api, id, json_pack("{s:s, s:o}", "class_type", type, "inputs", inputs));
    return id;
}

static json_t *ln(const char *id, int slot)
{
    return json_pack("[s, i]", id, slot);
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

static const char *model_name(const gen_meta *m, const char *role)
{
    for (int i = 0; i < m->n_models; i++)
        if (!strcmp(m->models[i].role, role))
            return base_name(m->models[i].path);
    return "";
}

/* a number as JSON the way it was given: 4 -> 4.0, 1.1 -> 1.1 (not 1.100000023841858) */
static json_t *num(double v)
{
    char b[32];
    for (int prec = 6; prec <= 9; prec++) {   /* the shortest text that gives the same float back */
        snprintf(b, sizeof b, "%.*g", prec, v);
        if ((float)strtod(b, NULL) == (float)v)
            break;
    }
    return json_real(strtod(b, NULL));
}

/* the smallest change from 42 that gives cascade's latent size */
static int compression_for(int w, int h)
{
    for (int d = 0; d < 64; d++)
        for (int s = -1; s <= 1; s += 2) {
            int c = 42 + s * d;
            if (c >= 4 && w / c == cascade_latent_side(w, CASCADE_LATENT_C) &&
                h / c == cascade_latent_side(h, CASCADE_LATENT_C))
                return c;
        }
    return 42;
}

static json_t *ksampler(const gen_stage *sp, uint64_t seed, const char *model, const char *pos,
                        const char *neg, const char *lat, int lat_slot)
{
    const char *sname = sp->ksampler ? sp->ksampler : "ddpm";
    json_t *in = json_pack("{s:I, s:i, s:o, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "seed", (json_int_t)seed, "steps",
                           sp->steps, "cfg", num(sp->cfg), "sampler_name", sname, "scheduler",
                           sp->ksampler ? sp->scheduler : gen_choice(CASCADE_P_SCHEDULER_C, NULL), "denoise",
                           num(sp->ksampler ? sp->denoise : 1.0), "model", ln(model, 0), "positive", ln(pos, 0),
                           "negative", ln(neg, 0), "latent_image", ln(lat, lat_slot));
    if (!sp->ksampler) {
        json_object_set_new(in, "cascade_sampler",
                            json_string(sp->sampler == CASCADE_SAMPLER_DDIM ? "ddim"
                                        : sp->sampler == CASCADE_SAMPLER_LCM ? "lcm" : "ddpm"));
        json_object_set_new(in, "cascade_cfg_rho", num(sp->cfg_rho));
        if (sp->sampler == CASCADE_SAMPLER_DDIM)
            json_object_set_new(in, "cascade_eta", num(sp->eta));
    }
    return in;
}

static json_t *build_api(const gen_meta *m, const char *prefix)
{
    const gen_settings *p = m->g;
    graph g = {json_object(), 1};
    char mc[16], mb[16], clip[16], vae[16], pos[16], neg[16], lat[16], kc[16], bc[16], nb[16], kb[16], dec[16],
        tmp[16], posc[16];
    add(&g, "UNETLoader", json_pack("{s:s, s:s}", "unet_name", model_name(m, "stage_c"), "weight_dtype", "default"), mc);
    add(&g, "UNETLoader", json_pack("{s:s, s:s}", "unet_name", model_name(m, "stage_b"), "weight_dtype", "default"), mb);
    add(&g, "CLIPLoader", json_pack("{s:s, s:s}", "clip_name", model_name(m, "text_encoder"), "type", "stable_cascade"),
        clip);
    add(&g, "VAELoader", json_pack("{s:s}", "vae_name", model_name(m, "stage_a")), vae);
    int clip_slot = 0;
    /* LoRAs in the order applied: Stage C's on its model, the text encoder's on the CLIP, Stage B's */
    for (int i = 0; i < m->n_loras; i++) {
        const gen_lora_meta *l = &m->loras[i];
        if (!strcmp(l->part, "stage_b")) {
            json_t *in = json_pack("{s:s, s:o, s:o}", "lora_name", base_name(l->path), "strength_model",
                                   num(l->strength), "model", ln(mb, 0));
            snprintf(mb, sizeof mb, "%s", add(&g, "LoraLoaderModelOnly", in, tmp));
        } else {
            int te = !strcmp(l->part, "text_encoder");
            json_t *in = json_pack("{s:s, s:o, s:o, s:o, s:o}", "lora_name", base_name(l->path), "strength_model",
                                   num(te ? 0 : l->strength), "strength_clip", num(te ? l->strength : 0), "model",
                                   ln(mc, 0), "clip", ln(clip, clip_slot));
            add(&g, "LoraLoader", in, tmp);
            /* the loader's two outputs: MODEL 0, CLIP 1 */
            snprintf(mc, sizeof mc, "%s", tmp);
            snprintf(clip, sizeof clip, "%s", tmp);
            clip_slot = 1;
        }
    }
    if (p->c.shift != 2.0f)
        snprintf(mc, sizeof mc, "%s",
                 add(&g, "ModelSamplingStableCascade", json_pack("{s:o, s:o}", "shift", num(p->c.shift), "model",
                                                                 ln(mc, 0)), tmp));
    if (p->b.shift != 1.0f)
        snprintf(mb, sizeof mb, "%s",
                 add(&g, "ModelSamplingStableCascade", json_pack("{s:o, s:o}", "shift", num(p->b.shift), "model",
                                                                 ln(mb, 0)), tmp));
    json_t *tin = json_pack("{s:s, s:o}", "text", p->prompt, "clip", ln(clip, clip_slot));
    json_t *nin = json_pack("{s:s, s:o}", "text", p->negative ? p->negative : "", "clip", ln(clip, clip_slot));
    if (p->prompt_style == CASCADE_PROMPT_OFFICIAL) {
        json_object_set_new(tin, "cascade_prompt_style", json_string("official"));
        json_object_set_new(nin, "cascade_prompt_style", json_string("official"));
    }
    add(&g, "CLIPTextEncode", tin, pos);
    add(&g, "CLIPTextEncode", nin, neg);
    snprintf(posc, sizeof posc, "%s", pos);
    /* image variation: one unCLIPConditioning per image on Stage C's prompt */
    json_t *imgs = m->images ? json_loads(m->images, 0, NULL) : NULL;
    if (json_array_size(imgs)) {
        char cv[16], li[16], enc[16];
        add(&g, "CLIPVisionLoader", json_pack("{s:s}", "clip_name", model_name(m, "clip_vision")), cv);
        size_t i;
        json_t *e;
        json_array_foreach(imgs, i, e) {
            const char *f = json_string_value(json_object_get(e, "file"));
            add(&g, "LoadImage", json_pack("{s:s, s:s}", "image", base_name(f ? f : ""), "upload", "image"), li);
            add(&g, "CLIPVisionEncode", json_pack("{s:s, s:o, s:o}", "crop", "center", "clip_vision", ln(cv, 0),
                                                  "image", ln(li, 0)), enc);
            json_t *in = json_pack("{s:o, s:f, s:o, s:o}", "strength",
                                   num(json_number_value(json_object_get(e, "strength"))), "noise_augmentation", 0.0,
                                   "conditioning", ln(posc, 0), "clip_vision_output", ln(enc, 0));
            add(&g, "unCLIPConditioning", in, tmp);
            snprintf(posc, sizeof posc, "%s", tmp);
        }
    }
    json_decref(imgs);
    int comp = compression_for(p->width, p->height);
    json_t *init = m->init_image ? json_loads(m->init_image, 0, NULL) : NULL;
    if (init && p->c.ksampler) {   /* ComfyUI's img2img: the image, scaled to the run's size, encoded */
        char li[16], sc[16], ev[16];
        const char *f = json_string_value(json_object_get(init, "file"));
        add(&g, "LoadImage", json_pack("{s:s, s:s}", "image", base_name(f ? f : ""), "upload", "image"), li);
        add(&g, "ImageScale", json_pack("{s:s, s:i, s:i, s:s, s:o}", "upscale_method", "bicubic", "width", p->width,
                                        "height", p->height, "crop", "center", "image", ln(li, 0)), sc);
        add(&g, "VAELoader", json_pack("{s:s}", "vae_name", model_name(m, "effnet")), ev);
        add(&g, "StableCascade_StageC_VAEEncode", json_pack("{s:i, s:o, s:o}", "compression", comp, "image",
                                                            ln(sc, 0), "vae", ln(ev, 0)), lat);
    } else {
        add(&g, "StableCascade_EmptyLatentImage", json_pack("{s:i, s:i, s:i, s:i}", "width", p->width, "height",
                                                            p->height, "compression", comp, "batch_size", p->batch),
            lat);
    }
    json_decref(init);
    add(&g, "KSampler", ksampler(&p->c, p->seed, mc, posc, neg, lat, 0), kc);
    add(&g, "StableCascade_StageB_Conditioning", json_pack("{s:o, s:o}", "conditioning", ln(pos, 0), "stage_c",
                                                           ln(kc, 0)), bc);
    if (p->b_uncond_zero)
        add(&g, "ConditioningZeroOut", json_pack("{s:o}", "conditioning", ln(pos, 0)), nb);
    else
        snprintf(nb, sizeof nb, "%s", neg);
    add(&g, "KSampler", ksampler(&p->b, p->seed_b_set ? p->seed_b : p->seed, mb, bc, nb, lat, 1), kb);
    add(&g, "VAEDecode", json_pack("{s:o, s:o}", "samples", ln(kb, 0), "vae", ln(vae, 0)), dec);
    json_t *save = json_pack("{s:s, s:o}", "filename_prefix", prefix ? prefix : "cascade", "images", ln(dec, 0));
    if (p->round)
        json_object_set_new(save, "cascade_round", json_true());
    add(&g, "SaveImage", save, tmp);
    return g.api;
}

/* the UI form of an API graph: nodes with their links and widgets_values */
static json_t *build_ui(const json_t *api)
{
    json_t *nodes = json_array(), *links = json_array();
    int link_id = 0, n = 0, max_id = 0;
    const char *id;
    json_t *nd;
    /* node ids are 1..n in order */
    for (int k = 1;; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        if (!(nd = json_object_get(api, key)))
            break;
        n = k;
    }
    json_t **outs = calloc((size_t)n + 1, sizeof *outs);
    for (int k = 1; k <= n; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        nd = json_object_get(api, key);
        const wf_class *c = wf_class_find(json_string_value(json_object_get(nd, "class_type")));
        outs[k] = json_array();
        for (int s = 0; s < wf_class_n_out(c); s++)
            json_array_append_new(outs[k], json_pack("{s:s, s:s, s:[], s:i}", "name", c->out[s], "type", c->out[s],
                                                     "links", "slot_index", s));
    }
    for (int k = 1; k <= n; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        nd = json_object_get(api, key);
        const char *type = json_string_value(json_object_get(nd, "class_type"));
        const wf_class *c = wf_class_find(type);
        json_t *in = json_object_get(nd, "inputs"), *ins = json_array(), *wv = json_array();
        for (int i = 0; i < WF_MAX_IN && c->in[i]; i++) {
            json_t *v = json_object_get(in, c->in[i]);
            if (!json_is_array(v))
                continue;
            int from = atoi(json_string_value(json_array_get(v, 0)));
            int slot = (int)json_integer_value(json_array_get(v, 1));
            link_id++;
            json_array_append_new(links, json_pack("[i, i, i, i, i, s]", link_id, from, slot, k, i, c->in_type[i]));
            json_array_append_new(json_object_get(json_array_get(outs[from], (size_t)slot), "links"),
                                  json_integer(link_id));
            json_array_append_new(ins, json_pack("{s:s, s:s, s:i}", "name", c->in[i], "type", c->in_type[i], "link",
                                                 link_id));
        }
        for (int i = 0; i < WF_MAX_IN && c->widget[i]; i++) {
            json_t *v = json_object_get(in, c->widget[i]);
            if (!v)
                break;
            json_array_append(wv, v);
            if (strstr(c->widget[i], "seed"))
                json_array_append_new(wv, json_string("fixed"));   /* control_after_generate */
        }
        json_array_append_new(nodes, json_pack("{s:i, s:s, s:[i, i], s:[i, i], s:{}, s:i, s:i, s:o, s:o, s:{s:s}, s:o}",
                                               "id", k, "type", type, "pos", 80 + ((k - 1) % 5) * 340,
                                               80 + ((k - 1) / 5) * 300, "size", 315, 130, "flags", "order", k - 1,
                                               "mode", 0, "inputs", ins, "outputs", outs[k], "properties",
                                               "Node name for S&R", type, "widgets_values", wv));
        max_id = k;
    }
    free(outs);
    (void)id;
    return json_pack("{s:i, s:i, s:o, s:o, s:[], s:{}, s:{}, s:f}", "last_node_id", max_id, "last_link_id", link_id,
                     "nodes", nodes, "links", links, "groups", "config", "extra", "version", 0.4);
}

int wf_emit(const gen_meta *m, const char *prefix, char **api_out, char **ui_out)
{
    json_t *api = build_api(m, prefix);
    json_t *ui = api ? build_ui(api) : NULL;
    *api_out = api ? json_dumps(api, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9)) : NULL;
    *ui_out = ui ? json_dumps(ui, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(api);
    json_decref(ui);
    if (!*api_out || !*ui_out) {
        free(*api_out), free(*ui_out);
        return cli_error(CASCADE_E_NOMEM, "out of memory building the workflow metadata");
    }
    return 0;
}
