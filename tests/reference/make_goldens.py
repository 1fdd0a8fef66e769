#!/usr/bin/env python3
"""Build the tiny random InstructPix2Pix reference model and dump golden tensors.

Run with the reference venv (see setup_venv.sh):
    tests/reference/.venv/bin/python tests/reference/make_goldens.py

Everything runs on CPU in fp32 with fixed seeds; the output goes to
tests/reference/data/ (committed). README.md in this folder documents every
file and tensor this script writes and the conventions the C++ side follows.
"""

import argparse
import collections
import copy
import json
import os
import re
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------
# Fixed inputs
# ----------------------------------------------------------------------------

# The corpus the tiny BPE is learned from (editing instructions, so that
# common words end up as single tokens and others split into pieces).
CORPUS = """
turn the sky into a sunset. make it look like a painting by van gogh.
add fireworks to the sky. make the dog a cat. turn him into a cyborg.
make it winter and add snow on the ground. put a hat on the man.
change the season to autumn with orange leaves. make the water frozen.
add a rainbow over the mountains. make the photo black and white.
turn the car red. replace the trees with palm trees. make it night time.
add a boat on the lake. make the person smile. give her sunglasses.
make it look like a watercolor painting. turn the house into a castle.
add clouds to the sky. make the grass green. remove the people.
make the building made of glass. turn the cat into a tiger. add a moon.
make the flowers blue. make it rain. add lightning in the background.
make the image look older, like a vintage photograph from the 1950s.
turn the city into a futuristic city with flying cars and neon lights.
make the street wet with reflections. add a dragon flying over the castle.
make the horse a zebra. make the table wooden. make the walls pink.
make the cake chocolate. put the dog on a beach. turn the apple golden.
make it a cartoon. make it look like a pencil sketch. add a red scarf.
change the background to a forest. make the mountains covered in snow.
make the sun bigger. turn the river into lava. make the hair blonde.
it's a dog! it's a cat? what's that? the man's hat, the woman's dress.
make the coffee cup steaming hot. make the sky purple and the sea green.
add a small bird on the branch. make the light warmer and softer.
make the dog wear a red collar. make the old man young again.
turn the photo into an oil painting with thick brush strokes.
"""

INSTRUCTIONS = [
    "make it look like a painting",
    "it's a dog!!",
    "Turn The SKY into a SUNSET",
    "add 3 boats and 12 birds in 1950",
    "  make   the\tdog\n a   cat  ",
    "café au lait, naïve façade — “quoted” ☃",
    ("make the sky purple and the sea green and add a dragon flying over the castle "
     "while the city turns into a futuristic city with flying cars and neon lights "
     "and the street is wet with reflections and the man wears a red scarf and a hat "
     "and sunglasses and the flowers are blue and the grass is green and it rains"),
    "",
]

EDIT_INSTRUCTION = "turn the sky into a sunset"
EDIT_STEPS = 5
EDIT_GUIDANCE = 7.5
EDIT_IMAGE_GUIDANCE = 1.5
IMAGE_H, IMAGE_W = 32, 48  # non-square on purpose: catches H/W mix-ups

# The scheduler config exactly as timbrooks/instruct-pix2pix publishes it
# (note: no timestep_spacing key; every scheduler class then uses its own
# default: linspace for the Euler ones, leading for DDIM).
PUBLISHED_SCHEDULER_CONFIG = collections.OrderedDict([
    ("_class_name", "EulerAncestralDiscreteScheduler"),
    ("_diffusers_version", "0.15.0.dev0"),
    ("beta_end", 0.012),
    ("beta_schedule", "scaled_linear"),
    ("beta_start", 0.00085),
    ("clip_sample", False),
    ("num_train_timesteps", 1000),
    ("prediction_type", "epsilon"),
    ("set_alpha_to_one", False),
    ("skip_prk_steps", True),
    ("steps_offset", 1),
    ("trained_betas", None),
])

# ----------------------------------------------------------------------------
# Published full-size configs (timbrooks/instruct-pix2pix), written from the
# SD-1.x / IP2P configs.
# ----------------------------------------------------------------------------

