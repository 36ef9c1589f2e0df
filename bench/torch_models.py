"""Model configurations and weight-layout helpers for the PyTorch benchmarks.

diffusers/transformers configs of the networks (see shared/spec/models.md
§3.1, §4.1, §5, §8 and checkpoints.md §4), constructors with random weights,
benchmark inputs, and the official <-> diffusers key mapping so a file written
in the official layout (bench/torch_random_weights.py, or a real checkpoint)
can be loaded into the diffusers modules.  Import only after torch is usable.
"""
import json
import os

import torch

import torch_common as tc

CTA = ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock")
CT = ("SDCascadeResBlock", "SDCascadeTimestepBlock")

# diffusers StableCascadeUNet configs; "*_lite" are the 1B / 700M models.
UNET_CONFIGS = {
    "stage_c_lite": dict(
        in_channels=16, out_channels=16, timestep_ratio_embedding_dim=64, patch_size=1,
        conditioning_dim=1536, block_out_channels=(1536, 1536), num_attention_heads=(24, 24),
        down_num_layers_per_block=(4, 12), up_num_layers_per_block=(12, 4),
        down_blocks_repeat_mappers=(1, 1), up_blocks_repeat_mappers=(1, 1),
        block_types_per_layer=(CTA, CTA), clip_text_in_channels=1280,
        clip_text_pooled_in_channels=1280, clip_image_in_channels=768, clip_seq=4,
        kernel_size=3, dropout=(0.1, 0.1), self_attn=True,
        timestep_conditioning_type=("sca", "crp"), switch_level=(False,)),
    "stage_c": dict(
        in_channels=16, out_channels=16, timestep_ratio_embedding_dim=64, patch_size=1,
        conditioning_dim=2048, block_out_channels=(2048, 2048), num_attention_heads=(32, 32),
        down_num_layers_per_block=(8, 24), up_num_layers_per_block=(24, 8),
        down_blocks_repeat_mappers=(1, 1), up_blocks_repeat_mappers=(1, 1),
        block_types_per_layer=(CTA, CTA), clip_text_in_channels=1280,
        clip_text_pooled_in_channels=1280, clip_image_in_channels=768, clip_seq=4,
        kernel_size=3, dropout=(0.1, 0.1), self_attn=True,
        timestep_conditioning_type=("sca", "crp"), switch_level=(False,)),
    "stage_b_lite": dict(
        in_channels=4, out_channels=4, timestep_ratio_embedding_dim=64, patch_size=2,
        conditioning_dim=1280, block_out_channels=(320, 576, 1152, 1152),
        num_attention_heads=(0, 9, 18, 18),
        down_num_layers_per_block=(2, 4, 14, 4), up_num_layers_per_block=(4, 14, 4, 2),
        down_blocks_repeat_mappers=(1, 1, 1, 1), up_blocks_repeat_mappers=(2, 2, 2, 2),
        block_types_per_layer=(CT, CT, CTA, CTA), clip_text_pooled_in_channels=1280,
        clip_seq=4, effnet_in_channels=16, pixel_mapper_in_channels=3, kernel_size=3,
        dropout=(0, 0, 0.1, 0.1), self_attn=True, timestep_conditioning_type=("sca",),
        switch_level=None),
    "stage_b": dict(
        in_channels=4, out_channels=4, timestep_ratio_embedding_dim=64, patch_size=2,
        conditioning_dim=1280, block_out_channels=(320, 640, 1280, 1280),
        num_attention_heads=(0, 0, 20, 20),
        down_num_layers_per_block=(2, 6, 28, 6), up_num_layers_per_block=(6, 28, 6, 2),
        down_blocks_repeat_mappers=(1, 1, 1, 1), up_blocks_repeat_mappers=(3, 3, 2, 2),
        block_types_per_layer=(CT, CT, CTA, CTA), clip_text_pooled_in_channels=1280,
        clip_seq=4, effnet_in_channels=16, pixel_mapper_in_channels=3, kernel_size=3,
        dropout=(0, 0, 0.1, 0.1), self_attn=True, timestep_conditioning_type=("sca",),
        switch_level=None),
}

# The tiny Stage C / Stage B of shared/golden (stage_*_tiny.weights.safetensors,
# configs from their io files): CPU smoke tests of the GPU benchmark.
UNET_CONFIGS["stage_c_tiny"] = dict(
    UNET_CONFIGS["stage_c"], conditioning_dim=96, block_out_channels=(128, 128),
    num_attention_heads=(2, 2), down_num_layers_per_block=(2, 3), up_num_layers_per_block=(3, 2),
    clip_text_in_channels=80, clip_text_pooled_in_channels=72, clip_image_in_channels=48,
    dropout=(0, 0))
UNET_CONFIGS["stage_b_tiny"] = dict(
    UNET_CONFIGS["stage_b"], conditioning_dim=96, block_out_channels=(32, 48, 128, 128),
    num_attention_heads=(0, 0, 2, 2), down_num_layers_per_block=(1, 2, 2, 1),
    up_num_layers_per_block=(1, 2, 2, 1), up_blocks_repeat_mappers=(3, 3, 2, 2),
    clip_text_pooled_in_channels=72, dropout=(0, 0, 0, 0))

