"""Golden outputs: small fixed-seed runs of the shipped configurations equal the recorded files bit for bit.

The cases and how they run are in tests/golden/cases.py; the recorded files,
tests/golden/<case>.parquet, are written only by scripts/make_golden.py
(tests/golden/README.md).  Every column of a golden file must be in the new
output with the same dtype, the same row order and exactly the same values;
new columns in the output are allowed.
"""
from __future__ import annotations

import pandas as pd
import pytest

from tests.golden.cases import CASES, column_differences, run_case


@pytest.mark.parametrize("name", list(CASES))
def test_matches_golden_file(name, tmp_path):
    case = CASES[name]
    golden = pd.read_parquet(case.golden_path)
    (new,) = run_case(case, tmp_path).values()
    missing = [c for c in golden.columns if c not in new.columns]
    try:
        assert not missing, f"columns missing from the output: {missing}"
        pd.testing.assert_frame_equal(new[list(golden.columns)], golden, check_exact=True)
        failure = None
    except AssertionError as e:
        failure = str(e)
    if failure is not None:
        diffs = column_differences(golden, new)
        extra = [c for c in new.columns if c not in golden.columns]
        lines = [f"{name}: the output of {case.task} ({case.output}) differs from {case.golden_path.name}"]
        lines += [f"  {col}: {how}" for col, how in diffs.items()] or ["  (see the comparison below)"]
        if extra:
            lines.append(f"  columns in the output but not in the golden file (allowed): {extra}")
        lines.append(f"  overrides: {list(case.overrides)}")
        lines.append(f"if the change is intended, regenerate with `python scripts/make_golden.py {name}` in a commit "
                     "of its own that explains why")
        lines.append(f"comparison: {failure}")
        pytest.fail("\n".join(lines), pytrace=False)
