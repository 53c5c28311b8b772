"""The command line: a thin click layer over manifest -> batch -> report.

Exit codes: 0 every item done; 1 some items failed; 2 manifest or usage error (nothing generated);
130 interrupted (SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import click

from rr_controlnet import __version__
from rr_controlnet.errors import ManifestError, RrControlnetError
from rr_controlnet.manifest import Manifest, Overrides, load_manifest
from rr_controlnet.presets import PRESETS

EXIT_OK: Final = 0
EXIT_ITEMS_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_CODES_BY_SIGNAL: Final = {"SIGINT": 130, "SIGTERM": 143}
DEBUG_ENV: Final = "RR_CONTROLNET_DEBUG"

EXAMPLES: Final = """
\b
Examples:
  rr-controlnet batch manifests/example.yaml --model tiny-sd15 --steps 4
  rr-controlnet batch manifests/example.yaml --model sd15 --out results/
  rr-controlnet validate manifests/example.yaml
  rerun manifests/example-output/
"""


class UsageFailure(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        click.echo(self.format_message(), err=True)


def default_out_dir(manifest_path: Path) -> Path:
    """An output folder beside the manifest, named after it."""
    return manifest_path.parent / f"{manifest_path.stem}-output"


@click.group(epilog=EXAMPLES)
@click.version_option(__version__, prog_name="rr-controlnet")
def cli() -> None:
    """Canny ControlNet image generation in batches, recorded step by step for the Rerun viewer."""


def _load_or_fail(manifest_path: Path, overrides: Overrides) -> Manifest:
    try:
        return load_manifest(manifest_path, overrides)
    except ManifestError as exc:
        count = len(exc.problems)
        raise UsageFailure(
            f"{exc}\n{count} problem{'s' if count != 1 else ''} in {manifest_path}; nothing was generated"
        ) from None


@cli.command()
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--model", type=click.Choice(list(PRESETS)), help="Model preset; overrides the manifest's model.")
def validate(manifest_path: Path, model: str | None) -> None:
    """Check a manifest (fields, ranges, ids, image files) without loading any model."""
    manifest = _load_or_fail(manifest_path, Overrides(model=model))
    count = len(manifest.items)
    click.echo(f"{manifest_path}: ok, {count} item{'s' if count != 1 else ''}, model {manifest.model.name}")


@cli.command(epilog=EXAMPLES)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder [default: MANIFEST's name + '-output', beside it].",
)
@click.option("--model", type=click.Choice(list(PRESETS)), help="Model preset; overrides the manifest's model.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "cpu", "mps"]),
    default="auto",
    show_default=True,
    help="auto: cuda if available, else cpu.",
)
@click.option(
    "--dtype",
    type=click.Choice(["auto", "fp16", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="auto: fp16 on CUDA, fp32 on CPU.",
)
@click.option("--steps", type=click.IntRange(1, 1000), help="Denoising steps for every item.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Seed for every item.")
@click.option("--force", is_flag=True, help="Regenerate items that are already up to date in the output folder.")
@click.option(
    "--preview",
    type=click.Choice(["x0", "vae", "none"]),
    default="x0",
    show_default=True,
    help="Per-step preview: x0 = latent-to-RGB of the x0 estimate (cheap), vae = full VAE decode (slow).",
)
@click.option(
    "--latent-every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Record the latent tensor every N steps.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Items with equal size and settings per pipeline call.",
)
@click.option("--allow-unsafe-weights", is_flag=True, help="Allow pickle-based checkpoints (.ckpt, .bin, .pt, .pth).")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bars on stderr [default: when stderr is a terminal]."
)
def batch(
    manifest_path: Path,
    out_dir: Path | None,
    model: str | None,
    device: str,
    dtype: str,
    steps: int | None,
    seed: int | None,
    force: bool,
    preview: str,
    latent_every: int,
    batch_size: int,
    allow_unsafe_weights: bool,
    progress: bool | None,
) -> None:
    """Generate every item of MANIFEST: one .rrd, one .png per item, summary.json and batch.rbl."""
    from rr_controlnet.batch import BatchOptions, StopRequest, run_batch
    from rr_controlnet.models import quiet_library_logging

    manifest = _load_or_fail(manifest_path, Overrides(model=model, steps=steps, seed=seed))
    quiet_library_logging()
    options = BatchOptions(
        out_dir=out_dir or default_out_dir(manifest_path),
        device=device,
        dtype=dtype,
        force=force,
        preview=preview,
        latent_every=latent_every,
        batch_size=batch_size,
        allow_unsafe_weights=allow_unsafe_weights,
        show_progress=sys.stderr.isatty() if progress is None else progress,
    )
    stop = StopRequest()
    with _stop_on_signals(stop):
        try:
            report = run_batch(manifest, options, stop)
        except RrControlnetError as exc:
            raise UsageFailure(f"error: {exc}") from None
    counts = report.summary.counts()
    skipped = f", {len(report.skipped)} skipped (up to date)" if report.skipped else ""
    click.echo(
        f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} pending{skipped}; "
        f"output in {options.out_dir} (open with: rerun {options.out_dir})",
        err=True,
    )
    if report.stopped_by:
        click.echo(f"stopped by {report.stopped_by}; rerun the same command to finish the rest", err=True)
        sys.exit(EXIT_CODES_BY_SIGNAL.get(report.stopped_by, 130))
    sys.exit(EXIT_ITEMS_FAILED if counts["failed"] else EXIT_OK)


@contextlib.contextmanager
def _stop_on_signals(stop) -> Iterator[None]:
    """SIGINT/SIGTERM ask the batch to stop at the next step; a second SIGINT stops at once."""

    def request_stop(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.requested:
            # Finished items are already complete on disk; the item in flight only has
            # temporary files, which the next run removes.
            click.echo(f"\n{name} again: exiting now", err=True)
            os._exit(EXIT_CODES_BY_SIGNAL.get(name, 130))
        stop.signal_name = name
        click.echo(f"\n{name}: stopping after the current step...", err=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except Exception as exc:  # the CLI edge: users get one line, developers can ask for the traceback
        if os.environ.get(DEBUG_ENV):
            raise
        click.echo(f"error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)", err=True)
        sys.exit(EXIT_ITEMS_FAILED)
