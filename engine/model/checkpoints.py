"""Load CODI models by name (SPEC 2.1, 2.2): the bundled `gpt2-tiny` and the official CODI checkpoints.

Official checkpoints hold the whole CODI module's state dict with peft LoRA adapters. We merge the
adapters into the base weights at load time, so the rest of the program (hooks, attention capture)
sees a plain transformers model. Weights are read without ever executing pickled code, files are only
looked up locally unless a download is asked for, and a model that is not found is an error, never a
silent switch to another model.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import torch
from huggingface_hub import snapshot_download
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config, PretrainedConfig

from engine.model.bundled import (
    BUNDLED_DIR,
    CARD,
    WEIGHTS,
    build_gpt2_codi,
    fused_activation,
    load_codi_dir,
    sha256_file,
)
from engine.model.codi import CodiModel, ModelInfo, make_projection

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MODEL_NAMES = ("gpt2-tiny", "gpt2", "llama")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # safetensors first, as the official test.py
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
DEFAULT_LORA_ALPHA = 32.0
# Buffers that older transformers versions saved with the weights; they are recomputed, never loaded.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
_Config = TypeVar("_Config", bound=PretrainedConfig)


class ModelNotFoundError(FileNotFoundError):
    """The model's files are not on this machine (the message says where we looked and how to get them)."""


class CheckpointError(ValueError):
    """A weight file is unsafe, corrupted, or does not fit the model it is meant for."""


@dataclass(frozen=True)
class OfficialModel:
    """What differs between the official CODI checkpoints."""

    architecture: str  # the base config's model_type
    codi_repo: str
    base_repos: tuple[str, ...]  # where the base config and tokenizer come from
    embed_key: str  # input embedding inside the LM (the lm_head may be tied to it)
    fan_in_fan_out: bool  # GPT-2's Conv1D stores weights as [in, out]


OFFICIAL = {
    "gpt2": OfficialModel(
        "gpt2", "zen-E/CODI-gpt2", ("gpt2", "openai-community/gpt2"), "transformer.wte.weight", True
    ),
    "llama": OfficialModel(
        "llama",
        "zen-E/CODI-llama3.2-1b-Instruct",
        ("meta-llama/Llama-3.2-1B-Instruct",),
        "model.embed_tokens.weight",
        False,
    ),
}


# -- locating files ----------------------------------------------------------------------------------
def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")).expanduser() / "hub"


def _hub_snapshot(repo_id: str, allow_download: bool, patterns: list[str]) -> tuple[Path | None, str]:
    """The local snapshot folder of `repo_id` (downloaded first only if allowed), or None and why not."""
    try:
        path = snapshot_download(
            repo_id, cache_dir=hf_hub_cache(), local_files_only=not allow_download, allow_patterns=patterns
        )
    except (OSError, ValueError) as exc:
        return None, "not cached" if not allow_download else f"download failed ({type(exc).__name__}: {exc})"
    return Path(path), ""


