"""A Rerun importer: open a manifest in the viewer (`rerun manifest.yaml`, or drag and drop).

The viewer runs every executable named `rerun-importer-*` on files it cannot read itself:

    rerun-importer-rr-controlnet PATH --application-id A --recording-id R --entity-path-prefix P ...

For an rr-controlnet manifest this streams an RRD to stdout: items already generated in the
manifest's output folder are replayed from their files, the others are generated now, saved as
usual and streamed live. Anything else (other YAML, folders, other files) is declined with exit 66.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import DuplicateKeysError, ManifestError, RrControlnetError
from rr_controlnet.manifest.document import parse_manifest, read_yaml
from rr_controlnet.outputs.names import default_out_dir, recording_name
from rr_controlnet.recording.layout import APPLICATION_ID, items_blueprint, run_recording_id
from rr_controlnet.recording.write import Mirror, RecordingOptions
from rr_controlnet.run.batch import run_batch
from rr_controlnet.run.memory import limit_malloc_arenas
from rr_controlnet.run.options import BatchOptions

INCOMPATIBLE: Final = 66  # rr.EXTERNAL_IMPORTER_INCOMPATIBLE_EXIT_CODE, without importing rerun
MANIFEST_SUFFIXES: Final = (".yaml", ".yml")


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """The viewer's arguments; unknown ones (newer viewers add flags) are ignored."""
    parser = argparse.ArgumentParser(
        prog="rerun-importer-rr-controlnet",
        description="Rerun importer for rr-controlnet manifests: the viewer runs it on files it cannot open itself.",
    )
    parser.add_argument("path")
    parser.add_argument("--application-id")
    parser.add_argument("--recording-id")
    parser.add_argument("--opened-application-id")
    parser.add_argument("--opened-recording-id")
    parser.add_argument("--entity-path-prefix", default="")
    arguments, _ = parser.parse_known_args(argv)
    return arguments


def is_rr_controlnet_manifest(document: Any) -> bool:
    """Ours: a mapping with `version: 1` and a list of items, at least one with an image."""
    if not isinstance(document, Mapping) or document.get("version") != 1:
        return False
    items = document.get("items")
    return isinstance(items, list) and any(isinstance(item, Mapping) and "image" in item for item in items)


def main(argv: Sequence[str] | None = None) -> int:
    """Stream a manifest's batch to stdout (0), decline what is not ours (66), or explain a failure (2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(flag in argv for flag in ("-h", "--help")):
        parse_arguments(["--help"])  # prints the usage and exits 0
    try:
        arguments = parse_arguments(argv)
    except SystemExit:
        return INCOMPATIBLE

    limit_malloc_arenas()
    try:
        return _import(arguments)
    except Exception as exc:  # noqa: BLE001 - the viewer shows stderr; a traceback there helps nobody
        print(f"rr-controlnet importer: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _import(arguments: argparse.Namespace) -> int:
    path = Path(arguments.path)
    if not path.is_file() or path.suffix.lower() not in MANIFEST_SUFFIXES:
        return INCOMPATIBLE

    known_problems = []
    try:
        document = read_yaml(path)
    except DuplicateKeysError as exc:
        document, known_problems = exc.data, exc.problems
    except ManifestError:
        return INCOMPATIBLE
    if not is_rr_controlnet_manifest(document):
        return INCOMPATIBLE
    try:
        manifest = parse_manifest(document, path, known_problems=known_problems)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 2
    # Only the RRD stream may reach stdout; anything a library prints goes to stderr instead.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            stream_manifest(manifest, arguments)
        except RrControlnetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def stream_manifest(manifest: Any, arguments: argparse.Namespace) -> None:
    import rerun as rr

    out_dir = default_out_dir(manifest.path)
    prefix = arguments.entity_path_prefix or ""
    stream = rr.RecordingStream(
        arguments.application_id or APPLICATION_ID,
        recording_id=arguments.recording_id or run_recording_id(out_dir),
        send_properties=False,
    )
    stream.stdout(default_blueprint=items_blueprint(manifest.items, prefix=prefix))
    mirror = Mirror(stream, prefix)
    report = run_batch(manifest, BatchOptions(out_dir=out_dir, recording=RecordingOptions(mirror=mirror)))
    for item_id in report.skipped:
        mirror.replay(out_dir / recording_name(item_id))
    stream.flush()
    stream.disconnect()


def entry_point() -> None:
    sys.exit(main())
