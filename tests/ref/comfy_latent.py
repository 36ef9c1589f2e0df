#!/usr/bin/env python3
"""ComfyUI's .latent files, made and read by ComfyUI's own SaveLatent and
LoadLatent nodes (nodes.py), for tests/test_latent.c and tests/cli_run.sh.

  python tests/ref/comfy_latent.py COMFY_DIR make [OUT_DIR]
      writes into OUT_DIR (default tests/data/comfy_latent):
      saved.latent     SaveLatent of a seeded [2, 16, 3, 5] float32 latent
                       (with ComfyUI's "prompt" metadata), then renamed
      legacy.latent    a file without latent_format_version_0 (as ComfyUI
                       wrote before the marker), latent_tensor float16 [1, 4, 6, 4]
      NAME.load.f32    what LoadLatent gives for NAME.latent: raw float32,
                       NCHW (the legacy file: times 1/0.18215, as ComfyUI does)
  python tests/ref/comfy_latent.py COMFY_DIR load FILE.latent EXPECTED.f32
      LoadLatent of a file (one cascade wrote): exit 0 when its samples
      equal EXPECTED.f32 bit for bit, with the shape printed.

The venv needs ComfyUI's requirements (torch, safetensors, ...).
"""
import json, os, shutil, sys, tempfile


def comfy_nodes(comfy, out_dir, in_dir):
    sys.path.insert(0, comfy)
    sys.argv = [sys.argv[0], '--cpu']
    try:
        import torchvision  # noqa: F401
    except ImportError:
        import transformers  # noqa: F401
        from unittest import mock
        sys.modules['torchvision'] = mock.MagicMock()
        sys.modules['torchvision.transforms'] = mock.MagicMock()
    import comfy.options
    comfy.options.enable_args_parsing()
    import folder_paths
    folder_paths.set_output_directory(out_dir)
    folder_paths.set_input_directory(in_dir)
    import nodes
    return nodes


def make(comfy, out):
    import torch
    from safetensors.torch import save_file
    work = tempfile.mkdtemp()
    try:
        nodes = comfy_nodes(comfy, os.path.join(work, 'out'), os.path.join(work, 'in'))
        os.makedirs(os.path.join(work, 'in'))
        os.makedirs(out, exist_ok=True)
        g = torch.Generator().manual_seed(1234)
        x = torch.randn(2, 16, 3, 5, generator=g) * 3
        prompt = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "x.latent"}}}
        ui = nodes.SaveLatent().save({"samples": x}, "latents/ComfyUI", prompt=prompt)
        f = ui['ui']['latents'][0]
        assert (f['subfolder'], f['filename']) == ('latents', 'ComfyUI_00001_.latent'), f
        shutil.copy(os.path.join(work, 'out', 'latents', f['filename']), os.path.join(out, 'saved.latent'))
        # before the marker: no latent_format_version_0 (float16 here: LoadLatent takes any float)
        y = (torch.randn(1, 4, 6, 4, generator=g) * 0.5).half()
        save_file({"latent_tensor": y}, os.path.join(out, 'legacy.latent'))
        for name in ('saved', 'legacy'):
            shutil.copy(os.path.join(out, name + '.latent'), os.path.join(work, 'in', name + '.latent'))
            s = nodes.LoadLatent().load(name + '.latent')[0]['samples']
            s.contiguous().numpy().astype('<f4').tofile(os.path.join(out, name + '.load.f32'))
            print(name, tuple(s.shape), s.dtype)
    finally:
        shutil.rmtree(work)


def load(comfy, path, expected):
    import numpy as np
    work = tempfile.mkdtemp()
    try:
        nodes = comfy_nodes(comfy, os.path.join(work, 'out'), os.path.join(work, 'in'))
        os.makedirs(os.path.join(work, 'in'))
        shutil.copy(path, os.path.join(work, 'in', 'x.latent'))
        s = nodes.LoadLatent().load('x.latent')[0]['samples'].contiguous().numpy()
        e = np.fromfile(expected, dtype='<f4')
        same = s.size == e.size and np.array_equal(s.reshape(-1), e)
        print('%s: LoadLatent gives %s %s; %s %s' % (path, tuple(s.shape), s.dtype,
              'equal to' if same else 'DIFFERENT from', expected))
        sys.exit(0 if same else 1)
    finally:
        shutil.rmtree(work)


if __name__ == '__main__':
    comfy, mode = sys.argv[1], sys.argv[2]
    if mode == 'make':
        here = os.path.dirname(os.path.abspath(__file__))
        make(comfy, sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, '..', 'data', 'comfy_latent'))
    elif mode == 'load':
        load(comfy, sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
