/* cascade: command-line entry point, a table of subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"info", cmd_info, "show CPU features, chosen SIMD level, BLAS and build options"},
    {"tokenize", cmd_tokenize, "print the CLIP token ids of a prompt"},
    {"generate", cmd_generate, "text to image: prompt -> PNG (--demo runs without model files)"},
    {"run", cmd_run, "run a ComfyUI Stable Cascade workflow (JSON, or a PNG that carries one)"},
    {"train", cmd_train, "fine-tune Stage C (kohya's options; a dataset TOML or a folder of images)"},
    {"models", cmd_models, "list model files found, what auto would pick and why, what is missing"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cascade COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'cascade COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv)
{
#ifdef __GLIBC__
    /* Every block from the heap, and freed memory kept for the next ones:
     * by default glibc maps large blocks (all over 32 MB) fresh and unmaps
     * them when freed, so each forward's activations and each stage's packed
     * weights came as new zeroed pages, ~3 us a page on a 2-core VM (a
     * Stage B lite step: ~110k pages). The process's peak stays what it was:
     * what one stage frees, the next one reuses. */
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
#endif
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cascade %s\n", PACKAGE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cascade: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
