"""Reference data for the model forms of issue 12 (see README.md, "Model forms").

Writes, from the committed tiny model (data/tiny_ip2p, never modified here):
  data/model_forms/tokenizer_tf5/        the tiny tokenizer saved by transformers 5
                                         (tokenizer.json + tokenizer_config.json only)
  data/model_forms/tokens_tf5.json       ids that tokenizer gives for the golden instructions
  data/model_forms/scheduler_dpmpp/      scheduler_config.json as DPMSolverMultistepScheduler saves it
  data/goldens/scheduler_dpmpp.safetensors, scheduler_dpmpp_karras.safetensors
                                         DPM-Solver++ 2M trajectories (same layout as the other
                                         scheduler goldens, see README.md)
  data/goldens/edit_dpmpp_2m.safetensors a whole pipeline edit with DPMSolverMultistepScheduler
                                         (same layout as edit_ddim.safetensors)

Run with the reference venv: tests/reference/.venv/bin/python tests/reference/make_model_forms.py
Deterministic; takes a few seconds.
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


def dpm_scheduler(karras):
    cfg = DPMSolverMultistepScheduler.load_config(os.path.join(TINY, "scheduler"))
    return DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=karras)


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
    # The edit golden through make_goldens' own code, with the DPM scheduler added to its table.
    make_goldens.SCHEDULERS["dpmpp_2m"] = DPMSolverMultistepScheduler
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(TINY, safety_checker=None,
                                                                  requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        make_goldens.golden_edit(os.path.join(DATA, "goldens"), TINY, pipe, "dpmpp_2m")


if __name__ == "__main__":
    main()
