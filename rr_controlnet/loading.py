"""Loading ControlNet pipelines: presets, hub ids, local diffusers folders and single files.

torch and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import DeviceError, ModelLoadError
from rr_controlnet.presets import built_weights, native_size
from rr_controlnet.spec import ModelSpec

UNSAFE_WEIGHT_SUFFIXES: Final = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
# Half-precision copies some repos publish beside the full weights (diffusers' and transformers' `variant`
# naming: diffusion_pytorch_model.fp16.safetensors, model.fp16-00001-of-00002.safetensors).
FP16_WEIGHTS: Final = re.compile(r"\.fp16(-\d+-of-\d+)?\.safetensors$")
# Without the hub in reach, huggingface_hub retries each missing model for about 30 s: ask once, briefly.
HUB_PROBE_SECONDS: Final = 5.0
SCHEDULER_CLASSES: Final = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
}


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
    pipe: Any  # a diffusers StableDiffusion(XL)ControlNetPipeline
    runtime: Runtime
    native_size: int

    @property
    def family(self) -> str:
        return self.spec.family


def quiet_library_logging() -> None:
    """Keep the model libraries' download bars and advisory warnings off the user's terminal."""
    import warnings

    import transformers

    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def resolve_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """Pick the device and dtype; refuse CUDA where there is none, with what to do instead."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: MPS is not available on this machine; use --device cpu")
    if dtype == "auto":
        dtype = "fp32" if device == "cpu" else "fp16"
    return Runtime(device=device, dtype_name=dtype)


