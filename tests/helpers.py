"""Factories for tiny config-built models and shared test data."""

from __future__ import annotations

import functools

import torch
import transformers as tf

TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=30522)
# decoders, mixture-of-experts decoders, encoders (absolute, learned-from-ids, relative and rotary positions),
# encoder-decoders, and a LoRA-wrapped base
DECODERS = ("gpt2", "llama", "mistral", "qwen2", "gpt_neox", "opt", "gemma2", "phi3", "falcon", "gpt_neo")
MOE = ("mixtral", "qwen2_moe", "olmoe")
ENCODERS = ("bert", "roberta", "xlm_roberta", "distilbert", "electra", "deberta_v2", "mpnet", "modernbert")
ENCODER_DECODERS = ("t5_encoder", "t5", "bart")
ARCHITECTURES = DECODERS + MOE + ENCODERS + ENCODER_DECODERS + ("peft_gpt2",)
# left padding cannot equal right padding here: the encoder numbers positions from the padded length and takes no
# position ids (documented in hooks.HiddenStateExtractor.__call__)
NO_LEFT_PADDING_PARITY = ("bart",)


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
    elif arch == "gemma2":
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(num_hidden_layers=n_layers, head_dim=8, **tiny, **kv, **overrides))
    elif arch == "phi3":
        model = tf.Phi3ForCausalLM(tf.Phi3Config(num_hidden_layers=n_layers, pad_token_id=0, **tiny, **kv, **overrides))
    elif arch == "falcon":
        model = tf.FalconForCausalLM(tf.FalconConfig(num_hidden_layers=n_layers, hidden_size=32, num_attention_heads=4,
                                                     vocab_size=30522, **overrides))
    elif arch == "gpt_neo":
        config = tf.GPTNeoConfig(num_layers=n_layers, hidden_size=32, num_heads=4, vocab_size=30522,
                                 attention_types=[[["global", "local"], n_layers // 2]], **overrides)
        model = tf.GPTNeoForCausalLM(config)
    elif arch == "mixtral":
        model = tf.MixtralForCausalLM(tf.MixtralConfig(num_hidden_layers=n_layers, num_local_experts=4,
                                                       num_experts_per_tok=2, **tiny, **kv, **overrides))
    elif arch == "qwen2_moe":
        model = tf.Qwen2MoeForCausalLM(tf.Qwen2MoeConfig(
            num_hidden_layers=n_layers, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
            shared_expert_intermediate_size=32, **tiny, **kv, **overrides))
    elif arch == "olmoe":
        model = tf.OlmoeForCausalLM(tf.OlmoeConfig(num_hidden_layers=n_layers, num_experts=4, num_experts_per_tok=2,
                                                   **tiny, **kv, **overrides))
    elif arch == "roberta":
        model = tf.RobertaModel(tf.RobertaConfig(num_hidden_layers=n_layers, pad_token_id=1, **tiny, **overrides))
    elif arch == "xlm_roberta":
        model = tf.XLMRobertaModel(tf.XLMRobertaConfig(num_hidden_layers=n_layers, **tiny, **overrides))
    elif arch == "distilbert":
        model = tf.DistilBertModel(tf.DistilBertConfig(n_layers=n_layers, dim=32, n_heads=4, hidden_dim=64,
                                                       vocab_size=30522, **overrides))
    elif arch == "electra":
        model = tf.ElectraModel(tf.ElectraConfig(num_hidden_layers=n_layers, embedding_size=32, **tiny, **overrides))
    elif arch == "deberta_v2":
        model = tf.DebertaV2Model(tf.DebertaV2Config(num_hidden_layers=n_layers, **tiny, **overrides))
    elif arch == "mpnet":
        model = tf.MPNetModel(tf.MPNetConfig(num_hidden_layers=n_layers, **tiny, **overrides))
    elif arch == "modernbert":
        model = tf.ModernBertModel(tf.ModernBertConfig(num_hidden_layers=n_layers, pad_token_id=0, bos_token_id=1,
                                                       eos_token_id=2, cls_token_id=1, sep_token_id=2, **tiny, **overrides))
    elif arch == "bart":
        model = tf.BartModel(tf.BartConfig(encoder_layers=n_layers, decoder_layers=n_layers, d_model=32,
                                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                           decoder_ffn_dim=64, vocab_size=30522, **overrides))
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
