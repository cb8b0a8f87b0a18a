"""The user's path on several processes: extract (cached, sharded) -> discover -> train -> save -> reload.

Run it the way the test suite does, with real gloo processes on CPU:

    ACCELERATE_USE_CPU=true torchrun --standalone --nproc_per_node 2 recipes/two_processes.py

or on GPUs (one process per GPU):

    torchrun --standalone --nproc_per_node 8 recipes/two_processes.py
    accelerate launch --multi_gpu --num_processes 8 recipes/two_processes.py

Every process runs the same code. `extract_steps` gives each process a shard of the texts and joins the shards
into one Arrow cache; `train_specialist` trains with DDP (each process a share of every batch) and leaves identical
weights on every process; only the main process writes the artifact.
"""

from __future__ import annotations

import argparse
import hashlib

import torch

import hf_specialist as hfs
from hf_specialist.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--hook-point", default="layers.3")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--output", default="outputs/two_processes")
    args = parser.parse_args()

    from hf_specialist._distributed import launch_state

    state = launch_state()
    model, tokenizer = load_model(args.model)
    texts, tasks, truth = hfs.synthetic.planted_text(n=args.n, T=8, M=2, seed=0)
    states = hfs.extract_steps(model, tokenizer, texts, hook_point=args.hook_point, steps=truth["separator"],
                               cache_dir=f"{args.output}/cache", progress=False)
    structure = hfs.TaskStructure(project=8).fit(states, tasks)
    f1 = hfs.metrics.structure_scores(structure.step_tasks_, truth["step_tasks"])["f1"]
    config = hfs.SpecialistConfig(d_in=states.shape[-1], d_latent=16, n_tasks=2, hook_point=args.hook_point,
                                  step_rule=truth["separator"], pool="mean")
    config.record_base(model)
    adapter = hfs.SpecialistAdapter(config)
    history = hfs.train_specialist(adapter, states, tasks, structure.step_tasks_, epochs=args.epochs, seed=0,
                                   progress=False)
    adapter.save_pretrained(f"{args.output}/adapter", structure=structure)  # the main process writes
    state.wait_for_everyone()  # before the others read it
    digest = hashlib.sha256(b"".join(v.detach().numpy().tobytes() for v in adapter.state_dict().values())).hexdigest()
    specialist = hfs.SpecialistModel.from_pretrained(model, f"{args.output}/adapter", tokenizer=tokenizer)
    same = torch.allclose(torch.from_numpy(specialist.encode_steps(texts[:4], task=0)),
                          adapter.task_latents(torch.from_numpy(states[:4]), task=0))
    print(f"process {state.process_index}/{state.num_processes}: states {tuple(states.shape)}, structure F1 {f1:.3f}, "
          f"lambda {history['selected_sparsity']:.3g}, support {adapter.task_support_.sum(1).tolist()}, "
          f"weights sha256 {digest[:16]}, reloaded pipeline equal: {same}", flush=True)


if __name__ == "__main__":
    main()
