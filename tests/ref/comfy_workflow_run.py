#!/usr/bin/env python3
"""Runs a ComfyUI workflow (API form) with ComfyUI itself, headless on the
CPU: its execution.PromptExecutor, its node set, its model loaders, as the
server's prompt worker would. The reference for tests/comfy_workflow.sh.

Usage (a venv with ComfyUI's requirements; torchvision may be absent for text-to-image,
img2img's EfficientNet encoder needs it):
  python tests/ref/comfy_workflow_run.py COMFY_DIR MODELS_DIR WORKFLOW.json OUT_DIR [INPUT_DIR]
MODELS_DIR is a ComfyUI models folder (unet/, clip/, vae/); LoadImage reads
INPUT_DIR (default: ComfyUI's input/). SaveImage and SaveLatent write into OUT_DIR; each KSampler's LATENT output is also saved there as
NODE.latent.f32 (raw float32, NCHW) for a closer comparison.
"""
import json, os, sys


def main():
    comfy, models, wf, out = sys.argv[1:5]
    inp = sys.argv[5] if len(sys.argv) > 5 else None
    sys.path.insert(0, comfy)
    sys.argv = [sys.argv[0], '--cpu', '--force-fp32']
    try:
        import torchvision  # noqa: F401
    except ImportError:
        # transformers asks importlib whether torchvision exists; a mock has no
        # __spec__, so let it learn "no" first (only unused model code wants it)
        import transformers  # noqa: F401
        from unittest import mock
        sys.modules['torchvision'] = mock.MagicMock()
        sys.modules['torchvision.transforms'] = mock.MagicMock()
    import comfy.options
    comfy.options.enable_args_parsing()
    import asyncio
    import folder_paths, nodes, execution
    import torch
    torch.set_num_threads(int(os.environ.get('THREADS', '2')))
    for kind, sub in (('diffusion_models', 'unet'), ('text_encoders', 'clip'), ('vae', 'vae'),
                      ('checkpoints', 'checkpoints')):
        folder_paths.add_model_folder_path(kind, os.path.join(models, sub), is_default=True)
    os.makedirs(out, exist_ok=True)
    folder_paths.set_output_directory(out)
    if inp:
        folder_paths.set_input_directory(os.path.abspath(inp))
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))

    # keep each KSampler's latent: wrap the node's function
    ks = nodes.NODE_CLASS_MAPPINGS['KSampler']
    orig = ks.sample
    current = {}

    def sample(self, *a, **k):
        r = orig(self, *a, **k)
        current.setdefault('n', 0)
        current['n'] += 1
        r[0]['samples'].float().contiguous().numpy().tofile(os.path.join(out, 'ksampler%d.latent.f32' % current['n']))
        return r
    ks.sample = sample

    class Server:   # what PromptExecutor asks of the server
        client_id = None
        last_node_id = None

        def send_sync(self, *a, **k):
            pass

        def queue_updated(self):
            pass

    prompt = json.load(open(wf))
    valid = asyncio.run(execution.validate_prompt('ref', prompt, None))
    if not valid[0]:
        sys.exit('ComfyUI refuses the workflow: %s %s' % (valid[1], json.dumps(valid[3])[:2000]))
    e = execution.PromptExecutor(Server())
    e.execute(prompt, 'ref', {}, valid[2])
    if not e.success:
        sys.exit('ComfyUI failed: %s' % json.dumps(e.status_messages, default=str)[:4000])
    print('ComfyUI ran %s: outputs in %s' % (wf, out))


if __name__ == '__main__':
    main()
