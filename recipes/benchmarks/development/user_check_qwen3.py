"""A model family the tests do not name (Qwen3, a tiny random config), through the README's calls: sweep_layers,
extract_steps(context="isolated"), TaskStructure, report()."""
import numpy as np, torch, transformers, hf_specialist as hfs, sys
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), "..", "..", "..", "tests"))
from helpers import tokenizer
torch.manual_seed(0)
cfg = transformers.Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, vocab_size=30522)
model = transformers.Qwen3ForCausalLM(cfg).eval()
tok = tokenizer()
rng = np.random.default_rng(5)
words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
q = rng.integers(0, 10, size=(1500, 5))
texts = [". ".join(f"box {chr(97 + t)} holds {words[q[r, t]]} pens" for t in range(5)) + "." for r in range(1500)]
tasks = np.stack([(q[:, 1] > 4) & (q[:, 2] > 4), q[:, 4] * 1.0], 1).astype(float)   # AND of steps 2,3; step 5
sweep = hfs.sweep_layers(model, tok, texts, tasks, hook_points="layers.*", steps=". ", context="isolated")
print(sweep.table(["both above 4 (steps 2,3)", "step 5"]))
states = hfs.extract_steps(model, tok, texts, hook_point="layers.1", steps=". ", context="isolated")
ts = hfs.TaskStructure().fit(states, tasks)
print(ts.report(["both>4", "step5"], warn=False))
try:
    hfs.extract_steps(model, tok, texts[:3] + ["no separator here"], hook_point="layers.1", steps=". ")
except hfs.InputError as e:
    print("InputError:", e)
