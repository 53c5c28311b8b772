"""Loading ControlNet pipelines: presets, hub ids, local diffusers folders and single files.

torch and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import DeviceError, ModelLoadError, WeightsUnavailable
from rr_controlnet.models.downloads import DownloadDisplay, ensure_weights, quiet_library_logging
from rr_controlnet.models.families import FAMILIES
from rr_controlnet.models.hub import (
    UNLOADED_COMPONENTS,
    HubRepo,
    RepoWeights,
    hub_repos,
    hub_unreachable,
    is_hub_id,
    is_single_file,
    listed_files,
    models_cache_dir,
    offline,
    variant_for,
)
from rr_controlnet.models.large_models import LARGE_KINDS, build_on_device
from rr_controlnet.models.presets import FAMILY_PREVIEW_DECODER, PRESETS, built_weights, native_size
from rr_controlnet.models.random_transformer_models import build_pipeline, build_preview_decoder, save_preview_decoder
from rr_controlnet.models.schedulers import make_scheduler
from rr_controlnet.models.status import random_model_folder
from rr_controlnet.spec import ModelSpec

UNSAFE_WEIGHT_SUFFIXES: Final = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda", "cuda:1", "cpu", "mps"
    dtype_name: str  # "fp16", "bf16", "fp32"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.dtype_name]


@dataclass
class LoadedModel:
    spec: ModelSpec
    pipe: Any  # the family's diffusers ControlNet pipeline
    runtime: Runtime
    native_size: int

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def size_multiple(self) -> int:
        return FAMILIES[self.spec.family].size_multiple


def resolve_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """Pick the device and dtype; refuse CUDA where there is none, with what to do instead."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: MPS is not available on this machine; use --device cpu")
    return Runtime(device=device, dtype_name=auto_dtype(device) if dtype == "auto" else dtype)


def load_model(
    spec: ModelSpec,
    runtime: Runtime,
    scheduler: str | None = None,
    allow_unsafe_weights: bool = False,
    offload: bool = False,
    compile_models: bool = False,
    downloads: DownloadDisplay | None = None,
) -> LoadedModel:
    """Load the pipeline for `spec` onto the runtime's device, ready to generate (library chatter silenced).

    Hub weights missing from the cache are downloaded first, shown as `downloads` says. On CUDA every
    model stays resident on the GPU unless `offload` moves each to the GPU only while it runs (for small
    cards); `compile_models` compiles the UNet and ControlNet with torch.compile.
    """
    accelerated = runtime.device.startswith("cuda")
    if (offload or compile_models) and not accelerated:
        flag = "--offload" if offload else "--compile"
        raise DeviceError(f"{flag} needs a CUDA device; this run is on {runtime.device}")
    refuse_large_off_cuda(spec, runtime)
    with quiet_library_logging():
        pipe = _build_pipeline(spec, runtime, scheduler, allow_unsafe_weights, downloads or DownloadDisplay())
        if accelerated:
            _use_fast_cuda_math()
        if offload:
            pipe.enable_model_cpu_offload(device=runtime.device)
        else:
            pipe = pipe.to(runtime.device)
        if compile_models:
            _compile(pipe)
        pipe.set_progress_bar_config(disable=True)
    return LoadedModel(spec=spec, pipe=pipe, runtime=runtime, native_size=native_size(spec))


def refuse_large_off_cuda(spec: ModelSpec, runtime: Runtime) -> None:
    """random-flux and random-sd3 draw 16 to 19 billion parameters on their device: on a CPU that would take
    the machine's memory and many minutes before the first step, so they need CUDA."""
    if spec.name in LARGE_KINDS and not runtime.device.startswith("cuda"):
        tiny = "tiny-flux" if spec.family == "flux" else "tiny-sd3"
        raise DeviceError(
            f"{spec.name} builds the full-size model on its device and needs a CUDA device (about 40 GB in bf16); "
            f"this run is on {runtime.device}: {tiny} is its small stand-in"
        )


@dataclass(frozen=True)
class LoadRequest:
    """What a batch loads, the same in every engine: the model onto a runtime, and what generating with it
    needs (the scheduler, the preview decoder, how weights may be read and placed)."""

    spec: ModelSpec
    runtime: Runtime
    scheduler: str | None = None
    preview: str = "x0"  # "taesd" loads a preview decoder too
    allow_unsafe_weights: bool = False
    offload: bool = False
    compile_models: bool = False


