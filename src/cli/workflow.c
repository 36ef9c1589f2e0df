/* ComfyUI workflow files: the node classes cascade runs, reading API and UI
 * JSON and the text chunks of ComfyUI's PNGs, and the graph checks (known
 * classes, links, cycles) that run before anything heavy. */
#include "cli.h"
#include "workflow.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* inputs that take links, their types; widgets in widgets_values order;
 * outputs in slot order (types as ComfyUI names them) */
static const wf_class classes[] = {
    {"CheckpointLoaderSimple", {0}, {0}, {"ckpt_name"}, {"MODEL", "CLIP", "VAE"}},
    {"UNETLoader", {0}, {0}, {"unet_name", "weight_dtype"}, {"MODEL"}},
    {"CLIPLoader", {0}, {0}, {"clip_name", "type", "device"}, {"CLIP"}},
    {"VAELoader", {0}, {0}, {"vae_name"}, {"VAE"}},
    {"LoraLoader", {"model", "clip"}, {"MODEL", "CLIP"}, {"lora_name", "strength_model", "strength_clip"},
     {"MODEL", "CLIP"}},
    {"LoraLoaderModelOnly", {"model"}, {"MODEL"}, {"lora_name", "strength_model"}, {"MODEL"}},
    {"ModelSamplingStableCascade", {"model"}, {"MODEL"}, {"shift"}, {"MODEL"}},
    {"CLIPTextEncode", {"clip"}, {"CLIP"}, {"text"}, {"CONDITIONING"}},
    {"ConditioningZeroOut", {"conditioning"}, {"CONDITIONING"}, {0}, {"CONDITIONING"}},
    {"StableCascade_EmptyLatentImage", {0}, {0}, {"width", "height", "compression", "batch_size"},
     {"LATENT", "LATENT"}},
    {"StableCascade_StageB_Conditioning", {"conditioning", "stage_c"}, {"CONDITIONING", "LATENT"}, {0},
     {"CONDITIONING"}},
    {"StableCascade_StageC_VAEEncode", {"image", "vae"}, {"IMAGE", "VAE"}, {"compression"}, {"LATENT", "LATENT"}},
    {"KSampler", {"model", "positive", "negative", "latent_image"}, {"MODEL", "CONDITIONING", "CONDITIONING", "LATENT"},
     {"seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"}, {"LATENT"}},
    {"KSamplerAdvanced", {"model", "positive", "negative", "latent_image"},
     {"MODEL", "CONDITIONING", "CONDITIONING", "LATENT"},
     {"add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step", "end_at_step",
      "return_with_leftover_noise"},
     {"LATENT"}},
    {"VAEDecode", {"samples", "vae"}, {"LATENT", "VAE"}, {0}, {"IMAGE"}},
    {"SaveImage", {"images"}, {"IMAGE"}, {"filename_prefix"}, {0}},
    {"PreviewImage", {"images"}, {"IMAGE"}, {0}, {0}},
    {"SaveLatent", {"samples"}, {"LATENT"}, {"filename_prefix"}, {0}},
    {"LoadLatent", {0}, {0}, {"latent"}, {"LATENT"}},
    {"LoadImage", {0}, {0}, {"image", "upload"}, {"IMAGE", "MASK"}},
    {"ImageScale", {"image"}, {"IMAGE"}, {"upscale_method", "width", "height", "crop"}, {"IMAGE"}},
    {"CLIPVisionLoader", {0}, {0}, {"clip_name"}, {"CLIP_VISION"}},
    {"CLIPVisionEncode", {"clip_vision", "image"}, {"CLIP_VISION", "IMAGE"}, {"crop"}, {"CLIP_VISION_OUTPUT"}},
    {"unCLIPConditioning", {"conditioning", "clip_vision_output"}, {"CONDITIONING", "CLIP_VISION_OUTPUT"},
     {"strength", "noise_augmentation"}, {"CONDITIONING"}},
};