FULL_UNET_CONFIG = collections.OrderedDict([
    ("_class_name", "UNet2DConditionModel"),
    ("_diffusers_version", "0.15.0.dev0"),
    ("act_fn", "silu"),
    ("attention_head_dim", 8),
    ("block_out_channels", [320, 640, 1280, 1280]),
    ("center_input_sample", False),
    ("class_embed_type", None),
    ("conv_in_kernel", 3),
    ("conv_out_kernel", 3),
    ("cross_attention_dim", 768),
    ("down_block_types", ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                          "CrossAttnDownBlock2D", "DownBlock2D"]),
    ("downsample_padding", 1),
    ("dual_cross_attention", False),
    ("flip_sin_to_cos", True),
    ("freq_shift", 0),
    ("in_channels", 8),
    ("layers_per_block", 2),
    ("mid_block_scale_factor", 1),
    ("mid_block_type", "UNetMidBlock2DCrossAttn"),
    ("norm_eps", 1e-05),
    ("norm_num_groups", 32),
    ("num_class_embeds", None),
    ("only_cross_attention", False),
    ("out_channels", 4),
    ("projection_class_embeddings_input_dim", None),
    ("resnet_time_scale_shift", "default"),
    ("sample_size", 64),
    ("time_cond_proj_dim", None),
    ("time_embedding_type", "positional"),
    ("timestep_post_act", None),
    ("up_block_types", ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                        "CrossAttnUpBlock2D"]),
    ("upcast_attention", False),
    ("use_linear_projection", False),
])

FULL_VAE_CONFIG = collections.OrderedDict([
    ("_class_name", "AutoencoderKL"),
    ("_diffusers_version", "0.15.0.dev0"),
    ("act_fn", "silu"),
    ("block_out_channels", [128, 256, 512, 512]),
    ("down_block_types", ["DownEncoderBlock2D"] * 4),
    ("in_channels", 3),
    ("latent_channels", 4),
    ("layers_per_block", 2),
    ("norm_num_groups", 32),
    ("out_channels", 3),
    ("sample_size", 512),
    ("up_block_types", ["UpDecoderBlock2D"] * 4),
])

FULL_TEXT_ENCODER_CONFIG = collections.OrderedDict([
    ("_name_or_path", "openai/clip-vit-large-patch14"),
    ("architectures", ["CLIPTextModel"]),
    ("attention_dropout", 0.0),
    ("bos_token_id", 0),
    ("dropout", 0.0),
    ("eos_token_id", 2),
    ("hidden_act", "quick_gelu"),
    ("hidden_size", 768),
    ("initializer_factor", 1.0),
    ("initializer_range", 0.02),
    ("intermediate_size", 3072),
    ("layer_norm_eps", 1e-05),
    ("max_position_embeddings", 77),
    ("model_type", "clip_text_model"),
    ("num_attention_heads", 12),
    ("num_hidden_layers", 12),
    ("pad_token_id", 1),
    ("projection_dim", 768),
    ("torch_dtype", "float32"),
    ("transformers_version", "4.25.0.dev0"),
    ("vocab_size", 49408),
])

# ----------------------------------------------------------------------------
# Tiny model configs
# ----------------------------------------------------------------------------

TINY_UNET = dict(
    sample_size=16,
    in_channels=8,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 32),
    layers_per_block=2,
    cross_attention_dim=32,
    attention_head_dim=8,  # diffusers' SD-1 misnomer: this is the number of heads
    # 4 channels per group (SD has 10 at 320 channels): with one channel per
    # group GroupNorm would erase every per-channel offset, the time embedding's
    # included, and the goldens could not see those paths.
    norm_num_groups=8,
)

TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 32, 32),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=32,
    scaling_factor=0.18215,
)

TINY_TEXT = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=32,
    # the SD-1.x text_encoder config quirks (only the pooled output uses them)
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def log(msg):
    print(msg, flush=True)


_ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def save_tensors(path, tensors, metadata=None):
    """Write a safetensors file byte-for-byte reproducibly.

    safetensors' own writer orders the metadata through a hash map (random
    order per run), so regenerating would change the files' bytes; this writer
    sorts the header. Floating tensors are stored as float32.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                                  for k, v in sorted(metadata.items())}
    blobs, offset = [], 0
    for name in sorted(tensors):
        v = tensors[name].detach().cpu()
        if v.is_floating_point():
            v = v.to(torch.float32)
        data = v.contiguous().numpy().tobytes()
        header[name] = {"dtype": _ST_DTYPES[v.dtype], "shape": list(v.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)
    check = load_file(path)
    assert all(torch.equal(check[k], tensors[k].detach().cpu().to(check[k].dtype)) for k in tensors)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


# ----------------------------------------------------------------------------
# Tokenizer: CLIP byte-level BPE files, learned from CORPUS
# ----------------------------------------------------------------------------

def bytes_to_unicode():
    """CLIP's (and GPT-2's) reversible byte -> printable unicode table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


