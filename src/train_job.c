/* Training (cascade_trainer): the run. Every input is opened and checked before anything
 * is written (a missing file leaves the output folder untouched); the
 * images and captions are encoded once (EffNet latents, CLIP-G embeddings;
 * on disk too with --cache_*) and the encoders freed; then epochs of
 * bucketed batches, one cs_train_draw seeded with seed + micro-batch index
 * and one cs_train_accumulate per batch, the optimizer every
 * gradient_accumulation_steps batches and at the end of each epoch (as
 * accelerate does). A stop request drops the unfinished step and saves the
 * state of the last optimizer step (train_save.c). */
#include "train_job.h"

#include "cancel.h"
#include "caption.h"
#include "clip.h"
#include "cond.h"
#include "dataset.h"
#include "device.h"
#include "dscache.h"
#include "effnet.h"
#include "error.h"
#include "models.h"
#include "ops.h"
#include "previewer.h"
#include "stage_c.h"
#include "tensor.h"
#include "tokenizer.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct cs_tj {
    cs_tj_opts *o;
    cs_st_file *cf;
    cs_stage_c *m;
    cs_trainer *t;      /* on a device: synced before anything reads the weights */
    cs_effnet *eff;
    cs_clip *clip;
    cs_tokenizer *tok;
    cs_previewer *pv;
    cs_lora_net *net;                 /* LoRA mode */
    char *text_path, *tok_dir;
    uint64_t eff_id, clip_id;
    cs_ds_config cfg;
    cs_dataset *ds;
    cs_tj_prompt *prompts;
    int n_prompts;
    float **lat, **txt, **pool;       /* per image */
    float **latf;                     /* flip_aug: the mirrored image's latent (NULL where its subset has none) */
    int flips;                        /* a subset has flip_aug */
    int64_t resume_step;              /* the state's step when resuming */
    int varies;                       /* a subset's captions change per step: the text encoder stays */
    float *empty_txt, *empty_pool;    /* the "" of caption dropout, encoded when first needed */
    size_t Ct, Cp;
    char fingerprint[512];
    char cache_dir[4096];
    FILE *log;
    cs_tj_pos pos;                    /* where the run starts */
    cs_tj_resume *res;
    int prepared, ran;
};
typedef cs_tj run;

int cs_tj_emit(const cs_tj_opts *o, int ev, const char *text)
{
    return o->event ? o->event(o->user, ev, text) : 0;
}

static void set(const cs_tj_opts *o, int key, double v)
{
    if (o->stat) o->stat[key] = v;
}

