"""Reference data for the model forms besides the diffusers folder (see README.md, "Model forms").

Writes, from the committed tiny model (data/tiny_ip2p, never modified here):
  data/model_forms/tokenizer_tf5/        the tiny tokenizer saved by transformers 5
                                         (tokenizer.json + tokenizer_config.json only)
  data/model_forms/tokens_tf5.json       ids that tokenizer gives for the golden instructions
  data/model_forms/scheduler_dpmpp/      scheduler_config.json as DPMSolverMultistepScheduler saves it
  data/goldens/scheduler_dpmpp.safetensors, scheduler_dpmpp_karras.safetensors
                                         DPM-Solver++ 2M trajectories (same layout as the other
                                         scheduler goldens, see README.md)
  data/goldens/scheduler_dpmpp_variants.safetensors  trajectories for DPM_VARIANTS (heun, order 1,
                                         leading/trailing, sigma_min, v-prediction, cosine + lambda clipping)
  data/goldens/edit_dpmpp_2m.safetensors a whole pipeline edit with DPMSolverMultistepScheduler
                                         (same layout as edit_ddim.safetensors)
  data/model_forms/tiny_ip2p_ldm.safetensors  the tiny model in the original CompVis/LDM single-file
                                         layout (checked with diffusers' from_single_file)
  data/model_forms/ldm_full_size_shapes.txt   the full-size IP2P keys/shapes in that layout
  data/model_forms/pickle/               torch.save checkpoints (.bin folder, sharded .bin, Lightning
                                         .ckpt) and hostile/malformed variants

Run with the reference venv: tests/reference/.venv/bin/python tests/reference/make_model_forms.py
Takes ~10 s. Deterministic except the bytes of pickle/compressed.bin (zip timestamps).
"""
import json
import os
import shutil
import sys

import torch
import transformers
import diffusers
from diffusers import DPMSolverMultistepScheduler
from transformers import CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens  # noqa: E402
from make_goldens import save_tensors, write_json, IMAGE_H, IMAGE_W  # noqa: E402
from diffusers import StableDiffusionInstructPix2PixPipeline  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
TINY = os.path.join(DATA, "tiny_ip2p")
OUT = os.path.join(DATA, "model_forms")


def log(msg):
    print(msg, flush=True)


def tokenizer_tf5():
    out = os.path.join(OUT, "tokenizer_tf5")
    shutil.rmtree(out, ignore_errors=True)
    legacy = CLIPTokenizer.from_pretrained(os.path.join(TINY, "tokenizer"))
    legacy.save_pretrained(out)
    files = sorted(os.listdir(out))
    assert files == ["tokenizer.json", "tokenizer_config.json"], files
    # transformers records whether the folder was loaded locally; not part of the tokenizer
    reloaded = CLIPTokenizer.from_pretrained(out)
    golden = json.load(open(os.path.join(DATA, "goldens", "tokens.json"), encoding="utf-8"))
    entries = []
    for entry in golden["instructions"]:
        text = entry["text"]
        ids = reloaded(text, padding="max_length", max_length=77, truncation=True).input_ids
        assert ids == entry["input_ids"], text  # the two forms are the same tokenizer
        entries.append({"text": text, "input_ids": ids})
    write_json(os.path.join(OUT, "tokens_tf5.json"), {
        "transformers": transformers.__version__, "instructions": entries})
    log(f"  tokenizer_tf5: {files}, {len(entries)} instructions agree with the vocab.json/merges.txt form")


def dpm_scheduler(karras, **overrides):
    cfg = DPMSolverMultistepScheduler.load_config(os.path.join(TINY, "scheduler"))
    return DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=karras, **overrides)


# Settings beyond the defaults that DpmSolverScheduler implements; one golden each.
DPM_VARIANTS = {
    "heun": dict(solver_type="heun"),
    "order1": dict(solver_order=1),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "sigma_min": dict(final_sigmas_type="sigma_min", lower_order_final=False),
    "vpred": dict(prediction_type="v_prediction"),
    "cosine_clipped": dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1),
    # Not here: cosine + Karras. Its first timesteps repeat (998, 998, ...) and diffusers'
    # index_for_timestep then starts at step index 1, running past the schedule's end.
}


