/* cascade tokenize: show the CLIP token ids and strings of a prompt. */
#include "cli.h"

#include "cascade.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cascade tokenize [--tokenizer DIR] [--json] [--prompt-style official|comfyui]\n"
            "                       [--embeddings DIR] [--] TEXT...\n\n"
            "Prints the CLIP BPE token ids of TEXT (several arguments are joined with spaces),\n"
            "with BOS 49406 and EOS 49407 and without truncation; the model sees BOS, the first\n"
            "75 tokens and EOS. DIR holds vocab.json and merges.txt; default $CASCADE_TOKENIZER.\n"
            "--json prints one object {\"ids\": [...], \"tokens\": [...]}.\n\n"
            "--prompt-style comfyui shows the ComfyUI reading instead: 77-token chunks (BOS, up to\n"
            "75 tokens, EOS, EOS padding) with each token's weight; --json then prints\n"
            "{\"prompt_style\": \"comfyui\", \"chunks\": [{\"ids\": [...], \"tokens\": [...],\n"
            "\"weights\": [...]}, ...]}; embedding vectors show as id >= 49408 and token\n"
            "\"<embedding>\". --embeddings DIR: the folder embedding:NAME is looked up in.\n"
            "--prompt-style official is the default listing above.\n");
}

static char *join_args(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < argc; i++) {
        if (i) strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

static int print_json(const cascade_tokens *t)
{
    json_t *o = json_object(), *a = json_array(), *s = json_array();
    for (int i = 0; i < cascade_tokens_count(t); i++) {
        const char *txt = cascade_tokens_text(t, i);
        json_array_append_new(a, json_integer(cascade_tokens_id(t, i)));
        json_array_append_new(s, txt ? json_string(txt) : json_null());
    }
    json_object_set_new(o, "ids", a);
    json_object_set_new(o, "tokens", s);
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!txt) {
        fprintf(stderr, "cascade tokenize: out of memory\n");
        return 1;
    }
    printf("%s\n", txt);
    free(txt);
    return 0;
}

static void warn_cb(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "cascade tokenize: %s\n", msg);
}

/* --prompt-style comfyui: chunks with weights. Returns the exit status. */
static int print_chunks(const cascade_tokens *t, int json)
{
    json_t *chunks = json_array();
    for (int k = 0; k < cascade_tokens_chunks(t); k++) {
        json_t *a = json_array(), *s = json_array(), *w = json_array();
        for (int j = 0; j < CASCADE_TOKEN_CHUNK; j++) {
            int i = k * CASCADE_TOKEN_CHUNK + j, id = cascade_tokens_id(t, i);
            double wt = cascade_tokens_weight(t, i);
            const char *txt = cascade_tokens_text(t, i);
            if (json) {
                json_array_append_new(a, json_integer(id));
                json_array_append_new(s, txt ? json_string(txt) : json_null());
                json_array_append_new(w, json_real(wt));
            } else {
                printf("%3d %3d %6d %8.4g  %s\n", k, j, id, wt, txt ? txt : "?");
            }
        }
        json_array_append_new(chunks, json_pack("{s:o, s:o, s:o}", "ids", a, "tokens", s, "weights", w));
    }
    int out = 0;
    if (json) {
        json_t *o = json_pack("{s:s, s:o}", "prompt_style", "comfyui", "chunks", chunks);
        char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(o);
        if (txt) printf("%s\n", txt);
        else fprintf(stderr, "cascade tokenize: out of memory\n"), out = 1;
        free(txt);
    } else {
        json_decref(chunks);
    }
    return out;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0, i = 1, style = CASCADE_PROMPT_OFFICIAL;
    const char *emb_dir = NULL;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) dir = argv[++i];
        else if (!strncmp(argv[i], "--tokenizer=", 12)) dir = argv[i] + 12;
        else if (!strcmp(argv[i], "--embeddings") && i + 1 < argc) emb_dir = argv[++i];
        else if (!strcmp(argv[i], "--prompt-style") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "official")) style = CASCADE_PROMPT_OFFICIAL;
            else if (!strcmp(v, "comfyui")) style = CASCADE_PROMPT_COMFYUI;
            else {
                fprintf(stderr, "cascade tokenize: --prompt-style %s: use official or comfyui\n", argv[i]);
                return 2;
            }
        }
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "cascade tokenize: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else break;
    }
    if (i >= argc) {
        fprintf(stderr, "cascade tokenize: no TEXT given (use '' for the empty prompt)\n");
        usage(stderr);
        return 2;
    }
    if (!dir) dir = getenv("CASCADE_TOKENIZER");
    if (!dir || !*dir) {
        fprintf(stderr, "cascade tokenize: no tokenizer folder: pass --tokenizer DIR or set "
                        "CASCADE_TOKENIZER (a folder with vocab.json and merges.txt)\n");
        return 2;
    }
    char *text = join_args(argc - i, argv + i);
    if (!text) {
        fprintf(stderr, "cascade tokenize: out of memory: the prompt text\n");
        return 1;
    }
    cascade_ctx *ctx = cascade_ctx_new();
    cascade_tokens *t = NULL;
    int rc = ctx ? 0 : CASCADE_E_NOMEM;
    if (!rc) {
        cascade_set_log(ctx, warn_cb, NULL);
        rc = cascade_set_string(ctx, CASCADE_P_TOKENIZER, dir);
    }
    if (!rc) rc = cascade_set_int(ctx, CASCADE_P_PROMPT_STYLE, style);
    if (!rc && emb_dir) rc = cascade_set_string(ctx, CASCADE_P_EMBEDDINGS, emb_dir);
    if (!rc) rc = cascade_tokens_new(ctx, text, &t);
    if (rc) {
        fprintf(stderr, "cascade tokenize: %s\n", ctx ? cascade_errmsg(ctx) : "out of memory");
    } else if (style == CASCADE_PROMPT_COMFYUI) {
        rc = print_chunks(t, json);
    } else if (json) {
        rc = print_json(t);
    } else {
        int n = cascade_tokens_count(t);
        for (int k = 0; k < n; k++) {
            const char *s = cascade_tokens_text(t, k);
            printf("%5d %6d  %s\n", k, cascade_tokens_id(t, k), s ? s : "?");
        }
        if (n > CASCADE_TOKEN_CHUNK)
            fprintf(stderr, "cascade tokenize: %d tokens; the text encoder keeps the first %d "
                            "and EOS\n", n, CASCADE_TOKEN_CHUNK - 2);
    }
    cascade_tokens_free(t);
    cascade_ctx_free(ctx);
    free(text);
    return rc ? 1 : 0;
}
