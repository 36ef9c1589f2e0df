#!/usr/bin/env python3
"""tests/data/workflows/t2i.webp: a small WebP carrying a workflow the way
ComfyUI's SaveAnimatedWEBP writes it (comfy_extras/nodes_images.py): Pillow's
EXIF with 0x0110 = "prompt:" + the API graph, 0x010F = "workflow:" + the UI
graph. The image is an 8x8 gradient; cascade reads only the EXIF.

  python tests/ref/make_webp_case.py   (Pillow with WebP support)
"""
import json, os
from PIL import Image

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'workflows')
prompt = json.load(open(os.path.join(here, 't2i_api.json')))
workflow = json.load(open(os.path.join(here, 't2i_ui.json')))
img = Image.new('RGB', (8, 8))
img.putdata([(x * 32, y * 32, 128) for y in range(8) for x in range(8)])
meta = img.getexif()
meta[0x0110] = "prompt:{}".format(json.dumps(prompt))
meta[0x010f] = "workflow:{}".format(json.dumps(workflow))
img.save(os.path.join(here, 't2i.webp'), save_all=True, duration=100, exif=meta, lossless=True, quality=80, method=4)