@torch.no_grad()
def golden_dpm_variants():
    tensors, meta = {}, {}
    h, w = IMAGE_H // 4, IMAGE_W // 4
    for name, overrides in DPM_VARIANTS.items():
        for n in (7, 16):
            gen = torch.Generator().manual_seed(400 + n)
            over = dict(overrides)
            karras = over.pop("use_karras_sigmas", False)
            sched = dpm_scheduler(karras, **over)
            sched.set_timesteps(n)
            p = f"{name}_n{n}_"
            tensors[p + "timesteps"] = sched.timesteps.clone()
            tensors[p + "sigmas"] = sched.sigmas.clone()
            cur = torch.randn(1, 4, h, w, generator=gen)
            tensors[p + "sample"] = cur
            outs = torch.randn(n, 1, 4, h, w, generator=gen)
            tensors[p + "model_outputs"] = outs
            prevs = []
            for i, t in enumerate(sched.timesteps):
                cur = sched.step(outs[i], t, cur).prev_sample
                prevs.append(cur)
            tensors[p + "prev_samples"] = torch.stack(prevs)
        meta[name] = json.dumps(overrides, sort_keys=True)
    save_tensors(os.path.join(DATA, "goldens", "scheduler_dpmpp_variants.safetensors"), tensors, meta)
    log(f"  scheduler_dpmpp_variants: {sorted(DPM_VARIANTS)}")


@torch.no_grad()
def golden_dpmpp(karras):
    name = "dpmpp_karras" if karras else "dpmpp"
    tensors, meta = {}, {}
    h, w = IMAGE_H // 4, IMAGE_W // 4
    for n in (5, 10, 20):
        gen = torch.Generator().manual_seed(300 + n)
        sched = dpm_scheduler(karras)
        sched.set_timesteps(n)
        p = f"n{n}_"
        tensors[p + "timesteps"] = sched.timesteps.clone()
        tensors[p + "sigmas"] = sched.sigmas.clone()
        tensors[p + "init_noise_sigma"] = torch.tensor([float(sched.init_noise_sigma)])
        sample = torch.randn(1, 4, h, w, generator=gen) * float(sched.init_noise_sigma)
        tensors[p + "sample"] = sample
        model_outputs = torch.randn(n, 1, 4, h, w, generator=gen)
        tensors[p + "model_outputs"] = model_outputs
        prevs, scaled = [], []
        cur = sample
        for i, t in enumerate(sched.timesteps):
            scaled.append(sched.scale_model_input(cur, t))
            cur = sched.step(model_outputs[i], t, cur).prev_sample
            prevs.append(cur)
        tensors[p + "scaled_samples"] = torch.stack(scaled)
        tensors[p + "prev_samples"] = torch.stack(prevs)
        tensors[p + "alphas_cumprod"] = sched.alphas_cumprod.clone()
    meta["effective_config"] = json.dumps(
        {k: v for k, v in sched.config.items() if not k.startswith("_")}, sort_keys=True, default=str)
    save_tensors(os.path.join(DATA, "goldens", f"scheduler_{name}.safetensors"), tensors, meta)
    log(f"  scheduler {name}: n10 timesteps {tensors['n10_timesteps'].tolist()}")


def dpm_config_folder():
    out = os.path.join(OUT, "scheduler_dpmpp")
    shutil.rmtree(out, ignore_errors=True)
    dpm_scheduler(False).save_config(out)
    text = open(os.path.join(out, "scheduler_config.json")).read()
    assert "-Infinity" in text, "diffusers no longer writes lambda_min_clipped as -Infinity"
    log("  scheduler_dpmpp/scheduler_config.json written (contains -Infinity)")



# ----------------------------------------------------------------------------
# Original (CompVis / LDM) single-file layout, written from the diffusers names
# by inverting diffusers' loaders/single_file_utils.py conversion; the result
# is checked by loading it back with diffusers' own from_single_file.
# ----------------------------------------------------------------------------

UNET_RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
               ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection.")]
UNET_TOP = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
            ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2.")]
VAE_ATTN = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def swap_prefix(rest, table):
    for a, b in table:
        if rest.startswith(a):
            return b + rest[len(a):]
    raise KeyError(rest)


def ldm_unet_key(k, cfg):
    per = cfg["layers_per_block"] + 1
    attn_down = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
    attn_up = [t.startswith("CrossAttn") for t in cfg["up_block_types"]]
    for a, b in UNET_TOP:
        if k.startswith(a):
            return b + k[len(a):]
    parts = k.split(".")
    if parts[0] == "down_blocks":
        b, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.*
            return f"input_blocks.{1 + b * per + per - 1}.0.op." + ".".join(parts[5:])
        j = int(parts[3])
        rest = ".".join(parts[4:]) + ("" if len(parts) > 4 else "")
        i = 1 + b * per + j
        if kind == "resnets":
            return f"input_blocks.{i}.0." + swap_prefix(rest, UNET_RESNET)
        return f"input_blocks.{i}.1." + rest
    if parts[0] == "mid_block":
        kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * j}." + swap_prefix(rest, UNET_RESNET)
        return "middle_block.1." + rest
    if parts[0] == "up_blocks":
        b, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the block's last resnet (and attention, if any)
            i = b * per + per - 1
            return f"output_blocks.{i}.{2 if attn_up[b] else 1}.conv." + ".".join(parts[5:])
        j, rest = int(parts[3]), ".".join(parts[4:])
        i = b * per + j
        if kind == "resnets":
            return f"output_blocks.{i}.0." + swap_prefix(rest, UNET_RESNET)
        return f"output_blocks.{i}.1." + rest
    raise KeyError(k)


