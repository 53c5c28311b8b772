"""The Flux and SD3 families (and SDXL and Flux with a ControlNet-Union model, and FLUX.1's control model)
through the whole path, on their tiny models: recorded latents as images, previews, seeds, sweeps across shards,
compare, Ray, what `validate` refuses, and gated repos.

test_batch.py runs the same end-to-end checks on every family; these are what differs between them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import decoded_image, read_recording, run_batch, run_cli, summary_items, tensor, tiny_manifest
from hub_stand_in import StandInHub, hub_env
from PIL import Image

from rr_controlnet.models.component_sources import pipeline_class
from rr_controlnet.models.families import CONTROLNET_PARAMS
from rr_controlnet.models.random_transformer_models import build_pipeline, save_pipeline

FAMILY_MODELS = ["tiny-flux", "tiny-flux-control", "tiny-sd3"]
# What a sweep varies: a control model has no ControlNet scale, so it sweeps its guidance.
SWEPT = {"tiny-flux-control": {"guidance_scale": [20.0, 30.0], "seed": [1, 2]}}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


@pytest.mark.parametrize("model", FAMILY_MODELS)
@pytest.mark.parametrize("preview", ["x0", "vae", "taesd"])
def test_a_wide_items_latents_are_recorded_unpacked_with_their_previews(
    tmp_path: Path, model: str, preview: str
) -> None:
    manifest = tiny_manifest(tmp_path, model=model, items=[{"image": "horse.png", "size": [96, 64]}])
    run_batch(manifest, tmp_path / "out", "--preview", preview)
    recording = read_recording(tmp_path / "out" / "horse.rrd")
    latents = recording.timed("/items/horse/latent")
    assert [tensor(row).shape for row in latents] == [(16, 8, 12)] * 3  # channels, height/8, width/8
    assert all(np.isfinite(tensor(row).astype(np.float32)).all() for row in latents)
    previews = [decoded_image(row) for row in recording.timed("/items/horse/preview")]
    expected = (8, 12, 3) if preview == "x0" else (64, 96, 3)  # taesd and vae decode to full size
    assert [image.shape for image in previews] == [expected] * 3
    assert len({image.tobytes() for image in previews}) > 1  # the preview follows the steps
    assert pixels(tmp_path / "out" / "horse.png").shape == (64, 96, 3)


@pytest.mark.parametrize("model", [*FAMILY_MODELS, "tiny-sdxl-union", "tiny-flux-union"])
def test_outputs_follow_from_the_seed_alone(tmp_path: Path, model: str) -> None:
    """An item alone, second in a batch and batched with another: the same pixels (SD3's pipeline samples the
    control image's latents from torch's global generator; the batch gives it the item's own)."""
    (tmp_path / "alone").mkdir()
    alone = tiny_manifest(tmp_path / "alone", model=model, items=[{"image": "horse.png", "seed": 5}])
    together = tiny_manifest(tmp_path, model=model)
    run_batch(alone, tmp_path / "alone" / "out")
    run_batch(together, tmp_path / "together")
    run_batch(together, tmp_path / "batched", "--batch-size", "2")
    run_batch(together, tmp_path / "seed9", "--seed", "9")
    horse = pixels(tmp_path / "alone" / "out" / "horse.png")
    np.testing.assert_array_equal(horse, pixels(tmp_path / "together" / "horse.png"))
    assert np.abs(horse - pixels(tmp_path / "batched" / "horse.png")).max() <= 2
    assert not np.array_equal(horse, pixels(tmp_path / "seed9" / "horse.png"))


def test_a_union_manifest_without_controls_calls_the_pipeline_as_before(tmp_path: Path, monkeypatch) -> None:
    """An item without `controls` on a union model is called as it was while the union model ran in Canny's
    mode only: its one Canny map in a list of one control type, mode [3], the ControlNet's scale and range as
    single numbers. (Its output bytes were compared once; pixels depend on the thread count and the CPU.)"""
    calls = []
    pipeline = pipeline_class("sdxl-union")
    original = pipeline.__call__
    monkeypatch.setattr(pipeline, "__call__", lambda pipe, **kwargs: calls.append(kwargs) or original(pipe, **kwargs))
    run_batch(tiny_manifest(tmp_path, model="tiny-sdxl-union"), tmp_path / "out", "--no-adherence")
    images = []
    for arguments in calls:
        assert arguments["control_mode"] == [3]
        (batch,) = arguments["control_image"]  # one control type
        images += [image.size for image in batch]
        scale_and_range = [arguments[name] for name in CONTROLNET_PARAMS]
        assert scale_and_range == [0.5, 0.0, 1.0]
    assert images == [(64, 64), (64, 64)]  # astronaut's and horse's Canny maps
    assert "Control Mode" not in Image.open(tmp_path / "out" / "horse.png").text["parameters"]


@pytest.mark.parametrize("model", FAMILY_MODELS)
def test_a_sweep_across_two_shards_equals_one_process_and_compares_the_same(tmp_path: Path, model: str) -> None:
    sweep = SWEPT.get(model, {"controlnet_conditioning_scale": [0.5, 1.0], "seed": [1, 2]})
    manifest = tiny_manifest(tmp_path, model=model, items=[{"image": "horse.png", "sweep": sweep}])
    run_batch(manifest, tmp_path / "one", "--threads", "1")
    for shard in ("0/2", "1/2"):
        run_batch(manifest, tmp_path / "shards", "--shard", shard, "--threads", "1")
    assert run_cli("summarize", str(tmp_path / "shards"), exit_code=None).exit_code == 0
    variants = summary_items(tmp_path / "one")
    assert len(variants) == 4 and {item["status"] for item in variants.values()} == {"done"}
    for item_id in variants:
        np.testing.assert_array_equal(
            pixels(tmp_path / "one" / f"{item_id}.png"), pixels(tmp_path / "shards" / f"{item_id}.png")
        )
    result = run_cli("compare", str(tmp_path / "one"), str(tmp_path / "shards"), exit_code=None)
    assert result.exit_code == 0, result.output
    assert "4 same, 0 changed" in result.output
    assert (tmp_path / "shards" / "compare" / "compare.json").exists()
    page = (tmp_path / "one" / "index.html").read_text()
    assert "horse" in page or (tmp_path / "one" / "review").is_dir()


def manifest_with(tmp_path: Path, model: str, scheduler: str | None = None, **defaults) -> Path:
    path = tiny_manifest(tmp_path, model=model, **defaults)
    if scheduler:
        document = yaml.safe_load(path.read_text())
        document["scheduler"] = scheduler
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("model", "scheduler", "defaults", "expected"),
    [
        (
            "tiny-flux",
            None,
            {"negative_prompt": "blurry"},
            "defaults: negative_prompt: FLUX.1 (flux) has no classifier-free guidance",
        ),
        (
            "tiny-flux",
            None,
            {"size": [64, 72]},
            "defaults: height: FLUX.1 (flux) needs a multiple of 16, got 72",
        ),
        (
            "tiny-flux-control",
            None,
            {"negative_prompt": "blurry"},
            "defaults: negative_prompt: FLUX.1 control model (flux-control) has no classifier-free guidance",
        ),
        ("tiny-flux-control", "ddim", {}, "scheduler 'ddim' cannot run FLUX.1 control model (flux-control)"),
        ("tiny-sd3", "ddim", {}, "scheduler 'ddim' cannot run Stable Diffusion 3 / 3.5 (sd3); it takes flow_euler"),
        ("tiny-sd15", "flow_euler", {}, "scheduler 'flow_euler' cannot run Stable Diffusion 1.5 (sd15)"),
    ],
)
def test_validate_refuses_what_the_family_cannot_do(
    tmp_path: Path, model: str, scheduler: str | None, defaults: dict, expected: str
) -> None:
    manifest = manifest_with(tmp_path, model, scheduler, **defaults)
    result = run_cli("validate", str(manifest), exit_code=2)
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    problem_lines = [line for line in result.output.splitlines() if line.startswith(str(manifest))]
    assert len(problem_lines) == 1  # one line for both items, where the value is written
    if defaults:
        assert "(2 items inherit it)" in problem_lines[0]


