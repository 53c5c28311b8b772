"""First runs on a connected machine: `fetch` and `batch` download what loading reads, say so and show the
hub's bars; `models` tells what the cache holds. Against a stand-in hub on loopback (tests/hub_stand_in.py)
that huggingface_hub's own client downloads from."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch
from helpers import free_port, run_cli, tiny_manifest, write_manifest
from hub_stand_in import StandInHub, hub_env

from rr_controlnet.models.hub import human_size, needed_files, pipeline_components, variant_for
from rr_controlnet.models.random_models import build_random_pipeline

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_CONTROLNET = "lllyasviel/control_v11p_sd15_canny"
# What an fp16 run of the sd15 preset reads: the pipeline's components less the ControlNet (its own repo),
# each in its fp16 files; not the full files, the pickle, the README nor the base repo's own controlnet/.
SD15_FP16_FILES = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.fp16.safetensors",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
]
CONTROLNET_FP16_FILES = ["config.json", "diffusion_pytorch_model.fp16.safetensors"]


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SD1.5 pipeline repo and a ControlNet repo, each with full and fp16 weights, and files no
    loading reads (a pickle, a README)."""
    root = tmp_path_factory.mktemp("hub-repos")
    base, controlnet = root / "base", root / "controlnet"
    pipe = build_random_pipeline("tiny-sd15")
    pipe.save_pretrained(base)
    pipe.controlnet.save_pretrained(controlnet)
    pipe.to(torch.float16)
    pipe.save_pretrained(base, variant="fp16")
    pipe.controlnet.save_pretrained(controlnet, variant="fp16")
    (base / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle nobody should download")
    (base / "README.md").write_text("# a model card\n")
    return {"base": base, "controlnet": controlnet}


@pytest.fixture
def hub(model_folders: dict[str, Path]):
    """The stand-in hub serving the sd15 preset's repos, and the same folders as a custom model's."""
    repos = {
        SD15: model_folders["base"],
        SD15_CONTROLNET: model_folders["controlnet"],
        "example/tiny-sd15": model_folders["base"],
        "example/tiny-sd15-controlnet": model_folders["controlnet"],
    }
    with StandInHub(repos) as stand_in:
        yield stand_in


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rr_controlnet", *args], env=env, capture_output=True, text=True, timeout=300
    )


def on_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (120 columns); its exit code and what the terminal got."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "rr_controlnet", *args], env=env, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    received = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        received.append(chunk)
    os.close(leader)
    return process.wait(timeout=300), b"".join(received).decode(errors="replace")


def served_size(folder: Path, names: list[str]) -> int:
    return sum((folder / name).stat().st_size for name in names)


def snapshot_files(hf_home: Path, repo: str) -> list[str]:
    snapshots = hf_home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots"
    (snapshot,) = snapshots.iterdir()
    return sorted(path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file())


# The rule for which files a run reads, as a repo's listing gives them.
SDXL_LIKE_REPO = [
    "model_index.json",
    "README.md",
    "sd_xl_base_1.0.safetensors",  # a single-file checkpoint beside the diffusers folders
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",  # no fp16 copy: the full file loads
    "text_encoder/model.onnx",
    "tokenizer/merges.txt",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
    "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
    "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_flax_model.msgpack",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "vae_1_0/config.json",
    "vae_1_0/diffusion_pytorch_model.fp16.safetensors",
]