const wf_class *wf_class_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof classes / sizeof *classes; i++)
        if (!strcmp(classes[i].name, name))
            return &classes[i];
    return NULL;
}

int wf_class_n_out(const wf_class *c)
{
    int n = 0;
    while (n < WF_MAX_OUT && c->out[n])
        n++;
    return n;
}

/* UI-only helpers that carry no work */
static int is_note(const char *t)
{
    return t && (!strcmp(t, "Note") || !strcmp(t, "MarkdownNote"));
}

/* ---- PNG text chunks ---- */

static void png_fail(png_structp png, png_const_charp msg)
{
    (void)msg;
    longjmp(png_jmpbuf(png), 1);
}

static void png_warn(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg;
}

/* the text of chunks "prompt" and "workflow" (malloc'd, NULL if absent) */
static int png_chunks(FILE *f, const char *path, char **prompt, char **workflow)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL, end = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || !end) {
        png_destroy_read_struct(&png, &info, &end);
        return cli_error(CASCADE_E_NOMEM, "%s: out of memory reading the PNG", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, &end);
        free(*prompt), free(*workflow);
        *prompt = *workflow = NULL;
        return cli_error(CASCADE_E_IO, "%s: not a readable PNG", path);
    }
    png_init_io(png, f);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_read_info(png, info);
    /* the chunks may also follow the image data: read to the end */
    png_uint_32 h = png_get_image_height(png, info);
    png_read_update_info(png, info);
    size_t rb = png_get_rowbytes(png, info);
    png_bytep row = malloc(rb ? rb : 1);
    if (!row)
        png_error(png, "out of memory");
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, row, NULL);
    free(row);
    png_read_end(png, end);
    png_infop infos[2] = {info, end};
    for (int k = 0; k < 2; k++) {
        png_textp t;
        int n = 0;
        png_get_text(png, infos[k], &t, &n);
        for (int i = 0; i < n; i++) {
            char **dst = !strcmp(t[i].key, "prompt") ? prompt : !strcmp(t[i].key, "workflow") ? workflow : NULL;
            if (dst && !*dst && t[i].text)
                *dst = strdup(t[i].text);
        }
    }
    png_destroy_read_struct(&png, &info, &end);
    return 0;
}

/* ComfyUI writes workflows of a few hundred KB; a PNG holds its image too */
#define WF_MAX_FILE ((unsigned long long)64 << 20)

int wf_load(const char *path, json_t **api)
{
    *api = NULL;
    char *buf;
    size_t got;
    /* the library's checks: a regular file (no FIFO or device), size-limited */
    int rc = cascade_file_read(NULL, path, "workflow", WF_MAX_FILE, &buf, &got);
    if (rc)
        return cli_error(rc, "%s", cascade_last_error());
    const unsigned char *sig = (const unsigned char *)buf;
    json_t *root = NULL;
    json_error_t je;
    int png = got >= 8 && !png_sig_cmp(sig, 0, 8);
    int webp = got >= 12 && !memcmp(sig, "RIFF", 4) && !memcmp(sig + 8, "WEBP", 4);
    if (png || webp) {
        char *prompt = NULL, *workflow = NULL;
        if (png) {
            FILE *f = fmemopen(buf, got, "rb");   /* libpng reads a stream */
            rc = f ? png_chunks(f, path, &prompt, &workflow) : cli_error(CASCADE_E_NOMEM, "%s: out of memory", path);
            if (f)
                fclose(f);
        } else {
            rc = wf_webp_texts(sig, got, path, &prompt, &workflow);
        }
        cascade_free(buf);
        if (rc)
            return rc;
        const char *text = prompt ? prompt : workflow;
        if (!text)
            return cli_error(CASCADE_E_IO, "%s: this %s holds no ComfyUI workflow (no 'prompt' or 'workflow' %s)", path,
                            png ? "PNG" : "WebP", png ? "text chunk" : "EXIF entry");
        root = json_loads(text, 0, &je);
        if (!root) {
            /* an image whose "prompt" is plain text (older cascade PNGs) */
            if (prompt && workflow && (root = json_loads(workflow, 0, &je)) != NULL)
                goto parsed;
            rc = cli_error(CASCADE_E_IO, "%s: the '%s' %s is not JSON: %s (line %d)", path, prompt ? "prompt" : "workflow",
                          png ? "text chunk" : "EXIF entry", je.text, je.line);
        }
    parsed:
        free(prompt), free(workflow);
        if (rc)
            return rc;
    } else {
        root = json_loadb(buf, got, JSON_REJECT_DUPLICATES, &je);
        cascade_free(buf);
        if (!root)
            return cli_error(CASCADE_E_IO, "%s: not valid JSON: %s (line %d, column %d)", path, je.text, je.line, je.column);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return cli_error(CASCADE_E_IO, "%s: a workflow is a JSON object (API format: {\"id\": {\"class_type\", \"inputs\"}}; "
                        "UI format: {\"nodes\", \"links\"})", path);
    }
    if (json_is_array(json_object_get(root, "nodes"))) {
        rc = wf_from_ui(root, path, api);
        json_decref(root);
        return rc;
    }
    /* API form; ComfyUI's /prompt body {"prompt": {...}} too */
    json_t *inner = json_object_get(root, "prompt");
    if (json_is_object(inner) && !json_object_get(inner, "class_type")) {
        *api = json_incref(inner);
        json_decref(root);
    } else {
        *api = root;
    }
    return 0;
}