def weights_in(directory: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def locate_weights(name: str, checkpoint: str | Path | None, allow_download: bool) -> Path:
    """The weight file of an official model: --checkpoint DIR, else $CODI_HOME/<name>, else the HF cache."""
    official = OFFICIAL[name]
    wanted = " or ".join(WEIGHT_FILES)
    if checkpoint is not None:
        found = weights_in(Path(checkpoint))
        if found:
            return found
        raise ModelNotFoundError(f"model '{name}': checkpoint directory {checkpoint} holds no {wanted}")
    searched = []
    codi_home = os.environ.get("CODI_HOME")
    if codi_home:
        found = weights_in(Path(codi_home) / name)
        if found:
            return found
        searched.append(f"$CODI_HOME/{name} = {Path(codi_home) / name} (no {wanted})")
    else:
        searched.append("$CODI_HOME (not set)")
    snapshot, why = _hub_snapshot(official.codi_repo, allow_download, ["*.json", "*.safetensors", "*.bin"])
    found = weights_in(snapshot) if snapshot else None
    if found:
        return found
    searched.append(f"Hugging Face cache {hf_hub_cache()}: {official.codi_repo} ({why or f'no {wanted}'})")
    raise ModelNotFoundError(
        f"model '{name}' not found; searched: --checkpoint (not given); {'; '.join(searched)}. "
        f"To get it, run `hf download {official.codi_repo}` (older huggingface_hub: `huggingface-cli "
        f"download {official.codi_repo}`) on a machine with internet and copy the cache here, or put "
        f"its files in a directory and pass --checkpoint DIR or set CODI_HOME so $CODI_HOME/{name} "
        "holds them."
    )


def locate_base(
    name: str, model_dir: Path, allow_download: bool
) -> tuple[PretrainedConfig, PreTrainedTokenizerBase, dict]:
    """Base config and tokenizer: from the checkpoint directory when it holds them, else the HF cache."""
    official = OFFICIAL[name]
    has_config = (model_dir / "config.json").is_file()
    has_tokenizer = any((model_dir / f).is_file() for f in TOKENIZER_FILES)
    base_dir, searched = None, []
    if not (has_config and has_tokenizer):
        for repo in official.base_repos:
            snapshot, why = _hub_snapshot(repo, allow_download, ["*.json", "*.txt", "*.model"])
            if snapshot and (snapshot / "config.json").is_file():
                base_dir = snapshot
                break
            searched.append(f"{repo} ({why or 'no config.json'})")
        if base_dir is None:
            raise ModelNotFoundError(
                f"model '{name}': base config/tokenizer not found; {model_dir} lacks "
                f"{'config.json' if not has_config else 'tokenizer files'} and the Hugging Face cache "
                f"{hf_hub_cache()} has none of: {', '.join(searched)}. "
                f"Run `hf download {official.base_repos[0]}` "
                f"on a machine with internet, or copy config.json and the tokenizer files into {model_dir}."
            )
    config_dir = model_dir if has_config else base_dir
    tokenizer_dir = model_dir if has_tokenizer else base_dir
    assert config_dir is not None  # without config.json in model_dir, base_dir was found (or raised above)
    config = read_config(config_dir, lambda: AutoConfig.from_pretrained(config_dir, local_files_only=True))
    if config.model_type != official.architecture:
        raise CheckpointError(
            f"{config_dir / 'config.json'}: model_type '{config.model_type}', "
            f"but model '{name}' is '{official.architecture}'"
        )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    return config, tokenizer, {"config_source": str(config_dir), "tokenizer_source": str(tokenizer_dir)}


def _first_line(exc: BaseException) -> str:
    """An exception's message on one line (multi-line messages joined)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_config(config_dir: Path, load: Callable[[], _Config]) -> _Config:
    """`load()` (a transformers config from `config_dir`), its failures as one CheckpointError naming
    the file.

    transformers validates some fields itself (LLaMA: heads dividing the hidden size) and raises its own
    exception types for them.
    """
    path = config_dir / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({_first_line(exc)}); restore it") from exc
    if raw is not None and not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(raw).__name__}, not an object of model settings")
    try:
        return load()
    except OSError:
        raise
    except Exception as exc:  # transformers' own validation errors (several types), reported
        raise CheckpointError(
            f"{path}: refused by transformers ({_first_line(exc)}); fix config.json"
        ) from exc


# -- reading a state dict safely ---------------------------------------------------------------------
def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file; a pickle is read with weights_only=True so it cannot run code."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused, the pickle holds more than tensors "
            f"(loading it could run code): {str(exc).splitlines()[0]}"
        ) from exc
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: corrupted or truncated weight file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


# -- key layouts and LoRA ----------------------------------------------------------------------------
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def lora_settings(model_dir: Path, lora_alpha: float | None) -> tuple[float, bool, int | None]:
    """LoRA alpha (argument, else adapter_config.json, else 32), whether rank-stabilised scaling is used, and
    the rank adapter_config.json gives (None: no file, or no `r`)."""
    adapter, path = {}, model_dir / "adapter_config.json"
    if path.is_file():
        try:
            adapter = json.loads(path.read_text())
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({_first_line(exc)})") from exc
        if not isinstance(adapter, dict):
            raise CheckpointError(
                f"{path}: holds a JSON {type(adapter).__name__}, not an object of LoRA settings"
            )
        if adapter.get("rank_pattern") or adapter.get("alpha_pattern"):
            raise CheckpointError(f"{path}: per-module rank_pattern/alpha_pattern is not supported")
    alpha = lora_alpha if lora_alpha is not None else adapter.get("lora_alpha", DEFAULT_LORA_ALPHA)
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float)
        or not math.isfinite(alpha)
        or alpha <= 0
    ):
        where = "lora_alpha" if lora_alpha is not None else f"{path}: lora_alpha"
        raise CheckpointError(f"{where} {alpha!r} is not a positive number")
    rank = adapter.get("r")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise CheckpointError(f"{path}: r {rank!r} is not a positive integer (the LoRA rank)")
    return float(alpha), bool(adapter.get("use_rslora", False)), rank


def normalize_state_dict(
    state: dict[str, torch.Tensor],
    fan_in_fan_out: bool,
    alpha: float,
    rslora: bool = False,
    dtype: torch.dtype = torch.float32,
    rank: int | None = None,
) -> tuple[dict, dict]:
    """Official peft keys (with or without `base_layer`) or plain keys -> plain `codi.*` keys, LoRA merged.

    peft computes W x + (alpha / r) B A x, so merging adds (alpha / r) B @ A to W (transposed for
    GPT-2's Conv1D, whose weight is [in, out]). The merge is done in float32, then cast to `dtype`.
    """
    plain: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    peft_layout = base_layer = False
    for key, value in state.items():
        if key.startswith("codi.base_model.model."):
            peft_layout = True
            key = "codi." + key[len("codi.base_model.model.") :]
        base_layer |= ".base_layer." in key
        key = key.replace(".base_layer.", ".")
        match = _LORA_KEY.match(key)
        if match:
            pair = lora.setdefault(match["module"], {})
            if match["ab"] in pair:
                raise CheckpointError(f"more than one LoRA adapter for {match['module']}")
            pair[match["ab"]] = value
        elif not key.endswith(IGNORED_SUFFIXES):
            plain[key] = value
    ranks = check_lora_ranks(lora, rank)
    for module, pair in lora.items():
        weight_key = f"{module}.weight"
        if weight_key not in plain:
            raise CheckpointError(f"incomplete LoRA for {module}: has {sorted(pair)}, base weight missing")
        a, b = pair["A"].float(), pair["B"].float()
        r = a.shape[0]
        delta = (b @ a) * (alpha / (math.sqrt(r) if rslora else r))
        if fan_in_fan_out:
            delta = delta.T
        if delta.shape != plain[weight_key].shape:
            raise CheckpointError(
                f"LoRA for {module} gives {tuple(delta.shape)}, "
                f"base weight is {tuple(plain[weight_key].shape)}"
            )
        merged = plain[weight_key].float() + delta
        if not torch.isfinite(merged).all():
            raise CheckpointError(
                f"merging the LoRA of {module} into its base weight gives non-finite values "
                f"(alpha / r = {alpha / r:g}); check lora_alpha and the adapter's weights"
            )
        plain[weight_key] = merged.to(dtype)
    layout = ("peft, base_layer" if base_layer else "peft, no base_layer") if peft_layout else "plain"
    info = {
        "layout": layout,
        "lora_modules": len(lora),
        "lora_r": sorted(ranks),
        "lora_alpha": alpha,
        "lora_rslora": rslora,
    }
    return plain, info


# -- checking a checkpoint before building the model -----------------------------------------------
# Per architecture: the config fields that size the model (each a positive integer), and where the
# weights show each size. Checked against the weight file's shapes before anything is allocated.
SIZE_FIELDS = {
    "gpt2": ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"),
    "llama": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
    ),
}
_BLOCK = {
    "gpt2": re.compile(r"^codi\.transformer\.h\.(\d+)\."),
    "llama": re.compile(r"^codi\.model\.layers\.(\d+)\."),
}


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Name -> shape of every tensor of a safetensors file, from its header alone (None: unreadable)."""
    try:
        with safe_open(str(path), "pt") as f:
            names = f.keys()
            return {k: tuple(f.get_slice(k).get_shape()) for k in names}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


def check_config(
    config: PretrainedConfig,
    shapes: dict[str, tuple[int, ...]],
    arch: str,
    config_path: Path,
    weights: Path,
    prj_dim: int | None = None,
) -> None:
    """The sizes `config` gives agree with the weights' tensor `shapes` (plain `codi.*`/`prj.*` keys):
    CheckpointError naming the field and the tensor that disagree. Nothing is allocated."""
    for name in SIZE_FIELDS[arch] + (("n_inner",) if arch == "gpt2" else ("head_dim",)):
        value = getattr(config, name, None)
        if value is None and name in ("n_inner", "head_dim"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(
                f"{config_path}: {name} = {value!r} is not a positive integer; fix config.json"
            )

    def disagree(field: str, value: int, key: str, what: str) -> CheckpointError:
        return CheckpointError(
            f"{config_path}: {field} = {value} disagrees with the weights: {key} in {weights} "
            f"is {list(shapes[key])} ({what}); fix config.json or use the one these weights "
            "came with"
        )

    g = arch == "gpt2"
    d_field, layers_field = ("n_embd", "n_layer") if g else ("hidden_size", "num_hidden_layers")
    d = getattr(config, d_field)
    embed = "codi.transformer.wte.weight" if g else "codi.model.embed_tokens.weight"
    if embed not in shapes and g and "codi.lm_head.weight" in shapes:  # tied: safetensors kept the other name
        embed = "codi.lm_head.weight"
    if embed not in shapes:
        raise CheckpointError(f"{weights}: no token embedding ({embed}): not a {arch} CODI checkpoint")
    rows_cols = shapes[embed]
    if len(rows_cols) != 2:
        raise CheckpointError(f"{weights}: the token embedding {embed} is {list(rows_cols)}, not a matrix")
    if rows_cols[0] != config.vocab_size + 3:
        raise disagree(
            "vocab_size",
            config.vocab_size,
            embed,
            f"V + 3 = {rows_cols[0]} rows for the 3 CODI "
            f"tokens pad, bot and eot, so vocab_size = {rows_cols[0] - 3}",
        )
    if rows_cols[1] != d:
        raise disagree(d_field, d, embed, f"{d_field} = {rows_cols[1]} columns")
    blocks = {int(m[1]) for k in shapes if (m := _BLOCK[arch].match(k))}
    n_blocks = max(blocks) + 1 if blocks else 0
    if getattr(config, layers_field) != n_blocks:
        prefix = "codi.transformer.h." if g else "codi.model.layers."
        held = f"{prefix}0 to {prefix}{n_blocks - 1}" if n_blocks else f"no {prefix}N tensors"
        raise CheckpointError(
            f"{config_path}: {layers_field} = {getattr(config, layers_field)} disagrees with the "
            f"weights: {weights} holds {n_blocks} blocks ({held}); fix config.json or use the one "
            "these weights came with"
        )
    heads = getattr(config, "n_head" if g else "num_attention_heads")
    if g:
        if d % heads:
            raise CheckpointError(
                f"{config_path}: n_head = {heads} does not divide n_embd = {d} (each head gets "
                "n_embd / n_head dimensions); fix config.json"
            )
        _expect(shapes, "codi.transformer.wpe.weight", 0, config.n_positions, "n_positions", disagree)
        _expect(
            shapes,
            "codi.transformer.h.0.mlp.c_fc.weight",
            1,
            config.n_inner or 4 * d,
            "n_inner" if config.n_inner else "n_inner (unset: 4 * n_embd)",
            disagree,
        )
    else:
        kv = config.num_key_value_heads
        if heads % kv:
            raise CheckpointError(
                f"{config_path}: num_key_value_heads = {kv} does not divide "
                f"num_attention_heads = {heads}; fix config.json"
            )
        head_dim = getattr(config, "head_dim", None) or d // heads
        _expect(
            shapes,
            "codi.model.layers.0.mlp.gate_proj.weight",
            0,
            config.intermediate_size,
            "intermediate_size",
            disagree,
        )
        _expect(
            shapes,
            "codi.model.layers.0.self_attn.q_proj.weight",
            0,
            heads * head_dim,
            f"num_attention_heads * head_dim = {heads} * {head_dim}",
            disagree,
        )
        _expect(
            shapes,
            "codi.model.layers.0.self_attn.k_proj.weight",
            0,
            kv * head_dim,
            f"num_key_value_heads * head_dim = {kv} * {head_dim}",
            disagree,
        )
    check_projection(shapes, d, weights, prj_dim)


def _expect(
    shapes: dict[str, tuple[int, ...]],
    key: str,
    dim: int,
    value: int,
    field: str,
    disagree: Callable[[str, int, str, str], CheckpointError],
) -> None:
    shape = shapes.get(key)
    if shape is not None and (len(shape) <= dim or shape[dim] != value):
        raise disagree(field, value, key, f"dimension {dim} should be {field}")


PRJ_SHAPES = {
    "prj.1.weight": ("p", "d"),
    "prj.1.bias": ("p",),
    "prj.3.weight": ("d", "p"),
    "prj.3.bias": ("d",),
    "prj.ln.weight": ("d",),
    "prj.ln.bias": ("d",),
}


def check_projection(
    shapes: dict[str, tuple[int, ...]], d: int, weights: Path, prj_dim: int | None = None
) -> None:
    """prj = Sequential(Dropout, Linear(d, p), GELU, Linear(p, d), LayerNorm(d)): prj.1.weight a [p, d]
    matrix, and, when the model card gives p (`prj_dim`), every tensor of it present with its shape."""
    first = shapes.get("prj.1.weight")
    if first is None:
        raise CheckpointError(f"{weights}: no projection (prj.1.weight): not a CODI checkpoint with prj")
    if len(first) != 2:
        raise CheckpointError(
            f"{weights}: prj.1.weight is {list(first)}; the projection's first layer is a "
            f"[prj_dim, d_model = {d}] matrix"
        )
    if prj_dim is None:  # official checkpoints: build_codi_model names every other tensor that does not fit
        return
    sizes = {"d": d, "p": prj_dim}
    for key, dims in PRJ_SHAPES.items():
        want = [sizes[x] for x in dims]
        if key not in shapes:
            raise CheckpointError(f"{weights}: the projection lacks {key} (expected {want})")
        if list(shapes[key]) != want:
            raise CheckpointError(
                f"{weights}: projection tensor {key} is {list(shapes[key])}, expected {want} "
                f"({CARD} prj_dim = {prj_dim}, d_model = {d}); the weights do not belong together"
            )


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], weights: Path) -> None:
    """Refuse weights holding NaN or inf: a model computing with them gives garbage, not an error."""
    for name, tensor in tensors:
        if not tensor.is_floating_point() or tensor.numel() == 0 or name.endswith(IGNORED_SUFFIXES):
            continue
        if torch.isfinite(tensor.sum(dtype=torch.float64)):  # any NaN or inf makes the sum non-finite
            continue
        bad = ~torch.isfinite(tensor)
        if not bad.any():
            continue
        first = [int(i) for i in torch.nonzero(bad)[0].tolist()]
        kinds = " and ".join(
            k
            for k, found in (("NaN", torch.isnan(tensor).any()), ("inf", torch.isinf(tensor).any()))
            if found
        )
        raise CheckpointError(
            f"{weights}: tensor {name} holds {int(bad.sum())} non-finite value(s) ({kinds}; first "
            f"at index {first}); the weights are corrupted: restore or retrain them"
        )


def check_lora_ranks(lora: dict[str, dict[str, torch.Tensor]], rank: int | None) -> list[int]:
    """Every LoRA pair complete, its A [r, in] and B [out, r] of one rank, the same for every module and
    equal to adapter_config.json's `r` when given (a different one would scale the merge wrongly)."""
    ranks: dict[int, str] = {}
    for module, pair in lora.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(
                f"incomplete LoRA for {module}: has {sorted(pair)}, needs lora_A and lora_B"
            )
        a, b = pair["A"], pair["B"]
        if a.dim() != 2 or b.dim() != 2:
            raise CheckpointError(
                f"LoRA for {module}: lora_A is {list(a.shape)} and lora_B {list(b.shape)}; both "
                "must be matrices"
            )
        if a.shape[0] != b.shape[1]:
            raise CheckpointError(
                f"LoRA for {module}: lora_A {list(a.shape)} has rank {a.shape[0]} but lora_B "
                f"{list(b.shape)} has rank {b.shape[1]}; the adapter pair does not belong together"
            )
        ranks.setdefault(a.shape[0], module)
    if len(ranks) > 1:
        shown = ", ".join(f"{r} ({m})" for r, m in sorted(ranks.items()))
        raise CheckpointError(
            f"LoRA ranks differ between modules: {shown}; per-module ranks are not supported"
        )
    if rank is not None and ranks and rank not in ranks:
        ((found, module),) = ranks.items()
        raise CheckpointError(
            f"adapter_config.json says r = {rank}, but the LoRA of {module} has rank {found}; "
            "the adapter config does not belong to these weights"
        )
    return sorted(ranks)


def check_bundled_dir(model_dir: Path) -> None:
    """A project model directory: config.json against the weight file's header and the card's prj_dim,
    before anything is allocated. Files missing or unreadable are left to load_codi_dir to report."""
    weights, card_path, config_path = model_dir / WEIGHTS, model_dir / CARD, model_dir / "config.json"
    if not (weights.is_file() and card_path.is_file() and config_path.is_file()):
        return
    try:
        card = json.loads(card_path.read_text())
    except (ValueError, RecursionError):
        return
    shapes = safetensors_shapes(weights)
    if shapes is None or not isinstance(card, dict):
        return
    prj_dim = card.get("prj_dim")
    if isinstance(prj_dim, bool) or not isinstance(prj_dim, int) or prj_dim < 1:
        raise CheckpointError(f"{card_path}: prj_dim = {prj_dim!r} is not a positive integer; restore {CARD}")
    config = read_config(model_dir, lambda: GPT2Config.from_pretrained(model_dir))
    check_config(config, shapes, "gpt2", config_path, weights, prj_dim)
    with torch.device("meta"):  # every other tensor's shape, from the model the config describes: no memory
        try:
            # shapes only: the tokenizer of this meta-device model is never used
            meta = build_gpt2_codi(config, cast("PreTrainedTokenizerBase", None), prj_dim)
        except Exception as exc:  # transformers' own checks of the config, reported
            raise CheckpointError(
                f"{config_path}: refused by transformers ({_first_line(exc)}); fix config.json"
            ) from exc
    wrong = [
        f"{k} {list(shapes[k])} vs {list(v.shape)}"
        for k, v in meta.state_dict().items()
        if k in shapes and tuple(v.shape) != shapes[k]
    ]
    if wrong:
        raise CheckpointError(
            f"{weights}: tensor shapes differ from the model {config_path} describes (file vs "
            f"config) ({len(wrong)}): {', '.join(wrong[:4])}{', ...' if len(wrong) > 4 else ''}; "
            "the files do not belong together"
        )


# -- building the module -----------------------------------------------------------------------------
def build_codi_model(
    name: str,
    config: PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
) -> CodiModel:
    """A CODI module with V + 3 embedding rows (eager attention) holding `state` exactly.

    Every parameter must come from `state` with its exact shape; only a tied lm_head may be absent.
    """
    official = OFFICIAL[name]
    if "prj.1.weight" not in state:
        raise CheckpointError("checkpoint has no projection (prj.1.weight): not a CODI checkpoint with prj")
    prj_dim = state["prj.1.weight"].shape[0]
    base_vocab = config.vocab_size
    lm_config = copy.deepcopy(config)
    lm_config.vocab_size = base_vocab + 3
    if hasattr(lm_config, "activation_function"):  # GPT-2
        lm_config.activation_function = fused_activation(lm_config.activation_function)
    lm = AutoModelForCausalLM.from_config(lm_config, attn_implementation="eager", dtype=dtype)
    info = ModelInfo(
        name,
        official.architecture,
        lm_config.num_hidden_layers,
        lm_config.num_attention_heads,
        lm_config.hidden_size,
    )
    model = CodiModel(lm, make_projection(lm_config.hidden_size, prj_dim), tokenizer, base_vocab, info)

    embed_key, head_key = f"codi.{official.embed_key}", "codi.lm_head.weight"
    tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    if tied:  # one tensor under two names; safetensors keeps only one of them
        head = state.pop(head_key, None)
        if embed_key not in state and head is not None:
            state[embed_key] = head
    expected = {k: v for k, v in model.state_dict().items() if not (tied and k == head_key)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("wrong shapes (checkpoint vs model)", wrong),
            )
            if keys
        ]
        raise CheckpointError(
            f"checkpoint does not fit model '{name}' (embedding must have V+3 = "
            f"{base_vocab + 3} rows, d = {lm_config.hidden_size}): {'; '.join(parts)}"
        )
    model.load_state_dict(state, strict=False)
    lm.tie_weights()
    model.info.extra = {"prj_dim": prj_dim, "base_vocab_size": base_vocab}
    return model


