"""The ``chatbci`` command.

Each sub-command is a thin layer over the Python API, so what the CLI does a
notebook can do too. Errors the user can fix are printed as one clear line
(exit code 2), never as a traceback; set ``CHATBCI_DEBUG=1`` to see it.
"""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_datasets(args):
    from .bci.datasets import catalog

    table = catalog()
    if args.json:
        print(table.to_json(orient="records", indent=1))
        return 0
    cols = ["name", "n_subjects", "n_sessions", "n_channels", "sfreq", "classes", "doi"]
    view = table[cols].copy()
    view["classes"] = view["classes"].map(_short_list)
    view["doi"] = view["doi"].fillna("-")
    with _pandas_wide():
        print(view.to_string(index=False))
    print(f"{len(view)} motor-imagery datasets; details: `chatbci datasets --json`.")
    return 0


def _short_list(items, width=38):
    text = ",".join(items) if isinstance(items, (list, tuple)) else str(items)
    return text if len(text) <= width else text[: width - 1] + "…"


def _cmd_bench(args):
    from .bci.benchmark import run_benchmark
    from .bci.statistics import format_summary, score_plot, summary_table

    results = run_benchmark(
        pipelines=args.pipelines, dataset=args.dataset, subjects=args.subjects,
        paradigm=args.paradigm, evaluation=args.evaluation,
        random_state=args.random_state, cache_dir=args.cache_dir, n_jobs=args.n_jobs,
        progress=not args.quiet,
    )
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        results.to_csv(args.output, index=False)
    info = results.attrs.get("chatbci", {})
    print(format_summary(summary_table(results)))
    print(f"{info.get('n_computed', 0)} subject x pipeline results computed, "
          f"{info.get('n_cached', 0)} from cache, in {info.get('seconds', 0):.1f} s"
          + (f"; scores written to {args.output}" if args.output else ""))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        score_plot(results).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"score plot: {args.plot}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="chatbci",
        description="Human-AI collaborative design of motor-imagery EEG decoders.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("datasets", help="list MOABB's motor-imagery datasets (offline)")
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser(
        "bench", help="run a MOABB benchmark (cached, resumable)",
        description="Evaluate decoding pipelines with MOABB's evaluations and print "
                    "mean ± sd per pipeline with paired statistics.",
    )
    p.add_argument("--dataset", default="SimulatedMI",
                   help="dataset name, see `chatbci datasets` (default: SimulatedMI)")
    p.add_argument("--subjects", default=None,
                   help="e.g. 1-6 or 1,3,5-7 (default: all subjects)")
    p.add_argument("--pipelines", default="CSP+LDA,TS+LR,MDM",
                   help="comma-separated canonical pipelines: CSP+LDA, TS+LR, TS+SVM, "
                        "MDM, FgMDM, FBCSP+SVM, ACM+TS+SVM (default: %(default)s)")
    p.add_argument("--paradigm", default="left_right", choices=["left_right", "multiclass"])
    p.add_argument("--evaluation", default="within-session",
                   choices=["within-session", "cross-session", "cross-subject"])
    p.add_argument("--random-state", type=int, default=42)
    p.add_argument("--cache-dir", default=None,
                   help="cache results here; a re-run or resumed run reuses them")
    p.add_argument("--output", default=None, help="write MOABB's results table as CSV")
    p.add_argument("--plot", default=None, help="save MOABB's score plot (PNG/PDF)")
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="subjects in parallel (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)
    return parser


def _version():
    from . import __version__

    return f"chatbci {__version__}"


class _pandas_wide:
    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.width", 200, "display.max_colwidth", 40,
                                      "display.max_rows", 200)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def _user_errors():
    """Exceptions whose message tells the user what to fix."""
    from .bci.benchmark import BenchmarkError
    from .bci.datasets import DataNotAvailableError
    from .bci.pipelines import PipelineError
    from .bci.statistics import StatisticsError

    return (BenchmarkError, DataNotAvailableError, PipelineError, StatisticsError,
            ValueError, FileNotFoundError)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; cached results are kept, re-run to resume", file=sys.stderr)
        return 130
    except _user_errors() as err:
        if os.environ.get("CHATBCI_DEBUG"):
            raise
        print(f"chatbci {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