def ldm_vae_key(k, cfg):
    n = len(cfg["block_out_channels"])
    if k.startswith(("quant_conv.", "post_quant_conv.")):
        return k
    side, rest = k.split(".", 1)
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out." + rest[len("conv_norm_out."):]
    if rest.startswith(("conv_in.", "conv_out.")):
        return k
    parts = rest.split(".")
    if parts[0] == "mid_block":
        if parts[1] == "resnets":
            return f"{side}.mid.block_{int(parts[2]) + 1}." + ".".join(parts[3:]).replace("conv_shortcut.", "nin_shortcut.")
        return f"{side}.mid.attn_1." + swap_prefix(".".join(parts[3:]), VAE_ATTN)
    b = int(parts[1])
    stage = "down" if side == "encoder" else "up"
    ob = b if side == "encoder" else n - 1 - b
    if parts[2] == "resnets":
        return f"{side}.{stage}.{ob}.block.{parts[3]}." + ".".join(parts[4:]).replace("conv_shortcut.", "nin_shortcut.")
    return f"{side}.{stage}.{ob}.{stage}sample.conv." + ".".join(parts[5:])


def to_ldm(unet_sd, unet_cfg, vae_sd, vae_cfg, te_sd):
    out = {}
    for k, v in unet_sd.items():
        out["model.diffusion_model." + ldm_unet_key(k, unet_cfg)] = v
    for k, v in vae_sd.items():
        key = "first_stage_model." + ldm_vae_key(k, vae_cfg)
        if ".mid.attn_1." in key and v.dim() == 2:
            v = v[:, :, None, None]  # the original's 1x1 convolutions
        out[key] = v
    for k, v in te_sd.items():
        out["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    assert len(out) == len(unet_sd) + len(vae_sd) + len(te_sd), "two names converted to one"
    return out


def read_st(path):
    from safetensors.torch import load_file
    return load_file(path)


def ldm_single_file():
    unet_cfg = json.load(open(os.path.join(TINY, "unet", "config.json")))
    vae_cfg = json.load(open(os.path.join(TINY, "vae", "config.json")))
    unet_sd = read_st(os.path.join(TINY, "unet", "diffusion_pytorch_model.safetensors"))
    vae_sd = read_st(os.path.join(TINY, "vae", "diffusion_pytorch_model.safetensors"))
    te_sd = read_st(os.path.join(TINY, "text_encoder", "model.safetensors"))
    ldm = to_ldm(unet_sd, unet_cfg, vae_sd, vae_cfg, te_sd)
    path = os.path.join(OUT, "tiny_ip2p_ldm.safetensors")
    save_tensors(path, ldm, {"format": "pt"})
    # diffusers' own conversion must give back exactly the folder's weights
    pipe = StableDiffusionInstructPix2PixPipeline.from_single_file(
        path, config=TINY, local_files_only=True, safety_checker=None, requires_safety_checker=False)
    for name, ref in (("unet", unet_sd), ("vae", vae_sd), ("text_encoder", te_sd)):
        got = getattr(pipe, name).state_dict()
        ref = {(k[len("text_model."):] if name == "text_encoder" and k not in got else k): v for k, v in ref.items()}
        ref.pop("embeddings.position_ids", None)
        ref.pop("text_model.embeddings.position_ids", None)
        missing = [k for k in ref if k not in got]
        assert not missing, f"{name}: diffusers did not load {missing[:5]}"
        bad = [k for k in ref if not torch.equal(got[k], ref[k])]
        assert not bad, f"{name}: diffusers' from_single_file gives other weights for {bad[:5]}"
    log(f"  tiny_ip2p_ldm.safetensors: {len(ldm)} tensors; diffusers' from_single_file(config=tiny_ip2p) "
        f"loads exactly the folder's weights")

    # The names and shapes of the full-size InstructPix2Pix checkpoint in this layout
    # (from make_goldens' full-size configs, meta device): what detection must read.
    full = os.path.join(DATA, "full_size")
    from diffusers import UNet2DConditionModel, AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextConfig
    with torch.device("meta"):
        ucfg = UNet2DConditionModel.load_config(os.path.join(full, "unet_config.json"))
        vcfg = AutoencoderKL.load_config(os.path.join(full, "vae_config.json"))
        u = UNet2DConditionModel.from_config(ucfg)
        v = AutoencoderKL.from_config(vcfg)
        t = CLIPTextModel(CLIPTextConfig.from_json_file(os.path.join(full, "text_encoder_config.json")))
    full_ldm = to_ldm(u.state_dict(), ucfg, v.state_dict(), vcfg, t.state_dict())
    lines = sorted(f"{k} {','.join(str(d) for d in val.shape)}" for k, val in full_ldm.items())
    with open(os.path.join(OUT, "ldm_full_size_shapes.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"  ldm_full_size_shapes.txt: {len(lines)} tensors")



# ----------------------------------------------------------------------------
# PyTorch pickle checkpoints (torch.save's zip format) and hostile variants.
# ----------------------------------------------------------------------------

class Evil:
    """Unpickling this runs os.system: a safe reader must refuse it unread."""
    def __reduce__(self):
        return (os.system, ("touch /tmp/via_pickle_was_executed",))


def pickle_checkpoints():
    import zipfile
    out = os.path.join(OUT, "pickle")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "vae_bin"))
    shutil.copy(os.path.join(TINY, "vae", "config.json"), os.path.join(out, "vae_bin", "config.json"))
    vae_sd = read_st(os.path.join(TINY, "vae", "diffusion_pytorch_model.safetensors"))
    torch.save(vae_sd, os.path.join(out, "vae_bin", "diffusion_pytorch_model.bin"))
    back = torch.load(os.path.join(out, "vae_bin", "diffusion_pytorch_model.bin"), weights_only=True)
    assert all(torch.equal(back[k], vae_sd[k]) for k in vae_sd)

    # the text encoder as transformers 4 sharded pickle weights (pytorch_model.bin.index.json)
    te_dir = os.path.join(out, "text_encoder_bin_sharded")
    os.makedirs(te_dir)
    shutil.copy(os.path.join(TINY, "text_encoder", "config.json"), os.path.join(te_dir, "config.json"))
    te_sd = read_st(os.path.join(TINY, "text_encoder", "model.safetensors"))
    names = sorted(te_sd)
    weight_map = {}
    for k in range(3):
        shard = f"pytorch_model-{k + 1:05d}-of-00003.bin"
        part = {n: te_sd[n] for n in names[k::3]}
        torch.save(part, os.path.join(te_dir, shard))
        weight_map.update({n: shard for n in part})
    write_json(os.path.join(te_dir, "pytorch_model.bin.index.json"),
               {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in te_sd.values())},
                "weight_map": dict(sorted(weight_map.items()))})

    # the whole tiny model in the original layout, as a Lightning-style .ckpt
    ldm = read_st(os.path.join(OUT, "tiny_ip2p_ldm.safetensors"))
    torch.save({"state_dict": ldm, "global_step": 22000, "epoch": 3}, os.path.join(out, "tiny_ip2p_ldm.ckpt"))

    # hostile / malformed files
    small = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16)}
    torch.save(small, os.path.join(out, "small.bin"))
    torch.save({"a": small["a"], "evil": Evil()}, os.path.join(out, "evil_os_system.bin"))

    def rewrite_pkl(src, dst, data):
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
            for item in zin.infolist():
                body = zin.read(item.filename)
                zout.writestr(item, data if item.filename.endswith("/data.pkl") else body)
    # EMPTY_SET (0x8f) at byte 3: not an opcode a tensor checkpoint uses
    rewrite_pkl(os.path.join(out, "small.bin"), os.path.join(out, "bad_opcode.bin"), b"\x80\x02}\x8f.")
    # builtins.eval through STACK_GLOBAL (protocol 4 spelling)
    rewrite_pkl(os.path.join(out, "small.bin"), os.path.join(out, "evil_stack_global.bin"),
                b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x0aprint('x')\x85R.")
    # a deflate-compressed zip of the same entries
    with zipfile.ZipFile(os.path.join(out, "small.bin")) as zin, \
            zipfile.ZipFile(os.path.join(out, "compressed.bin"), "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename), compress_type=zipfile.ZIP_DEFLATED)
    assert not os.path.exists("/tmp/via_pickle_was_executed")
    log(f"  pickle/: {sorted(os.listdir(out))}")


def main():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    log(f"diffusers {diffusers.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    os.makedirs(OUT, exist_ok=True)
    tokenizer_tf5()
    dpm_config_folder()
    golden_dpmpp(False)
    golden_dpmpp(True)
    golden_dpm_variants()
    ldm_single_file()
    pickle_checkpoints()
    # The edit golden through make_goldens' own code, with the DPM scheduler added to its table.
    make_goldens.SCHEDULERS["dpmpp_2m"] = DPMSolverMultistepScheduler
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(TINY, safety_checker=None,
                                                                  requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        make_goldens.golden_edit(os.path.join(DATA, "goldens"), TINY, pipe, "dpmpp_2m")


if __name__ == "__main__":
    main()
