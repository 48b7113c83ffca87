"""Full journeys under provider faults and duplicate S3 events: does anything get lost,
paid twice or left uncopied, and does any client see a 5xx?

    python bench/chaos.py [--journeys 30] [--concurrency 6]

Three runs on one local stack: first with the faults that leave no doubt about what the
provider did (5xx, 429 with Retry-After, results expiring early) — every figure must be
zero; then adding the ambiguous ones (answers slower than our timeout, dropped connections,
a submit that succeeds upstream but whose answer is lost), where the honest best is to
never pay twice and to fail the job with that reason; then the clear faults with workflow
chaos: operators stopping executions at random points, StartExecution throttled, Lambda
tasks timing out after doing their work, and the reconcile function crashing half the
time. Records left open, ids stored but never settled, paid twice and client 5xx must all
be zero.

    python bench/chaos.py --only workflow --json    # one run, its figures as JSON
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# bench/copy.py would shadow the standard library's copy module: keep bench/ off the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

import dataclasses  # noqa: E402  (imports copy: only once bench/ is off the path)
import json  # noqa: E402

from local import chaos  # noqa: E402
from local.stack import LocalConfig, LocalStack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journeys", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--only", choices=("clear", "all", "workflow"))
    parser.add_argument("--json", action="store_true", help="print each run's figures as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name in ("werkzeug", "local.lambda", "avatar_core", "aws_lambda_powertools"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LocalConfig(
        api_port=0, time_factor=600.0, log_level="CRITICAL", function_env=chaos.CHAOS_FUNCTION_ENV
    )
    with LocalStack(config) as stack:
        runs = [
            (
                "clear",
                "clear faults (5xx, 429, early expiry) + duplicate S3 events",
                chaos.CLEAR_FAULTS,
                None,
            ),
            (
                "all",
                "all faults (+ slow answers, dropped connections, lost submit answers)",
                {**chaos.CLEAR_FAULTS, **chaos.AMBIGUOUS_FAULTS},
                None,
            ),
            (
                "workflow",
                "clear faults + workflow chaos (operator stops, StartExecution throttling, "
                "Lambda timeouts, reconcile crashes)",
                chaos.CLEAR_FAULTS,
                chaos.WORKFLOW_FAULTS,
            ),
        ]
        for key, title, faults, workflow in runs:
            if args.only and key != args.only:
                continue
            figures, journeys = chaos.run(
                stack, args.journeys, args.concurrency, faults, workflow_faults=workflow
            )
            if args.json:
                print(json.dumps({"run": key, **dataclasses.asdict(figures)}))
                continue
            print(f"\n== {title}: {args.journeys} journeys, {args.concurrency} at a time")
            for line in figures.lines():
                print(f"  {line}")
            for journey in journeys:
                for error in journey.errors:
                    print(f"  journey {journey.user}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