def test_flow_matching_families_run_their_scheduler_and_sd_ones_a_negative_prompt(tmp_path: Path) -> None:
    sd3 = manifest_with(tmp_path, "tiny-sd3", "flow_euler", negative_prompt="blurry")
    run_batch(sd3, tmp_path / "out")
    assert {item["status"] for item in summary_items(tmp_path / "out").values()} == {"done"}


@pytest.mark.integration
@pytest.mark.parametrize("model", ["tiny-flux", "tiny-flux-control"])
def test_flux_on_ray_equals_one_process(tmp_path: Path, model: str) -> None:
    pytest.importorskip("ray", reason="the ray extra: pip install 'rr-controlnet[ray]'")
    manifest = tiny_manifest(tmp_path, model=model)
    run_batch(manifest, tmp_path / "ray", "--ray", "--workers", "2", "--threads", "1")
    run_batch(manifest, tmp_path / "local", "--threads", "1")
    for item_id in ("astronaut", "horse"):
        assert (tmp_path / "ray" / f"{item_id}.png").read_bytes() == (
            tmp_path / "local" / f"{item_id}.png"
        ).read_bytes()


# --- gated repos ----------------------------------------------------------------------------------

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_CANNY = "InstantX/FLUX.1-dev-Controlnet-Canny"
FLUX_CANNY_DEV = "black-forest-labs/FLUX.1-Canny-dev"
GATED_PRESETS = [("flux", FLUX_DEV), ("flux-canny-dev", FLUX_CANNY_DEV)]


