"""Where users meet the tool besides the batch: `run`, the viewer, the importer, CI artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    blueprint_active_tab,
    decoded_image,
    free_port,
    read_recording,
    recording_properties,
    run_cli,
    sample_image,
    tiny_manifest,
)
from PIL import Image

from rr_controlnet.run.original import BUNDLED_LOGO, ORIGINAL_NEGATIVE_PROMPT, ORIGINAL_PROMPT

IMPORTER = Path(sys.executable).with_name("rerun-importer-rr-controlnet")


def invoke(*args: str):
    return run_cli(*args, exit_code=None)


@pytest.fixture(scope="module")
def finished_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batch")
    result = invoke("batch", str(tiny_manifest(folder)), "--out", str(folder / "out"))
    assert result.exit_code == 0, result.output
    return folder / "out"


def test_run_is_the_original_single_image_job(tmp_path: Path) -> None:
    image = sample_image("astronaut.png", tmp_path)
    result = invoke(
        "run", "--img-path", str(tmp_path / image), "--prompt", "a red castle", "--negative-prompt", "blurry",
        "--headless", "--model", "tiny-sd15", "--steps", "2", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recording = read_recording(tmp_path / "out" / "astronaut.rrd")
    prompt = recording.static("/items/astronaut/prompt").columns["TextDocument:text"][0]
    assert "a red castle" in prompt and "blurry" in prompt
    params = recording.static("/items/astronaut/params").columns["TextDocument:text"][0]
    assert "| controlnet_conditioning_scale | 0.5 |" in params


def test_run_without_an_image_uses_the_bundled_rgba_logo_and_the_original_prompts(tmp_path: Path) -> None:
    result = invoke("run", "--headless", "--model", "tiny-sd15", "--steps", "1", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    recording = read_recording(tmp_path / "out" / "logo.rrd")
    logged = decoded_image(recording.static("/items/logo/input/image"))
    np.testing.assert_array_equal(logged, np.asarray(Image.open(BUNDLED_LOGO)))
    assert logged.shape[2] == 4
    prompt = recording.static("/items/logo/prompt").columns["TextDocument:text"][0]
    assert ORIGINAL_PROMPT in prompt and ORIGINAL_NEGATIVE_PROMPT in prompt


def test_python_dash_m_run_takes_the_original_flags(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rr_controlnet", "run", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--img-path", "--prompt", "--negative-prompt", "--spawn", "--connect", "--serve-web", "--headless"):
        assert flag in result.stdout


def test_output_pngs_carry_their_generation_parameters(finished_batch: Path) -> None:
    image = Image.open(finished_batch / "horse.png")
    parameters = image.text["parameters"]
    prompt, negative, settings = parameters.split("\n")
    assert prompt == "a futuristic research complex" and negative == "Negative prompt: "
    for expected in ("Steps: 3", "Sampler: DDIMScheduler", "CFG scale: 7.5", "Seed: 5", "Size: 64x64"):
        assert expected in settings
    assert 'ControlNet 0: "Module: canny, Model: tiny-sd15, Weight: 0.5' in settings
    full = json.loads(image.text["rr-controlnet"])
    (summary_item,) = [
        i for i in json.loads((finished_batch / "summary.json").read_text())["items"] if i["id"] == "horse"
    ]
    assert full["params"] == summary_item["params"] and full["params_hash"] == summary_item["params_hash"]


def test_every_item_file_names_the_batch_and_opens_on_its_first_item(finished_batch: Path) -> None:
    files = sorted(finished_batch.glob("*.rrd"))
    properties = [recording_properties(path) for path in files]
    assert len(files) == 2 and properties[0] == properties[1]  # merged, the files agree
    assert properties[0]["name"] == "manifest.yaml → out"
    assert properties[0]["start_time"] > 0
    assert [blueprint_active_tab(path) for path in files] == ["astronaut", "astronaut"]
    assert blueprint_active_tab(finished_batch / "batch.rbl") == "astronaut"


def test_run_names_its_recording_after_the_output_folder(tmp_path: Path) -> None:
    result = invoke("run", "--headless", "--model", "tiny-sd15", "--steps", "1", "--out", str(tmp_path / "castle"))
    assert result.exit_code == 0, result.output
    assert recording_properties(tmp_path / "castle" / "logo.rrd")["name"] == "castle"


def test_overview_and_markdown_summary_are_written(finished_batch: Path) -> None:
    overview = Image.open(finished_batch / "overview.png")
    assert overview.width > 3 * 64 and overview.height > 2 * 64
    markdown = (finished_batch / "summary.md").read_text()
    assert "| item | status | seed | seconds | files |" in markdown
    assert "| astronaut | done | 0 |" in markdown and "| horse | done | 5 |" in markdown


def test_summary_to_appends_to_a_job_summary(tmp_path: Path) -> None:
    job_summary = tmp_path / "step-summary.md"
    job_summary.write_text("# earlier steps\n")
    result = invoke(
        "batch", str(tiny_manifest(tmp_path)), "--out", str(tmp_path / "out"), "--summary-to", str(job_summary)
    )
    assert result.exit_code == 0, result.output
    text = job_summary.read_text()
    assert text.startswith("# earlier steps\n") and "| horse | done | 5 |" in text


def test_view_opens_the_item_files_and_the_blueprint_not_the_pngs(
    finished_batch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched = []
    monkeypatch.setattr(os, "execv", lambda program, argv: launched.append(argv))
    result = invoke("view", str(finished_batch))
    assert result.exit_code == 0, result.output
    (argv,) = launched
    assert Path(argv[0]).name == "rerun"
    assert [Path(arg).name for arg in argv[1:]] == ["astronaut.rrd", "horse.rrd", "batch.rbl"]


def test_schema_command_prints_the_shipped_schema() -> None:
    result = invoke("schema")
    shipped = Path(__file__).resolve().parent.parent / "manifests" / "manifest.schema.json"
    assert result.exit_code == 0 and result.output == shipped.read_text()
    example = (shipped.parent / "example.yaml").read_text()
    assert example.startswith("# yaml-language-server: $schema=manifest.schema.json\n")


def test_no_save_needs_a_live_viewer(tmp_path: Path) -> None:
    result = invoke("batch", str(tiny_manifest(tmp_path)), "--no-save")
    assert result.exit_code == 2
    assert "--no-save writes nothing without --spawn, --connect or --serve-web" in result.output


def test_viewer_flags_are_exclusive(tmp_path: Path) -> None:
    result = invoke("batch", str(tiny_manifest(tmp_path)), "--spawn", "--headless")
    assert result.exit_code == 2 and "choose one of" in result.output


def run_importer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(IMPORTER), *args], capture_output=True)


def test_importer_streams_a_manifest_under_the_viewers_prefix(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    viewer_args = ["--application-id", "viewer_app", "--recording-id", "rec-1", "--opened-application-id", "x"]
    viewer_args += ["--entity-path-prefix", "dropped/here", "--time_sequence", "frame=3", "--static", "--new-flag"]
    generated = run_importer(str(manifest), *viewer_args)  # nothing generated yet: generates and streams live
    assert generated.returncode == 0, generated.stderr.decode()
    replayed = run_importer(str(manifest), *viewer_args)  # now replayed from the saved files
    assert replayed.returncode == 0, replayed.stderr.decode()
    assert (tmp_path / "manifest-output" / "horse.rrd").exists()
    for name, stream in (("generated", generated.stdout), ("replayed", replayed.stdout)):
        path = tmp_path / f"{name}.rrd"
        path.write_bytes(stream)
        recording = read_recording(path)
        assert (recording.application_id, recording.recording_id) == ("viewer_app", "rec-1")
        root = "/dropped/here/items/horse"
        assert {f"{root}/{entity}" for entity in ("input/image", "input/canny", "latent", "preview", "output")} <= set(
            recording.rows
        )
        assert [row.step for row in recording.timed(f"{root}/latent")] == [0, 1, 2]
        assert decoded_image(recording.timed(f"{root}/output")[0]).shape == (64, 64, 3)


def test_importer_declines_what_is_not_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("name: not a manifest\nitems: 3\n")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.yaml").write_text("{{{")
    for path in (tmp_path / "other.yaml", tmp_path / "notes.txt", tmp_path / "broken.yaml", tmp_path, tmp_path / "no"):
        result = run_importer(str(path), "--application-id", "a", "--recording-id", "r")
        assert result.returncode == 66, path
        assert result.stdout == b""


def test_connect_refuses_to_start_without_a_viewer(tmp_path: Path) -> None:
    result = invoke(
        "batch",
        str(tiny_manifest(tmp_path)),
        "--out",
        str(tmp_path / "out"),
        "--connect=rerun+http://127.0.0.1:1/proxy",
    )
    assert result.exit_code == 2
    assert "no Rerun viewer is listening at rerun+http://127.0.0.1:1/proxy" in result.output
    assert not (tmp_path / "out").exists()


def test_spawn_hands_rerun_an_enabled_recording(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import rerun as rr

    from rr_controlnet.manifest.document import load_manifest
    from rr_controlnet.recording import viewer

    spawned = {}
    monkeypatch.setattr(rr, "spawn", lambda **kwargs: spawned.update(kwargs))
    monkeypatch.setattr(viewer, "require_reachable", lambda url, wait_seconds=0: None)
    manifest = load_manifest(tiny_manifest(tmp_path))
    live = viewer.start_live_viewer(spawn=True, connect_url=None, serve_web=False, manifest=manifest, out_dir=tmp_path)
    assert live.url == viewer.DEFAULT_GRPC_URL
    assert spawned["connect"] is False and spawned["recording"].is_enabled()


def test_ctrl_c_before_any_item_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from rr_controlnet import cli as cli_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.cli, "main", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main()
    assert exit_info.value.code == 130


def serve_web(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bind: str | None = None):
    from rr_controlnet.manifest.document import load_manifest
    from rr_controlnet.recording import viewer

    # Free ports: other runs may hold the defaults.
    monkeypatch.setattr(viewer, "VIEWER_PORT", free_port())
    monkeypatch.setattr(viewer, "WEB_VIEWER_PORT", free_port())
    manifest = load_manifest(tiny_manifest(tmp_path))
    return viewer.start_live_viewer(False, None, True, manifest, tmp_path, bind)


def listening(pid: int) -> set[tuple[str, int]]:
    """Where a process and those it started listen (`rerun` on PATH may be a script starting the binary)."""
    import psutil

    process = psutil.Process(pid)
    connections = [c for each in (process, *process.children(recursive=True)) for c in each.net_connections("tcp")]
    return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}


def test_serve_web_serves_the_viewer_page_and_a_grpc_endpoint_on_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import urllib.request

    from rr_controlnet.recording import viewer
    from rr_controlnet.recording.layout import run_recording_id

    live = serve_web(monkeypatch, tmp_path)
    try:
        viewer.require_reachable(live.url, wait_seconds=10)  # the gRPC server items stream into
        assert live.url == f"rerun+http://127.0.0.1:{viewer.VIEWER_PORT}/proxy"
        assert live.server.get_recording_id() == run_recording_id(tmp_path)  # the batch's recording, no other
        assert listening(live.process.pid) == {("127.0.0.1", viewer.VIEWER_PORT), ("127.0.0.1", viewer.WEB_VIEWER_PORT)}
        assert "warning" not in live.description
        page = live.description.split("open ", 1)[1]
        assert page.startswith(f"http://127.0.0.1:{viewer.WEB_VIEWER_PORT}/?url=")
        with urllib.request.urlopen(page, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read(2000).lower()
    finally:
        viewer.stop_server(live.process)
    assert live.process.poll() is not None


def test_serve_web_on_another_address_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rr_controlnet.recording import viewer

    live = serve_web(monkeypatch, tmp_path, "0.0.0.0")
    try:
        warning, serving = live.description.split("\n")
        assert warning == "warning: listening on 0.0.0.0: prompts and images become visible to that network"
        assert serving.startswith("serving the web viewer: open http://127.0.0.1:")
        assert listening(live.process.pid) == {("0.0.0.0", viewer.VIEWER_PORT), ("0.0.0.0", viewer.WEB_VIEWER_PORT)}
    finally:
        viewer.stop_server(live.process)


def test_bind_needs_serve_web(tmp_path: Path) -> None:
    result = run_cli("batch", tiny_manifest(tmp_path), "--bind", "0.0.0.0", exit_code=2)
    assert "error: --bind is where --serve-web listens: add --serve-web" in result.output


def test_importer_answers_help() -> None:
    result = run_importer("--help")
    assert result.returncode == 0
    assert b"usage: rerun-importer-rr-controlnet" in result.stdout and result.stderr == b""


def test_importer_explains_an_unusable_output_folder_without_a_traceback(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    (tmp_path / "manifest-output").write_text("a file where the output folder would go")
    result = run_importer(str(manifest), "--application-id", "a", "--recording-id", "r")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert f"output folder {tmp_path}/manifest-output: {tmp_path}/manifest-output is a file, not a folder" in stderr


def test_importer_reports_a_manifest_with_repeated_keys_instead_of_declining_it(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    manifest.write_text(manifest.read_text().replace("version: 1\n", "version: 1\nversion: 1\n", 1))
    result = run_importer(str(manifest), "--application-id", "a", "--recording-id", "r")
    assert result.returncode == 2 and result.stdout == b""
    assert f"{manifest}:2: duplicate key 'version' (first on line 1)" in result.stderr.decode()