static void warn_cb(void *ctx, const char *msg)
{
    run *r = ctx;
    cs_tj_emit(r->o, CASCADE_TE_NOTE, msg);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

/* ---- opening everything ---- */

static int find_text_encoder(run *r)
{
    cs_tj_opts *o = r->o;
    cs_model_set *set = NULL;
    const char *tok = o->tokenizer ? o->tokenizer : getenv("CASCADE_TOKENIZER");
    if (tok && !*tok) tok = NULL;
    int need_scan = !o->text_encoder || !tok, rc = 0;
    if (need_scan && (rc = cs_models_scan(o->models_dir, &set))) return rc;
    const char *te = o->text_encoder;
    for (int i = 0; !te && set && i < set->n; i++)
        if (set->files[i].info.net == CS_NET_TEXT_G && !set->files[i].problem) te = set->files[i].path;
    if (!tok && set) tok = set->tokenizer;
    if (!te)
        rc = cs_error(CS_EMODEL, "no text encoder: give --text_model_checkpoint_path FILE or --models DIR (%s)",
                      cs_models_looked(set));
    else if (!tok)
        rc = cs_error(CS_EMODEL, "no tokenizer (vocab.json + merges.txt): give --tokenizer DIR (%s)",
                      cs_models_looked(set));
    else if (!(r->text_path = strdup(te)) || !(r->tok_dir = strdup(tok)))
        rc = cs_oom("paths", 2 * 4096);
    cs_models_free(set);
    return rc;
}

/* a fused run clips per tensor: its states carry " fused" at the end of the
 * fingerprint, so an unfused run does not resume one (nor it an unfused one) */
static void mark_fused(run *r)
{
    strncat(r->fingerprint, " fused", sizeof r->fingerprint - strlen(r->fingerprint) - 1);
}

static int open_all(run *r, cs_tj_pos *pos)
{
    cs_tj_opts *o = r->o;
    char p[4200];
    const char *sc = o->stage_c;
    int rc;
    /* the files first: cheap checks before any long work */
    if (o->resume && !o->lora) {   /* a LoRA state holds the LoRA: the Stage C is the given one */
        snprintf(p, sizeof p, "%s/model.safetensors", o->resume);
        sc = p;
    }
    if ((rc = cs_st_open(sc, &r->cf)) || (rc = cs_stage_c_load_train(r->cf, NULL, &r->m))) return rc;
    if ((rc = cs_effnet_open(o->effnet, &r->eff))) return rc;
    if ((rc = find_text_encoder(r)) || (rc = cs_clip_open(r->text_path, &r->clip)) ||
        (rc = cs_tokenizer_load(r->tok_dir, &r->tok)))
        return rc;
    if (o->previewer && (rc = cs_previewer_open(o->previewer, &r->pv))) return rc;
    cs_net_info in;
    cs_stage_c_info(r->m, &in);
    const cs_clip_config *cc = cs_clip_get_config(r->clip);
    r->Ct = (size_t)in.c_clip_text, r->Cp = (size_t)in.c_clip_pooled;
    if ((size_t)cc->width != r->Ct || (size_t)cc->proj != r->Cp)
        return cs_error(CS_EMODEL, "%s: text width %d / projection %d, but Stage C takes %zu / %zu", r->text_path,
                        cc->width, cc->proj, r->Ct, r->Cp);
    if (cs_effnet_get_config(r->eff)->c_latent != in.c_in)
        return cs_error(CS_EMODEL, "%s: latents of %d channels, but Stage C takes %d", o->effnet,
                        cs_effnet_get_config(r->eff)->c_latent, in.c_in);
    if (r->pv && cs_previewer_get_config(r->pv)->c_in != in.c_in)
        return cs_error(CS_EMODEL, "%s: not a previewer of %d-channel latents", o->previewer, in.c_in);
    if (o->sample_prompts && (rc = cs_tj_prompts_read(o->sample_prompts, &r->prompts, &r->n_prompts))) return rc;
    /* the data */
    rc = o->dataset_config ? cs_ds_config_load(o->dataset_config, warn_cb, r, &r->cfg)
                           : cs_ds_config_folder(o->train_data_dir, &r->cfg);
    if (rc) return rc;
    for (int i = 0; i < r->cfg.n; i++) {
        cs_ds_dataset *d = &r->cfg.datasets[i];
        if (!d->width) d->width = o->res_w, d->height = o->res_h;
        if (o->train_data_dir) d->batch_size = o->batch_size;
        for (int j = 0; j < d->n_subsets; j++) {
            cs_ds_subset *s = &d->subsets[j];
            r->flips |= s->flip_aug;
            r->varies |= cs_caption_varies(s);
        }
    }
    if ((rc = cs_ds_scan(&r->cfg, warn_cb, r, &r->ds))) return rc;
    if (!r->ds->n_batches) return cs_error(CS_EARG, "the data set has no images");
    int cached;
    if ((rc = cs_file_xxh64(o->effnet, &r->eff_id, &cached)) || (rc = cs_file_xxh64(r->text_path, &r->clip_id, &cached)))
        return rc;
    const cs_train_cfg *c = &o->cfg;
    snprintf(r->fingerprint, sizeof r->fingerprint,
             "%s lr=%.9g accum=%d clip=%.9g %s batches=%zu images=%zu threads=%d",
             c->opt == CS_OPT_ADAMW ? "adamw" : "adafactor", o->lr, c->grad_accum, c->max_grad_norm,
             c->loss_weight == CS_LOSS_ADAPTIVE ? "adaptive" : "p2", r->ds->n_batches, r->ds->n_images,
             cs_threads_get());
    /* the schedule: warmup and total (kohya's max_train_steps) are known now */
    int64_t nb = (int64_t)r->ds->n_batches, spe = (nb + c->grad_accum - 1) / c->grad_accum;
    o->sched.total = o->epochs ? spe * o->epochs : o->steps;
    o->sched.warmup = cs_lr_warmup_resolve(o->warmup_steps, o->warmup_ratio, o->sched.total);
    if ((rc = cs_lr_sched_check(&o->sched))) return rc;
    if (o->sched.kind != CS_LR_CONSTANT) {   /* (a constant run's fingerprint is what it always was) */
        size_t l = strlen(r->fingerprint);
        snprintf(r->fingerprint + l, sizeof r->fingerprint - l, " sched=%s warmup=%" PRId64 " total=%" PRId64
                 " cycles=%d power=%.17g", cs_lr_kind_name(o->sched.kind), o->sched.warmup, o->sched.total,
                 o->sched.cycles, o->sched.power);
    }
    for (int i = 0; (r->varies || r->flips) && i < r->cfg.n; i++)   /* (only then: older states still resume) */
        for (int j = 0; j < r->cfg.datasets[i].n_subsets; j++) {
            const cs_ds_subset *s = &r->cfg.datasets[i].subsets[j];
            size_t l = strlen(r->fingerprint);
            if (r->varies)
                l += (size_t)snprintf(r->fingerprint + l, sizeof r->fingerprint - l, " cap%d.%d=%d,%d,%.9g,%d,%.9g",
                                      i, j, s->shuffle_caption, s->keep_tokens, s->caption_dropout_rate,
                                      s->caption_dropout_every_n_epochs, s->caption_tag_dropout_rate);
            if (r->flips && l < sizeof r->fingerprint)
                snprintf(r->fingerprint + l, sizeof r->fingerprint - l, " flip%d.%d=%d", i, j, s->flip_aug);
        }
    if (o->lora) {
        size_t l = strlen(r->fingerprint);
        snprintf(r->fingerprint + l, sizeof r->fingerprint - l, " lora dim=%d alpha=%.9g conv_dim=%d conv_alpha=%.9g",
                 o->lora_cfg.dim, o->lora_cfg.alpha, o->lora_cfg.conv_dim, o->lora_cfg.conv_alpha);
    }
    if (o->fused == 1) mark_fused(r);
    if (o->resume) {
        rc = cs_tj_state_read(o->resume, pos, r->fingerprint);
        if (o->fused < 0) {   /* automatic: the state's choice (a fused state: " fused" at its end) */
            char first[600];
            snprintf(first, sizeof first, "%s", cs_last_error());
            size_t l = strlen(r->fingerprint);
            mark_fused(r);
            if (rc && !cs_tj_state_read(o->resume, pos, r->fingerprint)) o->fused = o->cfg.fused = 1, rc = 0;
            else if (rc) rc = cs_error(rc, "%s", first);
            if (!o->cfg.fused) r->fingerprint[l] = 0, o->fused = 0;
        }
        if (rc) return rc;
        if (o->seed_given && o->seed != pos->seed)
            return cs_error(CS_EARG, "--seed %" PRIu64 " differs from the state's seed %" PRIu64, o->seed, pos->seed);
        o->seed = pos->seed;
    }
    return 0;
}

/* ---- encoding the data once ---- */

typedef struct {
    run *r;
    size_t i;
    const char *text;
    int flip;
} enc_ctx;

static int enc_latent(void *ctx, cs_dscache_tensor *t, int n)
{
    enc_ctx *e = ctx;
    (void)n;
    return cs_ds_latent(e->r->eff, &e->r->ds->images[e->i], e->flip, t[0].data);
}

/* image i's latent (mirrored with flip) into out, through the disk cache with --cache_latents */
static int encode_latent(run *r, size_t i, int flip, int64_t h, int64_t w, float *out)
{
    enc_ctx e = {r, i, NULL, flip};
    cs_dscache_tensor t = {"latent", 4, {1, h, w, 16}, out};
    if (!r->o->cache_latents) return enc_latent(&e, &t, 1);
    char desc[256];
    cs_dscache_latent_desc(&r->ds->images[i], r->eff_id, flip, desc, sizeof desc);
    return cs_dscache_get(r->cache_dir, "latent", desc, &t, 1, enc_latent, &e, NULL);
}

static int enc_text(void *ctx, cs_dscache_tensor *t, int n)
{
    enc_ctx *e = ctx;
    (void)n;
    return cs_ds_text(e->r->clip, e->r->tok, e->text, t[0].data, t[1].data);
}

static int encode_text(run *r, const char *text, int disk, float *txt, float *pool)
{
    enc_ctx e = {r, 0, text, 0};
    cs_dscache_tensor t[2] = {{"text", 2, {77, (int64_t)r->Ct}, txt}, {"pooled", 1, {(int64_t)r->Cp}, pool}};
    if (!disk) return enc_text(&e, t, 2);
    char desc[256];
    cs_dscache_text_desc(text, r->clip_id, "official", desc, sizeof desc);
    return cs_dscache_get(r->cache_dir, "text", desc, t, 2, enc_text, &e, NULL);
}

static int encode_all(run *r)
{
    cs_tj_opts *o = r->o;
    cs_dataset *ds = r->ds;
    size_t n = ds->n_images;
    if (!(r->lat = calloc(n, sizeof *r->lat)) || !(r->txt = calloc(n, sizeof *r->txt)) ||
        !(r->pool = calloc(n, sizeof *r->pool)) || (r->flips && !(r->latf = calloc(n, sizeof *r->latf))))
        return cs_oom("encodings", 4 * n * sizeof(float *));
    int rc = 0;
    double t0 = now();
    for (size_t i = 0; !rc && i < n; i++) {
        const cs_ds_image *im = &ds->images[i];
        int64_t h = (im->bucket_h + 31) / 32, w = (im->bucket_w + 31) / 32;
        r->lat[i] = cs_alloc((size_t)(h * w) * 16 * sizeof(float));
        r->txt[i] = cs_alloc(77 * r->Ct * sizeof(float));
        r->pool[i] = cs_alloc(r->Cp * sizeof(float));
        if (!r->lat[i] || !r->txt[i] || !r->pool[i]) return cs_oom("encodings", 77 * r->Ct * sizeof(float));
        rc = encode_latent(r, i, 0, h, w, r->lat[i]);
        if (!rc && r->flips && r->cfg.datasets[im->dataset].subsets[im->subset].flip_aug) {
            /* kohya caches both latents with flip_aug and picks one a step */
            if (!(r->latf[i] = cs_alloc((size_t)(h * w) * 16 * sizeof(float))))
                return cs_oom("a mirrored latent", (size_t)(h * w) * 16 * sizeof(float));
            rc = encode_latent(r, i, 1, h, w, r->latf[i]);
        }
        if (!rc) rc = encode_text(r, im->caption, o->cache_text, r->txt[i], r->pool[i]);
        if (!rc) rc = cs_cancel_check();
        if (!rc) {
            set(o, CASCADE_TS_ENCODED, (double)(i + 1)), set(o, CASCADE_TS_IMAGES, (double)n);
            set(o, CASCADE_TS_ELAPSED, now() - t0);
            cs_tj_emit(o, CASCADE_TE_ENCODE, NULL);
        }
    }
    for (int i = 0; !rc && i < r->n_prompts; i++) {
        cs_tj_prompt *p = &r->prompts[i];
        if (!(p->clip_text = cs_alloc(2 * 77 * r->Ct * sizeof(float))) ||
            !(p->pooled = cs_alloc(2 * r->Cp * sizeof(float))))
            return cs_oom("a sample prompt", 2 * 77 * r->Ct * sizeof(float));
        rc = encode_text(r, p->text, 0, p->clip_text, p->pooled);
        if (!rc) rc = encode_text(r, p->negative, 0, p->clip_text + 77 * r->Ct, p->pooled + r->Cp);
        if (!p->seed_given) p->seed = o->seed;
    }
    /* the encoders are not needed any more, but for captions that change
     * per step (kohya refuses those with cached text-encoder outputs; we
     * keep the encoder and pay one encoding per changed caption a step) */
    cs_effnet_free(r->eff), r->eff = NULL;
    if (!r->varies) cs_clip_free(r->clip), r->clip = NULL;
    else if (!rc)
        cs_tj_emit(o, CASCADE_TE_INFO, "captions change per step (shuffle_caption / caption dropout): the text encoder "
                                       "stays loaded and encodes them at every step");
    return rc;
}

/* ---- the loop ---- */

static int mkdirs(const char *path)
{
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s", path) >= sizeof p) return cs_error(CS_EARG, "%s: path too long", path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST) return cs_error(CS_EIO, "%s: %s", p, cs_strerror(errno));
        *s = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return cs_error(CS_EIO, "%s: not a folder", path);
    return 0;
}

/* A LoRA checkpoint: kohya's file (cs_lora_net_save) with the ss_* training
 * record of stable_cascade_train_c_network.py that says what the file is and
 * how it was made, and the SAI model spec keys. Left out so that the same
 * run gives the same bytes: ss_session_id, ss_training_started_at,
 * ss_training_finished_at, modelspec.date; also kohya's model hashes. kohya
 * calls get_sai_model_spec without lora=True, so its architecture lacks the
 * spec's "/lora"; we write the spec's value. */
/* Python's str() of a float, near enough for the record: 1 -> "1.0" */
static void pyf(char *b, size_t n, double v)
{
    snprintf(b, n, "%.9g", v);
    if (!strpbrk(b, ".en")) strncat(b, ".0", n - strlen(b) - 1);
}

/* Python's repr() of a float: the shortest digits that read back the same */
static void pyrepr(char *b, size_t n, double v)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, v);
        if (strtod(b, NULL) == v) break;
    }
    if (!strpbrk(b, ".en")) strncat(b, ".0", n - strlen(b) - 1);
}

