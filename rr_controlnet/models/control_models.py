"""Control units' ControlNets: which weights each unit reads, loaded once per process and shared by every item,
and the pipeline that runs several of them (the family's multi-ControlNet: MultiControlNetModel,
SD3MultiControlNetModel, FluxMultiControlNetModel).

    controlnets = UnitControlNets(model)
    pipe = controlnets.pipeline(item.controls)   # the loaded pipeline itself for one default canny unit

The tiny and random presets give every unit type and model name a random ControlNet of the base's own
architecture, drawn from a seed made of the type and the name, so that every path runs offline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import ModelLoadError
from rr_controlnet.models.families import FAMILIES, controlnet_family
from rr_controlnet.models.hub import HubRepo, is_hub_id
from rr_controlnet.models.loading import LoadedModel
from rr_controlnet.models.presets import PRESETS, built_weights
from rr_controlnet.models.random_models import build_random_controlnet
from rr_controlnet.models.random_transformer_models import build_random_transformer_controlnet
from rr_controlnet.spec import ControlUnit, ModelSpec

# Each family's published ControlNet per common map type (a unit of another type names its model).
FAMILY_UNIT_MODELS: Final[dict[str, dict[str, str]]] = {
    "sd15": {
        "canny": "lllyasviel/control_v11p_sd15_canny",
        "depth": "lllyasviel/control_v11f1p_sd15_depth",
        "pose": "lllyasviel/control_v11p_sd15_openpose",
        "normal": "lllyasviel/control_v11p_sd15_normalbae",
        "lineart": "lllyasviel/control_v11p_sd15_lineart",
        "scribble": "lllyasviel/control_v11p_sd15_scribble",
        "seg": "lllyasviel/control_v11p_sd15_seg",
        "tile": "lllyasviel/control_v11f1e_sd15_tile",
    },
    "sdxl": {
        "canny": "diffusers/controlnet-canny-sdxl-1.0",
        "depth": "diffusers/controlnet-depth-sdxl-1.0",
    },
    "sd3": {
        "canny": "stabilityai/stable-diffusion-3.5-large-controlnet-canny",
        "depth": "stabilityai/stable-diffusion-3.5-large-controlnet-depth",
        "blur": "stabilityai/stable-diffusion-3.5-large-controlnet-blur",
    },
    "flux": {
        "canny": "InstantX/FLUX.1-dev-Controlnet-Canny",
    },
}
BASE_CONTROLNET: Final = "base"  # the source of a unit that reads the loaded pipeline's own ControlNet


def unit_source(unit: ControlUnit, spec: ModelSpec) -> str:
    """What a unit's ControlNet is read from: BASE_CONTROLNET (the pipeline's own), `random:<seed text>` for
    the presets built in code, else a hub id, folder or file. Raises ModelLoadError for a type the base
    preset has no ControlNet for, when the unit names none. On a union family every unit reads the base's own
    union model (in its type's mode; validate refuses a unit's own model there)."""
    if FAMILIES[spec.family].union_modes is not None:
        return BASE_CONTROLNET
    if built_weights(spec) is not None:
        if unit.type == "canny" and unit.model in (None, spec.name):
            return BASE_CONTROLNET
        return f"random:{spec.name}:{unit.type}:{unit.model or ''}"
    if unit.model is None and unit.type == "canny":
        return BASE_CONTROLNET
    if unit.model in PRESETS:
        preset = PRESETS[unit.model]
        if unit.type == "canny":
            return preset.controlnet
        return _default_model(unit.type, preset.family, unit.model)
    return unit.model or _default_model(unit.type, spec.family, spec.name)


def unit_model_name(unit: ControlUnit, spec: ModelSpec) -> str:
    """The ControlNet a unit reads, as a person reads it: the base's own, a random stand-in, or a hub id or path."""
    source = unit_source(unit, spec)
    if source == BASE_CONTROLNET:
        return spec.controlnet
    if source.startswith("random:"):
        return f"random ({unit.model or unit.type})"
    return source


def _default_model(unit_type: str, family: str, owner: str) -> str:
    source = FAMILY_UNIT_MODELS.get(family, {}).get(unit_type)
    if source is None:
        known = ", ".join(FAMILY_UNIT_MODELS.get(family, {}))
        raise ModelLoadError(
            f"{owner} has no default ControlNet for {unit_type!r} units (it has: {known}); set the unit's model"
        )
    return source


def default_model_problem(unit_type: str, model: str | None, spec: ModelSpec) -> str | None:
    """Why a unit's ControlNet cannot be named from what the manifest says, or None."""
    try:
        unit_source(ControlUnit(unit_type, None, model, 1.0, 0.0, 1.0), spec)
    except ModelLoadError as exc:
        return str(exc)
    return None


def model_family(model: str) -> str | None:
    """The family of a unit's model where it can be told without loading it: a preset's, or a local
    ControlNet folder's config (families.controlnet_family)."""
    if model in PRESETS:
        return PRESETS[model].family
    config = Path(model) / "config.json"
    try:
        settings = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return controlnet_family(settings) if isinstance(settings, dict) else None