/* ---- UI form ---- */

typedef struct {
    json_int_t id, from, to;
    int from_slot, to_slot;
} ui_link;

static int ui_links(const json_t *links, ui_link **out, size_t *n, const char *what)
{
    size_t cnt = json_array_size(links), i;
    ui_link *l = calloc(cnt ? cnt : 1, sizeof *l);
    if (!l)
        return cli_error(CASCADE_E_NOMEM, "out of memory");
    json_t *e;
    json_array_foreach(links, i, e) {
        if (json_is_array(e) && json_array_size(e) >= 5) {
            l[i].id = json_integer_value(json_array_get(e, 0));
            l[i].from = json_integer_value(json_array_get(e, 1));
            l[i].from_slot = (int)json_integer_value(json_array_get(e, 2));
            l[i].to = json_integer_value(json_array_get(e, 3));
            l[i].to_slot = (int)json_integer_value(json_array_get(e, 4));
        } else if (json_is_object(e)) {
            l[i].id = json_integer_value(json_object_get(e, "id"));
            l[i].from = json_integer_value(json_object_get(e, "origin_id"));
            l[i].from_slot = (int)json_integer_value(json_object_get(e, "origin_slot"));
            l[i].to = json_integer_value(json_object_get(e, "target_id"));
            l[i].to_slot = (int)json_integer_value(json_object_get(e, "target_slot"));
        } else {
            free(l);
            return cli_error(CASCADE_E_IO, "%s: links[%zu] is neither [id, from, slot, to, slot, type] nor an object", what, i);
        }
    }
    *out = l;
    *n = cnt;
    return 0;
}

static const json_t *ui_node(const json_t *nodes, json_int_t id)
{
    size_t i;
    json_t *nd;
    json_array_foreach(nodes, i, nd)
        if (json_integer_value(json_object_get(nd, "id")) == id)
            return nd;
    return NULL;
}

static const char *ui_type(const json_t *nd)
{
    const char *t = json_string_value(json_object_get(nd, "type"));
    return t ? t : "?";
}

/* follows a link through Reroute nodes to its source node and slot, or to a
 * primitive's value (*value) */
