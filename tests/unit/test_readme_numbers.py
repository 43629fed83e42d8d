"""The README's performance figures are the ones in bench/results/: the table between its bench markers is
exactly what bench/readme.py builds from the results files (a number typed by hand, or results measured
again without refreshing the README, fails here)."""

from __future__ import annotations

from bench.readme import README, block, current_block


def test_readme_performance_block_is_built_from_bench_results() -> None:
    assert current_block(README.read_text()) == block(), (
        "README.md's performance table differs from bench/results/: run `python -m bench.readme --write`"
    )


def test_every_figure_the_readme_quotes_is_in_the_results() -> None:
    missing = [line for line in block().splitlines() if "(missing from" in line or "(no results" in line]
    assert not missing, "\n".join(missing)