def test_an_fp16_run_reads_each_components_fp16_files_where_it_has_them() -> None:
    components = pipeline_components(
        {"_class_name": "X", "unet": ["diffusers", "U"], "text_encoder": ["transformers", "T"], "vae": ["diffusers", "A"],
         "tokenizer": ["transformers", "K"], "scheduler": ["diffusers", "S"], "controlnet": ["diffusers", "C"],
         "image_encoder": [None, None]},
        passed=("controlnet", "vae"),
    )  # fmt: skip
    assert sorted(components) == ["scheduler", "text_encoder", "tokenizer", "unet"]
    variant = variant_for(SDXL_LIKE_REPO, "fp16")
    assert variant == "fp16"
    assert needed_files(SDXL_LIKE_REPO, variant, components) == (
        [
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "tokenizer/merges.txt",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
            "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        ],
        [],
    )


def test_other_dtypes_read_the_full_files_and_pickles_never_count() -> None:
    assert variant_for(SDXL_LIKE_REPO, "bf16") is None and variant_for(SDXL_LIKE_REPO, "fp32") is None
    assert needed_files(SDXL_LIKE_REPO, None, ["unet", "vae"])[0] == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    pickles_only = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"]
    assert needed_files(pickles_only, None, ["unet"]) == (["model_index.json"], ["unet"])


def test_a_single_model_repo_is_its_config_and_weights() -> None:
    vae_repo = [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
        "sdxl_vae.safetensors",
        "images/example.png",
    ]
    assert variant_for(vae_repo, "fp16") is None
    assert needed_files(vae_repo, None, None) == (["config.json", "diffusion_pytorch_model.safetensors"], [])


def fp16_sizes(model_folders: dict[str, Path]) -> tuple[str, str, str]:
    """What the sd15 preset's fp16 files weigh, as the messages say it: base, ControlNet, both."""
    base = served_size(model_folders["base"], SD15_FP16_FILES)
    controlnet = served_size(model_folders["controlnet"], CONTROLNET_FP16_FILES)
    return human_size(base), human_size(controlnet), human_size(base + controlnet)


def test_fetch_downloads_only_what_loading_reads_and_says_so(
    hub: StandInHub, model_folders: dict[str, Path], tmp_path: Path
) -> None:
    base, controlnet, both = fp16_sizes(model_folders)
    env = hub_env(hub.url, tmp_path / "hf")
    result = cli(env, "fetch", "sd15", "--dtype", "fp16")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        f"downloading {both} into {tmp_path / 'hf' / 'hub'}: "
        f"{SD15} (fp16 weights, {base}), {SD15_CONTROLNET} (fp16 weights, {controlnet})"
    )
    assert lines[1].startswith(f"downloaded {SD15}: {base} in ")
    assert lines[2].startswith(f"downloaded {SD15_CONTROLNET}: {controlnet} in ")
    assert lines[3] == f"sd15: ready in the cache (2 repos, fp16 weights, {both})"
    assert len(lines) == 4  # no bars in a log
    assert snapshot_files(tmp_path / "hf", SD15) == SD15_FP16_FILES
    assert snapshot_files(tmp_path / "hf", SD15_CONTROLNET) == CONTROLNET_FP16_FILES
    assert not any(path.endswith((".bin", "README.md")) for path in hub.file_gets())


def test_a_second_fetch_asks_the_hub_nothing(hub: StandInHub, model_folders: dict[str, Path], tmp_path: Path) -> None:
    env = hub_env(hub.url, tmp_path / "hf")
    assert cli(env, "fetch", "sd15", "--dtype", "fp16").returncode == 0
    asked = len(hub.requests)
    again = cli(env, "fetch", "sd15", "--dtype", "fp16")
    assert again.returncode == 0, again.stderr
    both = fp16_sizes(model_folders)[2]
    assert again.stderr.strip() == f"sd15: already in the cache (2 repos, fp16 weights, {both}), nothing downloaded"
    assert hub.requests[asked:] == []


def test_fp32_runs_fetch_the_full_files(hub: StandInHub, tmp_path: Path) -> None:
    manifest = controlnet_manifest(tmp_path)
    result = cli(hub_env(hub.url, tmp_path / "hf"), "fetch", str(manifest), "--dtype", "fp32")
    assert result.returncode == 0, result.stderr
    assert "example/tiny-sd15-controlnet (full weights, " in result.stderr
    assert snapshot_files(tmp_path / "hf", "example/tiny-sd15-controlnet") == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    assert f"{manifest}: ready in the cache (2 repos, full weights, " in result.stderr


def controlnet_manifest(folder: Path, base: str = "example/tiny-sd15", image: str = "not-there-yet.png") -> Path:
    """A manifest whose model names hub repos, over an image that need not exist for fetching."""
    document = {
        "version": 1,
        "model": {"base": base, "controlnet": "example/tiny-sd15-controlnet", "family": "sd15"},
        "defaults": {"prompt": "a castle", "steps": 1, "size": 64},
        "items": [{"image": image}],
    }
    return write_manifest(folder, document, "hub-model.yaml")


