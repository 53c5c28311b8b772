"""The command line: parses arguments, calls rr_controlnet.api, and turns errors into messages and exit codes.

Exit codes: 0 every item done; 1 some items failed; 2 manifest or usage error (nothing generated);
70 an internal error (a bug: its traceback is written to a file); 130 interrupted (SIGINT); 143
terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import click

from rr_controlnet import api
from rr_controlnet.errors import Interrupted, ManifestError, OutputWriteError, RrControlnetError

EXIT_OK: Final = 0
EXIT_ITEMS_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERNAL_ERROR: Final = 70  # EX_SOFTWARE of sysexits.h: not a failed item, not a usage error
DEBUG_ENV: Final = "RR_CONTROLNET_DEBUG"

EXAMPLES: Final = """
\b
Examples:
  rr-controlnet batch manifests/example.yaml --model tiny-sd15 --steps 4
  rr-controlnet batch manifests/example.yaml --model sd15 --out results/ --spawn
  rr-controlnet validate manifests/example.yaml
  rr-controlnet run --img-path photo.jpg --prompt "a castle at dusk"
  rr-controlnet view manifests/example-output/
  rr-controlnet compare accepted-output/ manifests/example-output/
  rr-controlnet review manifests/example-output/
  rr-controlnet fetch sdxl            # the weights, into the Hugging Face cache, before a batch
  rr-controlnet models                # what each model loads, and what the cache holds
"""


class UsageFailure(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class ItemsFailure(UsageFailure):
    """Some items could not be completed (a full disk): exit 1, like failed items."""

    exit_code = EXIT_ITEMS_FAILED


class Stopped(UsageFailure):
    """A stop before the batch began (while joining a Ray cluster): the signal's exit code, 130 or 143."""

    def __init__(self, message: str, signal_name: str | None):
        super().__init__(message)
        self.exit_code = api.EXIT_CODES_BY_SIGNAL.get(signal_name or "SIGINT", 130)


@click.group(epilog=EXAMPLES)
@click.version_option(api.__version__, prog_name="rr-controlnet")
def cli() -> None:
    """Canny ControlNet image generation in batches, recorded step by step for the Rerun viewer."""


@contextlib.contextmanager
def _exit_codes(
    source: str | None = None, outcome: str = "nothing was generated", written: str = "", write_code: int = 1
) -> Iterator[None]:
    """Our errors as messages and exit codes: a manifest's problems, every one (2); a file that could not be
    written (`write_code`, 1 by default: what was finished is kept), `written` added; anything else (2)."""
    try:
        yield
    except ManifestError as exc:
        count, where = len(exc.problems), source or (exc.problems[0].file if exc.problems else "the manifest")
        raise UsageFailure(f"{exc}\n{count} problem{'s' if count != 1 else ''} in {where}; {outcome}") from None
    except OutputWriteError as exc:
        raise (ItemsFailure if write_code == EXIT_ITEMS_FAILED else UsageFailure)(f"error: {exc}{written}") from None
    except Interrupted as exc:
        raise Stopped(f"{exc}; {outcome}", exc.signal_name) from None
    except RrControlnetError as exc:
        raise UsageFailure(f"error: {exc}") from None


def summary_to_option(document: str) -> Callable:
    """--summary-to FILE: a job summary (such as $GITHUB_STEP_SUMMARY) to append `document` to."""
    return click.option(
        "--summary-to",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"Append {document} to this file, e.g. $GITHUB_STEP_SUMMARY.",
    )


def bind_option(server: str) -> Callable:
    """--bind ADDRESS: where a server listens; loopback unless told otherwise."""
    return click.option(
        "--bind", metavar="ADDRESS",
        help=f"The address {server} listens on [default: 127.0.0.1, this machine alone]; another makes prompts "
             "and images visible to that network.",
    )  # fmt: skip


max_items_option = click.option(
    "--max-items", type=click.IntRange(1), default=api.DEFAULT_MAX_ITEMS, show_default=True,
    help="Refuse a manifest whose sweeps expand it to more variants than this.",
)  # fmt: skip