@pytest.fixture(scope="module")
def gated_hub(tmp_path_factory: pytest.TempPathFactory):
    """The flux presets' repos on the stand-in hub, the FLUX.1 ones gated as on the hub, served from the tiny
    models."""
    repos = tmp_path_factory.mktemp("repos")
    folder = save_pipeline("tiny-flux", repos / "tiny-flux")
    control = save_pipeline("tiny-flux-control", repos / "tiny-flux-control")
    served = {FLUX_DEV: folder, FLUX_CANNY: folder / "controlnet", FLUX_CANNY_DEV: control}
    with StandInHub(served, gated=(FLUX_DEV, FLUX_CANNY_DEV)) as hub:
        yield hub


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rr_controlnet", *args], env=env, capture_output=True, text=True, timeout=300
    )


def assert_gated_message(result: subprocess.CompletedProcess, repo: str = FLUX_DEV) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert f"{repo!r}: gated" in line
    assert "HF_TOKEN" in line and "`hf auth login`" in line


@pytest.mark.parametrize(("preset", "repo"), GATED_PRESETS)
def test_fetching_a_gated_repo_without_access_says_how_to_give_a_token(
    gated_hub: StandInHub, tmp_path: Path, preset: str, repo: str
) -> None:
    env = {key: value for key, value in hub_env(gated_hub.url, tmp_path / "hf").items() if key != "HF_TOKEN"}
    assert_gated_message(cli(env, "fetch", preset, "--dtype", "bf16"), repo)


@pytest.mark.parametrize(("preset", "repo"), GATED_PRESETS)
def test_a_run_on_a_gated_repo_without_access_says_the_same(
    gated_hub: StandInHub, tmp_path: Path, preset: str, repo: str
) -> None:
    env = {key: value for key, value in hub_env(gated_hub.url, tmp_path / "hf").items() if key != "HF_TOKEN"}
    manifest = tiny_manifest(tmp_path, model=preset)
    result = cli(env, "batch", str(manifest), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert_gated_message(result, repo)
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_models_says_gated_beside_the_gated_repos(gated_hub: StandInHub, tmp_path: Path) -> None:
    env = hub_env(gated_hub.url, tmp_path / "hf")
    result = cli(env, "models", "flux", "sd35", "flux-canny-dev")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[2]: line for line in result.stdout.splitlines() if line.startswith(("flux", "sd35"))}
    assert "(gated)" in rows[FLUX_DEV] and "(gated)" not in rows[FLUX_CANNY]
    assert "(gated)" in rows["stabilityai/stable-diffusion-3.5-large"]
    assert "(gated)" in rows[FLUX_CANNY_DEV]
    assert not [
        line for line in result.stdout.splitlines() if line.startswith("flux-canny-dev ") and "controlnet" in line
    ]