static int save_lora(run *r, const char *path, const char *epoch, const char *step)
{
    cs_tj_opts *o = r->o;
    const cs_train_cfg *c = &o->cfg;
    char lr[32], imgs[32], nb[32], ne[32], ms[32], ga[32], gn[32], seed[32], reso[64], dim[16], alpha[32];
    const char *base = strrchr(o->stage_c, '/');
    int64_t nbat = (int64_t)r->ds->n_batches, spe = (nbat + c->grad_accum - 1) / c->grad_accum;
    int epochs = o->epochs ? o->epochs : (int)((o->steps + spe - 1) / spe);
    pyf(lr, sizeof lr, o->lr);
    snprintf(imgs, sizeof imgs, "%zu", r->ds->n_images);
    snprintf(nb, sizeof nb, "%zu", r->ds->n_batches);
    snprintf(ne, sizeof ne, "%d", epochs);
    snprintf(ms, sizeof ms, "%" PRId64, o->epochs ? spe * epochs : (int64_t)o->steps);
    snprintf(ga, sizeof ga, "%d", c->grad_accum);
    pyf(gn, sizeof gn, c->max_grad_norm);
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
    snprintf(reso, sizeof reso, "%dx%d", r->cfg.n ? r->cfg.datasets[0].width : o->res_w,
             r->cfg.n ? r->cfg.datasets[0].height : o->res_h);
    snprintf(dim, sizeof dim, "%d", o->lora_cfg.dim);
    pyf(alpha, sizeof alpha, o->lora_cfg.alpha);
    /* kohya's str(args.lr_warmup_steps): an int, or int_or_float's float */
    char warm[40] = "0";
    if (o->warmup_ratio >= 0 && o->warmup_arg) pyrepr(warm, sizeof warm, o->warmup_ratio);
    else if (o->warmup_arg) snprintf(warm, sizeof warm, "%" PRId64, o->warmup_steps);
    const char *meta[] = {
        "ss_network_module", "networks.lora", "ss_network_dim", dim, "ss_network_alpha", alpha,
        "ss_network_dropout", "None", "ss_network_args", o->network_args ? o->network_args : "",
        "ss_base_model_version", "stable_cascade", "ss_v2", "False",
        "ss_sd_model_name", base ? base + 1 : o->stage_c, "ss_output_name", o->output_name,
        "ss_learning_rate", lr, "ss_unet_lr", "None", "ss_text_encoder_lr", "None",
        "ss_num_train_images", imgs, "ss_num_batches_per_epoch", nb, "ss_num_epochs", ne,
        "ss_max_train_steps", ms, "ss_gradient_accumulation_steps", ga, "ss_max_grad_norm", gn,
        "ss_lr_scheduler", cs_lr_kind_name(o->sched.kind), "ss_lr_warmup_steps", warm,
        "ss_optimizer", c->opt == CS_OPT_ADAMW ? "torch.optim.adamw.AdamW" : "transformers.optimization.Adafactor",
        "ss_mixed_precision", o->mixed_bf16 ? "bf16" : "no", "ss_gradient_checkpointing", "True",
        "ss_cache_latents", "True", "ss_seed", seed, "ss_epoch", epoch, "ss_steps", step,
        "modelspec.sai_model_spec", "1.0.0", "modelspec.architecture", "stable-cascade/lora",
        "modelspec.implementation", "https://github.com/Stability-AI/StableCascade",
        "modelspec.title", o->output_name, "modelspec.resolution", reso, "modelspec.prediction_type", "epsilon",
    };
    int nm = (int)(sizeof meta / sizeof *meta / 2), skip_args = !o->network_args || !*o->network_args;
    cs_dtype dt = o->save_prec == CS_TJ_SAVE_BF16 ? CS_BF16 : o->save_prec == CS_TJ_SAVE_FP16 ? CS_F16 : CS_F32;
    if (skip_args) {   /* kohya writes ss_network_args only when --network_args was given */
        const char *m2[sizeof meta / sizeof *meta];
        int k = 0;
        for (int i = 0; i < nm; i++)
            if (strcmp(meta[2 * i], "ss_network_args")) m2[2 * k] = meta[2 * i], m2[2 * k + 1] = meta[2 * i + 1], k++;
        return cs_lora_net_save(r->net, path, dt, m2, k);
    }
    return cs_lora_net_save(r->net, path, dt, meta, nm);
}

