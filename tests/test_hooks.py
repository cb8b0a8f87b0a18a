import inspect
import pytest
import torch
from torch import nn

import hf_specialist as hfs
from hf_specialist.hooks import find_layer_list
from helpers import ARCHITECTURES, NO_LEFT_PADDING_PARITY, build_tiny_model

N_LAYERS = 4


def _reference(model, ids, mask):
    """`output_hidden_states` of the model (of its encoder for an encoder-decoder), unpadded input."""
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder")
    with torch.no_grad():
        target = model.get_encoder() if encoder_decoder else model
        # without a KV cache, as the extractor runs it (GPT-Neo's attention sums in another order with a cache:
        # differences of 1e-8 on some CPUs)
        extra = {"use_cache": False} if "use_cache" in inspect.signature(target.forward).parameters else {}
        out = target(input_ids=ids, attention_mask=mask, output_hidden_states=True, **extra)
    return out.hidden_states


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hooks_match_output_hidden_states(arch):
    model = build_tiny_model(arch, n_layers=N_LAYERS)
    torch.manual_seed(1)
    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones_like(ids)
    reference = _reference(model, ids, mask)
    assert len(reference) == N_LAYERS + 1
    names = hfs.resolve_hook_points(model, ["embed", "layers.*"])
    assert names == ["embed"] + [f"layers.{i}" for i in range(N_LAYERS)]
    with hfs.HiddenStateExtractor(model, names) as ex, torch.no_grad():
        hidden = ex(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(hidden["embed"], reference[0], rtol=0, atol=0)
    for i in range(N_LAYERS - 1):  # exactly: the hooks must not change how the model runs
        torch.testing.assert_close(hidden[f"layers.{i}"], reference[i + 1], rtol=0, atol=0)
    # The last entry of output_hidden_states is after the final norm where the model has one.
    last = hidden[f"layers.{N_LAYERS - 1}"]
    if "final_norm" in hfs.hooks._canonical_points(model):
        with hfs.HiddenStateExtractor(model, "final_norm") as ex, torch.no_grad():
            torch.testing.assert_close(ex(input_ids=ids, attention_mask=mask)["final_norm"], reference[-1])
    else:
        torch.testing.assert_close(last, reference[-1])


class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_early_stop_skips_later_modules(arch):
    model = build_tiny_model(arch, n_layers=N_LAYERS)
    _, layers = find_layer_list(model)
    counters = [_Counter() for _ in layers]
    handles = [layer.register_forward_hook(c) for layer, c in zip(layers, counters)]
    ids = torch.randint(5, 1000, (2, 6))
    with hfs.HiddenStateExtractor(model, "layers.1") as ex, torch.no_grad():
        ex(input_ids=ids)
    assert [c.calls for c in counters] == [1, 1, 0, 0]
    with hfs.HiddenStateExtractor(model, "layers.1", stop_early=False) as ex, torch.no_grad():
        ex(input_ids=ids)
    assert [c.calls for c in counters] == [2, 2, 1, 1]
    for h in handles:
        h.remove()


def test_hooks_removed_on_exit_and_on_error():
    model = build_tiny_model("gpt2")
    _, layers = find_layer_list(model)
    with hfs.HiddenStateExtractor(model, ["layers.0", "layers.2"]) as ex:
        assert len(layers[0]._forward_hooks) == 1
        ex(input_ids=torch.randint(5, 100, (1, 4)))
    assert all(len(layer._forward_hooks) == 0 for layer in layers)
    with pytest.raises(RuntimeError, match="boom"):
        with hfs.HiddenStateExtractor(model, "layers.0"):
            raise RuntimeError("boom")
    assert all(len(layer._forward_hooks) == 0 for layer in layers)
    # a forward that fails inside the model also leaves no hook behind
    with pytest.raises(Exception):
        with hfs.HiddenStateExtractor(model, "layers.0") as ex:
            ex(input_ids=torch.full((1, 4), 10**6))
    assert all(len(layer._forward_hooks) == 0 for layer in layers)


def test_resolve_specs():
    model = build_tiny_model("gpt2", n_layers=6)
    assert hfs.resolve_hook_points(model, "layers.-1") == ["layers.5"]
    assert hfs.resolve_hook_points(model, "layers.[12]") == ["layers.1", "layers.2"]
    assert hfs.resolve_hook_points(model, "transformer.h.3.mlp") == ["transformer.h.3.mlp"]
    assert hfs.resolve_hook_points(model, "transformer.h.*.attn") == [f"transformer.h.{i}.attn" for i in range(6)]
    assert hfs.resolve_hook_points(model, ["embed", "final_norm", "embed"]) == ["embed", "final_norm"]
    with pytest.raises(ValueError, match=r"Nearest valid names: .*layers\.1"):
        hfs.resolve_hook_points(model, "layer.1")
    with pytest.raises(ValueError, match="out of range"):
        hfs.resolve_hook_points(model, "layers.6")
    with pytest.raises(ValueError, match="final norm"):
        hfs.resolve_hook_points(build_tiny_model("bert"), "final_norm")


def test_raw_module_path_and_options():
    model = build_tiny_model("gpt2")
    ids = torch.randint(5, 1000, (2, 5))
    with hfs.HiddenStateExtractor(model, "transformer.h.1.mlp", dtype=torch.bfloat16, clone=True) as ex:
        out = ex(input_ids=ids)["transformer.h.1.mlp"]
    assert out.dtype == torch.bfloat16 and out.shape == (2, 5, 32)
    with torch.no_grad():  # the raw path is the MLP of block 1: its output equals the module applied by hand
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[1]
        expected = model.transformer.h[1].mlp(model.transformer.h[1].ln_2(
            hidden + model.transformer.h[1].attn(model.transformer.h[1].ln_1(hidden))[0]))
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
    assert not out.requires_grad
    model.train()
    with hfs.HiddenStateExtractor(model, "layers.0", detach=False) as ex:
        out = ex(input_ids=ids)["layers.0"]
    assert out.requires_grad


def test_model_without_layer_list():
    class NoLayers(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(x))

    model = NoLayers()
    with pytest.raises(ValueError, match="Could not find the list of transformer blocks"):
        hfs.hooks.find_layer_list(model)
    with pytest.raises(ValueError, match="matches nothing"):
        hfs.resolve_hook_points(model, "layers.0")
    # raw paths still work on any module
    assert hfs.resolve_hook_points(model, "a") == ["a"]


def test_fallback_single_module_list():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"num_hidden_layers": 3, "model_type": "custom"})()
            self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
            self.heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(2))

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    model = Custom()
    assert hfs.resolve_hook_points(model, "layers.-1") == ["layers.2"]
    with hfs.HiddenStateExtractor(model, "layers.1") as ex:
        x = torch.randn(2, 4)
        out = ex(x=x)["layers.1"]
    torch.testing.assert_close(out, model.blocks[1](model.blocks[0](x)))


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a not in NO_LEFT_PADDING_PARITY])
def test_left_padding_equals_right_padding_and_unpadded(arch):
    model = build_tiny_model(arch, n_layers=2)
    torch.manual_seed(2)
    long, short = torch.randint(5, 1000, (7,)), torch.randint(5, 1000, (4,))
    pad = model.config.pad_token_id if isinstance(getattr(model.config, "pad_token_id", None), int) else 0

    def batch(left):
        ids, mask = torch.full((2, 7), pad), torch.zeros(2, 7, dtype=torch.long)
        ids[0], mask[0] = long, 1
        span = slice(3, 7) if left else slice(0, 4)
        ids[1, span], mask[1, span] = short, 1
        return ids, mask, span

    with hfs.HiddenStateExtractor(model, "layers.1") as ex, torch.no_grad():
        states = {}
        for left in (False, True):
            ids, mask, span = batch(left)
            states[left] = ex(input_ids=ids, attention_mask=mask)["layers.1"][1, span]
        alone = ex(input_ids=short[None], attention_mask=torch.ones(1, 4, dtype=torch.long))["layers.1"][0]
    torch.testing.assert_close(states[False], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(states[True], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["roberta", "xlm_roberta", "mpnet"])
def test_models_that_number_positions_from_ids_keep_their_own(arch):
    """RoBERTa-family positions start at padding_idx + 1; the extractor must not rebuild them from 0."""
    model = build_tiny_model(arch, n_layers=2)
    assert hfs.hooks.derives_positions_itself(model)
    assert not hfs.hooks.derives_positions_itself(build_tiny_model("bert", n_layers=2))
    ids = torch.randint(5, 1000, (3, 6))
    reference = _reference(model, ids, torch.ones_like(ids))
    with hfs.HiddenStateExtractor(model, "layers.1") as ex, torch.no_grad():
        torch.testing.assert_close(ex(input_ids=ids, attention_mask=torch.ones_like(ids))["layers.1"], reference[2],
                                   rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_is_causal_measures_whether_states_read_later_tokens(arch):
    from helpers import DECODERS, MOE

    model = build_tiny_model(arch)
    expected = arch in DECODERS + MOE or arch == "peft_gpt2"  # encoders and encoder-decoders' encoders attend both ways
    assert hfs.hooks.is_causal(model, "layers.1") is expected
    assert hfs.hooks.is_causal(model, "embed") is True  # before any attention, no token reads another
    with pytest.raises(hfs.InputError, match="one hook point"):
        hfs.hooks.is_causal(model, "layers.*")
    with pytest.raises(hfs.InputError, match="n_tokens"):
        hfs.hooks.is_causal(model, "layers.1", n_tokens=1)
