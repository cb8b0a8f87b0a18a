"""The docstrings' examples run as written (those marked `+SKIP` need a model or the Hub)."""

import doctest
import importlib
import pkgutil

import pytest

import hf_specialist


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(hf_specialist.__path__, "hf_specialist."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as source:
                if ">>> " in source.read():
                    names.append(info.name)
    return names


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (run python -m doctest -v)"
