"""Full journeys under provider faults and duplicate S3 events: does anything get lost,
paid twice or left uncopied, and does any client see a 5xx?

    python bench/chaos.py [--journeys 30] [--concurrency 6]

Two runs on one local stack: first with the faults that leave no doubt about what the
provider did (5xx, 429 with Retry-After, results expiring early) — every figure must be
zero; then adding the ambiguous ones (answers slower than our timeout, dropped connections,
a submit that succeeds upstream but whose answer is lost), where the honest best is to
never pay twice and to fail the job with that reason.
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

from local import chaos  # noqa: E402
from local.stack import LocalConfig, LocalStack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journeys", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name in ("werkzeug", "local.lambda", "avatar_core", "aws_lambda_powertools"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LocalConfig(
        api_port=0, time_factor=600.0, log_level="CRITICAL", function_env=chaos.CHAOS_FUNCTION_ENV
    )
    with LocalStack(config) as stack:
        runs = [
            ("clear faults (5xx, 429, early expiry) + duplicate S3 events", chaos.CLEAR_FAULTS),
            (
                "all faults (+ slow answers, dropped connections, lost submit answers)",
                {**chaos.CLEAR_FAULTS, **chaos.AMBIGUOUS_FAULTS},
            ),
        ]
        for title, faults in runs:
            figures, journeys = chaos.run(stack, args.journeys, args.concurrency, faults)
            print(f"\n== {title}: {args.journeys} journeys, {args.concurrency} at a time")
            for line in figures.lines():
                print(f"  {line}")
            for journey in journeys:
                for error in journey.errors:
                    print(f"  journey {journey.user}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
