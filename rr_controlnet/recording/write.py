"""Rerun recordings: one complete, verified .rrd file per item, and live streams to a viewer.

What is logged where is `rr_controlnet.recording.layout`'s: its entity paths, its blueprint. Every stream here
is explicit (never Rerun's global one), encodes into memory, and is flushed and closed within bounded
time: the files are written by Python, which reports a full disk that Rerun's own file sink would only
log, and take their final names once Rerun's reader has read them back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.control_maps import UnitMap, unit_name
from rr_controlnet.errors import OutputWriteError, UsageError
from rr_controlnet.images import encode_png
from rr_controlnet.manifest.checks import value_problems
from rr_controlnet.manifest.fields import RunOptions
from rr_controlnet.outputs.files import AtomicFile
from rr_controlnet.recording.layout import (
    APPLICATION_ID,
    LATENT_DIM_NAMES,
    PREVIEW_JPEG_QUALITY,
    STEP_TIMELINE,
    TIMESTEP_TIMELINE,
    LaidOut,
    RecordingProperties,
    item_paths,
    items_blueprint,
    unit_map_path,
)

# Encoding in memory takes milliseconds; a live viewer on a slow link may take longer.
FLUSH_SECONDS: Final = 60.0
# Closing a stream after a good flush only writes the file's footer; after a failed one it may never end.
DISCONNECT_SECONDS: Final = 10.0
DISCONNECT_AFTER_FAILURE_SECONDS: Final = 1.0
# A stream keeps some state for every entity path it has logged until it is closed, and rerun-sdk keeps
# every stream for good: closing a pooled stream after this many items holds memory near its least
# (about 5 KiB an item, against 16 KiB with one stream for all and 19 KiB with one per 100 items).
STREAM_ITEMS: Final = 1000
# What Rerun's reader warns (and does not raise) when a file ends before its footer: a file cut short.
MISSING_FOOTER_WARNING: Final = "RRD file has no footer"


def save_batch_blueprint(items: Sequence[LaidOut], path: Path) -> Path:
    """batch.rbl, or any .rbl: the blueprint of these items (a manifest's, or a folder's outcomes),
    complete or not written at all."""
    import rerun as rr

    blueprint = items_blueprint(items)
    # Encoded in memory and written by Python, which reports a full disk; Rerun's own file writer
    # (Blueprint.save) only logs write errors, and then blocks forever.
    stream = rr.RecordingStream(APPLICATION_ID, send_properties=False)
    pooled = PooledStream(stream, stream.binary_stream())
    stream.send_blueprint(blueprint, make_active=True, make_default=True)
    data, problem = _drain(pooled)
    return _write_verified(Path(path), data, problem)


def save_stream(stream: Any, binary: Any, path: Path) -> Path:
    """Close a stream that encoded into `binary` (its binary_stream) and write what it holds to `path`,
    complete and verified, or raise OutputWriteError."""
    data, problem = _drain(PooledStream(stream, binary))
    return _write_verified(Path(path), data, problem)


def rrd_reader(path: Path) -> Any:
    """Rerun's reader for a complete .rrd or .rbl file; a file without its footer (cut short) raises a
    RerunWarning, where Rerun itself only warns."""
    from rerun.chunk import RrdReader

    _raise_on_missing_footer()
    return RrdReader(str(path))


def _raise_on_missing_footer() -> None:
    import warnings

    from rerun.error_utils import RerunWarning

    # One filter for this one warning (adding it again replaces it). warnings.catch_warnings() would swap
    # the filters of the whole process while a file is read, under the feet of the batch's other thread:
    # a pipeline's own warning raised there as an error failed its item.
    warnings.filterwarnings("error", message=MISSING_FOOTER_WARNING, category=RerunWarning)


def rrd_problem(path: Path) -> str | None:
    """Why an .rrd or .rbl file is not complete, or None when Rerun's reader reads all of it."""
    try:
        reader = rrd_reader(path)
        for store in reader.recordings() + reader.blueprints():
            reader.stream(store=store).to_chunks()
    except (Warning, RuntimeError, ValueError, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _drain(pooled: PooledStream, disconnect: bool = True) -> tuple[bytes, str | None]:
    """Everything a stream encoded into its in-memory sink since the last drain (one complete .rrd),
    and what went wrong (or None).

    Flushing waits on live viewers too; it runs with a limit, and a stream that does not close in time
    is left behind rather than waited for.
    """
    problem = None
    data = b""
    try:
        pooled.stream.flush(timeout_sec=FLUSH_SECONDS)
    except RuntimeError as exc:  # a live viewer that does not keep up; the file's bytes are read below
        problem = str(exc)
    if pooled.binary is not None:
        try:
            data = pooled.binary.read(flush=True, flush_timeout_sec=FLUSH_SECONDS) or b""
        except RuntimeError as exc:
            problem = str(exc)
    if disconnect:
        seconds = DISCONNECT_AFTER_FAILURE_SECONDS if problem else DISCONNECT_SECONDS
        if not _bounded(pooled.stream.disconnect, seconds):
            import rerun as rr

            # The stream stays blocked; Rerun's exit handler would wait for it forever.
            rr.unregister_shutdown()
            problem = problem or "the recording could not be closed"
    return data, problem


def _write_verified(path: Path, data: bytes, problem: str | None) -> Path:
    """Write an encoded recording or blueprint atomically, once Rerun's reader has read all of it back."""
    target = AtomicFile(path)
    fill_verified(target, data, problem)
    return target.commit()


def fill_verified(target: AtomicFile, data: bytes, problem: str | None = None) -> None:
    """Fill a recording's temporary file and read it back with Rerun's reader; on any failure it is discarded
    and OutputWriteError raised (naming `problem`, what went wrong while encoding, when there was one)."""
    try:
        target.write_bytes(data)
        check = rrd_problem(target.partial)
        if check is not None:
            raise OutputWriteError(f"cannot write {target.final.name}: {problem or check}")
    except BaseException:
        target.discard()
        raise


def _bounded(work: Callable[[], Any], seconds: float) -> bool:
    """Run `work` on a helper thread; False when it has not finished within `seconds`."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="rr-controlnet-close", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return False
    if errors:
        raise errors[0]
    return True


@dataclass(frozen=True)
class RecordingOptions:
    """What gets recorded and scored, and where it goes besides the item's .rrd file; checked on
    construction with the command line's rules (UsageError naming every wrong field)."""

    preview: str = "x0"  # x0, taesd, vae or none
    latent_every: int = 1
    save: bool = True  # False: stream to a viewer only, write no .rrd
    live_url: str | None = None  # a Rerun gRPC endpoint that receives every item live
    mirror: Mirror | None = None  # one more stream that receives every item (the importer's)
    adherence: bool = True  # score each output's edges against its control (scikit-image, SciPy)

    def __post_init__(self) -> None:

        given = {"preview": self.preview, "latent_every": self.latent_every}
        problems = value_problems(RunOptions, given, "RecordingOptions")
        for name in ("save", "adherence"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"RecordingOptions.{name} must be True or False, got {getattr(self, name)!r}")
        if self.live_url is not None and not isinstance(self.live_url, str):
            problems.append(f"RecordingOptions.live_url must be a URL (text), got {self.live_url!r}")
        if self.mirror is not None and not isinstance(self.mirror, Mirror):
            problems.append(f"RecordingOptions.mirror must be a record.Mirror, got {self.mirror!r}")
        if problems:
            raise UsageError("; ".join(problems))


@dataclass(frozen=True)
class Mirror:
    """A second stream that receives every log call under an entity path prefix (the importer's stdout)."""

    stream: Any
    prefix: str = ""

    def path(self, entity_path: str) -> str:
        entity_path = entity_path.lstrip("/")
        return f"{self.prefix.strip('/')}/{entity_path}" if self.prefix.strip("/") else entity_path

    def replay(self, recording_file: Path) -> None:
        """Send a finished item's recorded chunks, re-rooted under the prefix."""
        # Only the item's data: the file's recording properties (name, start time) are not the importing
        # viewer's to take, and `__properties` may not move under a prefix.
        chunks = rrd_reader(recording_file).stream().filter(content="/items/**").to_chunks()
        self.stream.send_chunks([chunk.with_entity_path("/" + self.path(str(chunk.entity_path))) for chunk in chunks])


class StreamPool:
    """Recording streams of one batch, reused from item to item.

    rerun-sdk never frees a RecordingStream (rerun-io/rerun#2116): a stream per item would grow the
    process by megabytes and a thread with every item. Each pooled stream encodes into its own
    in-memory sink, which hands out one complete .rrd per item, and streams live to a viewer too.
    """

    def __init__(self, recording_id: str, save: bool = True, live_url: str | None = None, live_blueprint: Any = None):
        self.recording_id = recording_id
        self.save = save
        self.live_url = live_url
        self.live_blueprint = live_blueprint  # what a live viewer lays the batch out with
        self._idle: list[PooledStream] = []
        self._lock = threading.Lock()

    def acquire(self) -> PooledStream:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        import rerun as rr

        # The recording's properties are the batch's (RecordingProperties), the same in every file.
        stream = rr.RecordingStream(APPLICATION_ID, recording_id=self.recording_id, send_properties=False)
        pooled = PooledStream(stream, stream.binary_stream() if self.save else None)
        sinks = [pooled.binary] if pooled.binary is not None else []
        if self.live_url is None:
            stream.set_sinks(*sinks)
            return pooled
        # A live viewer gets the blueprint with the connection, before any data: a viewer that shows a
        # recording before its blueprint lays it out by heuristics, and keeps that layout.
        stream.set_sinks(*sinks, rr.GrpcSink(self.live_url), default_blueprint=self.live_blueprint)
        _drain(pooled, disconnect=False)  # not into the first item's file: it gets its own, if any
        return pooled

    def release(self, pooled: PooledStream) -> None:
        pooled.items += 1
        if pooled.items >= STREAM_ITEMS:  # its per-entity state goes with it; a new stream starts clean
            _drain(pooled, disconnect=True)
            return
        with self._lock:
            self._idle.append(pooled)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            _drain(pooled, disconnect=True)


@dataclass
class PooledStream:
    stream: Any
    binary: Any | None  # the in-memory sink of the item files; None when nothing is saved
    items: int = 0  # how many items it has recorded


class ItemRecording:
    """Records one item into an in-memory .rrd, and optionally streams it live to a viewer.

    `close()` hands back the complete recording's bytes (with `save`), which delivery.write_finished writes
    and verifies where the output folder is: in this process, or on a Ray driver.
    """

    def __init__(
        self,
        item_id: str,
        save: bool,
        pool: StreamPool,
        blueprint: Any = None,
        mirror: Mirror | None = None,
        properties: RecordingProperties | None = None,
    ):
        import rerun as rr

        self.rr = rr
        self.paths = item_paths(item_id)
        self.mirror = mirror
        self.pool = pool
        self.save = save
        self._pooled: PooledStream | None = pool.acquire()
        self.stream = self._pooled.stream
        if blueprint is not None and save:  # each file carries its own copy
            self.stream.send_blueprint(blueprint, make_active=False, make_default=True)
        if properties is not None:
            properties.send(self.stream)

    def _log(self, entity_path: str, archetype: Any, static: bool = False) -> None:
        self.stream.log(entity_path, archetype, static=static)
        if self.mirror is not None:
            self.mirror.stream.log(self.mirror.path(entity_path), archetype, static=static)

    def _set_step(self, step: int, timestep: int) -> None:
        streams = [self.stream] + ([self.mirror.stream] if self.mirror else [])
        for stream in streams:
            stream.set_time(STEP_TIMELINE, sequence=step)
            stream.set_time(TIMESTEP_TIMELINE, sequence=timestep)

    def log_inputs(self, source_image, canny: np.ndarray | None) -> None:
        """The input image, and the edge map the model was given (None: the item gave it none)."""
        rr = self.rr
        if source_image.media_type:
            # The file's own bytes: lossless, compact, and exactly the image as given.
            image = rr.EncodedImage(contents=source_image.encoded, media_type=source_image.media_type)
        else:
            image = rr.Image(source_image.pixels)
        self._log(self.paths.input_image, image, static=True)
        if canny is not None:
            canny_png = rr.EncodedImage(contents=encode_png(canny), media_type="image/png")
            self._log(self.paths.input_canny, canny_png, static=True)

    def log_unit_maps(self, maps: Sequence[UnitMap]) -> None:
        """Each control unit's map, as the ControlNet sees it, at `items/<id>/control/<index>-<type>`."""
        for index, unit_map in enumerate(maps):
            png = self.rr.EncodedImage(contents=encode_png(unit_map.pixels), media_type="image/png")
            self._log(unit_map_path(self.paths.root, unit_name(index, unit_map.unit)), png, static=True)

    def log_text(self, prompt_markdown: str, params_markdown: str) -> None:
        rr = self.rr
        self._log(self.paths.prompt, rr.TextDocument(prompt_markdown, media_type=rr.MediaType.MARKDOWN), static=True)
        self._log(self.paths.params, rr.TextDocument(params_markdown, media_type=rr.MediaType.MARKDOWN), static=True)

    def log_step(self, step: int, timestep: int, latent: np.ndarray | None, preview: np.ndarray | None) -> None:
        rr = self.rr
        self._set_step(step, timestep)
        if latent is not None:
            self._log(self.paths.latent, rr.Tensor(latent, dim_names=LATENT_DIM_NAMES))
        if preview is not None:
            self._log(self.paths.preview, rr.Image(preview).compress(jpeg_quality=PREVIEW_JPEG_QUALITY))

    def log_output(self, png_bytes: bytes, last_step: int, last_timestep: int) -> None:
        self._set_step(last_step, last_timestep)
        self._log(self.paths.output, self.rr.EncodedImage(contents=png_bytes, media_type="image/png"))

    def log_adherence(self, scores: dict[str, float], overlay: np.ndarray, scores_markdown: str) -> None:
        """Control adherence at the last step: one scalar per score, the edge overlay, the scores as text."""
        rr = self.rr
        for name, value in scores.items():
            self._log(f"{self.paths.adherence}/{name}", rr.Scalars(value))
        self._log(self.paths.adherence_overlay, rr.EncodedImage(contents=encode_png(overlay), media_type="image/png"))
        text = rr.TextDocument(scores_markdown, media_type=rr.MediaType.MARKDOWN)
        self._log(self.paths.adherence_scores, text, static=True)

    def close(self) -> bytes | None:
        """The complete recording's bytes (None without `save`). Raises OutputWriteError when a live-only
        recording could not be streamed; with `save`, a complete file is what counts, and a slow live viewer
        alone does not fail the item (the bytes are verified when they are written)."""
        data, problem = self._give_back()
        if not self.save:
            if problem is not None:
                raise OutputWriteError(f"streaming {self.paths.root} to the viewer failed: {problem}")
            return None
        return data

    def discard(self) -> None:
        """Drop an unfinished recording: what was encoded is read and dropped, so the next item starts clean."""
        self._give_back()

    def _give_back(self) -> tuple[bytes, str | None]:
        """This item's encoded bytes; the stream goes back to the pool, unless it stopped working."""
        if self._pooled is None:
            return b"", None
        pooled, self._pooled = self._pooled, None
        data, problem = _drain(pooled, disconnect=False)
        if problem is None:
            self.pool.release(pooled)
        else:
            _drain(pooled, disconnect=True)
        return data, problem