static int save_state(run *r, cs_trainer *t, const float *buckets, const cs_tj_pos *at, char *sp, size_t spl)
{
    int rc = cs_trainer_sync(t);
    if (rc) return rc;
    if (r->net) return cs_tj_state_save_lora(r->o->output_dir, r->net, buckets, at, r->fingerprint, sp, spl);
    return cs_tj_state_save(r->o->output_dir, r->m, t, buckets, at, r->fingerprint, sp, spl);
}

static int save_checkpoint(run *r, int epoch, int64_t step, int final)
{
    char path[4400], e[32], s[32];
    if (final) snprintf(path, sizeof path, "%s/%s.safetensors", r->o->output_dir, r->o->output_name);
    else snprintf(path, sizeof path, "%s/%s-%06d.safetensors", r->o->output_dir, r->o->output_name, epoch);
    snprintf(e, sizeof e, "%d", epoch);
    snprintf(s, sizeof s, "%" PRId64, step);
    int rc = r->t ? cs_trainer_sync(r->t) : 0;
    if (rc) return rc;
    if (r->net) {
        rc = save_lora(r, path, e, s);
    } else {
        const char *extra[] = {"cascade.train.epoch", e, "cascade.train.step", s};
        rc = cs_tj_save_weights(r->m, path, r->o->save_prec, extra, 2);
    }
    if (!rc) cs_tj_emit(r->o, CASCADE_TE_SAVED, path);
    return rc;
}