def finalize(model: CodiModel, device: str, dtype: torch.dtype | None) -> CodiModel:
    """Eval mode on the requested device/dtype; eager attention is required (SPEC 15: sdpa drops
    attentions)."""
    impl = model.codi.config._attn_implementation
    if impl != "eager":
        raise RuntimeError(f"model '{model.info.name}' uses {impl} attention; eager is required")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    model.info.extra["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return model.eval()


def load_model(
    name: str,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    allow_download: bool = False,
    lora_alpha: float | None = None,
) -> CodiModel:
    """A CODI model by name: `gpt2-tiny` (bundled), `gpt2` or `llama` (official CODI checkpoints).

    `checkpoint` is a directory to take the weights (and config/tokenizer, when present) from;
    `lora_alpha` overrides adapter_config.json / the official 32. Nothing is downloaded unless
    `allow_download`.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model '{name}'; valid names: {', '.join(MODEL_NAMES)}")
    if name == "gpt2-tiny":
        model_dir = Path(checkpoint) if checkpoint is not None else BUNDLED_DIR
        check_bundled_dir(model_dir)  # config.json against the weights' shapes, before any allocation
        try:
            model = load_codi_dir(model_dir, name)
        except FileNotFoundError as exc:
            raise ModelNotFoundError(
                f"model 'gpt2-tiny': {exc}; train it with `python cli.py train "
                f"--out {model_dir}` or pass --checkpoint DIR"
            ) from exc
        except (SafetensorError, ValueError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(
                text
                if text.startswith(str(model_dir))
                else f"{model_dir / 'model.safetensors'}: corrupted or truncated weight file ({text}); "
                "restore it or retrain the model"
            ) from exc
        check_finite(model.state_dict().items(), model_dir / WEIGHTS)
        return finalize(model, device, dtype)

    weights = locate_weights(name, checkpoint, allow_download)
    config, tokenizer, sources = locate_base(name, weights.parent, allow_download)
    alpha, rslora, rank = lora_settings(weights.parent, lora_alpha)
    state = read_state_dict(weights)
    check_finite(state.items(), weights)
    try:
        state, layout = normalize_state_dict(
            state, OFFICIAL[name].fan_in_fan_out, alpha, rslora, dtype or torch.float32, rank
        )
    except CheckpointError as exc:
        raise CheckpointError(f"{weights}: {exc}") from exc
    check_config(
        config,
        {k: tuple(v.shape) for k, v in state.items()},
        OFFICIAL[name].architecture,
        Path(sources["config_source"]) / "config.json",
        weights,
    )  # before the model is allocated
    try:
        model = build_codi_model(name, config, tokenizer, state, dtype or torch.float32)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights}: {exc}") from exc
    model.info.weights_path = str(weights)
    model.info.weights_sha256 = sha256_file(weights)
    model.info.extra.update(layout, **sources)
    return finalize(model, device, dtype)