def test_the_flux_canny_dev_preset_loads_its_hub_repo_alone(tmp_path: Path) -> None:
    """With access given (here: a hub that does not gate it), `fetch` downloads the one repo (no ControlNet)
    and an offline batch loads it from the cache: the same pixels as the same weights from their folder."""
    control = save_pipeline("tiny-flux-control", tmp_path / "repos" / "tiny-flux-control")
    with StandInHub({FLUX_CANNY_DEV: control}) as hub:
        env = hub_env(hub.url, tmp_path / "hf")
        fetched = cli(env, "fetch", "flux-canny-dev", "--dtype", "fp32")
        assert fetched.returncode == 0, fetched.stderr
        manifest = tiny_manifest(tmp_path, model="flux-canny-dev", items=[{"image": "horse.png"}])
        result = cli({**env, "HF_HUB_OFFLINE": "1"}, "batch", str(manifest), "--out", str(tmp_path / "hub"))
        assert result.returncode == 0, result.stderr
    (tmp_path / "local").mkdir()
    local = tiny_manifest(tmp_path / "local", model="tiny-flux-control", items=[{"image": "horse.png"}])
    run_batch(local, tmp_path / "local" / "out")
    np.testing.assert_array_equal(
        pixels(tmp_path / "hub" / "horse.png"), pixels(tmp_path / "local" / "out" / "horse.png")
    )


@pytest.mark.parametrize("model", FAMILY_MODELS)
def test_a_derived_side_lands_on_the_familys_grid(tmp_path: Path, model: str) -> None:
    # horse.png is 400x328: 64 wide gives 52.5 high, 56 on SD1.5's grid of 8, 48 on a grid of 16.
    manifest = tiny_manifest(tmp_path, model=model, items=[{"image": "horse.png", "width": 64}])
    document = yaml.safe_load(manifest.read_text())
    del document["defaults"]["size"]
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    run_batch(manifest, tmp_path / "out")
    assert summary_items(tmp_path / "out")["horse"]["size"] == [64, 48]
    assert pixels(tmp_path / "out" / "horse.png").shape == (48, 64, 3)


def test_every_family_names_classes_diffusers_has_and_factors_for_each_latent_channel() -> None:
    import diffusers

    from rr_controlnet.models.families import FAMILIES
    from rr_controlnet.models.schedulers import SCHEDULER_CLASSES

    for entry in FAMILIES.values():
        assert hasattr(diffusers, entry.pipeline), entry.name
        for class_name in (entry.controlnet, entry.multi_controlnet):
            assert class_name is None or hasattr(diffusers.models.controlnets, class_name), (entry.name, class_name)
        assert entry.denoiser is None or hasattr(diffusers, entry.denoiser)
        assert len(entry.latent_rgb) == entry.latent_channels and len(entry.latent_rgb_bias) == 3
        assert set(entry.schedulers) <= set(SCHEDULER_CLASSES)


@pytest.mark.parametrize(
    ("kind", "family", "read"),
    [("tiny-flux", None, "flux"), ("tiny-sd3", "sd3", "sd3"), ("tiny-flux-union", None, "flux-union")],
)
def test_a_custom_model_reads_its_family_from_its_folder_or_the_manifest(
    tmp_path: Path, kind: str, family: str | None, read: str
) -> None:
    """From the folder: the pipeline class in model_index.json, and a union ControlNet from its config."""
    folder = save_pipeline(kind, tmp_path / "weights")
    model = {"base": "./weights", "controlnet": "./weights/controlnet", **({"family": family} if family else {})}
    manifest = tiny_manifest(tmp_path, items=[{"image": "horse.png"}])
    document = yaml.safe_load(manifest.read_text())
    document["model"] = model
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    run_batch(manifest, tmp_path / "out")
    recording = read_recording(tmp_path / "out" / "horse.rrd")
    assert tensor(recording.timed("/items/horse/latent")[0]).shape == (16, 8, 8)
    params = recording.static("/items/horse/params").columns["TextDocument:text"][0]
    assert f"| model.family | {read} |" in params
    assert folder.is_dir()