/* The text of image i in slot n of this micro-batch: its caption processed
 * as kohya's options say (caption.h), encoded unless it is the caption
 * encoded before training or "" already encoded. */
static int step_caption(run *r, size_t i, int epoch, uint64_t key, float *txt, float *pool)
{
    const cs_ds_image *im = &r->ds->images[i];
    const cs_ds_subset *s = &r->cfg.datasets[im->dataset].subsets[im->subset];
    size_t nt = 77 * r->Ct;
    char *c = NULL;
    int rc = cs_caption_process(s, im->caption, epoch, key, &c);
    if (rc) return rc;
    if (!strcmp(c, im->caption)) {
        memcpy(txt, r->txt[i], nt * sizeof(float)), memcpy(pool, r->pool[i], r->Cp * sizeof(float));
    } else if (!*c) {
        if (!r->empty_txt) {
            float *t = cs_alloc(nt * sizeof(float)), *p = cs_alloc(r->Cp * sizeof(float));
            if (!t || !p) rc = cs_oom("the empty caption", nt * sizeof(float));
            if (!rc) rc = encode_text(r, "", 0, t, p);
            if (rc) cs_free(t), cs_free(p);
            else r->empty_txt = t, r->empty_pool = p;
        }
        if (!rc) memcpy(txt, r->empty_txt, nt * sizeof(float)), memcpy(pool, r->empty_pool, r->Cp * sizeof(float));
    } else {
        rc = encode_text(r, c, 0, txt, pool);
    }
    free(c);
    return rc;
}

/* the test suite stops a run at a chosen micro-batch, mid-step, through the
 * real signal path (tests/cli_train.sh) */
static int64_t test_stop_at(void)
{
    const char *e = getenv("CASCADE_TEST_TRAIN_STOP");
    return e && *e ? strtoll(e, NULL, 10) : -1;
}

