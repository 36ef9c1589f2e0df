/* libFuzzer target for the TOML reader (src/toml.c) and kohya's dataset
 * config on top of it (src/dataset_config.c): any text is taken or refused
 * with a one-line message, never a crash, a leak or a read past the text
 * (which is not NUL-terminated here). Built and run by tests/fuzz.sh. */
#include "dataset.h"
#include "error.h"
#include "toml.h"

#include <stdlib.h>
#include <string.h>

static void walk(const cs_toml *t)
{
    /* every node is reachable and typed; strings are terminated */
    if (t->type == CS_TOML_STRING && t->s[t->len]) abort();
    if (t->type == CS_TOML_ARRAY || t->type == CS_TOML_TABLE)
        for (size_t i = 0; i < t->n; i++) walk(t->items[i]);
    if (t->line < 1 || t->col < 1) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *text = malloc(size ? size : 1);   /* exactly size bytes: no NUL after them */
    if (!text) return 0;
    memcpy(text, data, size);
    cs_toml *t = NULL;
    int rc = cs_toml_parse(text, size, "fuzz.toml", &t);
    if (rc > 0 || (rc && (t || strncmp(cs_last_error(), "fuzz.toml", 9)))) abort();
    if (!rc) {
        walk(t);
        cs_toml_free(t);
    }
    cs_ds_config c;
    rc = cs_ds_config_parse(text, size, "fuzz.toml", NULL, NULL, &c);
    if (rc > 0 || (rc && (c.datasets || !cs_last_error()[0]))) abort();
    if (!rc) cs_ds_config_free(&c);
    free(text);
    return 0;
}