@pytest.mark.parametrize("flag", [None, "--no-progress"])
def test_on_a_terminal_the_hubs_bars_show_unless_asked_not_to(hub: StandInHub, tmp_path: Path, flag) -> None:
    env = hub_env(hub.url, tmp_path / "hf")
    code, screen = on_terminal(env, "fetch", "sd15", "--dtype", "fp16", *([flag] if flag else []))
    assert code == 0, screen
    assert screen.startswith("downloading ") and f"downloaded {SD15}: " in screen
    # The hub's own bars: files fetched with their rate, bytes against the total.
    bars = [r"Fetching 10 files: 100%\|█+\| 10/10 \[[0-9:<]+, +[\d.]+it/s\]", r"[\d.]+kB / +[\d.]+kB"]
    if flag is None:
        assert all(re.search(bar, screen) for bar in bars), screen
    else:
        assert not any(re.search(bar, screen) for bar in bars), screen


def test_models_tells_what_is_cached_and_what_fetching_would_download(
    hub: StandInHub, model_folders: dict[str, Path], tmp_path: Path
) -> None:
    base, controlnet, _ = fp16_sizes(model_folders)
    env = hub_env(hub.url, tmp_path / "hf")
    before = cli(env, "models", "sd15", "--dtype", "fp16")
    assert before.returncode == 0, before.stderr
    rows = [line.split(maxsplit=5) for line in before.stdout.splitlines()[1:3]]
    assert rows == [
        ["sd15", "base", SD15, "fp16", "no", f"{base} to fetch"],
        ["sd15", "controlnet", SD15_CONTROLNET, "fp16", "no", f"{controlnet} to fetch"],
    ]
    assert f"HF_HUB_CACHE={tmp_path / 'hf' / 'hub'}" in before.stdout.splitlines()
    assert not (tmp_path / "hf").exists()  # looking writes nothing into the cache

    assert cli(env, "fetch", "sd15", "--dtype", "fp16").returncode == 0
    after = cli(env, "models", "sd15", "--dtype", "fp16", "--json")
    assert after.returncode == 0, after.stderr
    report = json.loads(after.stdout)
    assert [(row["component"], row["cached"], row["weights"]) for row in report["components"]] == [
        ("base", True, "fp16"),
        ("controlnet", True, "fp16"),
    ]
    assert [row["bytes_cached"] for row in report["components"]] == [
        served_size(model_folders["base"], SD15_FP16_FILES),
        served_size(model_folders["controlnet"], CONTROLNET_FP16_FILES),
    ]
    assert report["caches"]["HF_HOME"] == str(tmp_path / "hf")


def test_offline_with_nothing_cached_names_every_missing_repo(hub: StandInHub, tmp_path: Path) -> None:
    env = {**hub_env(hub.url, tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = cli(env, "fetch", "sd15", "--dtype", "fp16")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: not available on this machine (offline): sd15 base '{SD15}', sd15 controlnet '{SD15_CONTROLNET}'. "
    )
    assert hub.requests == []


def test_an_unreachable_hub_names_every_missing_repo_at_once(tmp_path: Path) -> None:
    env = hub_env(f"http://127.0.0.1:{free_port()}", tmp_path / "hf")  # nothing listens there
    started = time.monotonic()
    result = cli(env, "fetch", "sd15", "--dtype", "fp16")
    assert result.returncode == 2
    assert time.monotonic() - started < 20  # one probe, not the hub client's retries for each repo
    (line,) = result.stderr.strip().splitlines()
    assert "cannot be reached" in line and f"sd15 base '{SD15}', sd15 controlnet '{SD15_CONTROLNET}'" in line


def test_a_repo_the_hub_does_not_have_is_named(hub: StandInHub, tmp_path: Path) -> None:
    env = hub_env(hub.url, tmp_path / "hf")
    result = cli(env, "fetch", str(controlnet_manifest(tmp_path, base="someone/no-such-model")), "--dtype", "fp16")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    manifest = tmp_path / "hub-model.yaml"
    assert line.startswith(f"error: {manifest} base 'someone/no-such-model': not found on {hub.url}")
    assert not (tmp_path / "hf" / "hub" / "models--example--tiny-sd15-controlnet").exists()  # nothing half-done


def test_fetch_builds_the_tiny_presets_and_leaves_the_random_ones_to_load_time(tmp_path: Path) -> None:
    env = {**hub_env(f"http://127.0.0.1:{free_port()}", tmp_path / "hf"), "RR_CONTROLNET_CACHE": str(tmp_path)}
    first = cli(env, "fetch", "tiny-sd15", "random-sdxl", "--dtype", "fp32")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "models" / "tiny-sd15"
    assert first.stderr.splitlines() == [
        f"tiny-sd15: built into {folder}",
        "random-sdxl: built in memory when a batch loads it, nothing to fetch",
    ]
    assert (folder / "model_index.json").is_file() and (folder / "controlnet" / "config.json").is_file()
    again = cli(env, "fetch", "tiny-sd15")
    assert again.returncode == 0 and again.stderr.strip() == f"tiny-sd15: already built in {folder}"


def test_fetching_a_manifest_of_local_folders_downloads_nothing(
    hub: StandInHub, model_folders: dict[str, Path], tmp_path: Path
) -> None:
    document = {
        "version": 1,
        "model": {"base": str(model_folders["base"]), "controlnet": str(model_folders["controlnet"]), "family": "sd15"},
        "items": [{"image": "later.png"}],  # images need not exist yet
    }
    manifest = write_manifest(tmp_path, document)
    result = cli(hub_env(hub.url, tmp_path / "hf"), "fetch", str(manifest))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"{manifest}: local files only, nothing to fetch"
    assert hub.requests == []


def test_a_manifest_with_problems_is_not_fetched(hub: StandInHub, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"version": 1, "model": "sd16", "items": [{"image": "a.png"}]})
    result = cli(hub_env(hub.url, tmp_path / "hf"), "fetch", str(manifest), "sd15")
    assert result.returncode == 2
    assert f"{manifest}:" in result.stderr and "sd16" in result.stderr
    assert result.stderr.strip().endswith(f"1 problem in {manifest}; nothing was fetched")
    assert hub.requests == []