static int ui_source(const json_t *nodes, const ui_link *l, size_t nl, json_int_t link_id, const json_t *at,
                     const char *what, json_int_t *node, int *slot, const json_t **value)
{
    for (int hops = 0; hops < 1000; hops++) {
        const ui_link *k = NULL;
        for (size_t i = 0; i < nl; i++)
            if (l[i].id == link_id)
                k = &l[i];
        if (!k)
            return cli_error(CASCADE_E_IO, "%s: node %lld (%s): input link %lld does not exist", what,
                            (long long)json_integer_value(json_object_get(at, "id")), ui_type(at), (long long)link_id);
        const json_t *src = ui_node(nodes, k->from);
        if (!src)
            return cli_error(CASCADE_E_IO, "%s: link %lld comes from node %lld, which does not exist", what,
                            (long long)link_id, (long long)k->from);
        const char *t = ui_type(src);
        if (!strcmp(t, "Reroute")) {
            json_t *in = json_array_get(json_object_get(src, "inputs"), 0);
            json_t *lk = json_object_get(in, "link");
            if (!json_is_integer(lk))
                return cli_error(CASCADE_E_IO, "%s: node %lld (Reroute) has no input", what, (long long)k->from);
            link_id = json_integer_value(lk);
            at = src;
            continue;
        }
        if (!strcmp(t, "PrimitiveNode")) {
            *value = json_array_get(json_object_get(src, "widgets_values"), 0);
            if (!*value)
                return cli_error(CASCADE_E_IO, "%s: node %lld (PrimitiveNode) has no value", what, (long long)k->from);
            return 0;
        }
        *node = k->from;
        *slot = k->from_slot;
        return 0;
    }
    return cli_error(CASCADE_E_IO, "%s: a cycle of Reroute nodes", what);
}

static int is_control(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && (!strcmp(s, "fixed") || !strcmp(s, "increment") || !strcmp(s, "decrement") ||
                 !strcmp(s, "randomize"));
}

int wf_from_ui(const json_t *ui, const char *what, json_t **api)
{
    const json_t *nodes = json_object_get(ui, "nodes");
    ui_link *l = NULL;
    size_t nl = 0, i;
    int rc = ui_links(json_object_get(ui, "links"), &l, &nl, what);
    if (rc)
        return rc;
    json_t *out = json_object(), *nd;
    json_array_foreach(nodes, i, nd) {
        const char *type = ui_type(nd);
        json_int_t id = json_integer_value(json_object_get(nd, "id"));
        int mode = (int)json_integer_value(json_object_get(nd, "mode"));
        if (is_note(type) || !strcmp(type, "Reroute") || !strcmp(type, "PrimitiveNode") || mode == 2)
            continue;   /* no work; muted nodes do not run in ComfyUI either */
        if (mode == 4) {
            rc = cli_error(CASCADE_E_IO, "%s: node %lld (%s) is bypassed: not supported (remove it or un-bypass it)", what,
                          (long long)id, type);
            break;
        }
        const wf_class *c = wf_class_find(type);
        if (!c) {
            rc = cli_error(CASCADE_E_IO, "%s: node %lld (%s): node type not supported by cascade run", what, (long long)id,
                          type);
            break;
        }
        json_t *inputs = json_object();
        /* widgets in class order; a seed widget is followed by control_after_generate */
        const json_t *wv = json_object_get(nd, "widgets_values");
        size_t wi = 0;
        for (int k = 0; k < WF_MAX_IN && c->widget[k] && json_is_array(wv); k++) {
            json_t *v = json_array_get(wv, wi);
            if (!v)
                break;   /* optional trailing widgets (CLIPLoader's device) */
            json_object_set(inputs, c->widget[k], v);
            wi++;
            if (strstr(c->widget[k], "seed") && is_control(json_array_get(wv, wi)))
                wi++;
        }
        size_t j;
        json_t *in;
        json_array_foreach(json_object_get(nd, "inputs"), j, in) {
            const char *name = json_string_value(json_object_get(in, "name"));
            json_t *lk = json_object_get(in, "link");
            if (!name || !json_is_integer(lk))
                continue;
            json_int_t src = 0;
            int slot = 0;
            const json_t *value = NULL;
            if ((rc = ui_source(nodes, l, nl, json_integer_value(lk), nd, what, &src, &slot, &value)) != 0)
                break;
            if (value) {
                json_object_set(inputs, name, (json_t *)value);
            } else {
                char sid[32];
                snprintf(sid, sizeof sid, "%lld", (long long)src);
                json_object_set_new(inputs, name, json_pack("[s, i]", sid, slot));
            }
        }
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)id);
        json_object_set_new(out, key, json_pack("{s:s, s:o}", "class_type", type, "inputs", inputs));
        if (rc)
            break;
    }
    free(l);
    if (rc) {
        json_decref(out);
        return rc;
    }
    *api = out;
    return 0;
}

