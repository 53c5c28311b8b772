"""Entity paths and the blueprint: the contract between what is recorded and how the viewer lays it out.

Pure functions over item ids (rerun's blueprint module is imported inside them): every stream and
file of a batch uses these paths and this layout. All item files of a run share the application id,
one recording id, its name and start time, so opening several of them merges them into one named
recording. The viewer keeps one blueprint per application id, and the file it loads last sets the
active one: so every item file and live stream carries the very same blueprint for the whole batch
(one tab per item, the first one active), and a batch opened whole starts on its first item whatever
the loading order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from rr_controlnet.control_maps import unit_name
from rr_controlnet.manifest.sweep_names import alias, axis_label
from rr_controlnet.spec import SweepPlace

APPLICATION_ID: Final = "rr_controlnet"
STEP_TIMELINE: Final = "step"
TIMESTEP_TIMELINE: Final = "timestep"
LATENT_DIM_NAMES: Final = ("channel", "height", "width")
PREVIEW_JPEG_QUALITY: Final = 85
# Every item tab adds about 50 kB of blueprint to each file that carries it. Up to this many items,
# each item file carries the whole batch's blueprint; past it, none: the full blueprint in every file
# would grow the batch with the square of its size, and rerun-sdk keeps every blueprint it sends in
# memory for good (a few MB each). batch.rbl, which `rr-controlnet view` opens with the files, carries
# the layout of large batches.
FULL_BLUEPRINT_MAX_ITEMS: Final = 16
# batch.rbl holds a tab for at most this many items (about 50 kB each); `rr-controlnet view OUT ID...`
# builds a blueprint for any other selection.
BATCH_BLUEPRINT_MAX_ITEMS: Final = 100
# A sweep's grid tab holds at most this many rows (values of its first field); more go to further tabs.
SWEEP_GRID_ROWS: Final = 8
MANIFEST_SUFFIXES: Final = (".yaml", ".yml")
T = TypeVar("T")


@dataclass(frozen=True)
class ItemPaths:
    """Entity paths of one item, all under items/<id>/."""

    root: str
    input_image: str
    input_canny: str
    prompt: str
    params: str
    latent: str
    preview: str
    output: str
    adherence: str  # scalars below it: adherence/f1, adherence/f1_tolerant, ...
    adherence_overlay: str
    adherence_scores: str


def item_paths(item_id: str, prefix: str = "") -> ItemPaths:
    """The entity paths of an item; `prefix` places them under another path (the viewer's choice)."""
    root = f"{prefix.strip('/')}/items/{item_id}" if prefix.strip("/") else f"items/{item_id}"
    return ItemPaths(
        root=root,
        input_image=f"{root}/input/image",
        input_canny=f"{root}/input/canny",
        prompt=f"{root}/prompt",
        params=f"{root}/params",
        latent=f"{root}/latent",
        preview=f"{root}/preview",
        output=f"{root}/output",
        adherence=f"{root}/adherence",
        adherence_overlay=f"{root}/adherence/overlay",
        adherence_scores=f"{root}/adherence/scores",
    )


def unit_map_path(root: str, name: str) -> str:
    """Where a control unit's map is logged: `items/<id>/control/<index>-<type>`."""
    return f"{root}/control/{name}"


def unit_names_of(item: Any) -> tuple[str, ...]:
    """The names of an item's control units (control_maps.unit_name): a manifest item's, or an outcome's from
    its recorded parameters; () for an item without units."""
    controls = getattr(item, "controls", None)
    if controls:
        return tuple(unit_name(index, unit) for index, unit in enumerate(controls))
    params = getattr(item, "params", None)
    recorded = params.get("controls") if isinstance(params, Mapping) else None
    return tuple(recorded) if isinstance(recorded, Mapping) else ()


def run_recording_id(out_dir: Path) -> str:
    """One recording id per output folder: reruns, resumed runs and shards all merge in the viewer."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rr-controlnet:{Path(out_dir).resolve()}"))


def recording_name(manifest_path: Path, out_dir: Path) -> str:
    """What the viewer lists the batch as: the manifest file and the output folder, e.g. `cats.yaml → cats-output`.

    `run` has no manifest file (its items come from the command line): the output folder alone names it.
    """
    out_name = Path(out_dir).resolve().name
    manifest_path = Path(manifest_path)
    return f"{manifest_path.name} → {out_name}" if manifest_path.suffix in MANIFEST_SUFFIXES else out_name


@dataclass(frozen=True)
class RecordingProperties:
    """The recording's name and start time, sent alike by every stream of a batch so that merged files agree."""

    name: str
    start_time_ns: int

    def send(self, stream: Any) -> None:
        stream.send_recording_name(self.name)
        stream.send_recording_start_time_nanos(self.start_time_ns)


def batch_properties(manifest_path: Path, out_dir: Path, start_time_ns: int) -> RecordingProperties:
    return RecordingProperties(recording_name(manifest_path, out_dir), start_time_ns)


def item_view_names(item_id: str) -> dict[str, str]:
    return {
        "input": f"{item_id}: input",
        "canny": f"{item_id}: canny",
        "latent": f"{item_id}: latent",
        "preview": f"{item_id}: preview",
        "output": f"{item_id}: output",
        "adherence": f"{item_id}: edges followed",
        "prompt": f"{item_id}: prompt",
        "params": f"{item_id}: params",
        "adherence_scores": f"{item_id}: control adherence",
    }


def item_layout(item_id: str, prefix: str = "", units: Sequence[str] = ()) -> Any:
    """Input, canny (or each control unit's map), latent, preview, output and the edges it follows side by
    side; prompt, parameters and control adherence below."""
    import rerun as rr
    import rerun.blueprint as rrb

    paths = item_paths(item_id, prefix)
    names = item_view_names(item_id)
    latent_slice = rrb.TensorSliceSelection(
        width=2, height=1, indices=[rr.encodings.TensorDimensionIndexSelection(dimension=0, index=0)], slider=[0]
    )
    return rrb.Vertical(
        rrb.Horizontal(
            rrb.Spatial2DView(name=names["input"], origin=paths.input_image),
            *_control_views(item_id, paths, units),
            rrb.TensorView(name=names["latent"], origin=paths.latent, slice_selection=latent_slice),
            rrb.Spatial2DView(name=names["preview"], origin=paths.preview),
            rrb.Spatial2DView(name=names["output"], origin=paths.output),
            rrb.Spatial2DView(name=names["adherence"], origin=paths.adherence_overlay),
        ),
        rrb.Horizontal(
            rrb.TextDocumentView(name=names["prompt"], origin=paths.prompt),
            rrb.TextDocumentView(name=names["params"], origin=paths.params),
            rrb.TextDocumentView(name=names["adherence_scores"], origin=paths.adherence_scores),
        ),
        row_shares=[3, 1],
        name=item_id,
    )


def _control_views(item_id: str, paths: ItemPaths, units: Sequence[str]) -> list[Any]:
    import rerun.blueprint as rrb

    if not units:
        return [rrb.Spatial2DView(name=item_view_names(item_id)["canny"], origin=paths.input_canny)]
    return [rrb.Spatial2DView(name=f"{item_id}: {name}", origin=unit_map_path(paths.root, name)) for name in units]


class LaidOut(Protocol):
    """What a blueprint is laid out from: a manifest's items and a folder's outcomes alike."""

    @property
    def id(self) -> str: ...

    @property
    def sweep(self) -> SweepPlace | None: ...


def items_blueprint(items: Sequence[LaidOut], prefix: str = "", limit: int = BATCH_BLUEPRINT_MAX_ITEMS) -> Any:
    """The blueprint for a set of items, the one way every stream, file and viewer gets it: a tab for each
    of the first `limit` items (a swept item's variants share grid tabs)."""
    chosen = list(items)[:limit]
    sweeps = {item.id: item.sweep for item in chosen if item.sweep is not None}
    units = {item.id: unit_names_of(item) for item in chosen if unit_names_of(item)}
    return batch_blueprint([item.id for item in chosen], prefix, sweeps, units)


def file_blueprint_items(items: Sequence[T]) -> list[T]:
    """The items whose tabs go into every item file's blueprint: all of a small batch, none of a large one."""
    return list(items) if len(items) <= FULL_BLUEPRINT_MAX_ITEMS else []


def file_blueprint(items: Sequence[LaidOut]) -> Any | None:
    """What every item file carries: the whole batch's blueprint for a small batch, none for a large one."""
    chosen = file_blueprint_items(items)
    return items_blueprint(chosen) if chosen else None


def batch_blueprint(
    item_ids: Sequence[str],
    prefix: str = "",
    sweeps: Mapping[str, SweepPlace] | None = None,
    units: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """One tab per item (a swept item's variants share grid tabs), the first one active, the time panel on
    `step`; the same for every stream of a batch. `sweeps` maps variant ids to their places, `units` item ids
    to their control units' names."""
    import rerun.blueprint as rrb

    return rrb.Blueprint(
        # Every file must carry the same active tab: the viewer activates the default blueprint of the file it loads
        # last, and files load in no fixed order.
        rrb.Tabs(*batch_tabs(item_ids, prefix, sweeps or {}, units or {}), active_tab=0),
        rrb.TimePanel(timeline=STEP_TIMELINE),
        collapse_panels=False,
    )


def batch_tabs(
    item_ids: Sequence[str], prefix: str, sweeps: Mapping[str, Any], units: Mapping[str, Sequence[str]] | None = None
) -> list[Any]:
    """An item's tab, or for a swept item, its grid tabs where its first variant stands."""
    variants_of: dict[str, list[tuple[str, SweepPlace]]] = {}
    for item_id in item_ids:
        if item_id in sweeps:
            place = sweeps[item_id]
            variants_of.setdefault(place.source, []).append((item_id, place))
    tabs, laid_out = [], set()
    for item_id in item_ids:
        if item_id not in sweeps:
            tabs.append(item_layout(item_id, prefix, (units or {}).get(item_id, ())))
            continue
        source = sweeps[item_id].source
        if source not in laid_out:
            laid_out.add(source)
            tabs += sweep_layouts(source, variants_of[source], prefix, (units or {}).get(item_id, ()))
    return tabs


def sweep_page(place: SweepPlace) -> tuple[int, ...]:
    """Which page of its sweep a variant is on (a viewer tab, a contact sheet page): the values of further
    swept fields, then SWEEP_GRID_ROWS rows at a time."""
    return (*place.coordinates[2:], place.coordinates[0] // SWEEP_GRID_ROWS)


def sweep_tab_name(source: str, place: SweepPlace) -> str:
    """`horse: ccs x seed`, with further axes' values: `horse: ccs x seed (steps 20)`."""
    names = " x ".join("+".join(alias(field) for field in fields) for fields in place.axes[:2])
    further = ", ".join(axis_label(place, axis) for axis in range(2, len(place.axes)))
    return f"{source}: {names}" + (f" ({further})" if further else "")


def sweep_cell_name(place: SweepPlace) -> str:
    """A variant's cell in its sweep's grid, named by its values along the first two axes (the tab and the
    grid name the item): `seed 10, ccs 0.5`."""
    return ", ".join(axis_label(place, axis) for axis in range(min(2, len(place.axes))))


def sweep_layouts(
    source: str, variants: Sequence[tuple[str, SweepPlace]], prefix: str = "", units: Sequence[str] = ()
) -> list[Any]:
    """A swept item's tabs: its input and Canny beside grids of the variants' previews and outputs, rows
    along the first swept field and columns along the second; one tab per value of further fields, and
    per SWEEP_GRID_ROWS rows."""
    import rerun.blueprint as rrb

    pages: dict[tuple, list[tuple[str, SweepPlace]]] = {}
    for item_id, place in variants:
        pages.setdefault(sweep_page(place), []).append((item_id, place))
    tabs = []
    for cells in pages.values():
        first_id, first = cells[0]
        paths = item_paths(first_id, prefix)
        columns = first.shape[1] if len(first.shape) > 1 else 1
        previews = [
            rrb.Spatial2DView(name=f"{sweep_cell_name(place)} (preview)", origin=item_paths(item_id, prefix).preview)
            for item_id, place in cells
        ]
        outputs = [
            rrb.Spatial2DView(name=sweep_cell_name(place), origin=item_paths(item_id, prefix).output)
            for item_id, place in cells
        ]
        tabs.append(
            rrb.Horizontal(
                rrb.Vertical(
                    rrb.Spatial2DView(name=f"{source}: input", origin=paths.input_image),
                    *_control_views(source, paths, units),
                ),
                rrb.Grid(*previews, grid_columns=columns, name=f"{source}: previews"),
                rrb.Grid(*outputs, grid_columns=columns, name=f"{source}: outputs"),
                column_shares=[1, 2, 2],
                name=sweep_tab_name(source, first) + (f" [{len(tabs) + 1}]" if len(pages) > 1 else ""),
            )
        )
    return tabs
