"""The manifest's fields, defined once: type, range, default and meaning of everything a manifest may say.

`rr-controlnet validate` checks manifests against these models, `rr-controlnet schema` derives the
JSON Schema from them, and docs/manifest.md's field table is `field_table()`. Every object is closed (unknown
keys are refused) and strict (YAML's "20" is not a number, `true` is not an integer).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rr_controlnet.manifest.unit_fields import MAX_UNITS, UNIT_SWEEPABLE, ControlUnitFields
from rr_controlnet.manifest.yaml_source import shown
from rr_controlnet.models.families import FAMILIES, FAMILY_NAMES
from rr_controlnet.models.schedulers import SCHEDULER_CLASSES

MANIFEST_VERSION: Final = 1
MAX_SIDE: Final = 4096
SIDE_MULTIPLE: Final = 8
MAX_SEED: Final = 2**63 - 1
ID_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"
Scheduler = Literal[*SCHEDULER_CLASSES]
FamilyName = Literal[*FAMILY_NAMES]
SCHEDULERS: Final = get_args(Scheduler)
# The fields a sweep may vary (canny as a whole, or one threshold).
SWEEPABLE: Final = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "controlnet_conditioning_scale",
    "control_guidance_start",
    "control_guidance_end",
    "canny",
    "canny.low",
    "canny.high",
    "size",
    "resize",
)
# Pairs of effective parameters where the first must stay below the second, with what each means.
ORDERED_PAIRS: Final = (("canny.low", "canny.high"), ("control_guidance_start", "control_guidance_end"))

_CLOSED = ConfigDict(extra="forbid", strict=True)

Side = Annotated[int, Field(ge=SIDE_MULTIPLE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)]


def message_error(message: str) -> PydanticCustomError:
    """An error whose text is ours, word for word (the loader prefixes the field's name)."""
    return PydanticCustomError("rr_message", "{message}", {"message": message})


class Canny(BaseModel):
    """Thresholds of OpenCV's Canny edge detector, on 0..255 gray levels."""

    model_config = _CLOSED

    low: int = Field(100, ge=0, le=255, description="Lower hysteresis threshold: weaker edges are dropped.")
    high: int = Field(200, ge=0, le=255, description="Upper threshold: stronger gradients always start an edge.")


class SweepRange(BaseModel):
    """A range of values: {from, to, step} (ends included when they fall on a step), {from, to, count}
    (evenly spaced), or for the seed {count} (the base seed and the next ones)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: float = Field(None, alias="from", description="First value.")  # type: ignore[assignment]
    to: float = Field(None, description="Last value, included when a step lands on it.")  # type: ignore[assignment]
    step: float = Field(None, description="Distance between values; its sign is that of to - from.")  # type: ignore[assignment]
    count: int = Field(None, ge=1, description="How many values, evenly spaced.")  # type: ignore[assignment]


UNIT_SWEEP_KEY: Final = rf"^controls\.[0-9]+\.({'|'.join(UNIT_SWEEPABLE)})$"

Sweep = create_model(
    "Sweep",
    __config__=ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"patternProperties": {UNIT_SWEEP_KEY: {"description": "A control unit's field."}}},
    ),
    __doc__="Fields to vary: each to a list of values or a range; `zip` pairs lists element by element.",
    **{
        name.replace(".", "_"): (
            list[Any] | SweepRange,
            Field(None, alias=name, description=f"Values of {name} to try."),  # type: ignore[arg-type]
        )
        for name in SWEEPABLE
    },
    zip=(
        dict[str, list[Any]] | list[dict[str, list[Any]]],
        Field(None, description="Fields whose lists go in pairs: one axis, not a product."),  # type: ignore[arg-type]
    ),
)


class Params(BaseModel):
    """The generation parameters: what `defaults` and each item may set."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "dependentSchemas": {"size": {"not": {"anyOf": [{"required": ["width"]}, {"required": ["height"]}]}}}
        },
    )

    prompt: str = Field("", description="What to generate.")
    negative_prompt: str = Field("", description="What to steer away from.")
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed of the item's own generator: its output never depends on the rest of the batch.",
    )
    steps: int = Field(
        50,
        ge=1,
        le=1000,
        description="Denoising steps.",
        json_schema_extra={"default_text": "50; 28 (SD3, Flux with a ControlNet)"},
    )
    guidance_scale: float = Field(
        None,  # type: ignore[assignment] - the model family's default, filled in when parameters are merged
        ge=0.0,
        le=50.0,
        description="Classifier-free guidance.",
        json_schema_extra={
            "default_text": "7.5 (SD1.5), 5.0 (SDXL), 7.0 (SD3), 3.5 (Flux, distilled guidance), 30 (flux-control)"
        },
    )
    controlnet_conditioning_scale: float = Field(
        0.5, ge=0.0, le=5.0, description="Weight of the ControlNet (none on flux-control: see Control models)."
    )
    control_guidance_start: float = Field(
        0.0, ge=0.0, le=1.0, description="Fraction of the steps where the ControlNet starts acting; below the end."
    )
    control_guidance_end: float = Field(1.0, ge=0.0, le=1.0, description="Fraction of the steps where it stops acting.")
    canny: Canny = Field(
        default_factory=Canny,
        description="Canny thresholds {low, high}, low below high.",
        json_schema_extra={"default_text": "{low: 100, high: 200}"},
    )
    width: Side = Field(
        None,  # type: ignore[assignment] - None: derived from the image's aspect and the model's native size
        description="Output width in pixels, a multiple of 8; alone, the height follows the image's aspect.",
        json_schema_extra={"default_text": "the image's aspect, longer side at the model's native size"},
    )
    height: Side = Field(
        None,  # type: ignore[assignment]
        description="Output height in pixels, a multiple of 8; alone, the width follows the image's aspect.",
        json_schema_extra={"default_text": "as width"},
    )
    size: int | list[int] = Field(
        None,  # type: ignore[assignment]
        description="Output size: one side for a square (`512`), or `[width, height]`. Not with width or height.",
        json_schema_extra={
            "anyOf": [
                {"type": "integer", "minimum": SIDE_MULTIPLE, "maximum": MAX_SIDE, "multipleOf": SIDE_MULTIPLE},
                {
                    "type": "array",
                    "prefixItems": [
                        {"type": "integer", "minimum": SIDE_MULTIPLE, "maximum": MAX_SIDE, "multipleOf": SIDE_MULTIPLE}
                    ]
                    * 2,
                    "items": False,
                    "minItems": 2,
                },
            ],
            "default_text": "as width",
        },
    )
    resize: Literal["crop", "fit", "stretch"] = Field(
        "crop",
        description="crop: cover the size and cut the centre; fit: fit inside and pad black; stretch: scale each axis.",
    )
    controls: list[ControlUnitFields] = Field(
        None,  # type: ignore[assignment]
        max_length=MAX_UNITS,
        description=f"Control units, each its own ControlNet (at most {MAX_UNITS}); an item's list replaces "
        "the defaults'.",
        json_schema_extra={"default_text": "one canny unit from the item's own fields"},
    )
    sweep: Sweep = Field(  # type: ignore[valid-type]
        None,  # type: ignore[assignment]
        description="Variants of the item: fields to lists or ranges of values, combined as a product "
        "(`zip` pairs lists); an item's sweep extends the defaults' and wins per field.",
        json_schema_extra={"default_text": "none"},
    )

    @field_validator("size", mode="plain")
    @classmethod
    def _size(cls, value: Any) -> tuple[int, int]:
        if isinstance(value, list) and len(value) == 2:
            width, height = value
        elif isinstance(value, int) and not isinstance(value, bool):
            width = height = value
        else:
            raise message_error(f"must be an integer or [width, height], got {_shown(value)}")
        for name, side in (("width", width), ("height", height)):
            problem = side_problem(side)
            if problem:
                raise message_error(f"{name} {problem}")
        return width, height

    @model_validator(mode="after")
    def _size_or_sides(self) -> Params:
        if "size" in self.model_fields_set and self.model_fields_set & {"width", "height"}:
            raise PydanticCustomError("size_and_sides", "give either size or width/height, not both")
        return self