static int train(run *r, cs_trainer *t, cs_tj_pos pos, int resumed)
{
    cs_tj_opts *o = r->o;
    cs_dataset *ds = r->ds;
    int64_t nb = (int64_t)ds->n_batches, ga = o->cfg.grad_accum, spe = (nb + ga - 1) / ga;
    int epochs = o->epochs ? o->epochs : (int)((o->steps + spe - 1) / spe);
    int64_t total = o->epochs ? spe * epochs : o->steps;
    for (int e = 0; e < pos.epoch; e++) cs_ds_shuffle(ds, o->seed, (uint64_t)e);   /* the orders so far */
    cs_tj_pos at = pos;                         /* the last optimizer-step boundary */
    float *buckets = cs_trainer_buckets(t), saved[CS_TRAIN_BUCKETS];
    memcpy(saved, buckets, sizeof saved);
    size_t maxe = 0;
    for (size_t b = 0; b < ds->n_buckets; b++) {
        size_t e = (size_t)((ds->buckets[b].h + 31) / 32) * (size_t)((ds->buckets[b].w + 31) / 32) * 16;
        if (e > maxe) maxe = e;
    }
    size_t maxb = 0;
    for (size_t b = 0; b < ds->n_batches; b++) maxb = ds->batches[b].n > maxb ? ds->batches[b].n : maxb;
    float *x0 = cs_alloc(maxb * maxe * sizeof(float)), *noise = cs_alloc(maxb * maxe * sizeof(float));
    float *txt = cs_alloc(maxb * 77 * r->Ct * sizeof(float)), *pool = cs_alloc(maxb * r->Cp * sizeof(float));
    float *loss = malloc(maxb * sizeof *loss), *tt = malloc(maxb * sizeof *tt);
    int rc = 0;
    if (!x0 || !noise || !txt || !pool || !loss || !tt) rc = cs_oom("a batch", 2 * maxb * maxe * sizeof(float));
    int64_t stop_at = test_stop_at();
    double t_start = now(), t_last = t_start, smooth = NAN, sum_loss = 0, sum_w = 0;
    int64_t steps_here = 0, nloss = 0;
    set(o, CASCADE_TS_IMAGES, (double)ds->n_images), set(o, CASCADE_TS_BATCHES, (double)ds->n_batches);
    set(o, CASCADE_TS_EPOCHS, epochs), set(o, CASCADE_TS_STEPS, (double)total), set(o, CASCADE_TS_SEED, (double)o->seed);
    set(o, CASCADE_TS_RESUMED, resumed), set(o, CASCADE_TS_STEP, (double)pos.step);
    if (!rc) cs_tj_emit(o, CASCADE_TE_START, NULL);
    for (int epoch = pos.epoch; !rc && epoch < epochs && pos.step < total; epoch++) {
        cs_ds_shuffle(ds, o->seed, (uint64_t)epoch);
        int64_t b = epoch == at.epoch ? at.batch : 0;
        for (; !rc && b < nb && pos.step < total; b++) {
            if (cs_cancel_pending()) {
                rc = CS_EINTR;
                break;
            }
            const cs_ds_batch *bt = &ds->batches[b];
            const cs_ds_bucket *bk = &ds->buckets[bt->bucket];
            size_t B = bt->n, h = (size_t)(bk->h + 31) / 32, w = (size_t)(bk->w + 31) / 32, per = h * w * 16;
            for (size_t n = 0; !rc && n < B; n++) {
                size_t i = bk->idx[bt->first + n];
                /* flip_aug: the mirrored latent half the time, drawn from the seed and this place */
                int flip = r->latf && r->latf[i] &&
                           cs_caption_key(o->seed ^ 0x666c6970ull, (uint64_t)pos.micro, n) >> 63;   /* "flip" */
                memcpy(x0 + n * per, flip ? r->latf[i] : r->lat[i], per * sizeof(float));
                if (r->varies) {   /* the key: the run's seed and this place, so a resume draws the same */
                    rc = step_caption(r, i, epoch + 1, cs_caption_key(o->seed, (uint64_t)pos.micro, n),
                                      txt + n * 77 * r->Ct, pool + n * r->Cp);
                    continue;
                }
                memcpy(txt + n * 77 * r->Ct, r->txt[i], 77 * r->Ct * sizeof(float));
                memcpy(pool + n * r->Cp, r->pool[i], r->Cp * sizeof(float));
            }
            if (rc) break;
            cs_rng rng;
            cs_rng_seed(&rng, o->seed + (uint64_t)pos.micro);
            if ((rc = cs_train_draw(&rng, B, 16, h, w, noise, tt))) break;
            if (pos.micro == stop_at) raise(SIGINT);
            cs_train_batch in = {B, h, w, x0, noise, tt, txt, 77, pool, NULL, 1};
            cs_train_out out;
            memset(&out, 0, sizeof out);
            out.loss = loss;
            if ((rc = cs_train_accumulate(t, &in, &out))) break;
            pos.micro++;
            for (size_t n = 0; n < B; n++) sum_loss += loss[n], nloss++;
            sum_w += out.loss_adjusted;
            if (cs_trainer_pending(t) < ga && b + 1 < nb) continue;
            double gn = 0, lr = cs_lr_at(&o->sched, pos.step);   /* the step count drives it, resumed or not */
            cs_trainer_set_lr(t, lr);
            if ((rc = cs_train_apply(t, &gn))) break;
            pos.step++, steps_here++;
            pos.epoch = epoch, pos.batch = b + 1;
            if (pos.batch == nb) pos.epoch = epoch + 1, pos.batch = 0;
            at = pos;
            memcpy(saved, buckets, sizeof saved);
            double l = sum_loss / (double)nloss, tn = now(), dt = tn - t_last;
            t_last = tn;
            smooth = isnan(smooth) ? l : 0.9 * smooth + 0.1 * l;
            double rss = rss_mib();
            fprintf(r->log,
                    "{\"step\":%" PRId64 ",\"epoch\":%d,\"loss\":%.9g,\"loss_weighted\":%.9g,\"lr\":%.9g,"
                    "\"grad_norm\":%.9g,\"seconds\":%.4f,\"rss_mib\":%.1f}\n",
                    pos.step, epoch + 1, l, sum_w, lr, gn, dt, rss);
            fflush(r->log);
            sum_loss = sum_w = 0, nloss = 0;
            set(o, CASCADE_TS_STEP, (double)pos.step), set(o, CASCADE_TS_EPOCH, epoch + 1);
            set(o, CASCADE_TS_LOSS, l), set(o, CASCADE_TS_LOSS_SMOOTH, smooth), set(o, CASCADE_TS_LR, lr);
            set(o, CASCADE_TS_GRAD_NORM, gn), set(o, CASCADE_TS_RSS_MIB, rss);
            set(o, CASCADE_TS_SEC_PER_STEP, (tn - t_start) / (double)steps_here);
            cs_tj_emit(o, CASCADE_TE_STEP, NULL);
        }
        if (rc || b < nb) break;   /* stopped, or max_train_steps reached mid-epoch */
        /* the end of an epoch (kohya: no numbered file for the last one) */
        set(o, CASCADE_TS_EPOCH, epoch + 1), set(o, CASCADE_TS_STEP, (double)pos.step);
        set(o, CASCADE_TS_LOSS_SMOOTH, smooth);
        set(o, CASCADE_TS_SEC_PER_STEP, steps_here ? (now() - t_start) / (double)steps_here : 0.0);
        cs_tj_emit(o, CASCADE_TE_EPOCH, NULL);
        int last = epoch + 1 == epochs || pos.step >= total;
        if (!last && o->save_every && (epoch + 1) % o->save_every == 0) {
            rc = save_checkpoint(r, epoch + 1, pos.step, 0);
            char sp[4400];
            if (!rc && o->save_state)
                rc = save_state(r, t, saved, &at, sp, sizeof sp);
        }
        if (!rc && o->sample_every && (epoch + 1) % o->sample_every == 0 && !(rc = cs_trainer_sync(t)) &&
            !(rc = r->net ? cs_lora_net_sample_begin(r->net) : 0)) {
            rc = cs_tj_samples(r->m, r->pv, r->prompts, r->n_prompts, o->output_dir, o->output_name, epoch + 1, o);
            if (r->net) cs_lora_net_sample_end(r->net);   /* no W' held during the steps */
        }
    }
    if (!rc) rc = save_checkpoint(r, pos.epoch, pos.step, 1);
    if (rc == CS_EINTR) {
        /* the stop's outcome for the caller: before any step of this run,
         * the state saved, or why it was not */
        char sp[4400];
        if (at.step == 0 || (resumed && at.step == r->resume_step)) {
            set(o, CASCADE_TS_STOP, 1);
            cs_tj_emit(o, CASCADE_TE_STOPPED, NULL);
        } else if (save_state(r, t, saved, &at, sp, sizeof sp) == 0) {
            set(o, CASCADE_TS_STOP, 2), set(o, CASCADE_TS_STEP, (double)at.step);
            cs_tj_emit(o, CASCADE_TE_STOPPED, sp);
        } else {
            set(o, CASCADE_TS_STOP, 3);
            cs_tj_emit(o, CASCADE_TE_STOPPED, NULL);
        }
        rc = CS_EINTR;
    }
    cs_free(x0), cs_free(noise), cs_free(txt), cs_free(pool);
    free(loss), free(tt);
    return rc;
}

