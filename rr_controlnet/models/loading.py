"""Loading ControlNet pipelines: presets, hub ids, local diffusers folders and single files (each component read
by models/component_sources), onto a device.

torch and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from rr_controlnet.errors import DeviceError, WeightsUnavailable
from rr_controlnet.models.component_sources import from_denoiser_file, from_source, pipeline_class
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
    models_cache_dir,
    offline,
)
from rr_controlnet.models.large_models import LARGE_KINDS, build_on_device
from rr_controlnet.models.presets import FAMILY_PREVIEW_DECODER, PRESETS, built_weights, native_size
from rr_controlnet.models.random_transformer_models import build_pipeline, build_preview_decoder, save_preview_decoder
from rr_controlnet.models.schedulers import make_scheduler
from rr_controlnet.models.status import random_model_folder
from rr_controlnet.spec import ModelSpec


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
    cards); `compile_models` compiles the UNet or transformer and the ControlNet with torch.compile.
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
    unit_repos: tuple[HubRepo, ...] = ()  # the control units' own ControlNets on the hub


def load_batch_models(request: LoadRequest, downloads: DownloadDisplay | None = None) -> tuple[LoadedModel, Any]:
    """What a batch generates with: the pipeline, and the preview decoder `preview` "taesd" needs (else None)."""
    downloads = downloads or DownloadDisplay()
    spec, runtime = request.spec, request.runtime
    if request.unit_repos and not request.allow_unsafe_weights:
        # The units' ControlNets with the model's, before anything loads: every one missing named at once.
        _fetched(hub_repos(spec) + list(request.unit_repos), runtime, spec, downloads)
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
    decoder = from_source(
        diffusers.AutoencoderTiny, source, "preview decoder", runtime.torch_dtype, allow_unsafe_weights, fetched
    )
    return decoder.to(runtime.device)


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
        components["controlnet"] = from_source(
            getattr(controlnet_classes, family.controlnet),
            spec.controlnet,
            "controlnet",
            dtype,
            allow_unsafe_weights,
            fetched.get(spec.controlnet),
        )
    if spec.vae:
        components["vae"] = from_source(
            diffusers.AutoencoderKL, spec.vae, "vae", dtype, allow_unsafe_weights, fetched.get(spec.vae)
        )
    components.update(dict.fromkeys(UNLOADED_COMPONENTS[spec.family]))
    components.update(family.pipeline_options)
    pipeline = pipeline_class(spec.family)
    if family.denoiser is not None and is_single_file(spec.base):
        fetched_config = fetched.get(spec.config) if spec.config else None
        return from_denoiser_file(spec, family.denoiser, dtype, allow_unsafe_weights, fetched_config, components)
    return from_source(
        pipeline,
        spec.base,
        "base",
        dtype,
        allow_unsafe_weights,
        fetched.get(spec.base),
        config=spec.config,
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
    """The commands that fetch what is missing: the preset's own (its base, ControlNet and VAE) where the
    model is a preset, and `hf download` for every other repo (a custom model's, a control unit's)."""
    preset_repos = {repo.repo for repo in hub_repos(spec)} if spec.name in PRESETS else set()
    commands = [["rr-controlnet", "fetch", spec.name]] if preset_repos & {repo for _, repo in missing} else []
    commands += [["hf", "download", repo] for _, repo in missing if repo not in preset_repos]
    fetch = " and ".join(f"`{shlex.join(command)}`" for command in commands)
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
