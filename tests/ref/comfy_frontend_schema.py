#!/usr/bin/env python3
"""Checks the "workflow" chunk (UI form) of cascade's PNGs against the
ComfyUI frontend's own workflow schema: validateComfyWorkflow() of
src/platform/workflow/validation/schemas/workflowSchema.ts (zod), the check
the frontend runs when an image is dropped on it.

The frontend ships as the comfyui-frontend-package wheel (the version
ComfyUI's requirements.txt pins); its source map carries the schema's
TypeScript and the zod / zod-validation-error modules. This script takes
them from there at run time (nothing of them is kept in this repository),
drops the TypeScript-only syntax, and runs the schema with node.

Not part of make check (node and the wheel are needed):
  pip download --no-deps comfyui-frontend-package==1.27.10 -d WHEELDIR
  python3 tests/ref/comfy_frontend_schema.py WHEELDIR/comfyui_frontend_package-*.whl A.png [B.png|B.json ...]
"""
import json, os, re, subprocess, sys, tempfile, zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from comfy_validate import png_text  # noqa: E402

CHECK = r"""
import { validateComfyWorkflow } from './schema.mjs'
import { readFileSync } from 'node:fs'
let bad = 0
for (const [name, f] of JSON.parse(process.argv[2])) {
  let msg = null
  const r = await validateComfyWorkflow(JSON.parse(readFileSync(f, 'utf8')), (e) => { msg = e })
  console.log(r ? `${name}: workflow passes the frontend schema` : `${name}: REJECTED: ${msg}`)
  if (!r) bad = 1
}
process.exit(bad)
"""


def balanced_end(s, i, o, c):
    d = 0
    for j in range(i, len(s)):
        d += (s[j] == o) - (s[j] == c)
        if d == 0:
            return j
    raise ValueError('unbalanced')


def to_js(ts):
    """The schema file without its TypeScript-only syntax (only what this
    file uses: interfaces, type aliases, annotations, casts)."""
    ts = ts[:ts.index('/**\n * API format workflow')]   # the API-form schema is not needed
    while (m := re.search(r'\n(export )?interface \w+[^{]*\{', ts)):
        ts = ts[:m.start()] + ts[balanced_end(ts, m.end() - 1, '{', '}') + 1:]
    ts = re.sub(r'^export type ComfyWorkflowJSON = z\.infer<\n[^>]*>$', '', ts, flags=re.M)
    ts = re.sub(r'^(export )?type \w+ = [^\n]*$', '', ts, flags=re.M)
    while (i := ts.find('(): z.ZodArray<')) >= 0:
        ts = ts[:i] + '()' + ts[balanced_end(ts, i + len('(): z.ZodArray'), '<', '>') + 1:]
    for a, b in (('import { type SafeParseReturnType, z }', 'import { z }'), (' as [number, number]', ''),
                 ('(obj: any): obj is SubgraphDefinition', '(obj)'), ('(val: string, ctx)', '(val, ctx)'),
                 ('let result: SafeParseReturnType<unknown, ComfyWorkflowJSON>', 'let result'),
                 ("from 'zod'", "from './zod.mjs'"), ("from 'zod-validation-error'", "from './zve.mjs'")):
        ts = ts.replace(a, b)
    return re.sub(r'data: unknown,\s*onError: \(error: string\) => void = console\.warn\s*\): Promise<[^>]*>',
                  'data, onError = console.warn)', ts)


def main():
    wheel, files = sys.argv[1], sys.argv[2:]
    with zipfile.ZipFile(wheel) as z:
        maps = [n for n in z.namelist() if n.endswith('.js.map')]
        src = None
        for n in maps:
            m = json.loads(z.read(n))
            names = dict(zip(m['sources'], m.get('sourcesContent') or []))
            hit = [k for k in names if k.endswith('validation/schemas/workflowSchema.ts')]
            if hit:
                src = names
                break
    if not src:
        sys.exit('no workflowSchema.ts in the source maps of ' + wheel)
    pick = lambda tail: next(v for k, v in src.items() if k.endswith(tail))
    tmp = tempfile.mkdtemp()
    open(os.path.join(tmp, 'schema.mjs'), 'w').write(to_js(pick('validation/schemas/workflowSchema.ts')))
    open(os.path.join(tmp, 'zod.mjs'), 'w').write(pick('/zod/lib/index.mjs'))
    zve = pick('/zod-validation-error/dist/index.mjs')
    open(os.path.join(tmp, 'zve.mjs'), 'w').write(re.sub(r'from ["\']zod["\']', 'from "./zod.mjs"', zve))
    open(os.path.join(tmp, 'check.mjs'), 'w').write(CHECK)
    jobs = []
    for k, f in enumerate(files):
        text = png_text(f)['workflow'] if f.endswith('.png') else open(f).read()
        p = os.path.join(tmp, f'w{k}.json')
        open(p, 'w').write(text)
        jobs.append([f, p])
    return subprocess.run(['node', 'check.mjs', json.dumps(jobs)], cwd=tmp).returncode


if __name__ == '__main__':
    sys.exit(main())