int cs_tj_new(cs_tj_opts *o, cs_tj **out)
{
    run *r = calloc(1, sizeof *r);
    if (!r) return cs_oom("a training run", sizeof *r);
    r->o = o;
    *out = r;
    return 0;
}

/* fused_backward_pass -1: on where kohya allows it (Adafactor, no
 * accumulation, a full fine-tune) and the device's free memory cannot hold
 * the unfused step: the float32 weights, as many gradients and a quarter
 * more for the tape and activations (doc/training.md §4). The fused step
 * holds one block's gradients instead of the model's. */
static void pick_fused(run *r)
{
    cs_tj_opts *o = r->o;
    const cs_dev_ops *d = cs_dev_pick();
    size_t fr = 0, tot = 0, w = 0;
    char name[128];
    if (o->fused >= 0 || o->lora || o->cfg.opt != CS_OPT_ADAFACTOR || o->cfg.grad_accum > 1 || !d || !d->mem_info)
        return;
    if (d->mem_info(&fr, &tot, name, sizeof name)) {
        (void)d->errmsg();   /* no answer: unfused, and its text must not linger */
        return;
    }
    for (int i = 0; cs_stage_c_train_weight(r->m, i); i++) w += (size_t)cs_tensor_numel(cs_stage_c_train_weight(r->m, i));
    double need = 4.0 * w * 2.25;
    if (need <= (double)fr) return;
    o->cfg.fused = 1;
    mark_fused(r);   /* its states */
    char msg[400];
    snprintf(msg, sizeof msg,
             "fused_backward_pass on: the unfused step needs about %.1f GiB (float32 weights and gradients), %s has "
             "%.1f GiB free; each tensor is clipped by its own norm (as kohya's --fused_backward_pass)",
             need / 1073741824.0, name, fr / 1073741824.0);
    cs_tj_emit(o, CASCADE_TE_NOTE, msg);
}

