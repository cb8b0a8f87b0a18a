"""Run under `torchrun --standalone --nproc_per_node 2` (CPU, gloo) by tests/test_distributed.py.

The main process's artifact write is slowed down; every process records what it finds in the folder the moment
`save_pretrained` returns, so the test can check that no process returns before the folder is complete.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hf_specialist as hfs  # noqa: E402
from hf_specialist.adapter import hub_mixin  # noqa: E402
from helpers import build_adapter  # noqa: E402

OUT = Path(sys.argv[1])
RANK = int(os.environ["RANK"])
_write = hub_mixin.write_artifact


def slow_write(*args, **kwargs):
    time.sleep(2.0)
    return _write(*args, **kwargs)


hub_mixin.write_artifact = slow_write
torch.manual_seed(0)
adapter = build_adapter()
folder = adapter.save_pretrained(OUT / "artifact")
found = sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []
loaded = hfs.SpecialistAdapter.from_pretrained(folder)  # readable at once by every process
same = all(torch.equal(loaded.state_dict()[k], v) for k, v in adapter.state_dict().items())
(OUT / f"rank{RANK}-saved.json").write_text(json.dumps({"files": found, "same": same}))

torch.distributed.barrier()  # a clean teardown: exiting with the gloo group alive can abort at interpreter exit
torch.distributed.destroy_process_group()
