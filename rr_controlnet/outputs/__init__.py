"""The output folder: its names, its records, and one object to read and write it through.

- names: every file name, glob and pattern of the folder;
- records: ItemOutcome and BatchSummary, what summary.json and the journal hold;
- files: atomic, verified writes; lock: one writer per shard; journal: the records on disk;
- folder: OutputFolder, the checks before a run, the lock, reading back what runs left.
"""

from rr_controlnet.outputs.folder import OutputFolder, file_checksum
from rr_controlnet.outputs.names import default_out_dir, item_file_names
from rr_controlnet.outputs.records import STATUSES, BatchSummary, ItemOutcome

__all__ = [
    "STATUSES",
    "BatchSummary",
    "ItemOutcome",
    "OutputFolder",
    "default_out_dir",
    "file_checksum",
    "item_file_names",
]