int cs_tj_prepare(cs_tj *r)
{
    if (r->prepared) return 0;
    cs_tj_opts *o = r->o;
    int rc = open_all(r, &r->pos);
    if (!rc && !o->resume && !o->seed_given) o->seed = ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) & 0xFFFFFFFFu;
    r->pos.seed = o->seed;
    r->resume_step = r->pos.step;
    set(o, CASCADE_TS_SEED, (double)o->seed);
    if (!rc && o->lora) {   /* the network (seeded by the seed) and its start, before anything is written */
        o->lora_cfg.seed = o->seed;
        rc = cs_lora_net_new(r->m, &o->lora_cfg, &r->net);
        if (!rc && o->network_weights && !o->resume) rc = cs_lora_net_load(r->net, o->network_weights);
        if (!rc) {
            set(o, CASCADE_TS_LORA_MODULES, cs_lora_net_count(r->net));
            set(o, CASCADE_TS_LORA_PARAMS, (double)cs_lora_net_params(r->net));
        }
    }
    if (!rc) r->prepared = 1;
    return rc;
}

int cs_tj_run(cs_tj *r)
{
    cs_tj_opts *o = r->o;
    if (r->ran) return cs_error(CS_EARG, "a trainer runs once");
    int rc = cs_tj_prepare(r);
    if (rc) return rc;
    r->ran = 1;
    /* from here on things are written */
    rc = mkdirs(o->output_dir);
    if (!rc) {
        if (o->cache_dir) snprintf(r->cache_dir, sizeof r->cache_dir, "%s", o->cache_dir);
        else snprintf(r->cache_dir, sizeof r->cache_dir, "%s/cache", o->output_dir);
        if (o->cache_latents || o->cache_text) rc = mkdirs(r->cache_dir);
    }
    if (!rc) rc = encode_all(r);
    if (!rc) pick_fused(r);   /* the encoders are freed: the device's free memory is the step's */
    set(o, CASCADE_TS_FUSED, o->cfg.fused);
    if (!rc) rc = cs_trainer_new(r->m, &o->cfg, &r->t);
    if (!rc && r->net) rc = cs_trainer_set_lora(r->t, r->net);
    if (!rc && o->resume)
        rc = r->net ? cs_tj_state_restore_lora(o->resume, r->t, r->net, o->cfg.opt)
                    : cs_tj_state_restore(o->resume, r->t, &r->res);
    if (!rc) {
        char lp[4400];
        snprintf(lp, sizeof lp, "%s/%s.jsonl", o->output_dir, o->output_name);
        if (!(r->log = fopen(lp, o->resume ? "a" : "w"))) rc = cs_error(CS_EIO, "%s: %s", lp, cs_strerror(errno));
    }
    if (!rc) rc = train(r, r->t, r->pos, o->resume != NULL);
    return rc;
}

void cs_tj_free(cs_tj *r)
{
    if (!r) return;
    if (r->log) fclose(r->log);
    cs_tj_state_close(r->res);
    cs_trainer_free(r->t);
    cs_lora_net_free(r->net);
    for (size_t i = 0; r->ds && r->lat && i < r->ds->n_images; i++)
        cs_free(r->lat[i]), cs_free(r->txt[i]), cs_free(r->pool[i]);
    for (size_t i = 0; r->ds && r->latf && i < r->ds->n_images; i++) cs_free(r->latf[i]);
    free(r->lat), free(r->txt), free(r->pool), free(r->latf);
    cs_free(r->empty_txt), cs_free(r->empty_pool);
    cs_tj_prompts_free(r->prompts, r->n_prompts);
    cs_ds_free(r->ds);
    cs_ds_config_free(&r->cfg);
    cs_previewer_free(r->pv);
    cs_tokenizer_free(r->tok);
    cs_clip_free(r->clip);
    cs_effnet_free(r->eff);
    cs_stage_c_free(r->m);
    cs_st_close(r->cf);
    free(r->text_path), free(r->tok_dir);
    free(r);
}