def _run_option_range(name: str) -> click.IntRange:
    """A numeric option's range, as api.BatchOptions checks it."""
    return click.IntRange(*api.run_option_range(name))


def generation_options(command: Callable) -> Callable:
    """Options shared by `batch` and `run`: the model, the device and what gets recorded."""
    options = [
        click.option("--model", type=click.Choice(api.PRESET_NAMES), help="Model preset; overrides the manifest's."),
        click.option(
            "--device", type=click.Choice(api.DEVICES), default="auto", show_default=True,
            help="auto: cuda if available, else cpu.",
        ),
        click.option(
            "--dtype", type=click.Choice(api.DTYPES), default="auto", show_default=True,
            help="auto: fp16 on CUDA, fp32 on CPU.",
        ),
        click.option("--steps", type=click.IntRange(1, 1000), help="Denoising steps for every item."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Seed for every item."),
        click.option("--force", is_flag=True, help="Regenerate items already up to date in the output folder."),
        click.option(
            "--preview", type=click.Choice(api.PREVIEW_MODES), default="x0", show_default=True,
            help="Per-step preview: x0 = linear latent-to-RGB of the x0 estimate (near free), taesd = tiny "
                 "autoencoder on x0 (full size), vae = full VAE decode of x_t (slow, the original example's).",
        ),
        click.option("--latent-every", type=_run_option_range("latent_every"), default=1, show_default=True,
                     help="Record the latent tensor every N steps."),
        click.option("--batch-size", type=_run_option_range("batch_size"), default=1, show_default=True,
                     help="Items with equal size and settings per pipeline call."),
        click.option("--offload", is_flag=True, help="CUDA: keep models on the CPU until they run (small GPUs)."),
        click.option("--compile", "compile_models", is_flag=True,
                     help="CUDA: torch.compile the UNet or transformer and the ControlNet "
                          "(slow first item, faster after)."),
        click.option("--allow-unsafe-weights", is_flag=True,
                     help="Allow pickle-based checkpoints (.ckpt, .bin, .pt, .pth)."),
        click.option("--adherence/--no-adherence", default=True, show_default=True,
                     help="Score each output's Canny edges against its control map."),
        click.option("--threads", type=_run_option_range("threads"), default=None,
                     help="CPU threads for torch [default: torch's choice]; CPU results depend on it."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bars on stderr, downloads' included [default: when stderr is a terminal]."),
        click.option("--spawn", is_flag=True, help="Start a Rerun viewer and stream into it live."),
        click.option("--connect", "connect_url", is_flag=False, flag_value=api.DEFAULT_GRPC_URL, default=None,
                     metavar="[URL]", help=f"Stream live to a running viewer [URL default: {api.DEFAULT_GRPC_URL}]."),
        click.option("--serve-web", is_flag=True, help="Serve the web viewer and stream into it live."),
        bind_option("--serve-web"),
        click.option("--headless", is_flag=True, help="No viewer: files only."),
        click.option("--no-save", is_flag=True, help="Write no .rrd files (only with a live viewer)."),
        summary_to_option("summary.md"),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--model", type=click.Choice(api.PRESET_NAMES), help="Model preset; overrides the manifest's model.")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
    help="Output folder to check the items' outputs against [default: as for batch].",
)  # fmt: skip
@max_items_option
def validate(manifest_path: Path, model: str | None, out_dir: Path | None, max_items: int) -> None:
    """Check a manifest (fields, ranges, ids, sweeps, image files, outputs) without loading any model."""
    with _exit_codes(str(manifest_path)):
        manifest = api.validate_manifest(manifest_path, api.Overrides(model=model), out_dir, max_items)
    variants = [item for item in manifest.items if item.sweep is not None]
    sources = len({variant.sweep.source for variant in variants})
    swept = f" ({_counted(len(variants), 'sweep variant')} of {_counted(sources, 'item')})" if variants else ""
    family = f" (family {manifest.model.family})" if manifest.model.name == "custom" else ""  # read from its folders
    click.echo(
        f"{manifest_path}: ok, {_counted(len(manifest.items), 'item')}{swept}, model {manifest.model.name}{family}"
    )


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.command(epilog=EXAMPLES)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
    help="Output folder [default: MANIFEST's name + '-output', beside it].",
)  # fmt: skip
@click.option("--shard", "shard_text", metavar="I/N", help="Generate only shard I of N (0-based; items round-robin), "
              "e.g. for job arrays; then `rr-controlnet summarize OUT`.")  # fmt: skip
@click.option("--ray", "use_ray", is_flag=True, help="Run the items on Ray workers (pip install 'rr-controlnet[ray]'); "
              "this process writes the output folder.")  # fmt: skip
@click.option("--ray-address", metavar="ADDRESS", help="The Ray cluster to join: HOST:PORT, or `auto` for one running "
              "here; implies --ray [default: RAY_ADDRESS, else a Ray of the batch's own].")  # fmt: skip
@click.option("--workers", type=click.IntRange(1), help="Ray workers [default: one per GPU in the cluster; needed "
              "on CPUs].")  # fmt: skip
@max_items_option
@generation_options
def batch(
    manifest_path: Path,
    out_dir: Path | None,
    shard_text: str | None,
    use_ray: bool,
    ray_address: str | None,
    workers: int | None,
    max_items: int,
    **flags: Any,
) -> None:
    """Generate every item of MANIFEST: one .rrd and .png per item, summary.json, summary.md, overview.png.

    Under torchrun or `accelerate launch`, each process takes its share of the items on its own device,
    and rank 0 writes the summary for the whole batch once all are done. With --ray, Ray workers take
    the items from one queue and this process writes the folder.
    """
    with _exit_codes(str(manifest_path)):
        manifest = api.load_manifest(manifest_path, _overrides(flags), max_items=max_items)
    try:
        shard = api.parse_shard(shard_text) if shard_text else None
    except ValueError as exc:
        raise UsageFailure(f"error: --shard: {exc}") from None
    if workers is not None and not (use_ray or ray_address):
        raise UsageFailure("error: --workers sets how many Ray workers run: add --ray")
    options = _batch_options(out_dir or api.default_out_dir(manifest_path), shard, flags)
    if use_ray or ray_address:
        with _exit_codes("the command line"):
            options = replace(options, engine=api.RayOptions(ray_address, workers))
    _generate(manifest, options, flags, False)


@cli.command(epilog=EXAMPLES)
@click.option("--img-path", type=click.Path(path_type=Path, dir_okay=False),
              help="Input image [default: a bundled RGBA logo, as the original example used Rerun's].")  # fmt: skip
@click.option("--prompt", default=api.ORIGINAL_PROMPT, show_default=True, help="Positive prompt.")
@click.option("--negative-prompt", default=api.ORIGINAL_NEGATIVE_PROMPT, show_default=True, help="Negative prompt.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("rr-controlnet-run"),
              show_default=True, help="Output folder.")  # fmt: skip
@generation_options
def run(img_path: Path | None, prompt: str, negative_prompt: str, out_dir: Path, **flags: Any) -> None:
    """The original Rerun example's job: one image, one prompt, SDXL; a viewer opens unless --headless."""
    overrides = _overrides(flags)
    with _exit_codes("the command line"):
        manifest = api.original_manifest(img_path, prompt, negative_prompt, overrides.model, overrides)
    _generate(manifest, _batch_options(out_dir, None, flags), flags, True)


def _overrides(flags: dict[str, Any]) -> api.Overrides:
    return api.Overrides(model=flags["model"], steps=flags["steps"], seed=flags["seed"])


def _batch_options(out_dir: Path, shard: api.Shard | None, flags: dict[str, Any]) -> api.BatchOptions:
    """The batch's options from generation_options' flags, by name."""
    recording = api.RecordingOptions(
        preview=flags["preview"],
        latent_every=flags["latent_every"],
        save=not flags["no_save"],
        adherence=flags["adherence"],
    )
    return api.BatchOptions(
        out_dir=out_dir,
        device=flags["device"],
        dtype=flags["dtype"],
        force=flags["force"],
        batch_size=flags["batch_size"],
        allow_unsafe_weights=flags["allow_unsafe_weights"],
        threads=flags["threads"],
        recording=recording,
        summary_to=flags["summary_to"],
        shard=shard,
        offload=flags["offload"],
        compile_models=flags["compile_models"],
        download_bars=_shows_bars(flags["progress"]),
    )


def _shows_bars(progress: bool | None) -> bool:
    """--progress/--no-progress as given, or else bars when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress


def _live_viewing(flags: dict[str, Any], viewer_by_default: bool) -> api.LiveViewing | None:
    chosen = [flags["spawn"], flags["connect_url"] is not None, flags["serve_web"], flags["headless"]]
    if sum(chosen) > 1:
        raise UsageFailure("error: choose one of --spawn, --connect, --serve-web and --headless")
    if flags["connect_url"] is not None:
        live = api.LiveViewing("connect", flags["connect_url"])
    elif flags["serve_web"]:
        live = api.LiveViewing("serve-web", bind=flags["bind"])
    elif flags["spawn"] or (viewer_by_default and not flags["headless"]):
        live = api.LiveViewing("spawn")
    else:
        live = None
    if flags["bind"] is not None and not flags["serve_web"]:
        raise UsageFailure("error: --bind is where --serve-web listens: add --serve-web")
    if flags["no_save"] and live is None:
        raise UsageFailure("error: --no-save writes nothing without --spawn, --connect or --serve-web")
    return live


def _generate(manifest: api.Manifest, options: api.BatchOptions, flags: dict[str, Any], viewer_default: bool) -> None:
    """Run the batch through the API; report what happened and exit with its code."""
    api.limit_malloc_arenas()  # before the model libraries start their threads
    live = _live_viewing(flags, viewer_default)
    bars = _shows_bars(flags["progress"])
    stop = api.StopRequest()
    finished = "; finished items are complete: rerun to finish the rest"
    with api.stop_on_signals(stop, _log), _exit_codes(str(manifest.path), written=finished):
        report = api.run_manifest(manifest, options, live, stop, api.ProgressBars() if bars else None, _log)
    out_dir = options.out_dir
    counts = report.summary.counts()
    skipped = f", {len(report.skipped)} skipped (up to date)" if report.skipped else ""
    _log(
        f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} pending{skipped}; "
        f"output in {out_dir} (open with: {shlex.join(['rr-controlnet', 'view', str(out_dir)])})"
    )
    if report.stopped_by:
        _log(f"stopped by {report.stopped_by}; rerun the same command to finish the rest")
        sys.exit(api.EXIT_CODES_BY_SIGNAL.get(report.stopped_by, 130))
    if report.stop_reason:
        _log(f"stopped: {report.stop_reason}; rerun the same command to finish the rest")
        sys.exit(EXIT_ITEMS_FAILED)
    if report.review_error:
        sys.exit(EXIT_ITEMS_FAILED)
    if report.live is not None and report.live.server is not None:
        _log("the web viewer stays up until Ctrl-C")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    sys.exit(EXIT_ITEMS_FAILED if counts["failed"] else EXIT_OK)


def _log(message: str) -> None:
    click.echo(message, err=True)


@cli.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("item_patterns", metavar="[ITEM]...", nargs=-1)
def view(out_dir: Path, item_patterns: tuple[str, ...]) -> None:
    """Open a batch's output folder in one Rerun viewer, with the batch layout.

    ITEM ids or patterns (`cat`, `'horse*'`) open only those items, with a layout made for them.
    """
    with _exit_codes():
        command = api.viewer_command(out_dir, item_patterns)
    os.execv(command[0], command)  # noqa: S606 - the viewer replaces this process, as `rerun FILES` would


@cli.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(path_type=Path, file_okay=False, exists=True))
@summary_to_option("summary.md")
def summarize(out_dir: Path, summary_to: Path | None) -> None:
    """Merge the shard summaries in OUT (from `batch --shard I/N` runs) into one summary and blueprint."""
    with _exit_codes():
        summary = api.summarize_outputs(out_dir, summary_to)
    counts = summary.counts()
    click.echo(f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} pending; summary in {out_dir}")
    sys.exit(EXIT_ITEMS_FAILED if counts["failed"] else EXIT_OK)


@cli.command()
@click.argument("baseline", metavar="BASELINE", type=click.Path(path_type=Path, file_okay=False))
@click.argument("new", metavar="NEW", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where compare.json, compare.md and compare.rrd go [default: NEW/compare].")  # fmt: skip
@click.option("--max-cosine-distance", type=click.FloatRange(0, 2), default=api.MAX_COSINE_DISTANCE, show_default=True,
              help="Outputs further apart than this (1 - cosine similarity of the images) have changed.")  # fmt: skip
@click.option("--max-mean-difference", type=click.FloatRange(0, 255), default=api.MAX_MEAN_DIFFERENCE,
              show_default=True,
              help="Outputs whose mean absolute difference (0..255 levels) exceeds this have changed.")  # fmt: skip
@summary_to_option("compare.md")
@click.option("--update-baseline", is_flag=True,
              help="After comparing, make BASELINE a copy of NEW: the new run is accepted (exit 0). A BASELINE that "
                   "does not exist yet, or is empty, becomes the first (every item new).")  # fmt: skip
@click.option(
    "--accept",
    "accept_ids",
    metavar="ID[,ID...]",
    help="Accept only these changed or new items: copy them from NEW into BASELINE, the rest as it was.",
)
@click.option("--accept-from", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Accept the items a decisions.json (from the comparison page) accepts.")  # fmt: skip
@click.option(
    "--comment-to",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Write a short markdown comment for the pull request (within GitHub's 65,536 characters).",
)
@click.option("--artifact-url", default="", metavar="URL",
              help="Where the comparison folder can be browsed: the comment's links start with it.")  # fmt: skip
def compare(baseline: Path, new: Path, out_dir: Path | None, max_cosine_distance: float, max_mean_difference: float,
            summary_to: Path | None, update_baseline: bool, accept_ids: str | None, accept_from: Path | None,
            comment_to: Path | None, artifact_url: str) -> None:  # fmt: skip
    """Compare the output folder NEW against BASELINE, item by item.

    Outputs (difference, PSNR, SSIM, cosine distance), parameters, control adherence and, from the two
    recordings, the latents at every step. Exit 0 when every item is within the thresholds, 1 when any
    changed, is missing or failed, 2 when a folder cannot be compared or the report cannot be written.
    """
    if accept_ids is not None and accept_from is not None:
        raise UsageFailure("error: --accept and --accept-from both choose items: give one")
    with _exit_codes(write_code=EXIT_USAGE):  # a report that cannot be written judged nothing
        thresholds = api.Thresholds(max_cosine_distance, max_mean_difference)
        decisions = api.parse_ids(accept_ids) if accept_ids is not None else None
        decisions = api.read_decisions(accept_from) if accept_from is not None else decisions
        report = api.compare_runs(
            baseline, new, thresholds, out_dir, summary_to, update_baseline, decisions, comment_to, artifact_url
        )
    comparison, written = report.comparison, report.written
    counts = ", ".join(f"{count} {status}" for status, count in comparison.counts().items())
    _log(f"{counts}; report in {written[1]} and {written[2]}; open {written[3]} in a browser")
    if comment_to is not None:
        _log(f"pull request comment: {comment_to}")
    if update_baseline:
        _log(f"baseline updated: {baseline} is now a copy of {new}")
        sys.exit(EXIT_OK)
    if report.accepted:
        _log(f"accepted into {baseline}: {', '.join(report.accepted)} (logged in {baseline}/accepted.jsonl)")
        sys.exit(EXIT_OK)
    sys.exit(EXIT_OK if comparison.passed else EXIT_ITEMS_FAILED)


@cli.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--serve", is_flag=True, help="Then serve OUT and the Rerun web viewer over HTTP until Ctrl-C: each "
              "item's \"Open in Rerun\" opens its recording in the browser.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535),
              help="The port --serve listens on (0: any free one) [default: 8765].")  # fmt: skip
@bind_option("--serve")
def review(out_dir: Path, serve: bool, port: int | None, bind: str | None) -> None:
    """Write OUT/index.html again: the batch's review page, from OUT/summary.json (after `summarize`, or for
    a folder made before the page existed: missing thumbnails are made from the item files)."""
    with _exit_codes():
        page = api.write_review_page(out_dir, _log)
    click.echo(f"review page: {page} (open it in a browser)")
    if serve:
        with _exit_codes():
            api.serve_review(out_dir, bind, port, _log)


weights_dtype_option = click.option(
    "--dtype", type=click.Choice(api.DTYPES), default="auto", show_default=True,
    help="For runs in this dtype: fp16 reads fp16 weight files where a repo publishes them, the others the full "
         "ones [auto: fp16 where CUDA is available, fp32 elsewhere, as batch decides].",
)  # fmt: skip


@cli.command()
@click.argument("targets", metavar="[MODEL|MANIFEST]...", nargs=-1)
@weights_dtype_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows and the cache folders as JSON.")
def models(targets: tuple[str, ...], dtype: str, as_json: bool) -> None:
    """What each model loads and what this machine holds of it: every preset, or the given presets and
    manifests' models (with their control units' ControlNets). A row per component: its repo or path, the
    weights that would load, whether the cache holds them and their size (or what fetching would download);
    what each preset's ControlNet weighs in fp16/bf16, computed from its config (a random preset's is its
    published twin's); then the cache folders."""
    import json
    from dataclasses import asdict

    with _exit_codes(outcome="nothing was listed"):
        rows = api.model_statuses(targets, dtype)
    folders = api.cache_folders()
    if as_json:
        click.echo(json.dumps({"components": [asdict(row) for row in rows], "caches": folders}, indent=2))
        return
    click.echo(api.models_table(rows))
    click.echo("")
    for name, folder in folders.items():
        click.echo(f"{name}={folder}")


