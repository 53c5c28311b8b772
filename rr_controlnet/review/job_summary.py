"""summary.md: a batch as a GitHub job summary, drawn from its outcomes. A table of every item (failed and
pending first past TABLE_ROW_LIMIT), their control adherence, each sweep's variants under its source with
the full values, and the warnings; within markdown.MAX_BYTES whatever the batch's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rr_controlnet.manifest.sweep_names import value_text
from rr_controlnet.outputs import STATUSES, BatchSummary, ItemOutcome
from rr_controlnet.outputs.records import folder_relative
from rr_controlnet.review.markdown import TABLE_ROW_LIMIT, bounded, cell
from rr_controlnet.review.tiles import ERROR_LIMIT, shorten


def summary_markdown(summary: BatchSummary, folder: Path | None = None) -> str:
    """A GitHub job summary of a batch: heading (the manifest's path relative to the output `folder`),
    counts line and one table row per item.

    Past TABLE_ROW_LIMIT items, failed and pending items come first and the rest are counted; the other
    tables stop at that many rows too, and the whole stays within markdown.MAX_BYTES.
    """
    items = summary.items
    counts = ", ".join(f"{count} {status}" for status, count in summary.counts().items())
    lines = [
        f"## rr-controlnet: {cell(folder_relative(summary.manifest, folder) or 'batch')}",
        "",
        f"{counts} (model {cell(summary.model.get('name', '?'))})",
        "",
        "| item | status | seed | seconds | files |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    by_status = sorted(items, key=lambda outcome: outcome.status == "done")  # stable: failed and pending first
    shown = list(items) if len(items) <= TABLE_ROW_LIMIT else by_status[:TABLE_ROW_LIMIT]
    lines += [_table_row(outcome) for outcome in shown]
    if len(items) > len(shown):
        lines += ["", _left_out(by_status[TABLE_ROW_LIMIT:])]
    lines += _adherence_table(items)
    lines += _sweep_tables(items)
    warned = [outcome for outcome in items if outcome.warnings]
    if warned:
        lines += ["", "### Warnings", ""]
        for outcome in warned[:TABLE_ROW_LIMIT]:
            lines += [f"- {cell(outcome.id)}: {cell(shorten(warning, ERROR_LIMIT))}" for warning in outcome.warnings]
        if len(warned) > TABLE_ROW_LIMIT:
            lines.append(f"- ... and {len(warned) - TABLE_ROW_LIMIT:,} more items with warnings (see summary.json)")
    return bounded(lines, "summary.json")


def _left_out(outcomes: Sequence[ItemOutcome]) -> str:
    statuses = Counter(outcome.status for outcome in outcomes)
    if set(statuses) == {"done"}:
        return f"... and {len(outcomes):,} more done items: summary.json lists every item."
    by_status = ", ".join(f"{statuses[status]:,} {status}" for status in STATUSES if statuses[status])
    return f"... and {len(outcomes):,} more items ({by_status}): summary.json lists every item."


def _adherence_table(items: Sequence[ItemOutcome]) -> list[str]:
    scored = [outcome for outcome in items if outcome.adherence is not None]
    if not scored:
        return []
    lines = [
        "",
        "### Control adherence",
        "",
        "Canny edges of each output against its control map: F1 pixel-exact / within "
        f"{scored[0].adherence.tolerance_px:.1f} px (0.75% of the diagonal), precision, recall, SSIM.",
        "",
        "| item | F1 | F1 (tolerant) | precision | recall | SSIM |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for outcome in scored[:TABLE_ROW_LIMIT]:
        scores = outcome.adherence
        cells = [f"{scores.strict.f1:.1%}", f"{scores.tolerant.f1:.1%}", f"{scores.strict.precision:.1%}"]
        cells += [f"{scores.strict.recall:.1%}", f"{scores.ssim:.3f}"]
        lines.append(f"| {cell(outcome.id)} | " + " | ".join(cells) + " |")
    if len(scored) > TABLE_ROW_LIMIT:
        lines += ["", f"... and {len(scored) - TABLE_ROW_LIMIT:,} more scored items: summary.json has every score."]
    return lines


def _sweep_tables(items: Sequence[ItemOutcome]) -> list[str]:
    """Each sweep's variants under its source item, with the full swept values; TABLE_ROW_LIMIT rows in all."""
    by_source: dict[str, list[ItemOutcome]] = {}
    for outcome in items:
        if outcome.sweep is not None:
            by_source.setdefault(outcome.sweep.source, []).append(outcome)
    if not by_source:
        return []
    lines = ["", "### Sweeps"]
    rows_left = TABLE_ROW_LIMIT
    for number, (source, variants) in enumerate(by_source.items()):
        if rows_left == 0:
            rest = list(by_source.values())[number:]
            lines += [
                "",
                f"... and {len(rest):,} more sweeps ({sum(map(len, rest)):,} variants): summary.json lists every "
                "variant with its values.",
            ]
            break
        fields = list(variants[0].sweep.values)
        lines += [
            "",
            f"**{cell(source)}**: {len(variants)} variant{'s' if len(variants) != 1 else ''} of {' x '.join(fields)}",
            "",
            "| variant | " + " | ".join(fields) + " | status | F1 | F1 (tolerant) |",
            "| --- | " + " | ".join("---" for _ in fields) + " | --- | ---: | ---: |",
        ]
        for outcome in variants[:rows_left]:
            scores = outcome.adherence
            f1 = [f"{kind.f1:.1%}" for kind in (scores.strict, scores.tolerant)] if scores else ["", ""]
            values = [cell(value_text(outcome.sweep.values.get(field, ""))) for field in fields]
            lines.append("| " + " | ".join([cell(outcome.id), *values, outcome.status, *f1]) + " |")
        if len(variants) > rows_left:
            lines += ["", f"... and {len(variants) - rows_left:,} more variants of {cell(source)}."]
        rows_left = max(0, rows_left - len(variants))
    return lines


def _table_row(outcome: ItemOutcome) -> str:
    status = outcome.status
    if status == "failed":
        status = f"**failed**: {shorten(outcome.error or 'no reason given', ERROR_LIMIT)}"
    cells = [
        outcome.id,
        status,
        outcome.seed,
        "" if outcome.seconds is None else f"{outcome.seconds:.1f}",
        ", ".join(outcome.files),
    ]
    return "| " + " | ".join(cell(value) for value in cells) + " |"
