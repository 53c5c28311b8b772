"""Control units on Ray: each job carries its items' maps with their input images; workers draw what one
process draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import read_recording, run_batch, summary_items
from PIL import Image
from test_control_units import DEPTH, units_manifest

pytestmark = pytest.mark.integration

pytest.importorskip("ray", reason="the ray extra: pip install 'rr-controlnet[ray]'")


def test_units_with_user_maps_run_on_ray_as_in_one_process(tmp_path: Path) -> None:
    items = [
        {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH]},
        {"image": "astronaut.png", "controls": [{"type": "canny"}, DEPTH], "sweep": {"controls.1.scale": [0.2, 1.2]}},
    ]
    manifest = units_manifest(tmp_path, items=items)
    run_batch(manifest, tmp_path / "local", "--no-adherence", "--threads", "1")  # the workers' thread count
    run_batch(manifest, tmp_path / "ray", "--no-adherence", "--ray", "--workers", "2", "--threads", "1")
    entries = summary_items(tmp_path / "ray")
    assert {entry["status"] for entry in entries.values()} == {"done"} and len(entries) == 3
    for item_id in entries:
        local = np.asarray(Image.open(tmp_path / "local" / f"{item_id}.png"))
        on_ray = np.asarray(Image.open(tmp_path / "ray" / f"{item_id}.png"))
        assert np.array_equal(local, on_ray), item_id
    recording = read_recording(tmp_path / "ray" / "astronaut_c1scale1.2.rrd")
    assert recording.entity("/items/astronaut_c1scale1.2/control/1-depth")


def test_a_job_carries_each_map_once_beside_its_input_images(tmp_path: Path) -> None:
    from rr_controlnet.manifest.document import load_manifest
    from rr_controlnet.run.plan import plan_items
    from rr_controlnet.run.ray.queue import Queue

    item = {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH], "sweep": {"seed": [1, 2]}}
    planned = plan_items(load_manifest(units_manifest(tmp_path, items=[item])), "fp32")
    queue = Queue(planned, batch_size=2, native=64, log=print)
    (job,) = queue.jobs  # both variants in one call: the same units, weights and ranges
    paths, *images = queue.images_for(job)
    assert paths == [tmp_path / "horse.png", tmp_path / "maps" / "depth" / "horse.png"]
    assert images[1] == (tmp_path / "maps" / "depth" / "horse.png").read_bytes()