def load_batch_models(request: LoadRequest, downloads: DownloadDisplay | None = None) -> tuple[LoadedModel, Any]:
    """What a batch generates with: the pipeline, and the preview decoder `preview` "taesd" needs (else None)."""
    downloads = downloads or DownloadDisplay()
    spec, runtime = request.spec, request.runtime
    model = load_model(
        spec,
        runtime,
        request.scheduler,
        request.allow_unsafe_weights,
        request.offload,
        request.compile_models,
        downloads,
    )
    decoder = None
    if request.preview == "taesd":
        decoder = load_preview_decoder(spec, runtime, request.allow_unsafe_weights, downloads)
    return model, decoder


def auto_dtype(device: str) -> str:
    """The dtype "auto" means on a device: full precision on the CPU, half on accelerators."""
    return "fp32" if device == "cpu" else "fp16"


def _build_pipeline(
    spec: ModelSpec, runtime: Runtime, scheduler: str | None, allow_unsafe_weights: bool, downloads: DownloadDisplay
) -> Any:
    built = built_weights(spec)
    if built == "random":
        # Real-size architectures with random weights: built in memory (saving them is gigabytes); the
        # largest straight on the device, where drawing their weights takes seconds rather than minutes.
        if spec.name in LARGE_KINDS:
            pipe = build_on_device(spec.name, runtime.device, runtime.torch_dtype)
        else:
            pipe = build_pipeline(spec.name, dtype=runtime.torch_dtype)
    elif built == "tiny":
        folder = random_model_folder(spec.name)
        controlnet = str(folder / "controlnet") if FAMILIES[spec.family].has_controlnet else None
        local = ModelSpec(spec.name, spec.family, str(folder), controlnet)
        pipe = _load_pipeline(local, runtime, allow_unsafe_weights, downloads)
    else:
        pipe = _load_pipeline(spec, runtime, allow_unsafe_weights, downloads)
    if scheduler:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    return pipe