@cli.command()
@click.argument("targets", metavar="MODEL|MANIFEST...", nargs=-1, required=True)
@weights_dtype_option
@click.option("--progress/--no-progress", default=None,
              help="The hub's download bars on stderr [default: when stderr is a terminal].")  # fmt: skip
def fetch(targets: tuple[str, ...], dtype: str, progress: bool | None) -> None:
    """Download what the given presets or manifests load into the Hugging Face cache, and nothing else.

    fp16 weight files where a repo publishes them (for fp16 runs), safetensors only; tiny presets are built
    into their folder. Already cached: says so. Offline or without the hub in reach: exit 2, naming every
    missing repo. For CI, cache ~/.cache/huggingface and ~/.cache/rr-controlnet and run this before batch.
    """
    with _exit_codes(outcome="nothing was fetched"):
        api.fetch_models(targets, dtype, _shows_bars(progress), _log)


@cli.command()
def schema() -> None:
    """Print the manifest's JSON Schema (for editors: `# yaml-language-server: $schema=...`)."""
    click.echo(api.manifest_schema(), nl=False)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        # Ctrl-C before any item started (while importing or loading): nothing to keep.
        click.echo("\ninterrupted", err=True)
        sys.exit(api.EXIT_CODES_BY_SIGNAL["SIGINT"])
    except Exception as exc:  # the CLI edge: users get one line and a file with the traceback
        if os.environ.get(DEBUG_ENV) or getattr(sys, "_called_from_test", False):
            raise  # under tests (conftest sets the flag, and DEBUG_ENV for the CLIs they start) a bug shows whole
        click.echo(f"error: internal error, {type(exc).__name__}: {exc} ({_traceback_note(exc)})", err=True)
        sys.exit(EXIT_INTERNAL_ERROR)


def _traceback_note(exc: BaseException) -> str:
    """Where the traceback of an unexpected error went: a file in the temporary folder, else stderr."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    name = f"rr-controlnet-error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    path = Path(tempfile.gettempdir()) / name
    try:
        path.write_text(f"rr-controlnet {api.__version__}: {' '.join(sys.argv)}\n\n{text}", encoding="utf-8")
    except OSError:
        click.echo(text, err=True, nl=False)
        return "a bug: its traceback is above; please report it"
    return f"a bug: its traceback is in {path}; please report it, or set {DEBUG_ENV}=1 to see it here"