def models_cache_dir() -> Path:
    """Where built-in random-weight models are saved once: $RR_CONTROLNET_CACHE or ~/.cache."""
    configured = os.environ.get("RR_CONTROLNET_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "rr-controlnet"


def random_model_folder(name: str) -> Path:
    """The diffusers folder of a tiny model, built and saved on first use."""
    from rr_controlnet.random_models import save_random_pipeline

    folder = models_cache_dir() / "models" / name
    if not (folder / "model_index.json").exists():
        try:
            save_random_pipeline(name, folder)
        except FileExistsError:
            pass  # another process saved it first; its rename made it complete
    return folder


def load_model(
    spec: ModelSpec,
    runtime: Runtime,
    scheduler: str | None = None,
    allow_unsafe_weights: bool = False,
    offload: bool = False,
    compile_models: bool = False,
) -> LoadedModel:
    """Load the pipeline for `spec` onto the runtime's device, ready to generate (library chatter silenced).

    On CUDA every model stays resident on the GPU unless `offload` moves each to the GPU only while it
    runs (for small cards); `compile_models` compiles the UNet and ControlNet with torch.compile.
    """
    accelerated = runtime.device.startswith("cuda")
    if (offload or compile_models) and not accelerated:
        flag = "--offload" if offload else "--compile"
        raise DeviceError(f"{flag} needs a CUDA device; this run is on {runtime.device}")
    quiet_library_logging()
    built = built_weights(spec)
    if built == "random":
        # Real-size architectures with random weights: built in memory (saving them is gigabytes).
        from rr_controlnet.random_models import build_random_pipeline

        pipe = build_random_pipeline(spec.name, dtype=runtime.torch_dtype)
    elif built == "tiny":
        folder = random_model_folder(spec.name)
        local = ModelSpec(spec.name, spec.family, str(folder), str(folder / "controlnet"))
        pipe = _load_pipeline(local, runtime, allow_unsafe_weights)
    else:
        pipe = _load_pipeline(spec, runtime, allow_unsafe_weights)
    if scheduler:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
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


def _use_fast_cuda_math() -> None:
    """TF32 matmuls and convolutions: Ampere and newer run them far faster, at no visible cost here."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _compile(pipe: Any) -> None:
    import torch

    for name in ("unet", "controlnet"):
        module = getattr(pipe, name)
        module.to(memory_format=torch.channels_last)
        setattr(pipe, name, torch.compile(module, fullgraph=False))


def load_preview_decoder(spec: ModelSpec, runtime: Runtime, allow_unsafe_weights: bool = False) -> Any:
    """The tiny autoencoder (TAESD) for `--preview taesd`: published weights, or built for random presets."""
    import diffusers

    from rr_controlnet.presets import FAMILY_PREVIEW_DECODER

    built = built_weights(spec)
    if built is not None:
        from rr_controlnet.random_models import build_random_preview_decoder, save_random_preview_decoder

        if built == "random":
            decoder = build_random_preview_decoder(spec.name, dtype=runtime.torch_dtype)
            return decoder.to(runtime.device)
        folder = models_cache_dir() / "models" / f"{spec.name}-taesd"
        if not (folder / "config.json").exists():
            try:
                save_random_preview_decoder(spec.name, folder)
            except FileExistsError:
                pass  # another process saved it first
        source = str(folder)
    else:
        source = FAMILY_PREVIEW_DECODER[spec.family]
    decoder = _from_source(
        diffusers.AutoencoderTiny, source, "preview decoder", runtime.torch_dtype, allow_unsafe_weights
    )
    return decoder.to(runtime.device)


def make_scheduler(name: str, config: Any) -> Any:
    import diffusers

    class_name, extra = SCHEDULER_CLASSES[name]
    return getattr(diffusers, class_name).from_config(config, **extra)


def pipeline_class(family: str) -> Any:
    import diffusers

    return (
        diffusers.StableDiffusionXLControlNetPipeline
        if family == "sdxl"
        else diffusers.StableDiffusionControlNetPipeline
    )


def _load_pipeline(spec: ModelSpec, runtime: Runtime, allow_unsafe_weights: bool) -> Any:
    import diffusers

    _require_available_weights(spec)
    dtype = runtime.torch_dtype
    controlnet = _from_source(diffusers.ControlNetModel, spec.controlnet, "controlnet", dtype, allow_unsafe_weights)
    components: dict[str, Any] = {"controlnet": controlnet}
    if spec.vae:
        components["vae"] = _from_source(diffusers.AutoencoderKL, spec.vae, "vae", dtype, allow_unsafe_weights)
    if spec.family == "sdxl":
        components["add_watermarker"] = False
    else:
        components.update(safety_checker=None, requires_safety_checker=False, feature_extractor=None)
    pipeline = pipeline_class(spec.family)
    return _from_source(pipeline, spec.base, "base", dtype, allow_unsafe_weights, config=spec.config, **components)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _require_available_weights(spec: ModelSpec) -> None:
    """Name every hub model that cannot be had at once: all of those missing from the cache when offline
    or when the hub cannot be reached (rather than one per attempt, each after the hub's retries)."""
    from huggingface_hub import try_to_load_from_cache

    wanted = (("base", spec.base, "model_index.json"), ("controlnet", spec.controlnet, "config.json"))
    wanted += (("vae", spec.vae, "config.json"),) if spec.vae else ()
    missing = [
        (field, source)
        for field, source, marker in wanted
        if _is_hub_id(source) and not isinstance(try_to_load_from_cache(source, marker), str)
    ]
    if not missing:
        return
    if _offline():
        reason = "offline"
    else:
        unreachable = _hub_unreachable()
        if unreachable is None:
            return  # they will be downloaded
        reason = unreachable
    names = ", ".join(f"model.{field} {source!r}" for field, source in missing)
    downloads = " and ".join(f"`hf download {source}`" for _, source in missing)
    raise ModelLoadError(
        f"not available on this machine ({reason}): {names}. On a connected machine run {downloads} and copy "
        "the Hugging Face cache here (or set HF_HOME to it), or point the manifest's model at local diffusers folders"
    )


def _is_hub_id(source: str) -> bool:
    """A hub repo id, not a local path (the manifest makes those absolute)."""
    return not Path(source).is_absolute() and not Path(source).exists()


def _hub_unreachable(timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it answers."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()  # noqa: S310 - the hub's own https endpoint
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed endpoint
        reason = getattr(exc, "reason", None) or exc
        return f"{endpoint} cannot be reached: {reason}"
    return None


def _from_source(
    cls: Any, source: str, field: str, dtype: Any, allow_unsafe_weights: bool, config: str | None = None, **kwargs: Any
) -> Any:
    """from_pretrained for hub ids and folders, from_single_file for weight files."""
    path = Path(source)
    single_file = path.suffix.lower() in (".safetensors", *UNSAFE_WEIGHT_SUFFIXES)
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
        return cls.from_pretrained(
            source,
            dtype=dtype,
            variant=weights_variant(source, dtype),
            use_safetensors=not allow_unsafe_weights,
            trust_remote_code=False,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure_message(source, field, exc)) from None


def weights_variant(source: str, dtype: Any) -> str | None:
    """The weights to read: "fp16" when a half-precision run can read `source`'s fp16 files (half the
    download and reading of the full ones), None for the full files (other dtypes; no fp16 files)."""
    import torch

    if dtype != torch.float16:
        return None
    return "fp16" if any(FP16_WEIGHTS.search(name) for name in _weight_file_names(source)) else None


def _weight_file_names(source: str) -> list[str]:
    """The files of a diffusers folder, or of a hub repo: as the hub lists them, or offline (or when the
    hub cannot be reached) as far as the local cache holds them."""
    folder = Path(source)
    if not folder.is_dir():
        if folder.exists():
            return []  # a single weights file: no variants
        if not _offline():
            from huggingface_hub import list_repo_files

            try:
                return list_repo_files(source)
            except Exception:  # noqa: BLE001, S110 - no answer from the hub (network, auth): go by the cache
                pass
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(source, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached, or not a hub id: the loader will say so
            return []
    return [path.relative_to(folder).as_posix() for path in folder.rglob("*.safetensors")]


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
