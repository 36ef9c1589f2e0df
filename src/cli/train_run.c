/* cascade train: the run through the public API. Start-up (threads, SIMD,
 * $CASCADE_BACKEND), cascade_trainer_prepare (every input opened and
 * checked before anything is written: a missing file leaves the output
 * folder untouched), --device, then cascade_trainer_run; what the trainer
 * reports becomes the progress line (a terminal) or one line an epoch,
 * and a stop (Ctrl-C, SIGTERM) the line saying where its state went. */
#include "cli.h"
#include "train.h"

#include "cascade.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    tr_cli *c;
    int tty;
    int encoding;   /* an "encoding" line is open on the terminal */
} shown;

static int on_event(void *user, cascade_trainer *t, cascade_train_event ev, const char *text)
{
    shown *s = user;
    int quiet = s->c->quiet;
#define ST(k) cascade_trainer_stat(t, k)
    if (s->encoding && ev != CASCADE_TE_ENCODE) {
        fputc('\n', stderr);
        s->encoding = 0;
    }
    switch (ev) {
    case CASCADE_TE_NOTE: fprintf(stderr, TR_ME ": note: %s\n", text); break;
    case CASCADE_TE_INFO:
        if (!quiet) fprintf(stderr, TR_ME ": %s\n", text);
        break;
    case CASCADE_TE_ENCODE:
        if (s->tty && !quiet) {
            fprintf(stderr, "\r" TR_ME ": encoding %.0f/%.0f images (%.1f s)\033[K", ST(CASCADE_TS_ENCODED),
                    ST(CASCADE_TS_IMAGES), ST(CASCADE_TS_ELAPSED));
            s->encoding = 1;
        }
        break;
    case CASCADE_TE_START:
        if (!quiet)
            fprintf(stderr, TR_ME ": %.0f images, %.0f batches an epoch, %.0f epochs, %.0f steps, seed %.0f%s\n",
                    ST(CASCADE_TS_IMAGES), ST(CASCADE_TS_BATCHES), ST(CASCADE_TS_EPOCHS), ST(CASCADE_TS_STEPS),
                    ST(CASCADE_TS_SEED), ST(CASCADE_TS_RESUMED) > 0 ? " (resumed)" : "");
        break;
    case CASCADE_TE_STEP:
        if (s->tty && !quiet) {
            double spi = ST(CASCADE_TS_SEC_PER_STEP), eta = spi * (ST(CASCADE_TS_STEPS) - ST(CASCADE_TS_STEP));
            fprintf(stderr,
                    "\rstep %.0f/%.0f epoch %.0f/%.0f loss %.4f lr %.3g %.2f s/it ETA %d:%02d:%02d RSS %.0f MiB\033[K",
                    ST(CASCADE_TS_STEP), ST(CASCADE_TS_STEPS), ST(CASCADE_TS_EPOCH), ST(CASCADE_TS_EPOCHS),
                    ST(CASCADE_TS_LOSS_SMOOTH), ST(CASCADE_TS_LR), spi, (int)(eta / 3600), (int)fmod(eta / 60, 60),
                    (int)fmod(eta, 60), ST(CASCADE_TS_RSS_MIB));
        }
        break;
    case CASCADE_TE_EPOCH:
        if (!s->tty && !quiet)
            fprintf(stderr, TR_ME ": epoch %.0f/%.0f: step %.0f/%.0f, loss %.4f, %.2f s/it\n", ST(CASCADE_TS_EPOCH),
                    ST(CASCADE_TS_EPOCHS), ST(CASCADE_TS_STEP), ST(CASCADE_TS_STEPS), ST(CASCADE_TS_LOSS_SMOOTH),
                    ST(CASCADE_TS_SEC_PER_STEP));
        break;
    case CASCADE_TE_SAVED:
        if (!quiet) fprintf(stderr, "%s" TR_ME ": saved %s\n", s->tty ? "\r\033[K" : "", text);
        break;
    case CASCADE_TE_SAMPLE:
        if (!quiet) fprintf(stderr, TR_ME ": sample %s\n", text);
        break;
    case CASCADE_TE_STOPPED: {
        const char *why = cli_stop_text(cli_stop_pending());
        int stop = (int)ST(CASCADE_TS_STOP);
        if (s->tty && !quiet) fputc('\n', stderr);
        if (stop == 1)
            fprintf(stderr, TR_ME ": %s before an optimizer step: no new state saved%s%s\n", why,
                    s->c->resume ? "; resume again from " : "", s->c->resume ? s->c->resume : "");
        else if (stop == 2)
            fprintf(stderr, TR_ME ": %s at step %.0f; state saved: %s (continue with --resume %s)\n", why,
                    ST(CASCADE_TS_STEP), text, text);
        /* 3: said with the library's message once the run returns */
        break;
    }
    }
#undef ST
    return 0;
}