class ItemFields(Params):
    """One item: an input image and the parameters it sets over `defaults`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(
        None,  # type: ignore[assignment] - derived from the image's file name
        pattern=ID_PATTERN,
        description="Unique id naming the item's files and entity paths: letters, digits, '_', '.' and '-'.",
        json_schema_extra={"not": {"enum": [".", ".."]}, "default_text": "the image's file name without extension"},
    )
    image: str = Field(
        min_length=1,
        description="Input image, relative to the manifest: PNG, JPEG, WebP, ... in any mode (gray, palette, RGBA).",
    )


# The families whose models read the control image themselves: no ControlNet to name.
CONTROL_MODEL_FAMILIES: Final = tuple(name for name, entry in FAMILIES.items() if not entry.has_controlnet)


class ModelWeights(BaseModel):
    """Weights named by hand: hub ids, local diffusers folders (relative to the manifest) or single files."""

    # A ControlNet on a control model's family is refused, and required on any other family the manifest
    # names (a family read from the base folder is checked by `validate` alone).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "if": {"required": ["family"], "properties": {"family": {"enum": list(CONTROL_MODEL_FAMILIES)}}},
            "then": {"not": {"required": ["controlnet"]}},
            "else": {"anyOf": [{"required": ["controlnet"]}, {"not": {"required": ["family"]}}]},
        },
    )

    base: str = Field(min_length=1, description="Base model: hub id, diffusers folder or .safetensors file.")
    controlnet: str | None = Field(
        None,
        min_length=1,
        description="Canny ControlNet: hub id, diffusers folder or .safetensors file; every family but flux-control "
        "(a control model, which has none) requires one.",
    )
    vae: str | None = Field(None, min_length=1, description="Replacement VAE (optional).")
    config: str | None = Field(
        None, min_length=1, description="Diffusers config of a single-file base, to load offline."
    )
    family: FamilyName = Field(
        None,  # type: ignore[assignment] - read from model_index.json when base is a folder
        description=f"{', '.join(FAMILY_NAMES)}; read from model_index.json when base is a folder.",
    )


class ManifestFields(BaseModel):
    """A whole manifest, version 1."""

    model_config = _CLOSED

    version: Literal[1] = Field(MANIFEST_VERSION, description="Manifest format version.")
    model: str | ModelWeights = Field(
        "sdxl", description="A preset name (see `rr-controlnet batch --help`), or the weights to load."
    )
    scheduler: Scheduler = Field(
        None,  # type: ignore[assignment] - the model's own
        description="Replaces the model's own scheduler.",
    )
    defaults: Params = Field(default_factory=Params, description="Parameters for every item; items override them.")
    items: list[ItemFields] = Field(min_length=1, description="One generation per item.")


class RunOptions(BaseModel):
    """How a batch runs, beside what the manifest says: the command line's options and the Python API's
    BatchOptions are checked against these."""

    model_config = _CLOSED

    device: str = Field(
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto: cuda if available, else cpu."
    )
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = Field("auto", description="auto: fp16 on CUDA, fp32 on CPU.")
    preview: Literal["x0", "taesd", "vae", "none"] = Field("x0", description="The per-step preview image.")
    latent_every: int = Field(1, ge=1, le=1000, description="Record the latent tensor every N steps.")
    batch_size: int = Field(1, ge=1, le=1024, description="Items with equal size and settings per pipeline call.")
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads for torch; None: torch's choice.")


DEVICES: Final = ("auto", "cuda", "cpu", "mps")  # what --device offers; the API also takes cuda:N
DTYPES: Final = get_args(RunOptions.model_fields["dtype"].annotation)
PREVIEW_MODES: Final = get_args(RunOptions.model_fields["preview"].annotation)
PARAM_KEYS: Final = tuple(Params.model_fields)
ITEM_ONLY_KEYS: Final = ("id", "image")
TOP_LEVEL_KEYS: Final = tuple(ManifestFields.model_fields)
MODEL_KEYS: Final = tuple(ModelWeights.model_fields)
CANNY_KEYS: Final = tuple(Canny.model_fields)


def side_problem(value: Any) -> str | None:
    """What is wrong with one side of an output size, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not SIDE_MULTIPLE <= value <= MAX_SIDE:
        return f"must be an integer {SIDE_MULTIPLE}..{MAX_SIDE}, got {_shown(value)}"
    if value % SIDE_MULTIPLE:
        return f"must be a multiple of {SIDE_MULTIPLE} (the models' VAE scale), got {value}"
    return None


