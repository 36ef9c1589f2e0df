/* cascade tokenize: show the CLIP token ids and strings of a prompt. */
#include "cli.h"

#include "error.h"
#include "prompt.h"
#include "tokenizer.h"

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

static int print_json(const cs_tokenizer *tok, const int32_t *ids, size_t n)
{
    json_t *o = json_object(), *a = json_array(), *t = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *s = cs_token_str(tok, ids[i]);
        json_array_append_new(a, json_integer(ids[i]));
        json_array_append_new(t, s ? json_string(s) : json_null());
    }
    json_object_set_new(o, "ids", a);
    json_object_set_new(o, "tokens", t);
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

static void warn_cb(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "cascade tokenize: %s\n", msg);
}

/* --prompt-style comfyui: chunks with weights. Returns the exit status. */
static int comfyui(const cs_tokenizer *tok, const char *text, const char *emb_dir, int json)
{
    cs_embeddings *emb = NULL;
    cs_prompt p = {0};
    int rc = emb_dir ? cs_embeddings_new(emb_dir, 1280, &emb) : 0;
    if (!rc) rc = cs_prompt_tokenize(tok, text, emb, warn_cb, NULL, &p);
    if (rc) {
        fprintf(stderr, "cascade tokenize: %s\n", cs_last_error());
        cs_embeddings_free(emb);
        return 1;
    }
    json_t *chunks = json_array();
    for (size_t k = 0; k < p.n_chunks; k++) {
        json_t *a = json_array(), *t = json_array(), *w = json_array();
        for (size_t j = 0; j < CS_TOK_CTX; j++) {
            int32_t id = p.ids[k * CS_TOK_CTX + j];
            double wt = p.weights[k * CS_TOK_CTX + j];
            const char *s = id >= p.vocab ? "<embedding>" : cs_token_str(tok, id);
            if (json) {
                json_array_append_new(a, json_integer(id));
                json_array_append_new(t, s ? json_string(s) : json_null());
                json_array_append_new(w, json_real(wt));
            } else {
                printf("%3zu %3zu %6d %8.4g  %s\n", k, j, id, wt, s ? s : "?");
            }
        }
        json_array_append_new(chunks, json_pack("{s:o, s:o, s:o}", "ids", a, "tokens", t, "weights", w));
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
    cs_prompt_free(&p);
    cs_embeddings_free(emb);
    return out;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0, i = 1, style = CS_PROMPT_OFFICIAL;
    const char *emb_dir = NULL;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) dir = argv[++i];
        else if (!strncmp(argv[i], "--tokenizer=", 12)) dir = argv[i] + 12;
        else if (!strcmp(argv[i], "--embeddings") && i + 1 < argc) emb_dir = argv[++i];
        else if (!strcmp(argv[i], "--prompt-style") && i + 1 < argc) {
            if ((style = cs_prompt_style_parse(argv[++i])) < 0) {
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
    cs_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = text ? cs_tokenizer_load(dir, &tok) : cs_error(CS_ENOMEM, "out of memory: the prompt text");
    if (!rc && style == CS_PROMPT_COMFYUI) {
        rc = comfyui(tok, text, emb_dir, json);
        cs_tokenizer_free(tok);
        free(text);
        return rc;
    }
    if (!rc) rc = cs_tokenize(tok, text, &ids, &n);
    if (rc) {
        fprintf(stderr, "cascade tokenize: %s\n", cs_last_error());
    } else if (json) {
        rc = print_json(tok, ids, n);
    } else {
        for (size_t k = 0; k < n; k++) {
            const char *s = cs_token_str(tok, ids[k]);
            printf("%5zu %6d  %s\n", k, ids[k], s ? s : "?");
        }
        if (n > CS_TOK_CTX)
            fprintf(stderr, "cascade tokenize: %zu tokens; the text encoder keeps the first %d "
                            "and EOS\n", n, CS_TOK_CTX - 2);
    }
    free(ids);
    cs_tokenizer_free(tok);
    free(text);
    return rc ? 1 : 0;
}