@pytest.mark.parametrize(("dtype", "weights"), [("fp32", "full"), ("fp16", "fp16")])
def test_batch_says_what_it_downloads_before_loading_it(
    hub: StandInHub, tmp_path: Path, dtype: str, weights: str
) -> None:
    tiny_manifest(tmp_path)  # the sample images
    manifest = controlnet_manifest(tmp_path, image="horse.png")
    env = hub_env(hub.url, tmp_path / "hf")
    result = cli(env, "batch", str(manifest), "--device", "cpu", "--dtype", dtype, "--threads", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    notice = next(index for index, line in enumerate(lines) if line.startswith("downloading "))
    assert f"example/tiny-sd15 ({weights} weights, " in lines[notice]
    assert f"example/tiny-sd15-controlnet ({weights} weights, " in lines[notice]
    assert lines[notice + 1].startswith("downloaded example/tiny-sd15: ")
    assert lines[notice + 2].startswith("downloaded example/tiny-sd15-controlnet: ")
    assert lines[-1].startswith("1 done, 0 failed")
    assert (tmp_path / "hub-model-output" / "horse.png").is_file()
    # The model loaded from what was downloaded for it, and nothing else came.
    fetched_weights = hub.file_gets(".safetensors")
    assert len(fetched_weights) == 4  # unet, text encoder, VAE, ControlNet
    assert all((".fp16." in path) == (dtype == "fp16") for path in fetched_weights)


def test_a_batch_through_the_api_leaves_the_hubs_bars_as_it_found_them(tmp_path: Path) -> None:
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from rr_controlnet.api import BatchOptions, Overrides, load_manifest, run_batch

    manifest = load_manifest(tiny_manifest(tmp_path), Overrides(steps=1))
    verbosity = transformers.utils.logging.get_verbosity()
    enable_progress_bars()
    run_batch(manifest, BatchOptions(out_dir=tmp_path / "out", threads=1))
    assert not are_progress_bars_disabled()
    assert transformers.utils.logging.get_verbosity() == verbosity

    disable_progress_bars()  # someone's own choice, kept too
    try:
        run_batch(manifest, BatchOptions(out_dir=tmp_path / "again", threads=1))
        assert are_progress_bars_disabled()
    finally:
        enable_progress_bars()


def test_models_says_why_a_size_is_not_known(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    for env, reason in (
        (hub_env(unreachable, tmp_path / "hf"), f"? size not known: {unreachable} cannot be reached: "),
        ({**hub_env(unreachable, tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, "? size not known: HF_HUB_OFFLINE is set"),
    ):
        result = cli(env, "models", "sd15", "--dtype", "fp16")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert [line.split()[-1] for line in lines[1:3]] == ["?", "?"]
        assert lines[3].startswith(reason), result.stdout


def test_a_mistyped_preset_is_named_with_the_closest_one() -> None:
    result = run_cli("models", "tiny-flux-unoin", exit_code=2)
    assert (
        "error: 'tiny-flux-unoin' is neither a model preset nor a manifest file (did you mean 'tiny-flux-union'?)"
        in (result.output)
    )
