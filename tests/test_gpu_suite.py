"""The GPU suite cannot rot between GPU runs: its CPU mode runs every section on the tiny presets."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def gpu_suite():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("gpu_suite")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def cpu_run(gpu_suite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's CPU mode, run once for this module: its output folder."""
    out = tmp_path_factory.mktemp("suite")
    assert gpu_suite.main(["--device", "cpu", "--out", str(out)]) == 0
    return out


def written_report(out: Path) -> tuple[dict, str]:
    (json_path,) = out.glob("gpu-suite-*.json")
    return json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text()


def test_every_section_produces_its_figures(gpu_suite, cpu_run) -> None:
    report, _ = written_report(cpu_run)
    assert report["failed_sections"] == {}
    sections = {section["name"]: section for section in report["sections"]}
    assert list(sections) == list(gpu_suite.DEFAULT_SECTIONS)  # the full-size families only when asked for

    compiled = sections["compile"]
    assert [row["way"] for row in compiled["rows"]] == ["not compiled", "compiled"]
    for row in compiled["rows"]:
        assert row["first_item_seconds"] > 0 and row["seconds_per_item"] > 0
    assert compiled["figures"]["steady_speedup"] > 0

    for name in ("ways-sd15", "ways-sdxl"):
        rows = {row["way"]: row for row in sections[name]["rows"]}
        assert list(rows) == ["bare", "rr-controlnet", "original"]
        for row in rows.values():
            assert row["seconds_per_image"] > 0 and row["images_per_second"] > 0
            assert row["peak_gpu_mib"] is None  # on the CPU
        assert rows["bare"]["rrd_mb_per_item"] is None
        assert rows["rr-controlnet"]["rrd_mb_per_item"] > 0 and rows["original"]["rrd_mb_per_item"] > 0
        assert rows["rr-controlnet"]["max_difference"] == rows["original"]["max_difference"] == 0

    batch = sections["batch"]
    assert [row["batch_size"] for row in batch["rows"]] == [1, 2]
    assert all(row["images_per_second"] > 0 for row in batch["rows"])
    assert batch["figures"]["speedup"] > 0 and batch["figures"]["goal"] == 1.5

    preview = {row["preview"]: row for row in sections["preview"]["rows"]}
    assert list(preview) == ["x0", "taesd", "vae"]
    assert all(row["seconds_per_item"] > 0 for row in preview.values())
    assert preview["taesd"]["max_difference"] == preview["vae"]["max_difference"] == 0  # previews only watch
    assert set(sections["preview"]["figures"]) == {"taesd_ms_per_step_added", "vae_ms_per_step_added"}

    offload = sections["offload"]
    assert [row["way"] for row in offload["rows"]] == ["resident", "offload"]
    assert all(row["seconds_per_item"] > 0 for row in offload["rows"])
    # --compile and --offload need CUDA: on the CPU their sections say they ran a stand-in.
    assert "stand-in" in compiled["notes"][0] and "stand-in" in offload["notes"][0]


def test_the_table_is_headed_by_the_machine_and_has_every_section(cpu_run) -> None:
    report, markdown = written_report(cpu_run)
    machine = report["machine"]
    assert markdown.startswith(f"# GPU suite: {machine['device_name']}\n")
    assert f"| {machine['torch']} | {machine['diffusers']} | {machine['rerun_sdk']} |" in markdown
    for section in report["sections"]:
        assert f"## {section['title']}\n" in markdown
    assert "| rr-controlnet | " in markdown and "| taesd | " in markdown


def test_the_flux_and_sd3_rows_build_on_the_device_and_measure_resident_and_offload(gpu_suite, tmp_path: Path) -> None:
    """The family rows end to end on the CPU: tiny-flux's and tiny-sd3's configs built the way random-flux and
    random-sd3 are built on a GPU (large_models.build_on_device), each generating through the batch's runner."""
    assert gpu_suite.main(["--device", "cpu", "--sections", "flux,sd3", "--out", str(tmp_path)]) == 0
    report, markdown = written_report(tmp_path)
    assert report["failed_sections"] == {}
    sections = {section["name"]: section for section in report["sections"]}
    assert list(sections) == ["flux", "sd3"]
    for name, model in (("flux", "tiny-flux"), ("sd3", "tiny-sd3")):
        section = sections[name]
        assert section["title"].startswith(f"{model} with its ControlNet: 64x64, 2 steps, fp32")
        assert [row["way"] for row in section["rows"]] == ["resident", "offload"]
        for row in section["rows"]:
            assert row["load_seconds"] > 0 and row["first_item_seconds"] > 0
            assert row["seconds_per_step"] == pytest.approx(row["seconds_per_item"] / 2)
            assert row["peak_gpu_mib"] is None  # on the CPU
        assert section["figures"]["offload_seconds_ratio"] > 0
        assert any("stand-in: --offload needs CUDA" in note for note in section["notes"])
        assert f"## {section['title']}\n" in markdown
    assert "| resident | " in markdown and "| s/step |" in markdown


def test_the_full_size_families_run_in_bf16_at_1024_on_cuda(gpu_suite) -> None:
    cuda = gpu_suite.CUDA_CONFIG
    assert (cuda.flux.model, cuda.sd3.model, cuda.family_dtype) == ("random-flux", "random-sd3", "bf16")
    assert cuda.flux.size == cuda.sd3.size == 1024


def test_sections_can_be_chosen_and_unknown_ones_are_refused(gpu_suite) -> None:
    config, _ = gpu_suite.parse_args(["--device", "cpu", "--sections", "batch,compile", "--no-adherence"])
    assert config.sections == ("batch", "compile") and config.adherence is False
    assert gpu_suite.parse_args(["--sections", "all"])[0].sections == gpu_suite.SECTIONS
    assert "flux" not in gpu_suite.parse_args([])[0].sections
    with pytest.raises(SystemExit):
        gpu_suite.parse_args(["--sections", "compile,warp-speed"])