def unit_hub_repos(units: Sequence[ControlUnit], spec: ModelSpec) -> list[HubRepo]:
    """The hub repos units read beyond the base model's (what `fetch` downloads for them), each once."""
    repos: dict[str, HubRepo] = {}
    for unit in units:
        try:
            source = unit_source(unit, spec)
        except ModelLoadError:
            continue  # validate says why
        if source != BASE_CONTROLNET and not source.startswith("random:") and is_hub_id(source):
            repos.setdefault(source, HubRepo(source, f"{unit.type} unit", pipeline=False))
    return list(repos.values())


def unit_seed(source: str) -> int:
    """A random ControlNet's seed, from the text that names it."""
    return int.from_bytes(hashlib.sha256(source.encode()).digest()[:4], "little")


class UnitControlNets:
    """The ControlNets of the units a batch's items name, each loaded once (per distinct source) onto the
    model's device, and one pipeline per distinct list of them, sharing every other component."""

    def __init__(self, model: LoadedModel):
        self.model = model
        # A control model (flux-control) has none: it runs no units, only the pipeline itself.
        self.controlnets: dict[str, Any] = {BASE_CONTROLNET: getattr(model.pipe, "controlnet", None)}
        self.pipelines: dict[tuple[str, ...], Any] = {(BASE_CONTROLNET,): model.pipe}

    def sources(self, units: Sequence[ControlUnit]) -> tuple[str, ...]:
        return tuple(unit_source(unit, self.model.spec) for unit in units)

    def pipeline(self, units: Sequence[ControlUnit]) -> Any:
        """The pipeline that runs these units' ControlNets, in order; the loaded one for a single default unit.
        A union model runs every unit itself: the loaded pipeline, or (Flux, several units) one whose
        multi-ControlNet holds the union model once and runs it per unit."""
        if FAMILIES[self.model.family].union_modes is not None:
            return self._union_pipeline(len(units))
        sources = self.sources(units) if units else (BASE_CONTROLNET,)
        if sources not in self.pipelines:
            controlnets = [self.controlnet(source) for source in sources]
            self.pipelines[sources] = self._pipeline_with(controlnets[0] if len(controlnets) == 1 else controlnets)
        return self.pipelines[sources]

    def _union_pipeline(self, count: int) -> Any:
        if FAMILIES[self.model.family].union_call == "lists" or count <= 1:
            return self.model.pipe
        key = (BASE_CONTROLNET, "as a multi-ControlNet")
        if key not in self.pipelines:
            self.pipelines[key] = self._pipeline_with([self.model.pipe.controlnet])  # one net, run per image
        return self.pipelines[key]

    def controlnet(self, source: str) -> Any:
        if source not in self.controlnets:
            self.controlnets[source] = self._load(source)
        return self.controlnets[source]

    def parameters(self) -> int:
        """The parameters of every ControlNet loaded so far (the pipeline's own included)."""
        return sum(sum(p.numel() for p in net.parameters()) for net in self.controlnets.values())

    def _load(self, source: str) -> Any:
        runtime = self.model.runtime
        if source.startswith("random:"):
            controlnet = _random_like(self.model.pipe.controlnet, unit_seed(source), runtime.torch_dtype)
        else:
            controlnet = _load_published(source, FAMILIES[self.model.family].controlnet, runtime.torch_dtype)
        return controlnet.to(runtime.device)

    def _pipeline_with(self, controlnet: Any) -> Any:
        """The base pipeline's class with these ControlNets (a list: the pipeline wraps it in its family's
        multi-ControlNet) and every other component shared."""
        pipe = self.model.pipe
        components = {name: module for name, module in pipe.components.items() if name != "controlnet"}
        options = FAMILIES[self.model.family].pipeline_options
        unit_pipe = type(pipe)(**components, controlnet=controlnet, **options)
        unit_pipe.set_progress_bar_config(disable=True)
        return unit_pipe


def _random_like(base: Any, seed: int, dtype: Any) -> Any:
    """A ControlNet of `base`'s class and architecture with random weights drawn under `seed`."""
    config = {key: value for key, value in base.config.items() if not key.startswith("_")}
    if type(base).__name__ == "ControlNetModel":
        return build_random_controlnet(config, seed, dtype)
    return build_random_transformer_controlnet(type(base), config, seed, dtype)


def _load_published(source: str, class_name: str, dtype: Any) -> Any:
    """A published ControlNet, read as the family's ControlNet class (`class_name`, a diffusers name)."""
    import diffusers

    controlnet_class = getattr(diffusers, class_name)
    path = Path(source)
    try:
        if path.suffix.lower() == ".safetensors":
            return controlnet_class.from_single_file(str(path), torch_dtype=dtype)
        return controlnet_class.from_pretrained(source, torch_dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"control unit model {source!r} cannot be loaded ({first}); on a connected machine run "
            f"`rr-controlnet fetch MANIFEST` or `hf download {source}`, or name a local folder"
        ) from None
