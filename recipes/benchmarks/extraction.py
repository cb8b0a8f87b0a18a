"""Extraction throughput: bare forward vs output_hidden_states vs our extractor vs a minimal hand-written hook.

Usage:
    python recipes/benchmarks/extraction.py [--device cpu|cuda] [--dtype float32|bfloat16] [--rounds 5]

Prints tokens/s of (a) a bare forward, (b) `output_hidden_states=True`, (c) `HiddenStateExtractor` on the middle
layer with early stop, (d) a minimal hook that raises after that layer; the ratios c/a, c/b, c/d; and the peak
memory of each (CUDA: `max_memory_allocated`; CPU: peak resident memory of a fresh subprocess over its baseline).
Timings interleave the four modes round by round and report the median, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

MODES = ("a_bare", "b_hidden_states", "c_extractor", "d_hand_hook")


class _Stop(Exception):
    pass


def build(name: str, device: str, dtype: torch.dtype):
    """Return `(model, inputs, middle_layer_module, middle_spec)`."""
    import transformers as tf

    torch.manual_seed(0)
    if name == "gpt2-12l":
        model = tf.GPT2Model(tf.GPT2Config(n_layer=12, n_embd=768, n_head=12))
        batch, length, vocab = 8, 256, 50257
        middle = model.h[5]
    else:
        from hf_specialist.models import load_model

        model, _ = load_model("minilm")
        batch, length, vocab = 32, 128, model.config.vocab_size
        middle = model.encoder.layer[2]
    model = model.to(device=device, dtype=dtype).eval()
    ids = torch.randint(1000, vocab, (batch, length), device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    n_layers = model.config.num_hidden_layers
    return model, inputs, middle, f"layers.{n_layers // 2 - 1}"


def make_runner(mode: str, model, inputs, middle, spec):
    import hf_specialist as hfs

    if mode == "a_bare":
        return lambda: model(**inputs, use_cache=False) if "use_cache" in model.forward.__code__.co_varnames else model(**inputs)
    if mode == "b_hidden_states":
        return lambda: model(**inputs, output_hidden_states=True)
    if mode == "c_extractor":
        def extract():
            with hfs.HiddenStateExtractor(model, spec) as extractor:
                return extractor(**inputs)[spec]

        return extract

    captured = {}

    def hook(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    def run():
        handle = middle.register_forward_hook(hook)
        try:
            model(**inputs)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["h"]

    return run


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_modes(name: str, device: str, dtype: torch.dtype, rounds: int) -> dict[str, dict[str, float]]:
    model, inputs, middle, spec = build(name, device, dtype)
    tokens = inputs["input_ids"].numel()
    runners = {mode: make_runner(mode, model, inputs, middle, spec) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    peak: dict[str, float] = {}
    with torch.inference_mode():
        for mode in MODES:  # warm-up
            runners[mode]()
        for _ in range(rounds):
            for mode in MODES:
                sync(device)
                start = time.perf_counter()
                runners[mode]()
                sync(device)
                times[mode].append(time.perf_counter() - start)
        if device == "cuda":
            for mode in MODES:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                out = runners[mode]()
                sync(device)
                peak[mode] = (torch.cuda.max_memory_allocated() - base) / 2**20
                del out
    result = {mode: {"tokens_per_s": tokens / statistics.median(times[mode])} for mode in MODES}
    for mode in MODES:
        result[mode]["peak_mib"] = peak.get(mode, float("nan"))
    return result


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_cpu_peak(name: str, mode: str) -> float:
    """Peak resident-memory growth (MiB) of one forward, after resetting the kernel's high-water mark."""
    model, inputs, middle, spec = build(name, "cpu", torch.float32)
    run = make_runner(mode, model, inputs, middle, spec)
    torch.set_grad_enabled(False)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    base = _status_kib("VmRSS")
    out = run()
    return (_status_kib("VmHWM") - base) / 1024 if out is not None else float("nan")


def cpu_peak_subprocess(name: str, mode: str) -> float:
    """Run `measure_cpu_peak` in a fresh process so that modes do not share allocator state."""
    code = (
        "import sys, json; sys.path.insert(0, 'recipes/benchmarks'); import extraction as e;"
        f"print(json.dumps(e.measure_cpu_peak({name!r}, {mode!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="gpt2-12l,minilm")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    rows = []
    for name in args.models.split(","):
        result = time_modes(name, args.device, dtype, args.rounds)
        if args.device == "cpu":
            for mode in MODES:
                result[mode]["peak_mib"] = cpu_peak_subprocess(name, mode)
        rows.append((name, result))
    print(f"\nExtraction throughput ({args.device}, {dtype}, median of {args.rounds} interleaved rounds)")
    header = f"{'model':10s} | " + " | ".join(f"{m:>17s}" for m in MODES) + " |   c/a |   c/b |   c/d"
    print(header)
    print("-" * len(header))
    for name, r in rows:
        tps = {m: r[m]["tokens_per_s"] for m in MODES}
        cells = " | ".join(f"{tps[m]:10.0f} tok/s" for m in MODES)
        print(
            f"{name:10s} | {cells} | {tps['c_extractor'] / tps['a_bare']:5.2f} | "
            f"{tps['c_extractor'] / tps['b_hidden_states']:5.2f} | {tps['c_extractor'] / tps['d_hand_hook']:5.2f}"
        )
    print("\nPeak memory of one forward (MiB)")
    for name, r in rows:
        print(f"{name:10s} | " + " | ".join(f"{m}: {r[m]['peak_mib']:8.1f}" for m in MODES))
    print(json.dumps({name: r for name, r in rows}))


if __name__ == "__main__":
    main()
