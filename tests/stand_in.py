"""Batches whose outputs look like a working ControlNet's, for tests: the pipeline runs as usual (every
step is recorded), then each item's output is replaced by a near-copy of its own control image, so
adherence, compare, the review files and the viewer see outputs whose edges follow their controls.

    with outputs_following_controls("shift"):                 # in this process (CliRunner, the API)
        CliRunner().invoke(cli, ["batch", "manifest.yaml"])

    python tests/stand_in.py shift -- batch manifest.yaml      # a CLI process of its own (signals)

The kind is one of near_copies.KINDS, for every item, or a mapping from item id to kind (items not
named keep the pipeline's own output).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # near_copies beside this file, however it is run

from near_copies import near_copy


@contextlib.contextmanager
def outputs_following_controls(kinds: str | Mapping[str, str]) -> Iterator[None]:
    """While the block runs, every generated output is a near-copy of its item's control image."""
    restore = install(kinds)
    try:
        yield
    finally:
        restore()


def install(kinds: str | Mapping[str, str]):
    """Replace the runner's pipeline call; returns a function that puts the real one back."""
    from rr_controlnet.run import runner

    real_generate = runner.generate

    def generate(model, jobs, *args, **kwargs):
        result = real_generate(model, jobs, *args, **kwargs)
        for index, job in enumerate(jobs):
            kind = kinds if isinstance(kinds, str) else kinds.get(job.item_id)
            if kind is not None and result.images[index] is not None:
                result.images[index] = near_copy(job.control.rgb, kind, seed=job.params.seed)
        return result

    runner.generate = generate
    return lambda: setattr(runner, "generate", real_generate)


def slow_matching(seconds: float, started: Path) -> None:
    """Make control adherence's matching take `seconds` longer, touching `started` as it begins: time for a
    signal to arrive while an output is being scored."""
    from rr_controlnet.review import adherence

    real_matching = adherence.maximum_matching

    def maximum_matching(pairs, *checkpoint):
        started.touch()
        time.sleep(seconds)
        return real_matching(pairs, *checkpoint)

    adherence.maximum_matching = maximum_matching


def main(argv: list[str]) -> None:
    """`stand_in.py KIND [--slow-matching SECONDS MARKER] -- CLI ARGUMENTS...`: the CLI with near-copies."""
    separator = argv.index("--")
    options, cli_arguments = argv[:separator], argv[separator + 1 :]
    install(options[0])
    if "--slow-matching" in options:
        at = options.index("--slow-matching")
        slow_matching(float(options[at + 1]), Path(options[at + 2]))
    from rr_controlnet.cli import main as cli_main

    sys.argv = ["rr-controlnet", *cli_arguments]
    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
