"""Fuzzing the public API: schemathesis cases from the checked-in ``openapi.json`` plus
hand-written malformed requests, sent with a valid bearer token to a fresh local stack where
the user has a ready model, a generation, an accepted face reference and a face-avatar job.

Every answer must be below 500 and match the documented schema of its status; statuses and
content types must be documented. Prints one line per figure, then any finding with a curl
command that reproduces it, and exits non-zero if there was one.

    python bench/fuzz.py [examples per operation, default 60]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# bench/copy.py would shadow the standard library's copy module: keep bench/ off the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

import schemathesis  # noqa: E402

from local.stack import LocalConfig, LocalStack  # noqa: E402
from tests.support.fuzzing import fuzz  # noqa: E402

EXAMPLES_PER_OPERATION = 60


def main() -> int:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES_PER_OPERATION
    with tempfile.TemporaryDirectory() as state:
        config = LocalConfig(api_port=0, time_factor=600, state_dir=Path(state))
        with LocalStack(config) as stack:
            report = fuzz(stack, examples_per_operation=examples, seed=0)
    print(f"schemathesis {schemathesis.__version__}, {examples} examples per operation")
    print("\n".join(report.summary_lines()))
    if report.findings:
        print(f"\n{len(report.findings)} findings; the first of each kind:\n")
        print(report.describe_findings())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