# --- a control model: FLUX.1 Canny [dev] reads the map itself ----------------------------------------


def test_a_control_model_reads_the_canny_map_and_records_it_as_a_controlnet_run_does(tmp_path: Path) -> None:
    # The same seed and prompt: only the control image differs between the two outputs.
    items = [{"image": "horse.png", "seed": 1}, {"image": "astronaut.png", "seed": 1}]
    run_batch(tiny_manifest(tmp_path, model="tiny-flux-control", items=items), tmp_path / "out")
    assert not np.array_equal(pixels(tmp_path / "out" / "horse.png"), pixels(tmp_path / "out" / "astronaut.png"))
    recording = read_recording(tmp_path / "out" / "horse.rrd")
    assert decoded_image(recording.static("/items/horse/input/canny")).shape[:2] == (64, 64)
    params = recording.static("/items/horse/params").columns["TextDocument:text"][0]
    assert "| model.family | flux-control |" in params and "| guidance_scale | 30.0 |" in params
    assert "controlnet_conditioning_scale" not in params and "control_guidance" not in params
    text = Image.open(tmp_path / "out" / "horse.png").text["parameters"]
    assert "CFG scale: 30" in text and "ControlNet" not in text  # no ControlNet to name


@pytest.mark.parametrize("source", ["folder", "transformer file"])
def test_a_custom_control_model_loads_from_its_folder_or_its_transformer_file(tmp_path: Path, source: str) -> None:
    """A diffusers folder (its family read from model_index.json: FluxControlPipeline), or the transformer alone
    in one .safetensors file (as Black Forest Labs publish it) with the folder as its config: the same pixels
    as the preset."""
    folder = save_pipeline("tiny-flux-control", tmp_path / "weights")
    model = {"base": "./weights"}
    if source == "transformer file":
        (tmp_path / "flux1-canny.safetensors").write_bytes(
            (folder / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
        )
        model = {"base": "./flux1-canny.safetensors", "config": "./weights", "family": "flux-control"}
    manifest = tiny_manifest(tmp_path, items=[{"image": "horse.png"}])
    document = yaml.safe_load(manifest.read_text())
    document["model"] = model
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    run_batch(manifest, tmp_path / "custom")
    (tmp_path / "preset").mkdir()
    run_batch(tiny_manifest(tmp_path / "preset", "tiny-flux-control", [{"image": "horse.png"}]), tmp_path / "out")
    np.testing.assert_array_equal(pixels(tmp_path / "custom" / "horse.png"), pixels(tmp_path / "out" / "horse.png"))
    params = read_recording(tmp_path / "custom" / "horse.rrd").static("/items/horse/params")
    assert "| model.family | flux-control |" in params.columns["TextDocument:text"][0]


def test_tiny_flux_control_is_tiny_flux_with_the_control_latents_beside_the_noisy_ones(tmp_path: Path) -> None:
    folder = save_pipeline("tiny-flux-control", tmp_path / "tiny-flux-control")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "FluxControlPipeline" and "controlnet" not in index
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert (config["in_channels"], config["out_channels"]) == (128, 64)
    control, flux = build_pipeline("tiny-flux-control"), build_pipeline("tiny-flux")
    for component in ("vae", "text_encoder", "text_encoder_2"):  # each built under its own seed, as tiny-flux's
        ours, theirs = getattr(control, component).state_dict(), getattr(flux, component).state_dict()
        assert all(ours[name].equal(theirs[name]) for name in theirs), component