CLIP_PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+""")


def learn_merges(corpus, num_merges):
    byte_enc = bytes_to_unicode()
    words = collections.Counter()
    for w in CLIP_PAT.findall(corpus.lower()):
        chars = [byte_enc[b] for b in w.encode("utf-8")]
        chars[-1] = chars[-1] + "</w>"
        words[tuple(chars)] += 1
    base = list(byte_enc.values())
    known = set(base) | {c + "</w>" for c in base}
    merges = []
    while len(merges) < num_merges:
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        # most frequent first, ties broken lexicographically (deterministic);
        # skip pairs whose concatenation is already a token (keeps vocab unique)
        cands = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        cands = [p for p, c in cands if (p[0] + p[1]) not in known]
        if not cands:
            break
        a, b = cands[0]
        merges.append((a, b))
        known.add(a + b)
        new_words = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return merges


def write_tokenizer_files(tok_dir, num_merges=320):
    os.makedirs(tok_dir, exist_ok=True)
    merges = learn_merges(CORPUS, num_merges)
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == len(vocab), "duplicate vocab entries"
    vocab_map = {t: i for i, t in enumerate(vocab)}
    write_json(os.path.join(tok_dir, "vocab.json"), vocab_map)
    with open(os.path.join(tok_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    # tokenizer_config.json / special_tokens_map.json as SD-1.x ships them
    special = {"content": None, "lstrip": False, "normalized": True, "rstrip": False,
               "single_word": False}
    def tok(s):
        d = dict(special)
        d["content"] = s
        return d
    write_json(os.path.join(tok_dir, "tokenizer_config.json"), collections.OrderedDict([
        ("add_prefix_space", False),
        ("bos_token", tok("<|startoftext|>")),
        ("do_lower_case", True),
        ("eos_token", tok("<|endoftext|>")),
        ("errors", "replace"),
        ("model_max_length", 77),
        ("name_or_path", "openai/clip-vit-large-patch14"),
        ("pad_token", "<|endoftext|>"),
        ("special_tokens_map_file", "./special_tokens_map.json"),
        ("tokenizer_class", "CLIPTokenizer"),
        ("unk_token", tok("<|endoftext|>")),
    ]))
    write_json(os.path.join(tok_dir, "special_tokens_map.json"), collections.OrderedDict([
        ("bos_token", tok("<|startoftext|>")),
        ("eos_token", tok("<|endoftext|>")),
        ("pad_token", "<|endoftext|>"),
        ("unk_token", tok("<|endoftext|>")),
    ]))
    return len(vocab), len(merges)


# ----------------------------------------------------------------------------
# Weight randomisation
# ----------------------------------------------------------------------------

@torch.no_grad()
def randomize(module, gen, gain=1.0):
    """Re-initialise every parameter so that each one influences the output.

    Weights: normal(0, gain / sqrt(fan_in)) (larger than PyTorch's default
    init, whose std is ~0.58 / sqrt(fan_in)); embeddings normal(0, 0.5);
    norm weights 1 + normal(0, 0.1); every bias normal(0, 0.1). No parameter is
    left at zero (diffusers zero-initialises nothing for these models by
    default, but the default init would make some paths very weak).
    """
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
        is_norm = isinstance(owner, (torch.nn.GroupNorm, torch.nn.LayerNorm))
        if isinstance(owner, torch.nn.Embedding):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        elif is_norm and leaf == "weight":
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        elif leaf == "bias" or p.dim() < 2:
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=gen) * (gain / fan_in ** 0.5))


# ----------------------------------------------------------------------------
# Model building and saving
# ----------------------------------------------------------------------------

def build_models(vocab_size):
    gen = torch.Generator().manual_seed(1234)
    unet = UNet2DConditionModel(**TINY_UNET)
    randomize(unet, gen)
    vae = AutoencoderKL(**TINY_VAE)
    randomize(vae, gen)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, **TINY_TEXT))
    randomize(text_encoder, gen)
    for m in (unet, vae, text_encoder):
        m.eval()
    return unet, vae, text_encoder


def rewrite_text_encoder_checkpoint(te_dir, filename):
    """Rename the text encoder's tensors to the published checkpoint names.

    transformers 5 saves CLIPTextModel without the "text_model." prefix, but
    every published SD-1.x / InstructPix2Pix text_encoder/model.safetensors
    (written by transformers 4.x) uses "text_model.*" and also carries the
    int64 buffer "text_model.embeddings.position_ids" [1,77]. Real checkpoints
    are what the C++ loader must read, so the tiny model ships that form too
    (transformers 5 loads it unchanged, which main() verifies).
    """
    path = os.path.join(te_dir, filename)
    sd = load_file(path)
    out = {}
    for k, v in sd.items():
        out[k if k.startswith("text_model.") else "text_model." + k] = v
    n_pos = out["text_model.embeddings.position_embedding.weight"].shape[0]
    out["text_model.embeddings.position_ids"] = torch.arange(n_pos, dtype=torch.int64)[None]
    save_file(out, path, metadata={"format": "pt"})


def save_model(model_dir, unet, vae, text_encoder, tokenizer_dir):
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    scheduler = EulerAncestralDiscreteScheduler.from_config(dict(PUBLISHED_SCHEDULER_CONFIG))
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    # fp16 variants of every component
    # (on copies: .half() works in place and would round the fp32 models)
    # The fp16 save rewrites config.json (transformers records "dtype": "float16",
    # which would make the fp32 weights load as fp16): keep the fp32 config.json.
    for sub, m in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        cfg_path = os.path.join(model_dir, sub, "config.json")
        with open(cfg_path, "rb") as f:
            cfg = f.read()
        copy.deepcopy(m).half().save_pretrained(os.path.join(model_dir, sub), variant="fp16",
                                                safe_serialization=True)
        with open(cfg_path, "wb") as f:
            f.write(cfg)
    for fn in ("model.safetensors", "model.fp16.safetensors"):
        rewrite_text_encoder_checkpoint(os.path.join(model_dir, "text_encoder"), fn)
    # tokenizer/: exactly the hand-written SD-1.x files (vocab.json, merges.txt,
    # tokenizer_config.json, special_tokens_map.json), no tokenizer.json
    tdir = os.path.join(model_dir, "tokenizer")
    shutil.rmtree(tdir)
    shutil.copytree(tokenizer_dir, tdir)
    # scheduler/: the published file verbatim
    write_json(os.path.join(model_dir, "scheduler", "scheduler_config.json"), PUBLISHED_SCHEDULER_CONFIG)
    return pipe


# ----------------------------------------------------------------------------
# Goldens
# ----------------------------------------------------------------------------

def smooth_image(h, w, gen):
    """A smooth deterministic pattern plus a little noise, in [0, 1], [1,3,h,w]."""
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    r = 0.5 + 0.4 * torch.sin(2 * np.pi * (1.3 * x + 0.4 * y))
    g = 0.5 + 0.4 * torch.cos(2 * np.pi * (0.7 * y - 0.9 * x * y))
    b = 0.5 + 0.4 * torch.sin(2 * np.pi * (x * x + 1.7 * y) + 1.0)
    img = torch.stack([r, g, b])[None]
    img = img + 0.05 * torch.randn(img.shape, generator=gen)
    return img.clamp(0, 1)


def tokenize_like_pipeline(tokenizer, prompts):
    # exactly the call StableDiffusionInstructPix2PixPipeline._encode_prompt makes
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def golden_tokens(out_dir, tokenizer):
    ids = tokenize_like_pipeline(tokenizer, INSTRUCTIONS)
    untruncated = tokenizer(INSTRUCTIONS, padding="longest", return_tensors="pt").input_ids
    entries = []
    for i, text in enumerate(INSTRUCTIONS):
        full = tokenizer(text).input_ids
        entries.append({
            "text": text,
            "input_ids": ids[i].tolist(),
            "untruncated_length": len(full),
            "truncated": len(full) > tokenizer.model_max_length,
            "tokens": tokenizer.convert_ids_to_tokens(full),
        })
    write_json(os.path.join(out_dir, "tokens.json"), {
        "model_max_length": tokenizer.model_max_length,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "vocab_size": len(tokenizer.get_vocab()),
        "instructions": entries,
    })
    assert untruncated.shape[1] > 77, "the over-long instruction must exceed 77 tokens"
    return ids


@torch.no_grad()
def golden_text_encoder(out_dir, text_encoder, ids):
    hs = text_encoder(ids).last_hidden_state
    save_tensors(os.path.join(out_dir, "text_encoder.safetensors"),
                 {"input_ids": ids.to(torch.int64), "last_hidden_state": hs})
    return hs


@torch.no_grad()
def golden_vae(out_dir, vae):
    gen = torch.Generator().manual_seed(7)
    img01 = smooth_image(IMAGE_H, IMAGE_W, gen)
    x = img01 * 2 - 1
    dist = vae.encode(x).latent_dist
    z = torch.randn(dist.mean.shape, generator=gen)
    dec = vae.decode(z).sample
    sample_noise = torch.randn(dist.mean.shape, generator=gen)
    save_tensors(os.path.join(out_dir, "vae.safetensors"), {
        "x": x,
        "latent_mean": dist.mean,
        "latent_logvar": dist.logvar,
        "latent_std": dist.std,
        "sample_noise": sample_noise,
        "latent_sample": dist.mean + dist.std * sample_noise,
        "z": z,
        "decoded": dec,
    }, {"scaling_factor": vae.config.scaling_factor})
    log(f"  vae: mean std {dist.mean.std():.3f}, logvar range [{dist.logvar.min():.2f}, "
        f"{dist.logvar.max():.2f}], decoded std {dec.std():.3f}")


@torch.no_grad()
def golden_unet(out_dir, unet, text_hidden):
    gen = torch.Generator().manual_seed(11)
    h, w = IMAGE_H // 4, IMAGE_W // 4
    sample = torch.randn(3, 8, h, w, generator=gen)
    ehs = torch.cat([text_hidden[0:1], text_hidden[-1:], text_hidden[-1:]])  # [text, "", ""]
    # a fractional timestep, as the Euler schedulers produce (linspace spacing)
    t_frac = torch.tensor(946.4210526315789, dtype=torch.float32)
    out = unet(sample, t_frac, encoder_hidden_states=ehs).sample
    t_int = torch.tensor(1, dtype=torch.int64)
    out_t1 = unet(sample, t_int, encoder_hidden_states=ehs).sample
    save_tensors(os.path.join(out_dir, "unet.safetensors"), {
        "sample": sample,
        "timestep": t_frac.reshape(1),
        "encoder_hidden_states": ehs,
        "output": out,
        "timestep_1": t_int.reshape(1).to(torch.int64),
        "output_t1": out_t1,
    })
    log(f"  unet: output std {out.std():.3f} (t=946.42), {out_t1.std():.3f} (t=1); "
        f"batch items differ by {(out[0] - out[1]).abs().mean():.3f}, "
        f"t=946.42 vs t=1 by {(out - out_t1).abs().mean():.3f}")
    assert out.std() > 0.05
    assert (out - out_t1).abs().mean() > 0.05 * out.std(), "the timestep barely matters"


SCHEDULERS = {
    "euler_a": EulerAncestralDiscreteScheduler,
    "euler": EulerDiscreteScheduler,
    "ddim": DDIMScheduler,
}


def load_scheduler(model_dir, name):
    cfg = SCHEDULERS[name].load_config(os.path.join(model_dir, "scheduler"))
    return SCHEDULERS[name].from_config(cfg)


@torch.no_grad()
def golden_scheduler(out_dir, model_dir, name):
    tensors = {}
    meta = {}
    h, w = IMAGE_H // 4, IMAGE_W // 4
    for n in (10, 20):
        gen = torch.Generator().manual_seed(100 + n)
        sched = load_scheduler(model_dir, name)
        sched.set_timesteps(n)
        p = f"n{n}_"
        tensors[p + "timesteps"] = sched.timesteps.clone()
        meta[p + "timesteps_dtype"] = str(sched.timesteps.dtype)
        if hasattr(sched, "sigmas"):
            tensors[p + "sigmas"] = sched.sigmas.clone()
        tensors[p + "init_noise_sigma"] = torch.tensor([float(sched.init_noise_sigma)])
        sample = torch.randn(1, 4, h, w, generator=gen) * float(sched.init_noise_sigma)
        tensors[p + "sample"] = sample
        tensors[p + "scaled_sample_step0"] = sched.scale_model_input(sample, sched.timesteps[0])
        # a whole trajectory: step i gets model_outputs[i] and the previous result
        model_outputs = torch.randn(n, 1, 4, h, w, generator=gen)
        tensors[p + "model_outputs"] = model_outputs
        step_gen = torch.Generator().manual_seed(200 + n)
        prevs, preds, noises, scaled = [], [], [], []
        cur = sample
        for i, t in enumerate(sched.timesteps):
            scaled.append(sched.scale_model_input(cur, t))
            if name == "euler_a":
                # capture the exact noise step() will draw from step_gen
                probe = torch.Generator()
                probe.set_state(step_gen.get_state())
                noise = torch.randn(cur.shape, generator=probe, dtype=cur.dtype)
                noises.append(noise)
                sigma_from = sched.sigmas[i]
                sigma_to = sched.sigmas[i + 1]
                out = sched.step(model_outputs[i], t, cur, generator=step_gen)
                # verify that the captured noise reproduces the step
                su = (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
                sd = (sigma_to ** 2 - su ** 2) ** 0.5
                pred0 = cur - sigma_from * model_outputs[i]
                ref = cur + (cur - pred0) / sigma_from * (sd - sigma_from) + noise * su
                err = (ref - out.prev_sample).abs().max().item()
                assert err < 1e-5, f"euler_a noise capture does not reproduce step {i}: {err}"
            elif name == "ddim":
                out = sched.step(model_outputs[i], t, cur, eta=0.0)
            else:
                out = sched.step(model_outputs[i], t, cur, generator=step_gen)
            prevs.append(out.prev_sample)
            preds.append(out.pred_original_sample)
            cur = out.prev_sample
        tensors[p + "scaled_samples"] = torch.stack(scaled)
        tensors[p + "prev_samples"] = torch.stack(prevs)
        tensors[p + "pred_original_samples"] = torch.stack(preds)
        if noises:
            tensors[p + "step_noises"] = torch.stack(noises)
        if name == "ddim":
            tensors[p + "alphas_cumprod"] = sched.alphas_cumprod.clone()
            tensors[p + "final_alpha_cumprod"] = sched.final_alpha_cumprod.reshape(1).clone()
    meta["effective_config"] = json.dumps(
        {k: (sorted(v) if isinstance(v, (set, frozenset)) else v)
         for k, v in sched.config.items() if not k.startswith("_")}, sort_keys=True, default=str)
    save_tensors(os.path.join(out_dir, f"scheduler_{name}.safetensors"), tensors, meta)
    log(f"  scheduler {name}: n10 timesteps {tensors['n10_timesteps'].tolist()}")


@torch.no_grad()
def golden_edit(out_dir, model_dir, pipe, name):
    gen = torch.Generator().manual_seed(21)
    image = smooth_image(IMAGE_H, IMAGE_W, gen)
    init_noise = torch.randn(1, 4, IMAGE_H // 4, IMAGE_W // 4, generator=gen)
    pipe.scheduler = load_scheduler(model_dir, name)

    step_latents, step_timesteps, unet_outs = [], [], []
    captured = {}

    def on_step_end(p, i, t, kw):
        step_latents.append(kw["latents"].clone())
        step_timesteps.append(float(t))
        if i == 0:
            captured["prompt_embeds"] = kw["prompt_embeds"].clone()
            captured["image_latents"] = kw["image_latents"].clone()
        return kw

    # Euler-ancestral draws noise in every step from the pipeline's generator:
    # capture exactly what each step draws (same generator state, same call).
    step_noises = []
    orig_step = pipe.scheduler.step
    if name == "euler_a":
        def step(model_output, timestep, sample, generator=None, return_dict=True, **kw):
            probe = torch.Generator()
            probe.set_state(generator.get_state())
            step_noises.append(torch.randn(model_output.shape, generator=probe, dtype=model_output.dtype))
            return orig_step(model_output, timestep, sample, generator=generator,
                             return_dict=return_dict, **kw)
        pipe.scheduler.step = step

    hook = pipe.unet.register_forward_hook(lambda m, a, o: unet_outs.append(o[0].clone()))
    try:
        result = pipe(EDIT_INSTRUCTION, image=image, num_inference_steps=EDIT_STEPS,
                      guidance_scale=EDIT_GUIDANCE, image_guidance_scale=EDIT_IMAGE_GUIDANCE,
                      latents=init_noise.clone(), output_type="pt",
                      generator=torch.Generator().manual_seed(31),
                      callback_on_step_end=on_step_end,
                      callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "image_latents"])
    finally:
        hook.remove()
        pipe.scheduler.step = orig_step
    out_image = result.images  # [1,3,H,W] float in [0,1], before any uint8 rounding

    # check the documented conventions against what the pipeline did
    x = image * 2 - 1
    mode = pipe.vae.encode(x).latent_dist.mode()
    il = captured["image_latents"]
    assert torch.allclose(il[0:1], mode, atol=1e-6) and torch.allclose(il[1:2], mode, atol=1e-6)
    assert torch.count_nonzero(il[2]) == 0
    ids = tokenize_like_pipeline(pipe.tokenizer, [EDIT_INSTRUCTION, ""])
    te = pipe.text_encoder(ids).last_hidden_state
    pe = captured["prompt_embeds"]
    assert torch.allclose(pe[0], te[0], atol=1e-6) and torch.allclose(pe[1], te[1], atol=1e-6)
    assert torch.allclose(pe[2], te[1], atol=1e-6)
    decoded = pipe.vae.decode(step_latents[-1] / pipe.vae.config.scaling_factor).sample
    assert torch.allclose((decoded / 2 + 0.5).clamp(0, 1), out_image, atol=1e-6)

    # the documented guidance formula and (Euler-a) noise reproduce every step
    uo = torch.stack(unet_outs)
    guided = uo[:, 2:3] + EDIT_GUIDANCE * (uo[:, 0:1] - uo[:, 1:2]) + EDIT_IMAGE_GUIDANCE * (uo[:, 1:2] - uo[:, 2:3])
    if name == "euler_a":
        sig = pipe.scheduler.sigmas
        cur = init_noise * pipe.scheduler.init_noise_sigma
        for i in range(EDIT_STEPS):
            s_from, s_to = sig[i], sig[i + 1]
            su = (s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2) ** 0.5
            sd = (s_to ** 2 - su ** 2) ** 0.5
            cur = cur + guided[i] * (sd - s_from) + step_noises[i] * su
            err = (cur - step_latents[i]).abs().max().item()
            assert err < 1e-4 * max(1.0, cur.abs().max().item()), f"euler_a edit step {i}: {err}"
            cur = step_latents[i]

    # the edit must depend on the input image and on the instruction
    other = pipe(EDIT_INSTRUCTION, image=image.flip(-1), num_inference_steps=EDIT_STEPS,
                 guidance_scale=EDIT_GUIDANCE, image_guidance_scale=EDIT_IMAGE_GUIDANCE,
                 latents=init_noise.clone(), output_type="pt",
                 generator=torch.Generator().manual_seed(31)).images
    other_text = pipe("make it winter", image=image, num_inference_steps=EDIT_STEPS,
                      guidance_scale=EDIT_GUIDANCE, image_guidance_scale=EDIT_IMAGE_GUIDANCE,
                      latents=init_noise.clone(), output_type="pt",
                      generator=torch.Generator().manual_seed(31)).images
    d_img = (other - out_image).abs().mean().item()
    d_txt = (other_text - out_image).abs().mean().item()
    log(f"  edit {name}: out mean {out_image.mean():.3f} std {out_image.std():.3f}; "
        f"changes by {d_img:.3f} with a flipped input, {d_txt:.3f} with another instruction "
        f"(x255: {d_img * 255:.1f}, {d_txt * 255:.1f})")
    assert d_img > 2 / 255 and d_txt > 2 / 255

    extra = {"step_noises": torch.stack(step_noises)} if step_noises else {}
    save_tensors(os.path.join(out_dir, f"edit_{name}.safetensors"), {
        **extra,
        "guided_noise_preds": guided,
        "image": image,
        "init_noise": init_noise,
        "input_ids": ids.to(torch.int64),
        "prompt_embeds": pe,
        "image_latents": il,
        "timesteps": torch.tensor(step_timesteps, dtype=torch.float32),
        "unet_outputs": torch.stack(unet_outs),
        "step_latents": torch.stack(step_latents),
        "decoded": decoded,
        "output": out_image,
    }, {
        "instruction": EDIT_INSTRUCTION,
        "scheduler": name,
        "num_inference_steps": EDIT_STEPS,
        "guidance_scale": EDIT_GUIDANCE,
        "image_guidance_scale": EDIT_IMAGE_GUIDANCE,
        "init_noise_sigma": float(pipe.scheduler.init_noise_sigma),
    })


@torch.no_grad()
def noise_floor(gold, pipe):
    """Print how far fp64 evaluation lands from each fp32 golden (tolerance guide)."""
    def ld(n):
        return load_file(os.path.join(gold, n))
    te = copy.deepcopy(pipe.text_encoder).double()
    g = ld("text_encoder.safetensors")
    d = (te(g["input_ids"]).last_hidden_state - g["last_hidden_state"].double()).abs()
    log(f"  fp64 vs fp32: text encoder max {d.max():.2e} (output max {g['last_hidden_state'].abs().max():.2f})")
    vae = copy.deepcopy(pipe.vae).double()
    g = ld("vae.safetensors")
    d1 = (vae.encode(g["x"].double()).latent_dist.mean - g["latent_mean"].double()).abs().max()
    d2 = (vae.decode(g["z"].double()).sample - g["decoded"].double()).abs().max()
    log(f"  fp64 vs fp32: vae mean max {d1:.2e}, decoded max {d2:.2e} "
        f"(output max {g['decoded'].abs().max():.2f})")
    unet = copy.deepcopy(pipe.unet).double()
    g = ld("unet.safetensors")
    out = unet(g["sample"].double(), g["timestep"].double(), encoder_hidden_states=g["encoder_hidden_states"].double()).sample
    d = (out - g["output"].double()).abs()
    log(f"  fp64 vs fp32: unet max {d.max():.2e} (output max {g['output'].abs().max():.2f})")
    for name in ("ddim", "euler"):
        g = ld(f"edit_{name}.safetensors")
        p64 = StableDiffusionInstructPix2PixPipeline(
            vae=vae, text_encoder=te, tokenizer=pipe.tokenizer, unet=unet,
            scheduler=load_scheduler(os.path.join(gold, "..", "tiny_ip2p"), name),
            safety_checker=None, feature_extractor=None, image_encoder=None,
            requires_safety_checker=False)
        p64.set_progress_bar_config(disable=True)
        out = p64(EDIT_INSTRUCTION, image=g["image"].double(), num_inference_steps=EDIT_STEPS,
                  guidance_scale=EDIT_GUIDANCE, image_guidance_scale=EDIT_IMAGE_GUIDANCE,
                  latents=g["init_noise"].double(), output_type="pt").images
        d = (out - g["output"].double()).abs()
        log(f"  fp64 vs fp32: edit {name} output mean {d.mean():.2e} max {d.max():.2e} "
            f"(1/255 = {1 / 255:.2e})")


# ----------------------------------------------------------------------------
# Full-size parameter lists
# ----------------------------------------------------------------------------

def param_lines(state_dict, prefix=""):
    lines = []
    for k, v in state_dict.items():
        lines.append(f"{prefix}{k} {','.join(str(s) for s in v.shape)}")
    return sorted(lines)


def write_full_size(full_dir):
    os.makedirs(full_dir, exist_ok=True)
    write_json(os.path.join(full_dir, "unet_config.json"), FULL_UNET_CONFIG)
    write_json(os.path.join(full_dir, "vae_config.json"), FULL_VAE_CONFIG)
    write_json(os.path.join(full_dir, "text_encoder_config.json"), FULL_TEXT_ENCODER_CONFIG)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(os.path.join(full_dir, "unet_config.json")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(full_dir, "vae_config.json")))
        te = CLIPTextModel(CLIPTextConfig.from_json_file(os.path.join(full_dir, "text_encoder_config.json")))
    counts = {}
    for name, sd in (("unet", unet.state_dict()), ("vae", vae.state_dict())):
        lines = param_lines(sd)
        counts[name] = (len(lines), sum(v.numel() for v in sd.values()))
        with open(os.path.join(full_dir, f"{name}_params.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    te_sd = te.state_dict()
    # published-checkpoint names (transformers 4.x layout; see README)
    lines = param_lines(te_sd, prefix="" if next(iter(te_sd)).startswith("text_model.") else "text_model.")
    counts["text_encoder"] = (len(lines), sum(v.numel() for v in te_sd.values()))
    with open(os.path.join(full_dir, "text_encoder_params.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for k, (n, numel) in counts.items():
        log(f"  full-size {k}: {n} tensors, {numel / 1e6:.2f} M elements")


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(HERE, "data"))
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    log(f"torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}")

    data = args.out
    model_dir = os.path.join(data, "tiny_ip2p")
    gold = os.path.join(data, "goldens")
    full = os.path.join(data, "full_size")
    for d in (gold, full):
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
    tmp_tok = os.path.join(data, ".tokenizer_tmp")
    if os.path.exists(tmp_tok):
        shutil.rmtree(tmp_tok)
    vocab_size, n_merges = write_tokenizer_files(tmp_tok)
    log(f"tokenizer: {vocab_size} tokens, {n_merges} merges")

    unet, vae, text_encoder = build_models(vocab_size)
    save_model(model_dir, unet, vae, text_encoder, tmp_tok)
    shutil.rmtree(tmp_tok)

    # Everything below uses the model as loaded back from disk, like a user.
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(model_dir, safety_checker=None,
                                                                  requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    # the reloaded weights equal the built ones (incl. the renamed text encoder)
    with torch.no_grad():
        for a, b in ((unet, pipe.unet), (vae, pipe.vae), (text_encoder, pipe.text_encoder)):
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys()
            bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
            assert not bad, f"reloaded weights differ: {bad[:5]}"
    # fp16 variants load and equal the fp32 weights rounded to fp16
    pipe16 = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        model_dir, variant="fp16", torch_dtype=torch.float16, safety_checker=None,
        requires_safety_checker=False)
    for a, b in ((pipe.unet, pipe16.unet), (pipe.vae, pipe16.vae), (pipe.text_encoder, pipe16.text_encoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k].half(), sb[k]) for k in sa)
    del pipe16

    log("goldens:")
    ids = golden_tokens(gold, pipe.tokenizer)
    hs = golden_text_encoder(gold, pipe.text_encoder, ids)
    log(f"  text encoder: last_hidden_state std {hs.std():.3f}")
    golden_vae(gold, pipe.vae)
    golden_unet(gold, pipe.unet, hs)
    for name in SCHEDULERS:
        golden_scheduler(gold, model_dir, name)
    for name in ("ddim", "euler", "euler_a"):
        golden_edit(gold, model_dir, pipe, name)
    noise_floor(gold, pipe)

    log("full-size parameter lists:")
    write_full_size(full)

    log(f"data/ total size: {dir_size(data) / 1e6:.2f} MB "
        f"(tiny_ip2p {dir_size(model_dir) / 1e6:.2f} MB, goldens {dir_size(gold) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