# diffusers PaellaVQModel arguments of Stage A (defaults = the released one)
# and of shared/golden's stage_a_tiny.
VQ_CONFIGS = {"stage_a": {}, "stage_a_tiny": dict(bottleneck_blocks=2, embed_dim=64)}
STAGE_A_SCALE = 0.43   # official StageA.decode multiplies its input by this

# HF stable-cascade text_encoder/config.json (CLIP ViT-bigG/14 text tower).
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
              projection_dim=1280, num_hidden_layers=32, num_attention_heads=20,
              max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
              pad_token_id=1, bos_token_id=49406, eos_token_id=49407)


def manifest(variant):
    path = os.path.join(tc.SHARED, "spec", "manifests", variant + ".json")
    with open(path) as f:
        return json.load(f)


def build_unet(variant, seed=1234, dtype=None, fill=True):
    from diffusers import StableCascadeUNet
    cfg = UNET_CONFIGS[variant]
    return tc.build_random(torch, lambda: StableCascadeUNet(**cfg), seed, dtype, fill)


def build_clip_g(seed=1234, dtype=None, fill=True):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    cfg = CLIPTextConfig(**CLIP_G)
    return tc.build_random(torch, lambda: CLIPTextModelWithProjection(cfg), seed, dtype, fill)


def build_vqgan(seed=1234, dtype=None, fill=True, variant="stage_a"):
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel
    return tc.build_random(torch, lambda: PaellaVQModel(**VQ_CONFIGS[variant]), seed, dtype, fill)


def stage_inputs(variant, batch, dtype, latent=None, seed=7, effnet=(24, 24)):
    """Inputs of one forward; latent = (h, w) of x (defaults: 24x24 / 256x256).

    Widths come from UNET_CONFIGS[variant]; effnet = (h, w) of Stage B's
    Stage-C latent."""
    g = torch.Generator().manual_seed(seed)
    cfg = UNET_CONFIGS[variant]

    def rn(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    r = torch.full((batch,), 0.5, dtype=dtype)
    pooled = cfg["clip_text_pooled_in_channels"]
    if variant.startswith("stage_c"):
        h, w = latent or (24, 24)
        return dict(sample=rn(batch, cfg["in_channels"], h, w), timestep_ratio=r,
                    clip_text_pooled=rn(batch, 1, pooled),
                    clip_text=rn(batch, 77, cfg["clip_text_in_channels"]),
                    clip_img=rn(batch, 1, cfg["clip_image_in_channels"]))
    h, w = latent or (256, 256)
    return dict(sample=rn(batch, cfg["in_channels"], h, w), timestep_ratio=r,
                clip_text_pooled=rn(batch, 1, pooled),
                effnet=rn(batch, cfg["effnet_in_channels"], *effnet))


def unet_flops(variant, batch, latent=None, effnet=(24, 24)):
    """(total, per-op) FLOPs of one StableCascadeUNet forward, on the meta device."""
    from diffusers import StableCascadeUNet
    with torch.device("meta"):
        m = StableCascadeUNet(**UNET_CONFIGS[variant]).eval()
        inp = stage_inputs(variant, batch, torch.float32, latent, effnet=effnet)
    return tc.flops_of(torch, lambda: m(**inp, return_dict=False))


def vq_decode_flops(variant, batch, hw):
    """(total, per-op) FLOPs of one PaellaVQModel.decode of a [batch,4,h,w] latent."""
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel
    with torch.device("meta"):
        m = PaellaVQModel(**VQ_CONFIGS[variant]).eval()
        x = torch.zeros(batch, 4, *hw)
    return tc.flops_of(torch, lambda: m.decode(x))


def official_to_diffusers(sd, variant):
    """Rename an official-layout state dict to diffusers names (checkpoints.md §4)."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".attention.attn.in_proj_weight") or k.endswith(".attention.attn.in_proj_bias"):
            base, kind = k.rsplit(".attn.in_proj_", 1)
            q, kk, vv = v.chunk(3, dim=0)
            out[f"{base}.to_q.{kind}"] = q
            out[f"{base}.to_k.{kind}"] = kk
            out[f"{base}.to_v.{kind}"] = vv
        elif ".attention.attn.out_proj." in k:
            out[k.replace(".attention.attn.out_proj.", ".attention.to_out.0.")] = v
        elif variant.startswith("stage_b") and k.startswith("clip_mapper."):
            out[k.replace("clip_mapper.", "clip_txt_pooled_mapper.", 1)] = v
        elif variant.startswith("stage_a") and k == "vquantizer.codebook.weight":
            out["vquantizer.embedding.weight"] = v
        else:
            out[k] = v
    return out


def load_official(model, path, variant):
    """Load an official-layout safetensors file into a diffusers/HF module (strict)."""
    from safetensors.torch import load_file
    sd = load_file(path)
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    if variant != "text_encoder":
        sd = official_to_diffusers(sd, variant)
    ref = model.state_dict()
    sd = {k: v.to(ref[k].dtype) if k in ref else v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing[:5]} unexpected {unexpected[:5]}")
    return model
