"""`make bench` runs at every commit: every scenario of bench/run_all.py runs in its quick form (a few seconds
each, numbers not checked) and writes its table, and each figure the README quotes is among them. A bench
broken by a refactor (an import gone, a renamed row) fails here, not months later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.readme import FULL_ONLY, block
from bench.run_all import BENCHES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_every_bench_runs_in_its_quick_form(tmp_path: Path) -> None:
    env = {**os.environ, "CUECAST_BENCH_QUICK": "1", "CUECAST_BENCH_RESULTS": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"make bench (quick form) failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    for name in BENCHES:
        text = (tmp_path / f"{name}.md").read_text()
        assert "(quick form)" in text and text.count("\n|") >= 3, f"{name}: no table written:\n{text}"
    missing = [line for line in block(tmp_path).splitlines()
               if "(missing from" in line and not any(f.strip() in line for f in FULL_ONLY)]
    assert not missing, "rows the README quotes that the bench no longer writes:\n" + "\n".join(missing)
    assert (tmp_path / "latest.md").exists()
