#!/usr/bin/env python3
"""Checks that the workflow cascade writes into its PNGs loads in ComfyUI:
the "prompt" chunk (API form) goes through ComfyUI's own
execution.validate_prompt with ComfyUI's node set, every model / image name
made to exist in throwaway ComfyUI folders; the "workflow" chunk (UI form)
is checked against ComfyUI's node definitions (every link points at a
node's real input and output, widgets_values holds each widget).

Not part of make check (Python and a ComfyUI checkout are needed):
  /work/venv-samplers/bin/python tests/ref/comfy_validate.py COMFY_DIR A.png [B.png ...]
"""
import asyncio, json, os, sys, tempfile
import zlib, struct


def png_text(path):
    out, data = {}, open(path, 'rb').read()
    pos = 8
    while pos < len(data):
        n, typ = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b'tEXt':
            k, v = body.split(b'\0', 1)
            out[k.decode('latin-1')] = v.decode('latin-1')
        elif typ == b'iTXt':
            k, rest = body.split(b'\0', 1)
            comp, rest = rest[0], rest[2:]
            _, rest = rest.split(b'\0', 1)
            _, v = rest.split(b'\0', 1)
            out[k.decode('latin-1')] = (zlib.decompress(v) if comp else v).decode('utf-8')
        pos += 12 + n
    return out


def main():
    comfy, files = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, comfy)
    sys.argv = [sys.argv[0], '--cpu']
    try:
        import torchvision  # noqa: F401 (only the EfficientNet definition needs it)
    except ImportError:
        # transformers asks importlib whether torchvision exists (a mock has no
        # __spec__ and fails that): let it learn "no" before the mock goes in
        import transformers  # noqa: F401
        from unittest import mock
        sys.modules['torchvision'] = mock.MagicMock()
        sys.modules['torchvision.transforms'] = mock.MagicMock()
    import comfy.options
    comfy.options.enable_args_parsing()
    import folder_paths, nodes, execution
    tmp = tempfile.mkdtemp()
    folders = {'unet_name': 'diffusion_models', 'clip_name': None, 'vae_name': 'vae', 'ckpt_name': 'checkpoints',
               'lora_name': 'loras'}
    for name in ('diffusion_models', 'text_encoders', 'vae', 'checkpoints', 'loras', 'clip_vision'):
        os.makedirs(os.path.join(tmp, name), exist_ok=True)
        folder_paths.add_model_folder_path(name, os.path.join(tmp, name), is_default=True)
    os.makedirs(os.path.join(tmp, 'input'))
    folder_paths.set_input_directory(os.path.join(tmp, 'input'))
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    bad = 0
    for f in files:
        ui_bad = 0
        t = png_text(f)
        api, ui = json.loads(t['prompt']), json.loads(t['workflow'])
        for node in api.values():   # the files the graph names, empty
            i, c = node['inputs'], node['class_type']
            where = {'UNETLoader': 'diffusion_models', 'CLIPLoader': 'text_encoders', 'VAELoader': 'vae',
                     'CheckpointLoaderSimple': 'checkpoints', 'LoraLoader': 'loras', 'LoraLoaderModelOnly': 'loras',
                     'CLIPVisionLoader': 'clip_vision', 'LoadImage': 'input'}.get(c)
            for k in ('unet_name', 'clip_name', 'vae_name', 'ckpt_name', 'lora_name', 'image'):
                if where and k in i:
                    open(os.path.join(tmp, where, i[k]), 'ab').close()
        res = asyncio.run(execution.validate_prompt('check', api, None))
        valid, err, outputs, node_errors = res[0], res[1], res[2], res[3]
        print(f"{f}: API graph ({len(api)} nodes): {'valid' if valid else 'INVALID'}; outputs {outputs}")
        if not valid:
            print('  ', json.dumps(err), json.dumps(node_errors)[:2000])
            bad = 1
        # UI form against the node definitions
        links = {l[0]: l for l in ui['links']}
        ids = {n['id']: n for n in ui['nodes']}
        for n in ui['nodes']:
            cls = nodes.NODE_CLASS_MAPPINGS[n['type']]
            it = cls.INPUT_TYPES()
            req = dict(it.get('required', {}), **it.get('optional', {}))
            for slot, inp in enumerate(n['inputs']):
                l = links[inp['link']]
                src = ids[l[1]]
                rt = nodes.NODE_CLASS_MAPPINGS[src['type']].RETURN_TYPES
                ok = (inp['name'] in req and req[inp['name']][0] == inp['type'] == rt[l[2]] and l[3] == n['id']
                      and l[4] == slot)
                if not ok:
                    print(f"   UI node {n['id']} ({n['type']}): input {inp['name']} link {l} does not fit")
                    ui_bad = 1
            # the frontend's rule: primitive types and combos are widgets (kept
            # in widgets_values in input order); an INT with
            # control_after_generate has one more value ("fixed", ...); the
            # image upload button of LoadImage holds one more
            def widget(v):
                return isinstance(v[0], (list, tuple)) or v[0] in ('INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO')
            # the frontend's link fixer: an output lists exactly the links that leave it
            for slot, out in enumerate(n.get('outputs', [])):
                have = sorted(out.get('links') or [])
                want_l = sorted(l[0] for l in ui['links'] if l[1] == n['id'] and l[2] == slot)
                if have != want_l:
                    print(f"   UI node {n['id']} ({n['type']}): output {slot} lists links {have}, the graph has {want_l}")
                    ui_bad = 1
            widgets = [k for k, v in req.items() if widget(v)]
            want = len(widgets) + sum(1 for k in widgets if len(req[k]) > 1 and isinstance(req[k][1], dict) and
                                      (req[k][1].get('control_after_generate') or req[k][1].get('image_upload')))
            if len(n['widgets_values']) > want or len(n['widgets_values']) < want - 1:
                print(f"   UI node {n['id']} ({n['type']}): {len(n['widgets_values'])} widgets_values for {widgets}")
                ui_bad = 1
        print(f"{f}: UI graph ({len(ui['nodes'])} nodes, {len(ui['links'])} links): {'fits' if not ui_bad else 'BROKEN'}")
        bad |= ui_bad
    return bad


if __name__ == '__main__':
    sys.exit(main())
