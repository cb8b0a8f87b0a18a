"""Factories for tiny config-built models and shared test data."""

from __future__ import annotations

import functools

import torch
import transformers as tf

TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=30522)
ARCHITECTURES = ("gpt2", "llama", "mistral", "qwen2", "gpt_neox", "opt", "bert", "t5_encoder", "t5", "peft_gpt2")


def build_tiny_model(arch: str = "gpt2", n_layers: int = 4, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny randomly initialised model of the given architecture, in eval mode."""
    torch.manual_seed(seed)
    kv = dict(num_key_value_heads=2)
    tiny = {**TINY, **{k: overrides.pop(k) for k in list(overrides) if k in TINY}}
    if arch in ("gpt2", "peft_gpt2"):
        config = tf.GPT2Config(n_layer=n_layers, n_embd=32, n_head=4, vocab_size=30522, **overrides)
        model = tf.GPT2LMHeadModel(config)
        if arch == "peft_gpt2":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn"], init_lora_weights=False))
    elif arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=n_layers, **tiny, **kv, **overrides))
    elif arch == "mistral":
        model = tf.MistralModel(tf.MistralConfig(num_hidden_layers=n_layers, **tiny, **kv, **overrides))
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(num_hidden_layers=n_layers, **tiny, **kv, **overrides))
    elif arch == "gpt_neox":
        model = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(num_hidden_layers=n_layers, **tiny, **overrides))
    elif arch == "opt":
        config = tf.OPTConfig(
            num_hidden_layers=n_layers, hidden_size=32, num_attention_heads=4, ffn_dim=64, vocab_size=30522,
            word_embed_proj_dim=32, **overrides,
        )
        model = tf.OPTForCausalLM(config)
    elif arch == "bert":
        model = tf.BertForSequenceClassification(tf.BertConfig(num_hidden_layers=n_layers, **tiny, **overrides))
    elif arch in ("t5_encoder", "t5"):
        config = tf.T5Config(num_layers=n_layers, d_model=32, num_heads=4, d_ff=64, d_kv=8, vocab_size=30522, **overrides)
        model = tf.T5EncoderModel(config) if arch == "t5_encoder" else tf.T5Model(config)
    else:
        raise ValueError(arch)
    return model.eval()


@functools.lru_cache(maxsize=1)
def minilm():
    """The real pretrained MiniLM (model, tokenizer), loaded once per session."""
    from hf_specialist.models import load_model

    return load_model("minilm")


def tokenizer():
    """A real fast WordPiece tokenizer (MiniLM's), vocabulary 30522."""
    return minilm()[1]


def build_adapter(**overrides):
    """A small adapter config for tests."""
    from hf_specialist import SpecialistAdapter, SpecialistConfig

    values = dict(d_in=32, d_latent=8, n_tasks=2, encoder_widths=[64], decoder_widths=[64], head_width=32)
    values.update(overrides)
    return SpecialistAdapter(SpecialistConfig(**values))
