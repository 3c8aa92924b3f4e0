"""Load DiffuSETS' published checkpoints (``Laiyf/DiffuSETS`` on the Hugging Face hub).

:func:`upstream_file` finds a published file in a local folder or downloads it from the hub
(``huggingface_hub``: its cache, a pinned ``revision``, offline use of the cache).
``vae_model.pth`` holds ``{"encoder": state_dict, "decoder": state_dict}`` whose keys are
``nn.Sequential`` indices; ``unet_all.pth`` holds the UNet's state dict. The functions here map
those names onto :class:`~ecgaug.models.vae.ECGVAE` and
:class:`~ecgaug.models.unet.ConditionalUNet1D` strictly: every published entry is either used or
listed in ``KNOWINGLY_DROPPED`` (weights the published forward pass never applies), and every
parameter and buffer of our modules is filled.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import torch

from ecgaug.models.unet import ConditionalUNet1D, UNetConfig
from ecgaug.models.vae import ECGVAE, VAEConfig

__all__ = [
    "KNOWINGLY_DROPPED",
    "convert_vae_state_dict",
    "convert_unet_state_dict",
    "unet_config_from_upstream",
    "load_upstream_vae",
    "load_upstream_unet",
    "UPSTREAM_REPO",
    "UPSTREAM_TEXT_TABLE",
    "upstream_file",
]

UPSTREAM_REPO = "Laiyf/DiffuSETS"  # the authors' Hugging Face repository
UPSTREAM_TEXT_TABLE = "ptbxl_text_embed.csv"  # published embeddings of the PTB-XL report prompts
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

# Regexes over published names; each entry explains why the weights are unused upstream.
KNOWINGLY_DROPPED = {
    r"^\d+\.groupnorm\.(weight|bias)$": "VAE attention GroupNorm: stored but never applied",
    r"\.block\.down\.(weight|bias)$": "UNet block stride-2 conv: defined but never called",
    r"cross_attention\.(to_q|to_k|normalization)\.(weight|bias)$": "cross-attention query/key path: keys are one repeated vector, so attention is uniform",
}
# The q and k rows of the cross-attention's fused in_proj are dropped for the same reason; only
# its value rows are kept (see _block_name).

_RESNET = {"groupnorm_1": "norm1", "conv_1": "conv1", "groupnorm_2": "norm2", "conv_2": "conv2", "residual_layer": "shortcut"}
_ATTENTION = {"attention.in_proj": "in_proj", "attention.out_proj": "out_proj"}


def _vae_layer_prefixes(config: VAEConfig, part: str) -> list[tuple[str, str] | None]:
    """Our module prefix and kind for each index of the published ``nn.Sequential`` (None = no weights)."""
    n = len(config.block_out_channels)
    layers: list[tuple[str, str] | None] = []
    if part == "encoder":
        layers.append(("conv_in", "plain"))
        for b in range(n):
            layers += [(f"down_blocks.{b}.resnets.{r}", "resnet") for r in range(config.layers_per_block)]
            if b < n - 1:
                layers.append((f"down_blocks.{b}.resample.conv", "plain"))
        layers += [("mid_block.resnet1", "resnet"), ("mid_block.attention", "attention"), ("mid_block.resnet2", "resnet")]
        layers += [("norm_out", "plain"), None, ("conv_out", "plain"), ("quant_conv", "plain")]
    else:
        layers += [("post_quant_conv", "plain"), ("conv_in", "plain")]
        layers += [("mid_block.resnet1", "resnet"), ("mid_block.attention", "attention"), ("mid_block.resnet2", "resnet")]
        for b in range(n):
            layers += [(f"up_blocks.{b}.resnets.{r}", "resnet") for r in range(config.layers_per_block + 1)]
            if b < n - 1:
                layers += [None, (f"up_blocks.{b}.resample.conv", "plain")]  # nearest upsampling, then its conv
        layers += [("norm_out", "plain"), None, ("conv_out", "plain")]
    return layers


def _is_dropped(name: str) -> bool:
    return any(re.search(pattern, name) for pattern in KNOWINGLY_DROPPED)


def _convert_vae_part(state: Mapping[str, torch.Tensor], config: VAEConfig, part: str, source: str) -> dict[str, torch.Tensor]:
    layers = _vae_layer_prefixes(config, part)
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        index, _, rest = name.partition(".")
        if not index.isdigit() or int(index) >= len(layers) or layers[int(index)] is None:
            raise KeyError(f"{source}: unexpected VAE {part} entry {name!r}; expected the published DiffuSETS layout.")
        if _is_dropped(name):
            continue
        prefix, kind = layers[int(index)]
        if kind == "resnet":
            sub, _, leaf = rest.partition(".")
            rest = f"{_RESNET[sub]}.{leaf}" if sub in _RESNET else rest
        elif kind == "attention":
            for old, new in _ATTENTION.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
        out[f"{part}.{prefix}.{rest}"] = value
    return out


def convert_vae_state_dict(checkpoint: Mapping[str, Mapping[str, torch.Tensor]], config: VAEConfig | None = None, *, source: str = "vae checkpoint") -> dict[str, torch.Tensor]:
    """Map published ``{"encoder": ..., "decoder": ...}`` onto :class:`ECGVAE`'s state dict."""
    config = config or VAEConfig()
    if not isinstance(checkpoint, Mapping) or not {"encoder", "decoder"} <= set(checkpoint):
        keys = sorted(checkpoint)[:5] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(f"{source}: expected a dict with 'encoder' and 'decoder' state dicts (DiffuSETS vae_model.pth), but got {keys}.")
    out = {}
    for part in ("encoder", "decoder"):
        out.update(_convert_vae_part(checkpoint[part], config, part, source))
    return out


_BLOCK = {
    "pre_shortcut_convs": "conv1",
    "layer_norm1": "norm1",
    "shortcut_convs": "conv_mid",
    "post_shortcut_convs": "conv2",
    "layer_norm2": "norm2",
    "res_conv": "residual",
    "attention_norm": "attention_norm",
    "time_emb.embeddings": "time_embedding.table",
    "time_emb.fc1": "time_embedding.fc1",
    "time_emb.fc2": "time_embedding.fc2",
    "self_attention": "self_attention",
    "cross_attention.value_combiner": "condition.value_combiner",
    "cross_attention.condition_normalization": "condition.condition_normalization",
    "cross_attention.to_v": "condition.to_v",
    "cross_attention.to_out": "condition.to_out",
    "cross_attention.attention.out_proj": "condition.out_proj",
}
_BOTTLENECK = {
    "bottleneck_conv1_2": "conv1_2",
    "bottleneck_conv1": "conv1",
    "bottleneck_conv2": "conv2",
    "bottleneck_layer_norm1": "norm1",
    "bottleneck_layer_norm2": "norm2",
}


def _rename(rest: str, table: Mapping[str, str]) -> str | None:
    for old in sorted(table, key=len, reverse=True):
        if rest == old or rest.startswith(old + "."):
            return table[old] + rest[len(old):]
    return None


_VALUE_THIRD = "#value_third"


def _unet_name(name: str) -> str | None:
    """Our name for a published UNet entry (None when unknown)."""
    if match := re.match(r"^(down|up)sampling_blocks\.(\d+)\.(down|up|block)\.(.+)$", name):
        direction, index, part, rest = match.groups()
        prefix = f"{direction}_blocks.{index}"
        if part == "block":
            block = _block_name(rest, _BLOCK)
            return block and f"{prefix}.block.{block}"
        return f"{prefix}.{part}sample.{rest}"
    if name.startswith("bottelneck."):  # sic: the published name
        block = _block_name(name[len("bottelneck."):], {**_BLOCK, **_BOTTLENECK})
        return block and f"bottleneck.{block}"
    if name.startswith("output_conv."):
        return "conv_out." + name[len("output_conv."):]
    return None


def _block_name(rest: str, table: Mapping[str, str]) -> str | None:
    # Only the value third of the cross-attention's fused q/k/v projection is used (see KNOWINGLY_DROPPED).
    if match := re.match(r"^cross_attention\.attention\.in_proj_(weight|bias)$", rest):
        return f"condition.value_proj.{match.group(1)}{_VALUE_THIRD}"
    return _rename(rest, table)


def convert_unet_state_dict(state: Mapping[str, torch.Tensor], *, source: str = "unet checkpoint") -> dict[str, torch.Tensor]:
    """Map the published UNet state dict onto :class:`ConditionalUNet1D`'s names."""
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if _is_dropped(name):
            continue
        new = _unet_name(name)
        if new is None:
            raise KeyError(f"{source}: unexpected UNet entry {name!r}; expected the published DiffuSETS layout.")
        if new.endswith(_VALUE_THIRD):
            new, value = new[: -len(_VALUE_THIRD)], value[2 * (value.shape[0] // 3):].clone()
        out[new] = value
    return out


def unet_config_from_upstream(state: Mapping[str, torch.Tensor], *, source: str = "unet checkpoint") -> UNetConfig:
    """Read the architecture off a published UNet state dict (heads are not stored: published values)."""
    try:
        n = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"^downsampling_blocks\.(\d+)\.down\.weight$", k)))
        channels = tuple(int(state[f"downsampling_blocks.{i}.down.weight"].shape[0]) for i in range(n))
        first = "downsampling_blocks.0.block."
        return UNetConfig(
            in_channels=int(state[first + "pre_shortcut_convs.weight"].shape[1]),
            block_out_channels=channels,
            kernel_size=int(state[first + "pre_shortcut_convs.weight"].shape[2]),
            bottleneck_kernel_size=int(state["bottelneck.bottleneck_conv1.weight"].shape[2]),
            bottleneck_attention_dim=int(state["bottelneck.self_attention.to_q.weight"].shape[0]),
            text_embed_dim=int(state[first + "cross_attention.value_combiner.weight"].shape[1]) - 3,
            time_embed_dim=int(state[first + "time_emb.embeddings"].shape[1]),
            time_hidden_dim=int(state[first + "time_emb.fc1.weight"].shape[0]),
            num_train_timesteps=int(state[first + "time_emb.embeddings"].shape[0]),
        )
    except (KeyError, ValueError) as error:
        raise ValueError(f"{source}: not a published DiffuSETS UNet state dict (unet_all.pth); could not read {error}.") from None