def _use_fast_cuda_math() -> None:
    """TF32 matmuls and convolutions: Ampere and newer run them far faster, at no visible cost here."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _compile(pipe: Any) -> None:
    import torch

    for name in ("unet", "transformer", "controlnet"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        module.to(memory_format=torch.channels_last)
        setattr(pipe, name, torch.compile(module, fullgraph=False))


def load_preview_decoder(
    spec: ModelSpec, runtime: Runtime, allow_unsafe_weights: bool = False, downloads: DownloadDisplay | None = None
) -> Any:
    """The tiny autoencoder (TAESD) for `--preview taesd`: published weights, or built for random presets."""
    with quiet_library_logging():
        return _load_preview_decoder(spec, runtime, allow_unsafe_weights, downloads or DownloadDisplay())


def _load_preview_decoder(
    spec: ModelSpec, runtime: Runtime, allow_unsafe_weights: bool, downloads: DownloadDisplay
) -> Any:
    import diffusers

    built = built_weights(spec)
    if built is not None:
        if built == "random":
            decoder = build_preview_decoder(spec.name, dtype=runtime.torch_dtype)
            return decoder.to(runtime.device)
        folder = models_cache_dir() / "models" / f"{spec.name}-taesd"
        if not (folder / "config.json").exists():
            try:
                save_preview_decoder(spec.name, folder)
            except FileExistsError:
                pass  # another process saved it first
        source = str(folder)
        fetched = None
    else:
        source = FAMILY_PREVIEW_DECODER[spec.family]
        repos = [HubRepo(source, "preview decoder", pipeline=False)]
        fetched = None if allow_unsafe_weights else _fetched(repos, runtime, spec, downloads)
    decoder = _from_source(
        diffusers.AutoencoderTiny, source, "preview decoder", runtime.torch_dtype, allow_unsafe_weights, fetched
    )
    return decoder.to(runtime.device)


def pipeline_class(family: str) -> Any:
    import diffusers

    return getattr(diffusers, FAMILIES[family].pipeline)


def _load_pipeline(spec: ModelSpec, runtime: Runtime, allow_unsafe_weights: bool, downloads: DownloadDisplay) -> Any:
    import diffusers

    # The ControlNet classes' own module: a lazy attribute of diffusers.models only once something imported it
    # (on a fresh Ray worker nothing has).
    from diffusers.models import controlnets as controlnet_classes

    if allow_unsafe_weights:
        # Pickle weights are diffusers' own choice of files: it fetches them itself.
        _require_available_weights(spec)
        fetched = {}
    else:
        fetched = {entry.repo.repo: entry for entry in _fetched(hub_repos(spec), runtime, spec, downloads)}
    dtype = runtime.torch_dtype
    family = FAMILIES[spec.family]
    components: dict[str, Any] = {}
    if family.controlnet is not None:
        components["controlnet"] = _from_source(
            getattr(controlnet_classes, family.controlnet),
            spec.controlnet,
            "controlnet",
            dtype,
            allow_unsafe_weights,
            fetched.get(spec.controlnet),
        )
    if spec.vae:
        components["vae"] = _from_source(
            diffusers.AutoencoderKL, spec.vae, "vae", dtype, allow_unsafe_weights, fetched.get(spec.vae)
        )
    components.update(dict.fromkeys(UNLOADED_COMPONENTS[spec.family]))
    components.update(family.pipeline_options)
    pipeline = pipeline_class(spec.family)
    if family.denoiser is not None and is_single_file(spec.base):
        fetched_config = fetched.get(spec.config) if spec.config else None
        return _from_denoiser_file(spec, family.denoiser, dtype, allow_unsafe_weights, fetched_config, components)
    return _from_source(
        pipeline,
        spec.base,
        "base",
        dtype,
        allow_unsafe_weights,
        fetched.get(spec.base),
        config=spec.config,
        **components,
    )


def _from_denoiser_file(
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
    transformer = _from_source(getattr(diffusers, denoiser), spec.base, "base", dtype, allow_unsafe_weights, **config)
    pipeline = pipeline_class(spec.family)
    return _from_source(
        pipeline,
        spec.config,
        "config",
        dtype,
        allow_unsafe_weights,
        fetched_config,
        transformer=transformer,
        **components,
    )


def _fetched(repos: list[HubRepo], runtime: Runtime, spec: ModelSpec, downloads: DownloadDisplay) -> list[RepoWeights]:
    """The repos' files complete in the cache, downloaded now where missing; a repo that cannot be had is
    named with what to do (every one at once, rather than one per attempt, each after the hub's retries)."""
    try:
        return ensure_weights(repos, runtime.dtype_name, downloads)
    except WeightsUnavailable as exc:
        raise WeightsUnavailable(exc.reason, exc.missing, _fetch_advice(spec, exc.missing)) from None


def _fetch_advice(spec: ModelSpec, missing: list[tuple[str, str]]) -> str:
    fetch = (
        f"`{shlex.join(['rr-controlnet', 'fetch', spec.name])}`"
        if spec.name in PRESETS
        else " and ".join(f"`{shlex.join(['hf', 'download', repo])}`" for _, repo in missing)
    )
    return (
        f"On a connected machine run {fetch} and copy the Hugging Face cache here (or set HF_HOME to it), "
        "or point the manifest's model at local diffusers folders"
    )


def _require_available_weights(spec: ModelSpec) -> None:
    """With pickle weights allowed, diffusers downloads them: name every hub model that cannot be had at once
    (all of those missing from the cache when offline or when the hub cannot be reached)."""
    from huggingface_hub import try_to_load_from_cache

    wanted = (("base", spec.base, "model_index.json"), ("controlnet", spec.controlnet, "config.json"))
    wanted += (("vae", spec.vae, "config.json"),) if spec.vae else ()
    missing = [
        (f"model.{field}", source)
        for field, source, marker in wanted
        if source and is_hub_id(source) and not isinstance(try_to_load_from_cache(source, marker), str)
    ]
    if not missing:
        return
    reason = "offline" if offline() else hub_unreachable()
    if reason is not None:
        raise WeightsUnavailable(reason, missing, _fetch_advice(spec, missing))


def _from_source(
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
