/* Demo networks for image inputs, written only when a demo run asks for
 * them. A tiny random CLIP vision tower for `cascade generate --demo --image`:
 * HF names, width 64, 2 layers, 224x224 images in 14x14 patches, projection
 * 48 (the demo Stage C's clip_img width), written like the other demo
 * networks (demo.h: deterministic values, the same bytes everywhere). */
#ifndef CS_DEMO_VISION_H
#define CS_DEMO_VISION_H

#include "demo.h"

/* The key list in HF state_dict order. */
int cs_demo_clip_vision(int width, int layers, int mlp, int proj, int image, int patch, cs_demo_list *out);
/* Writes the demo vision tower (F32) to path. */
int cs_demo_clip_vision_write(const char *path);
/* Writes a reduced EfficientNet encoder (released widths, one block per
 * stage: the loader reads the depth off the names) for `--demo --init-image`. */
int cs_demo_effnet_write(const char *path);

#endif
