#!/usr/bin/env python3
"""Expected outputs of ComfyUI's own KSampler code for tests/test_ksampler.

Runs ComfyUI's sigma table (comfy.model_sampling EPS + StableCascadeSampling),
its KSampler scheduler / denoise logic (comfy.samplers.KSampler), its noise
(comfy.sample.prepare_noise), its CFG (comfy.samplers.cfg_function) and its
k-diffusion samplers (comfy.samplers.sampler_object(...).sample) on the CPU,
with a tiny deterministic stand-in for the network that tests/test_ksampler.c
implements the same way (standin() below and there).

Usage (a venv with torch, numpy, scipy, torchsde, tqdm, psutil, safetensors,
einops, pillow, pyyaml; a ComfyUI checkout):
    python tests/ref/make_ksampler_cases.py COMFYUI_DIR > tests/data/ksampler_cases.txt

Output, one case per block:
    case SAMPLER SCHEDULER STEPS SHIFT DENOISE CFG SEED LATENT(0|1)
    sigmas v0 .. vSTEPS
    out v0 .. v(B*C*H*W - 1)      (NCHW order)
"""
import math
import sys
from unittest import mock

B, C, H, W = 2, 3, 2, 4


def main():
    sys.path.insert(0, sys.argv[1])
    sys.argv = [sys.argv[0], "--cpu"]
    import torch
    sys.modules["torchvision"] = mock.MagicMock()   # pulled in by model_base, unused here
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.model_sampling as cms
    import comfy.sample
    import comfy.samplers

    class MS(cms.EPS, cms.StableCascadeSampling):   # what model_base.model_sampling builds
        pass

    class Cfg:
        def __init__(self, shift):
            self.sampling_settings = {"shift": shift}

    class Patcher:
        def __init__(self, ms):
            self.ms = ms

        def get_model_object(self, name):
            assert name == "model_sampling"
            return self.ms

    per = C * H * W
    wvec = ((torch.arange(per) % 7).float() / 7 - 0.5).view(1, C, H, W)

    def standin(xc, t, cond):
        # eps = 0.9*xc + 0.2*(t*w) + 0.1*sin(xc) [+ 0.15*w for the conditional half]
        t = t.view(-1, 1, 1, 1)
        e = xc * 0.9 + (t * wvec) * 0.2
        e = e + torch.sin(xc) * 0.1
        if cond:
            e = e + wvec * 0.15
        return e

    class Inner:   # BaseModel._apply_model with the stand-in network
        def __init__(self, ms):
            self.model_sampling = ms

        def apply_model(self, x, sigma, cond):
            xc = self.model_sampling.calculate_input(sigma, x)
            t = self.model_sampling.timestep(sigma).float()
            out = standin(xc, t, cond).float()
            return self.model_sampling.calculate_denoised(sigma, out, x)

    class Guider:   # CFGGuider: sampling_function + cfg_function
        def __init__(self, ms, cfg):
            self.inner_model = Inner(ms)
            self.model_patcher = Patcher(ms)
            self.cfg = cfg

        def __call__(self, x, sigma, model_options={}, seed=None):
            cond = self.inner_model.apply_model(x, sigma, True)
            if math.isclose(self.cfg, 1.0):
                uncond = torch.zeros_like(x)   # calc_cond_batch's empty output
            else:
                uncond = self.inner_model.apply_model(x, sigma, False)
            return comfy.samplers.cfg_function(self.inner_model, cond, uncond, self.cfg, x, sigma)

    samplers = ["euler", "euler_ancestral", "dpmpp_2m", "lcm", "ddpm", "dpmpp_2m_sde"]
    schedulers = ["simple", "normal", "karras", "exponential", "sgm_uniform"]
    # (steps, shift, denoise, cfg, seed, latent image?): Stage C like, Stage B
    # like with CFG 1.1, img2img like with denoise < 1, no CFG
    settings = [(6, 2.0, 1.0, 4.0, 42, 0), (5, 1.0, 1.0, 1.1, 7, 0), (4, 2.0, 0.6, 1.0, 123456789, 1)]
    latent_img = ((torch.arange(B * per) % 5).float() * 0.25 - 0.5).view(B, C, H, W)
    for sname in samplers:
        for sched in schedulers:
            for steps, shift, denoise, cfg, seed, use_latent in settings:
                ms = MS(Cfg(shift))
                ks = comfy.samplers.KSampler(Patcher(ms), steps, "cpu", sname, sched, denoise)
                sigmas = ks.sigmas
                latent = latent_img.clone() if use_latent else torch.zeros(B, C, H, W)
                noise = comfy.sample.prepare_noise(latent, seed)
                sampler = comfy.samplers.sampler_object(sname)
                extra = {"model_options": {}, "seed": seed}
                out = sampler.sample(Guider(ms, cfg), sigmas, extra, None, noise, latent, None, True)
                print("case %s %s %d %g %g %g %d %d" % (sname, sched, steps, shift, denoise, cfg, seed, use_latent))
                print("sigmas " + " ".join("%.9g" % v for v in sigmas.tolist()))
                print("out " + " ".join("%.9g" % v for v in out.flatten().tolist()))


if __name__ == "__main__":
    main()
