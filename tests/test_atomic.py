"""One atomic folder replace for artifacts, the extraction cache and checkpoints: a write killed half-way leaves
the old folder complete and loadable (the artifact case is in test_hub.py)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from hf_specialist import data
from hf_specialist._atomic import atomic_folder, replace_folder
from hf_specialist.adapter.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from helpers import build_adapter


def _killed_while_writing(body: str) -> None:
    """Run `body` in a fresh process whose every file write dies half-way (SIGKILL after a partial write)."""
    script = textwrap.dedent("""
        import os, signal, builtins
        import safetensors.torch as st
        def dying(*args, **kwargs):
            path = args[1] if len(args) > 1 else kwargs.get("filename")
            with open(path, "wb") as f:
                f.write(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        st.save_file = dying
        import datasets
        def dying_dataset_save(self, path, *args, **kwargs):
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "data-00000-of-00001.arrow"), "wb") as f:
                f.write(b"half a table")
            os.kill(os.getpid(), signal.SIGKILL)
        datasets.Dataset.save_to_disk = dying_dataset_save
        """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-3000:]


def test_atomic_folder_keeps_the_old_folder_on_error(tmp_path):
    target = tmp_path / "thing"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("new")
            raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]  # no temporary folder left behind
    new = tmp_path / "new"
    new.mkdir()
    (new / "a.txt").write_text("swapped")
    replace_folder(new, target)
    assert (target / "a.txt").read_text() == "swapped" and not new.exists()


def test_interrupted_cache_write_leaves_the_old_cache_loadable(tmp_path):
    rng = np.random.default_rng(0)
    old = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(5)]
    path = tmp_path / "joined"
    data._save_arrow(path, old)
    _killed_while_writing(f"""
        import numpy as np
        from hf_specialist import data
        data._save_arrow(__import__("pathlib").Path({str(path)!r}), [np.ones((3, 4), np.float32)] * 5)
        """)
    for a, b in zip(data._load_arrow(path), old):
        np.testing.assert_array_equal(a, b)


def test_interrupted_checkpoint_write_leaves_the_old_checkpoint_loadable(tmp_path):
    adapter = build_adapter()
    optimizer = torch.optim.Adam(adapter.parameters())
    adapter(torch.randn(16, 32), torch.randn(16, 2), torch.ones(16, 2, dtype=torch.bool), 0.1)["loss"].backward()
    optimizer.step()
    folder = save_checkpoint(tmp_path, adapter, optimizer, {"global_step": 7, "epoch": 0, "history": []})
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    _killed_while_writing(f"""
        import sys, torch
        sys.path.insert(0, "tests")
        from helpers import build_adapter
        from hf_specialist.adapter.checkpoints import save_checkpoint
        adapter = build_adapter()
        optimizer = torch.optim.Adam(adapter.parameters())
        save_checkpoint(__import__("pathlib").Path({str(tmp_path)!r}), adapter, optimizer,
                        {{"global_step": 7, "epoch": 0, "history": []}})
        """)
    assert latest_checkpoint(tmp_path) == folder
    restored = build_adapter()
    progress = load_checkpoint(folder, restored, torch.optim.Adam(restored.parameters()))
    assert progress["global_step"] == 7
    for key, value in before.items():
        torch.testing.assert_close(restored.state_dict()[key], value, msg=key)


def test_saved_files_follow_the_users_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = build_adapter().save_pretrained(tmp_path / "art")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes
