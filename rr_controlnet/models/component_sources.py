"""One component read from where a model names it: a pipeline, ControlNet, VAE or transformer from a hub id, a
diffusers folder or a single weights file, in the weights variant a run's dtype reads; pickle checkpoints
refused unless allowed; a control model whose single file holds its transformer alone.

torch and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import ModelLoadError
from rr_controlnet.models.families import FAMILIES
from rr_controlnet.models.hub import RepoWeights, is_hub_id, is_single_file, listed_files, offline, variant_for
from rr_controlnet.spec import ModelSpec

UNSAFE_WEIGHT_SUFFIXES: Final = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


def pipeline_class(family: str) -> Any:
    import diffusers

    return getattr(diffusers, FAMILIES[family].pipeline)


def from_source(
    cls: Any,
    source: str,
    field: str,
    dtype: Any,
    allow_unsafe_weights: bool,
    fetched: RepoWeights | None = None,
    config: str | None = None,
    **kwargs: Any,
) -> Any:
    """from_pretrained for hub ids and folders, from_single_file for weight files. A hub repo `fetched` into the
    cache loads from its snapshot folder, in the weights chosen for it, so nothing else is downloaded."""
    path = Path(source)
    single_file = is_single_file(source)
    if single_file and path.suffix.lower() in UNSAFE_WEIGHT_SUFFIXES and not allow_unsafe_weights:
        raise ModelLoadError(
            f"model.{field}: {source} is a pickle-based checkpoint, which can run arbitrary code when "
            "loaded; convert it to .safetensors, or pass --allow-unsafe-weights if you trust it"
        )
    try:
        if single_file:
            options: dict[str, Any] = {"config": config} if config else {}
            if config and Path(config).exists():
                options["local_files_only"] = True
            return cls.from_single_file(str(path), torch_dtype=dtype, **options, **kwargs)
        if fetched is not None and fetched.snapshot is not None:
            source, variant = str(fetched.snapshot), fetched.variant
        else:
            variant = weights_variant(source, dtype)
        return cls.from_pretrained(
            source,
            dtype=dtype,
            variant=variant,
            use_safetensors=not allow_unsafe_weights,
            trust_remote_code=False,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure_message(source, field, exc)) from None


def weights_variant(source: str, dtype: Any) -> str | None:
    """The weights to read: "fp16" when a half-precision run can read `source`'s fp16 files (half the
    download and reading of the full ones), None for the full files (other dtypes; no fp16 files).
    A hub repo goes by its listing in the cache, or else the hub's (hub.variant_for is the one rule)."""
    import torch

    dtype_name = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
    folder = Path(source)
    if folder.is_dir():
        return variant_for((path.relative_to(folder).as_posix() for path in folder.rglob("*.safetensors")), dtype_name)
    if not is_hub_id(source):
        return None  # a single weights file: no variants
    return variant_for(listed_files(source, ask_hub=not offline()), dtype_name)


def _load_failure_message(source: str, field: str, exc: Exception) -> str:
    text = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
    if Path(source).exists():
        return f"model.{field}: cannot load {source}: {text}"
    if "safetensors" in text.lower():
        return (
            f"model.{field}: {source} has no .safetensors weights; only safetensors load by default "
            "(--allow-unsafe-weights permits pickle-based weights you trust)"
        )
    return (
        f"model.{field}: {source!r} is not available on this machine ({text}). "
        f"On a connected machine run `hf download {source}` and copy the Hugging Face cache here "
        "(or set HF_HOME to it), or set model."
        f"{field} in the manifest to a local diffusers folder"
    )


def from_denoiser_file(
    spec: ModelSpec,
    denoiser: str,
    dtype: Any,
    allow_unsafe_weights: bool,
    fetched_config: RepoWeights | None,
    components: dict[str, Any],
) -> Any:
    """A control model whose single file holds its transformer alone (as Black Forest Labs publish FLUX.1 Canny
    [dev]): the transformer from the file, read with the config's transformer/config.json, and every other
    component from `spec.config` (a diffusers folder or hub id of the same model)."""
    import diffusers

    if not spec.config:
        raise ModelLoadError(
            f"model.config: {spec.base} holds the transformer alone; set model.config to the model's diffusers "
            "folder or hub id (e.g. black-forest-labs/FLUX.1-Canny-dev), which gives its other components"
        )
    config = {"config": spec.config, "subfolder": "transformer"}
    transformer = from_source(getattr(diffusers, denoiser), spec.base, "base", dtype, allow_unsafe_weights, **config)
    pipeline = pipeline_class(spec.family)
    return from_source(
        pipeline,
        spec.config,
        "config",
        dtype,
        allow_unsafe_weights,
        fetched_config,
        transformer=transformer,
        **components,
    )