def builtin_defaults() -> dict[str, Any]:
    """Every parameter's default, flat (canny.low as canny_low); None where it depends on the model or image."""
    values = {name: field.get_default(call_default_factory=True) for name, field in Params.model_fields.items()}
    canny = values.pop("canny")
    values.pop("size")
    values.pop("sweep")
    values.pop("controls")
    return {**values, "canny_low": canny.low, "canny_high": canny.high}


def expectation(model: type[BaseModel], name: str) -> str:
    """What a field takes, in words: "an integer 1..1000", "a number 0..50", "text", "one of a, b"."""
    field = model.model_fields[name]
    bounds = {type(item).__name__: item for item in field.metadata}
    annotation = field.annotation
    if annotation == int | None:
        annotation = int
    if getattr(annotation, "__origin__", None) is Literal:
        return f"one of {', '.join(annotation.__args__)}"
    if annotation is str:
        return "text"
    low = getattr(bounds.get("Ge"), "ge", None)
    high = getattr(bounds.get("Le"), "le", None)
    if annotation is int:
        return f"an integer {low}..{high}"
    if annotation is float:
        return f"a number {low:g}..{high:g}"
    return "valid"


def _shown(value: Any) -> str:

    return shown(value)


# --- docs/manifest.md's table ---------------------------------------------------------------------------


def field_table() -> str:
    """docs/manifest.md's table of an item's fields, from the models above."""
    rows = ["| field | takes | default | meaning |", "| --- | --- | --- | --- |"]
    for model, names in ((ItemFields, ITEM_ONLY_KEYS), (Params, PARAM_KEYS)):
        for name in names:
            field = model.model_fields[name]
            extra = field.json_schema_extra or {}
            if field.is_required():
                default = "required"
            else:
                default = extra.get("default_text") or f"`{field.get_default(call_default_factory=True)}`"
            rows.append(f"| `{name}` | {_takes(model, name)} | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


def _takes(model: type[BaseModel], name: str) -> str:
    if name in ("width", "height"):
        return f"an integer {SIDE_MULTIPLE}..{MAX_SIDE}, a multiple of {SIDE_MULTIPLE}"
    if name == "size":
        return "a side, or [width, height]"
    if name == "canny":
        return "{low, high}: integers 0..255"
    if name == "id":
        return "text: letters, digits, `_`, `.`, `-`"
    if name == "image":
        return "a file path"
    if name == "sweep":
        return "{field: [values] or {from, to, step/count}, zip: ...}"
    if name == "controls":
        return "a list of units {type, image, model, scale, start, end, low, high}"
    return expectation(model, name)