/* ---- graph checks ---- */

static int visit(const json_t *api, const char *id, json_t *state, const char *what)
{
    json_t *st = json_object_get(state, id);
    if (st && json_integer_value(st) == 2)
        return 0;
    const json_t *nd = json_object_get(api, id);
    const char *type = json_string_value(json_object_get(nd, "class_type"));
    if (st)
        return cli_error(CASCADE_E_IO, "%s: node %s (%s) is part of a cycle", what, id, type ? type : "?");
    json_object_set_new(state, id, json_integer(1));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(nd, "inputs"), k, v) {
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)))
            continue;
        const char *src = json_string_value(json_array_get(v, 0));
        const json_t *sn = json_object_get(api, src);
        if (!sn)
            return cli_error(CASCADE_E_IO, "%s: node %s (%s): input '%s' links to node %s, which does not exist", what, id,
                            type, k, src);
        const wf_class *sc = wf_class_find(json_string_value(json_object_get(sn, "class_type")));
        json_int_t slot = json_integer_value(json_array_get(v, 1));
        if (!json_is_integer(json_array_get(v, 1)) || slot < 0 || (sc && slot >= wf_class_n_out(sc)))
            return cli_error(CASCADE_E_IO, "%s: node %s (%s): input '%s' links to output %lld of node %s (%s), which has "
                            "%d outputs", what, id, type, k, (long long)slot, src, sc ? sc->name : "?",
                            sc ? wf_class_n_out(sc) : 0);
        int rc = visit(api, src, state, what);   /* a cycle is the first thing to report */
        if (rc)
            return rc;
        /* ComfyUI refuses a link whose output type is not the input's type
         * ("Return type mismatch between linked nodes"): so do we */
        const wf_class *c = wf_class_find(type);
        for (int i = 0; c && sc && i < WF_MAX_IN && c->in[i]; i++)
            if (!strcmp(c->in[i], k) && strcmp(c->in_type[i], sc->out[slot]))
                return cli_error(CASCADE_E_IO, "%s: node %s (%s): input '%s' takes %s, but output %lld of node %s (%s) is %s",
                                what, id, type, k, c->in_type[i], (long long)slot, src, sc->name, sc->out[slot]);
    }
    json_object_set_new(state, id, json_integer(2));
    return 0;
}

int wf_check(const json_t *api, const char *what)
{
    const char *id;
    json_t *nd;
    if (!json_object_size(api))
        return cli_error(CASCADE_E_IO, "%s: the workflow has no nodes", what);
    json_object_foreach((json_t *)api, id, nd) {
        const char *type = json_string_value(json_object_get(nd, "class_type"));
        if (!json_is_object(nd) || !type || !json_is_object(json_object_get(nd, "inputs")))
            return cli_error(CASCADE_E_IO, "%s: node %s: not an API-format node (needs \"class_type\" and \"inputs\")", what,
                            id);
        if (!wf_class_find(type))
            return cli_error(CASCADE_E_IO, "%s: node %s (%s): node type not supported by cascade run", what, id, type);
    }
    json_t *state = json_object();
    int rc = 0;
    json_object_foreach((json_t *)api, id, nd)
        if ((rc = visit(api, id, state, what)) != 0)
            break;
    json_decref(state);
    return rc;
}
