"""One pipeline call for one or more items, with a per-step callback that costs almost nothing.

Each step hands the observer the noisy latents x_t and a preview image. The preview comes from the
x0 estimate (what the image will become), which reads far better than x_t; the scheduler computes
it anyway, so it is captured from `scheduler.step` rather than recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from rr_controlnet.control_maps import UnitMap
from rr_controlnet.generation.previews import latent_to_rgb
from rr_controlnet.images import ControlImages
from rr_controlnet.models.families import FAMILIES, Family, canny_mode, union_mode
from rr_controlnet.models.family_pipelines import latent_image, seeded_control_encoding, vae_input
from rr_controlnet.models.loading import LoadedModel
from rr_controlnet.spec import GenerationParams


@dataclass(frozen=True)
class GenerationJob:
    item_id: str
    params: GenerationParams
    control: ControlImages
    units: tuple[UnitMap, ...] = ()  # empty: the one canny unit of `params`


@dataclass(frozen=True)
class StepData:
    step: int
    timestep: int
    latent: np.ndarray  # CxHxW float16: x_t as the scheduler left it
    preview: np.ndarray | None  # HxWx3 uint8


@dataclass
class GenerationResult:
    images: list[np.ndarray | None]  # HxWx3 uint8 per job; None where the job failed
    failures: list[str | None]  # a one-line reason per failed job
    interrupted: bool
    last_step: int
    last_timestep: int


StepObserver = Callable[[int, StepData], None]  # (job index, step data)


def batch_key(params: GenerationParams, size: tuple[int, int]) -> tuple:
    """Items with equal keys can share one pipeline call."""
    return (
        size,
        params.steps,
        params.guidance_scale,
        params.controlnet_conditioning_scale,
        params.control_guidance_start,
        params.control_guidance_end,
    )


T = TypeVar("T")


def batch_runs(items: Iterable[T], batch_size: int, key: Callable[[T], tuple | None]) -> Iterator[list[T]]:
    """The groups that share a pipeline call: runs of consecutive items with equal keys (batch_key), at most
    batch_size long. An item whose key is None (it cannot be generated) comes out alone, without breaking
    the run around it. Lazy: an item is taken only once the runs before it are decided.

    One process (runner.GroupRunner) and the Ray queue (ray_engine.Queue) group by this alone, so an item
    is generated beside the same others either way, and its output is the same."""
    run: list[T] = []
    run_key: tuple | None = None
    for item in items:
        item_key = key(item)
        if item_key is None:
            yield [item]
            continue
        if run and (len(run) >= batch_size or item_key != run_key):
            yield run
            run = []
        run.append(item)
        run_key = item_key
    if run:
        yield run


class X0Capture:
    """Wraps a scheduler's step() to keep its x0 estimate (pred_original_sample) of the last step."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self.latest: Any = None
        self._original_step = scheduler.step

    def __enter__(self) -> X0Capture:
        self.scheduler.step = self._step
        return self

    def __exit__(self, *exc: object) -> None:
        del self.scheduler.step  # the instance attribute; the class method shows through again

    def _step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._original_step(model_output, timestep, sample, *args, **kwargs)
        self.latest = self._x0_from(result, model_output, timestep, sample)
        return result

    def _x0_from(self, result: Any, model_output: Any, timestep: Any, sample: Any) -> Any:
        predicted = getattr(result, "pred_original_sample", None)
        if predicted is None and isinstance(result, tuple) and len(result) > 1:
            predicted = result[1]
        if predicted is not None:
            return predicted
        config = self.scheduler.config
        # Multistep solvers (UniPC, DPM++) keep the converted model output, which is x0 there.
        outputs = getattr(self.scheduler, "model_outputs", None)
        predicts_x0 = config.get("predict_x0", False) or str(config.get("algorithm_type", "")).endswith("dpmsolver++")
        if outputs and outputs[-1] is not None and predicts_x0:
            return outputs[-1]
        alphas = getattr(self.scheduler, "alphas_cumprod", None)
        sigmas = getattr(self.scheduler, "sigmas", None)
        if alphas is None and sigmas is not None and self.scheduler.step_index is not None:
            # Flow matching (SD3, Flux): x_t = (1 - sigma) x0 + sigma noise and the model predicts noise - x0.
            sigma = sigmas[self.scheduler.step_index - 1].to(sample.device, sample.dtype)
            return sample - sigma * model_output
        if alphas is None:
            return None
        alpha = alphas[int(timestep)].to(sample.device, sample.dtype)
        if config.get("prediction_type", "epsilon") == "v_prediction":
            return alpha.sqrt() * sample - (1 - alpha).sqrt() * model_output
        return (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()


@dataclass(frozen=True)
class PromptCut:
    """A prompt longer than the text encoder reads: CLIP sees its first `limit` tokens only."""

    field: str  # "prompt" or "negative_prompt"
    tokens: int  # start and end markers included
    limit: int
    read: str  # the text the encoder read, decoded from the tokens it kept

    def warning(self) -> str:
        return (
            f"{self.field} is {self.tokens} tokens, the text encoder reads {self.limit}: "
            f"the rest was cut off (it read {_shortened(self.read)!r})"
        )


def prompt_cuts(pipe: Any, params: GenerationParams) -> list[PromptCut]:
    """The prompts of an item that its pipeline's tokenizers truncate, and what they keep of them."""
    tokenizers = [getattr(pipe, name, None) for name in ("tokenizer", "tokenizer_2")]
    cuts = []
    for field in ("prompt", "negative_prompt"):
        text = getattr(params, field)
        for tokenizer in filter(None, tokenizers):
            limit = int(tokenizer.model_max_length)
            tokens = len(tokenizer(text).input_ids)
            if tokens > limit:
                kept = tokenizer(text, truncation=True, max_length=limit).input_ids
                cuts.append(PromptCut(field, tokens, limit, tokenizer.decode(kept, skip_special_tokens=True)))
                break
    return cuts


def _shortened(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def generate(
    model: LoadedModel,
    jobs: Sequence[GenerationJob],
    on_step: StepObserver | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    preview_mode: str = "x0",
    preview_decoder: Any = None,
    pipe: Any = None,
) -> GenerationResult:
    """Run one pipeline call for jobs that share a batch_key; one generator per job. `pipe` runs the jobs'
    control units (control_models.UnitControlNets.pipeline); None: the model's own."""
    import torch

    pipe = pipe or model.pipe
    state = {"step": -1, "timestep": -1, "interrupted": False}
    height, width = jobs[0].control.canny.shape

    def step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        state["step"], state["timestep"] = step, round(float(timestep))
        if on_step is not None:
            latents = latent_image(pipe, model.family, tensors["latents"], height, width)
            x0 = latents if capture.latest is None else latent_image(pipe, model.family, capture.latest, height, width)
            previews = _previews(model, preview_mode, preview_decoder, latents, x0)
            host_latents = latents.detach().to(torch.float16).cpu().numpy()  # the one copy to host
            for index in range(len(jobs)):
                preview = previews[index] if previews is not None else None
                on_step(index, StepData(step, state["timestep"], host_latents[index], preview))
        if should_stop():
            state["interrupted"] = True
            pipeline._interrupt = True  # diffusers skips the remaining steps
        return tensors

    arguments = pipeline_arguments(jobs, model.family)
    with (
        X0Capture(pipe.scheduler) as capture,
        torch.inference_mode(),
        seeded_control_encoding(pipe, arguments["generator"]),
    ):
        output = pipe(**arguments, callback_on_step_end=step_end, callback_on_step_end_tensor_inputs=["latents"])
    images: list[np.ndarray | None] = []
    failures: list[str | None] = []
    for array in output.images:
        if not np.isfinite(array).all():
            images.append(None)
            failures.append("the output has NaN or infinite values (try --dtype fp32 or bf16)")
        else:
            images.append(to_uint8(array))
            failures.append(None)
    return GenerationResult(images, failures, state["interrupted"], state["step"], state["timestep"])


def pipeline_arguments(jobs: Sequence[GenerationJob], family: str = "sd15") -> dict[str, Any]:
    """The pipeline call's arguments for jobs that share a batch_key: one generator per job, so that each
    job's output is what it would be alone. The family names the control image's argument, and takes no
    negative prompt where its guidance is distilled (Flux), nor a ControlNet's scale and range without one."""
    entry = FAMILIES[family]
    import torch
    from PIL import Image

    first = jobs[0].params
    height, width = jobs[0].control.canny.shape
    negative = {"negative_prompt": [job.params.negative_prompt for job in jobs]} if entry.true_cfg else {}
    controls: Any = [Image.fromarray(job.control.canny_rgb) for job in jobs]
    mode = canny_mode(family)
    if mode is not None and entry.union_call == "lists":  # one list of images (the batch's) per control type
        controls, negative = [controls], {**negative, "control_mode": [mode]}
    elif mode is not None:
        negative = {**negative, "control_mode": mode}
    return {
        "prompt": [job.params.prompt for job in jobs],
        **negative,
        entry.control_argument: controls,
        "height": height,
        "width": width,
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance_scale,
        **(_controlnet_arguments(first) if entry.has_controlnet else {}),
        "generator": [torch.Generator(device="cpu").manual_seed(job.params.seed) for job in jobs],
        "output_type": "np",
        **unit_arguments(jobs, entry),
    }


def _controlnet_arguments(params: GenerationParams) -> dict[str, float]:
    """How strongly and when the ControlNet acts (a control model has no ControlNet, and no such arguments)."""
    return {
        "controlnet_conditioning_scale": params.controlnet_conditioning_scale,
        "control_guidance_start": params.control_guidance_start,
        "control_guidance_end": params.control_guidance_end,
    }


def unit_arguments(jobs: Sequence[GenerationJob], entry: Family) -> dict[str, Any]:
    """The control arguments of jobs with control units, each unit's scale and range with its images (under
    the family's control argument): one image per job for a single unit, else per unit the jobs' images as
    one batch array (HxWx3 in 0..1, as diffusers reads PIL images: SDXL's MultiControlNetModel takes no nested
    lists); {} without units.

    On a union model also each unit's mode (validate refuses a type without one): SDXL's union pipeline takes
    a list of images (the jobs') and a mode per unit; Flux's takes one unit as its ControlNet's (an int mode)
    and several as a multi-ControlNet's of the one model (a mode per unit)."""
    from PIL import Image

    units = [unit_map.unit for unit_map in jobs[0].units]
    if not units:
        return {}
    values = {
        "controlnet_conditioning_scale": [unit.scale for unit in units],
        "control_guidance_start": [unit.start for unit in units],
        "control_guidance_end": [unit.end for unit in units],
    }
    modes = [union_mode(entry.name, unit.type) for unit in units]
    if entry.union_modes is not None and entry.union_call == "lists":
        images = [[Image.fromarray(job.units[index].rgb) for job in jobs] for index in range(len(units))]
        return {entry.control_argument: images, "control_mode": modes, **values}
    if len(units) == 1:
        images = [Image.fromarray(job.units[0].rgb) for job in jobs]
        arguments = {entry.control_argument: images, **{name: listed[0] for name, listed in values.items()}}
    else:
        batches = [
            np.stack([job.units[index].rgb for job in jobs]).astype(np.float32) / 255.0 for index in range(len(units))
        ]
        arguments = {entry.control_argument: batches, **values}
    if entry.union_modes is not None:
        arguments["control_mode"] = modes[0] if len(units) == 1 else modes
    return arguments


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A pipeline's float image in 0..1 as uint8 pixels."""
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _previews(model: LoadedModel, mode: str, decoder: Any, latents: Any, x0: Any) -> list[np.ndarray] | None:
    """HxWx3 uint8 preview per job, or None when previews are off."""
    if mode == "none":
        return None
    if mode == "x0":
        host = x0.detach().float().cpu().numpy()
        return [latent_to_rgb(latent, model.family) for latent in host]
    if mode == "vae":
        # The original example's behaviour: a full VAE decode of x_t at every step (slow).
        vae = model.pipe.vae
        decoded = vae.decode(vae_input(vae, latents), return_dict=False)[0]
        return _to_uint8(decoded)
    if mode == "taesd":
        decoded = decoder.decode(x0.to(decoder.dtype), return_dict=False)[0]
        return _to_uint8(decoded)
    raise ValueError(f"unknown preview mode {mode!r}")


def _to_uint8(decoded: Any) -> list[np.ndarray]:
    import torch

    images = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [image.permute(1, 2, 0).cpu().numpy() for image in images]