def _load_checkpoint(path: str | os.PathLike, what: str) -> Mapping:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}. Download it from the Hugging Face repo Laiyf/DiffuSETS.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle.UnpicklingError and friends: give the file and the expectation
        raise ValueError(f"{path} could not be read as a weights-only PyTorch checkpoint ({type(error).__name__}: {error}). Expected DiffuSETS' {what}.") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a state dict (DiffuSETS' {what}), but got a {type(checkpoint).__name__}.")
    return checkpoint


def _load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path) -> None:
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise ValueError(f"{path}: converted checkpoint does not fill the model: missing {missing[:5]}, unexpected {unexpected[:5]}.")
    for name, tensor in model.state_dict().items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: {name} has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)} for this configuration.")
    model.load_state_dict(state, strict=True)


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_upstream_vae(path: str | os.PathLike, config: VAEConfig | None = None) -> ECGVAE:
    """Build :class:`ECGVAE` from DiffuSETS' ``vae_model.pth``."""
    checkpoint = _load_checkpoint(path, "vae_model.pth")
    model = ECGVAE(config or VAEConfig())
    parts = {k: _strip_prefix(checkpoint[k]) for k in ("encoder", "decoder") if k in checkpoint}
    _load_strict(model, convert_vae_state_dict(parts if len(parts) == 2 else checkpoint, model.config, source=str(path)), path)
    return model.eval()


def load_upstream_unet(path: str | os.PathLike) -> ConditionalUNet1D:
    """Build :class:`ConditionalUNet1D` from DiffuSETS' ``unet_all.pth``."""
    checkpoint = _load_checkpoint(path, "unet_all.pth")
    for key in ("state_dict", "model", "unet"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
    state = _strip_prefix(checkpoint)
    model = ConditionalUNet1D(unet_config_from_upstream(state, source=str(path)))
    _load_strict(model, convert_unet_state_dict(state, source=str(path)), path)
    return model.eval()


def upstream_file(source: str | os.PathLike, filename: str, *, revision: str | None = None,
                  cache_dir: str | os.PathLike | None = None, local_files_only: bool = False) -> Path:
    """Local path of one published file (``vae_model.pth``, ``unet_all.pth``, ``ptbxl_text_embed.csv``).

    Args:
        source: a folder holding the file, or a Hugging Face repo id such as ``"Laiyf/DiffuSETS"``,
            downloaded with ``hf_hub_download`` into the hub cache (``HF_HOME``; ``HF_ENDPOINT``
            for a mirror) and reused from there.
        revision: with a repo id: branch, tag or commit hash to pin (default ``"main"``).
        cache_dir: with a repo id: hub cache folder instead of the default.
        local_files_only: with a repo id: use only the cache, never the network (as
            ``HF_HUB_OFFLINE=1`` does); a pinned commit hash then resolves without any request.
    """
    folder = Path(source)
    if folder.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} pins a Hugging Face download, but {source} is a local folder.")
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the folder should hold DiffuSETS' published {filename} "
                                    f"(Hugging Face {UPSTREAM_REPO}).")
        return path
    if not _REPO_ID.fullmatch(str(source)):
        raise FileNotFoundError(f"{str(source)!r} is neither a folder nor a Hugging Face repo id like {UPSTREAM_REPO!r}.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(source), filename, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only))
    except LocalEntryNotFoundError as error:  # offline (or unreachable) and not in the cache
        raise FileNotFoundError(
            f"{filename} of Hugging Face {source}@{revision or 'main'} is not in the hub cache and could not be downloaded "
            f"(offline: HF_HUB_OFFLINE / local_files_only, or the hub is unreachable): {error}"
        ) from error