int tr_run(tr_cli *c)
{
    int st = cli_init(c->threads);
    if (st) return st;
    cli_signals_install();
    cascade_ctx *ctx = cli_ctx();
    cascade_trainer *t = c->t;
    shown s = {c, isatty(2), 0};
    cascade_trainer_set_callback(t, on_event, &s);
    long long lora = 0;
    int rc = cascade_trainer_prepare(t);
    cascade_trainer_get_int(t, CASCADE_TP_LORA, &lora);
    if (!rc && lora && !c->quiet) {
        long long dim = 0;
        double alpha = 0;
        cascade_trainer_get_int(t, CASCADE_TP_LORA_DIM, &dim);
        cascade_trainer_get_float(t, CASCADE_TP_LORA_ALPHA, &alpha);
        int from = c->network_weights && !c->resume;
        fprintf(stderr, TR_ME ": LoRA: %.0f modules, %.0f parameters, rank %lld, alpha %g%s%s\n",
                cascade_trainer_stat(t, CASCADE_TS_LORA_MODULES), cascade_trainer_stat(t, CASCADE_TS_LORA_PARAMS), dim,
                alpha, from ? ", from " : "", from ? c->network_weights : "");
    }
    if (!rc && c->device) {   /* training runs in float32 there too */
        char said[256];
        int prec;
        if ((st = cli_device(TR_ME, c->device, "fp32", 0, said, sizeof said, &prec)) != 0) return st;
        if (!c->quiet) fprintf(stderr, TR_ME ": device: %s\n", said);
    }
    if (!rc && c->mixed_bf16) {
        const char *b = cascade_info_string(CASCADE_INFO_BACKEND);
        fprintf(stderr, TR_ME ": --mixed_precision bf16: %s\n",
                b && strcmp(b, "cpu") ? "on the device the products run on TF32 tensor cores where it has them, the rest "
                                        "in float32 (master weights too)"
                                      : "on the CPU the math stays float32 (master weights too)");
    }
    if (!rc) rc = cascade_trainer_run(t);
    cli_device_report(TR_ME, c->quiet);   /* after a failure too: an out-of-memory's peak */
    if (!rc) return CLI_EXIT_OK;
    double how = cascade_trainer_stat(t, CASCADE_TS_STOP);
    int stop = isnan(how) ? 0 : (int)how;   /* 0: not stopped inside the loop */
    if (rc == CASCADE_E_INTR && stop == 3)
        fprintf(stderr, TR_ME ": %s; the state could not be saved: %s\n", cli_stop_text(cli_stop_pending()),
                cascade_errmsg(ctx));
    else if (rc == CASCADE_E_INTR && !stop)
        fprintf(stderr, TR_ME ": %s\n", cli_stop_text(cli_stop_pending()));
    else if (rc != CASCADE_E_INTR)
        fprintf(stderr, TR_ME ": %s\n", cascade_errmsg(ctx));
    return rc == CASCADE_E_INTR ? cli_stop_status(cli_stop_pending()) : CLI_EXIT_ERROR;
}
