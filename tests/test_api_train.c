/* The training calls of cascade.h through libcascade.so (tests/api_train.sh
 * runs it): the key table (names, types, ranges, defaults), bad keys and
 * values (CASCADE_E_ARG naming the key, the value kept), the settings
 * checked together; with the fixture's files, a tiny run whose checkpoint
 * the script compares with `cascade train`'s, and a run stopped from the
 * callback: CASCADE_E_INTR, a state saved and nothing else left, resumed to
 * the uninterrupted run's bytes.
 * usage: test_api_train                      (the table and the refusals)
 *        test_api_train SC EF TE TOK IMAGES OUT   (the runs: OUT/full, OUT/stop) */
#include "cascade.h"

#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int has(const char *msg, const char *word) { return msg && strstr(msg, word) != NULL; }

static void table(void)
{
    cascade_ctx *ctx = cascade_ctx_new();
    cascade_trainer *t = NULL;
    CHECK(ctx && cascade_trainer_new(ctx, &t) == 0 && t, "trainer_new");
    if (!t) return;
    for (int k = 0; k < CASCADE_TP_COUNT; k++) {
        const char *n = cascade_train_param_name((cascade_train_param)k);
        CHECK(n && cascade_train_param_find(n) == k, "key %d: name %s does not find it", k, n ? n : "(null)");
        int ty = cascade_train_param_type((cascade_train_param)k);
        CHECK(ty >= CASCADE_T_INT && ty <= CASCADE_T_STRING, "key %s: type %d", n, ty);
        double lo, hi, def;
        int open;
        if (ty == CASCADE_T_STRING) continue;
        CHECK(cascade_train_param_range((cascade_train_param)k, &lo, &hi, &open, &def) == 0 && lo <= def && def <= hi,
              "key %s: range", n);
        long long iv;
        double fv;
        if (ty == CASCADE_T_INT) CHECK(cascade_trainer_get_int(t, (cascade_train_param)k, &iv) == 0 && iv == (long long)def,
                                       "key %s: the default", n);
        else CHECK(cascade_trainer_get_float(t, (cascade_train_param)k, &fv) == 0 && fv == def, "key %s: the default", n);
    }
    CHECK(cascade_train_param_name(CASCADE_TP_COUNT) == NULL && cascade_train_param_find("nope") == CASCADE_E_ARG,
          "unknown keys");
    /* refusals: the code, the key in the message, the value kept */
    double lr = 0;
    CHECK(cascade_trainer_set_float(t, CASCADE_TP_LEARNING_RATE, 0) == CASCADE_E_ARG &&
              has(cascade_errmsg(ctx), "learning_rate"), "lr 0: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_set_float(t, CASCADE_TP_LEARNING_RATE, NAN) == CASCADE_E_ARG, "lr NaN");
    CHECK(cascade_trainer_get_float(t, CASCADE_TP_LEARNING_RATE, &lr) == 0 && lr == 1e-4, "lr kept: %g", lr);
    CHECK(cascade_trainer_set_float(t, CASCADE_TP_ADAMW_BETA1, 1.0) == CASCADE_E_ARG, "beta1 1");
    CHECK(cascade_trainer_set_int(t, CASCADE_TP_LORA_DIM, 0) == CASCADE_E_ARG && has(cascade_errmsg(ctx), "network_dim"),
          "dim 0: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_set_int(t, CASCADE_TP_SEED, -2) == CASCADE_E_ARG, "seed -2");
    CHECK(cascade_trainer_set_int(t, CASCADE_TP_LEARNING_RATE, 1) == CASCADE_E_ARG &&
              has(cascade_errmsg(ctx), "is a float"), "wrong type: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_set_int(t, (cascade_train_param)999, 1) == CASCADE_E_ARG && has(cascade_errmsg(ctx), "999"),
          "unknown key: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_set_string(t, CASCADE_TP_LR_SCHEDULER, "adafactor") == CASCADE_E_ARG &&
              has(cascade_errmsg(ctx), "adafactor"), "scheduler: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_set_string(t, CASCADE_TP_LR_WARMUP, "1.5") == CASCADE_E_ARG, "warmup 1.5");
    CHECK(cascade_trainer_set_string(t, CASCADE_TP_OUTPUT_NAME, "a/b") == CASCADE_E_ARG &&
              has(cascade_errmsg(ctx), "output_name"), "output_name: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_set_string(t, CASCADE_TP_MIXED_PRECISION, "fp16") == CASCADE_E_ARG, "mixed fp16");
    const char *s = NULL;
    CHECK(cascade_trainer_get_string(t, CASCADE_TP_OUTPUT_NAME, &s) == 0 && s && !strcmp(s, "last"), "name kept");
    /* together: what is missing, then the schedule */
    CHECK(cascade_trainer_check(t) == CASCADE_E_ARG && has(cascade_errmsg(ctx), "stage_c_checkpoint_path"),
          "check, nothing set: %s", cascade_errmsg(ctx));
    CHECK(cascade_trainer_run(t) == CASCADE_E_ARG, "run, nothing set");
    cascade_trainer_set_string(t, CASCADE_TP_STAGE_C, "sc"), cascade_trainer_set_string(t, CASCADE_TP_EFFNET, "ef");
    cascade_trainer_set_string(t, CASCADE_TP_TRAIN_DATA_DIR, "d"), cascade_trainer_set_string(t, CASCADE_TP_OUTPUT_DIR, "o");
    CHECK(cascade_trainer_check(t) == 0, "check: %s", cascade_errmsg(ctx));
    cascade_trainer_set_string(t, CASCADE_TP_LR_WARMUP, "3");
    CHECK(cascade_trainer_check(t) == CASCADE_E_ARG && has(cascade_errmsg(ctx), "lr_warmup_steps"),
          "warmup with constant: %s", cascade_errmsg(ctx));
    CHECK(isnan(cascade_trainer_stat(t, CASCADE_TS_STEP)) && isnan(cascade_trainer_stat(t, CASCADE_TS_COUNT)),
          "figures before a run");
    cascade_trainer_free(t);
    cascade_trainer_free(NULL);
    cascade_ctx_free(ctx);
}

/* ---- the runs ---- */

typedef struct {
    int steps, saved, stopped, stop_at;
    char state[4096];
} seen;

static int on_event(void *user, cascade_trainer *t, cascade_train_event ev, const char *text)
{
    seen *s = user;
    if (ev == CASCADE_TE_STEP) s->steps++;
    if (ev == CASCADE_TE_SAVED) s->saved++;
    if (ev == CASCADE_TE_STOPPED) {
        s->stopped++;
        snprintf(s->state, sizeof s->state, "%s", text ? text : "");
    }
    return ev == CASCADE_TE_STEP && s->stop_at && cascade_trainer_stat(t, CASCADE_TS_STEP) == s->stop_at;
}

static int run(const char *const *a, const char *out, const char *resume, seen *s)
{
    cascade_ctx *ctx = cascade_ctx_new();
    cascade_trainer *t = NULL;
    if (!ctx || cascade_set_int(ctx, CASCADE_P_THREADS, 1) || cascade_set_string(ctx, CASCADE_P_TOKENIZER, a[3]) ||
        cascade_trainer_new(ctx, &t))
        return -100;
    int rc = cascade_trainer_set_string(t, CASCADE_TP_STAGE_C, a[0]);
    rc |= cascade_trainer_set_string(t, CASCADE_TP_EFFNET, a[1]);
    rc |= cascade_trainer_set_string(t, CASCADE_TP_TEXT_ENCODER, a[2]);
    rc |= cascade_trainer_set_string(t, CASCADE_TP_TRAIN_DATA_DIR, a[4]);
    rc |= cascade_trainer_set_int(t, CASCADE_TP_WIDTH, 128) | cascade_trainer_set_int(t, CASCADE_TP_HEIGHT, 128);
    rc |= cascade_trainer_set_int(t, CASCADE_TP_BATCH, 2);
    rc |= cascade_trainer_set_int(t, CASCADE_TP_SEED, 3);
    rc |= cascade_trainer_set_int(t, CASCADE_TP_ADAPTIVE_LOSS, 1);
    rc |= cascade_trainer_set_int(t, CASCADE_TP_EPOCHS, 2);
    rc |= cascade_trainer_set_string(t, CASCADE_TP_OUTPUT_NAME, "t");
    rc |= cascade_trainer_set_string(t, CASCADE_TP_OUTPUT_DIR, out);
    if (resume) rc |= cascade_trainer_set_string(t, CASCADE_TP_RESUME, resume);
    CHECK(rc == 0, "settings: %s", cascade_errmsg(ctx));
    cascade_trainer_set_callback(t, on_event, s);
    rc = cascade_trainer_run(t);
    if (rc && rc != CASCADE_E_INTR) fprintf(stderr, "run %s: %s\n", out, cascade_errmsg(ctx));
    if (rc == CASCADE_E_INTR) CHECK(cascade_trainer_stat(t, CASCADE_TS_STOP) == 2, "stop: not saved");
    CHECK(cascade_trainer_run(t) == CASCADE_E_ARG, "a second run of one trainer");
    cascade_trainer_free(t);
    cascade_ctx_free(ctx);
    return rc;
}

/* only state-*, t.jsonl and NAME*.safetensors in dir: no temporaries */
static int stray(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] == '.' ? strcmp(e->d_name, ".") && strcmp(e->d_name, "..")
                                : strncmp(e->d_name, "state-", 6) && strcmp(e->d_name, "t.jsonl"))
            fprintf(stderr, "left in %s: %s\n", dir, e->d_name), n++;
    if (d) closedir(d);
    return n;
}

static void runs(char **a)
{
    char full[4200], stop[4200];
    snprintf(full, sizeof full, "%s/full", a[5]);
    snprintf(stop, sizeof stop, "%s/stop", a[5]);
    seen s = {0};
    CHECK(run((const char *const *)a, full, NULL, &s) == 0 && s.steps == 4 && s.saved == 1 && !s.stopped,
          "the run: %d steps, %d saved", s.steps, s.saved);
    seen c = {0};
    c.stop_at = 2;
    int rc = run((const char *const *)a, stop, NULL, &c);
    CHECK(rc == CASCADE_E_INTR && c.stopped == 1 && strstr(c.state, "state-000002"), "stopped: %d, state '%s'", rc,
          c.state);
    CHECK(stray(stop) == 0, "files left after the stop");
    seen r = {0};
    CHECK(run((const char *const *)a, stop, c.state, &r) == 0 && r.steps == 2, "resumed: %d steps", r.steps);
}

int main(int argc, char **argv)
{
    table();
    if (argc == 7) runs(argv + 1);
    else if (argc != 1) return fprintf(stderr, "usage: test_api_train [SC EF TE TOK IMAGES OUT]\n"), 99;
    return check_exit();
}
