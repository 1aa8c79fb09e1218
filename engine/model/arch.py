"""Architecture-only CODI models: random weights with the exact shapes of the official ones.

`bench engine --arch` times the engine at real size on any machine, with no checkpoint: throughput
depends on shapes, not on what the weights learned. The bundled model's tokenizer supplies the token
ids (questions must tokenize; ids it does not know decode to nothing), while the embedding and output
layer keep the real vocabulary (V + 3 rows) so their cost is the real one. A random model seldom says
EOS, so every answer decodes to the token limit: a worst case for decoding.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, GPT2Config, LlamaConfig, LlamaForCausalLM

from engine.model.bundled import BUNDLED_DIR, build_gpt2_codi
from engine.model.codi import CodiModel, ModelInfo, make_projection

ARCHS = ("gpt2-124m", "llama-1b")


def arch_config(arch: str, bos: int | None, eos: int | None):
    """The base config (vocabulary before the three CODI tokens) of GPT-2-124M or LLaMA-3.2-1B."""
    ids = {"bos_token_id": bos, "eos_token_id": eos}
    if arch == "gpt2-124m":
        return GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, **ids)
    if arch == "llama-1b":
        return LlamaConfig(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            hidden_act="silu",
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            **ids,
        )
    raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")


def build_arch_model(
    arch: str, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> CodiModel:
    """A CODI model of `arch`'s exact shape (prj dim = d_model, eager attention), random weights, eval
    mode."""
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_DIR)
    config = arch_config(arch, tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(seed)
    if arch == "gpt2-124m":
        model = build_gpt2_codi(config, tokenizer, prj_dim=config.n_embd, name=arch)
    else:
        base_vocab = config.vocab_size
        config.vocab_size = base_vocab + 3
        lm = LlamaForCausalLM._from_config(config, attn_implementation="eager")
        info = ModelInfo(
            arch, "llama", config.num_hidden_layers, config.num_attention_heads, config.hidden_size
        )
        model = CodiModel(
            lm, make_projection(config.hidden_size, config.hidden_size), tokenizer, base_vocab, info
        )
    model.info.weights_sha256 = f"random-{arch}-seed{seed}"
    model.info.extra = {"parameters": sum(p.numel() for p in model.parameters()), "architecture_only": True}
    return model.to(device=device, dtype=dtype).eval()
