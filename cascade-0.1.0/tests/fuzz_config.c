/* libFuzzer target for the JSON configs we read: the text encoder's
 * config.json (a CLIPTextConfig or a full CLIPModel config, checked against
 * an empty tensor set) and the Stage B / Stage C "config" metadata of a
 * safetensors file. Any text must be taken or refused with an error, never
 * crash, and never cost memory or time beyond what the text describes.
 * Built and run by tests/fuzz.sh. */
#include "clip.h"
#include "error.h"
#include "unet.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    cs_unet_opts o;
    memset(&o, 0, sizeof o);
    int rc = cs_unet_opts_from_json(&o, text, "config");
    if (rc > 0 || (rc && !cs_last_error()[0])) abort();   /* errors are negative, with a message */
    cs_clip *m = NULL;
    rc = cs_clip_from_tensors(NULL, 0, NULL, text, "config.json", &m);
    if (rc == 0 || m) abort();   /* no tensors: never a model */
    free(text);
    return 0;
}
