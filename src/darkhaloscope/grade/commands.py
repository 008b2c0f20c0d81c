"""CLI of the grade package: `dhs grade add / progress` (and the web app, export and report).

    dhs grade add scores.parquet --db grades.sqlite --top 500 [--data DATA]   # create / extend the database
    dhs grade progress --db grades.sqlite                                     # graded / total per grader
    dhs grade serve scores.parquet --db grades.sqlite --top 500               # the web app (grade.serve)
    dhs grade export --db grades.sqlite --out graded.parquet                  # one row per candidate, consensus
    dhs grade report --db grades.sqlite --out grade_report/                   # agreement, purity, false positives
    dhs grade export ... --negatives-tier NEG/ --lenses-folder LENSES/         # the loop (grade.loop)
"""

from __future__ import annotations


def register(sub, bench_sub) -> None:
    p = sub.add_parser("grade", help="grade the top candidates by eye: database, web app, export, report",
                       description="Human grading of scored candidates (A sure lens, B probable, C possible, "
                       "N not a lens, S skip), stored in one SQLite database several graders share.")
    gsub = p.add_subparsers(dest="grade_command", metavar="WHAT")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    a = gsub.add_parser("add", help="create the grades database (or extend it) with the best rows of a scores file")
    a.add_argument("scores", help="scores parquet file written by `dhs score`")
    a.add_argument("--db", required=True, help="grades database (SQLite) to create or extend")
    a.add_argument("--top", type=int, default=None, help="add only the N best-scored rows (default: all)")
    a.add_argument("--data", default=None, help="where the scored stamps are now, when they moved since `dhs score`")
    a.set_defaults(func=cmd_add)

    add_serve_parser(gsub)

    g = gsub.add_parser("progress", help="graded / total per grader")
    g.add_argument("--db", required=True, help="grades database (SQLite)")
    g.set_defaults(func=cmd_progress)

    e = gsub.add_parser("export", help="the graded table: one row per candidate with its consensus grade")
    e.add_argument("--db", required=True, help="grades database (SQLite)")
    e.add_argument("--out", required=True, help="parquet file to write (replaced atomically)")
    e.add_argument("--negatives-tier", default=None, metavar="DIR",
                   help="also write the N-graded candidates (train split or none) as a hard-negative tier for "
                   "`dhs train --mined=DIR`")
    e.add_argument("--lenses-folder", default=None, metavar="DIR",
                   help="also write the A/B-graded stamps as npz cutouts for `dhs evaluate --known-lenses DIR`")
    e.add_argument("--data", default=None, help="where the graded stamps are now (default: what `dhs score` recorded)")
    e.add_argument("--overwrite", action="store_true", help="replace a previous --negatives-tier output")
    e.set_defaults(func=cmd_export)

    r = gsub.add_parser("report", help="agreement, purity of the top-N, score vs grade, false positives by tag")
    r.add_argument("--db", required=True, help="grades database (SQLite)")
    r.add_argument("--out", required=True, help="folder for grade.md, grade.html, grade.json")
    r.set_defaults(func=cmd_report)


def cmd_add(args) -> int:
    from darkhaloscope.grade.ingest import read_candidates
    from darkhaloscope.grade.store import open_store

    rows = read_candidates(args.scores, top=args.top, data=args.data)  # a bad scores file: no database made
    with open_store(args.db, create=True) as store:
        n = store.put_candidates(rows)
        print(f"{args.db}: {n['added']:,} candidate(s) added, {n['updated']:,} updated; {store.count():,} in all")
    return 0


def cmd_progress(args) -> int:
    from darkhaloscope.common.report.render import printable
    from darkhaloscope.grade.store import open_store

    with open_store(args.db, create=False, read_only=True) as store:
        prog = store.progress()
    total = prog.pop("total")
    print(f"{total:,} candidate(s)")
    for grader, n in prog.items():
        print(f"  {printable(grader):<20} {n:>7,} graded ({100 * n / total if total else 0:.1f}%)")
    return 0


def cmd_export(args) -> int:
    from darkhaloscope.grade.export import export_graded, graded_rows
    from darkhaloscope.grade.loop import check_loop_outputs, write_lenses_folder, write_negatives_tier
    from darkhaloscope.grade.store import open_store

    with open_store(args.db, create=False, read_only=True) as store:
        rows = graded_rows(store) if args.negatives_tier or args.lenses_folder else []
        check_loop_outputs(rows, negatives_tier=args.negatives_tier, lenses_folder=args.lenses_folder,
                           data=args.data, overwrite=args.overwrite)  # refused before the export is written
        counts = export_graded(store, args.out)
    print(f"{args.out}: " + ", ".join(f"{n:,} {g}" for g, n in counts.items()))
    if args.negatives_tier:
        m = write_negatives_tier(rows, args.negatives_tier, data=args.data, overwrite=args.overwrite)
        skipped = m["left_out_val_test"]
        note = f" ({skipped:,} of val/test splits left out)" if skipped else ""
        print(f"{args.negatives_tier}: {m['rows']:,} N-graded stamps as hard negatives{note}; train with "
              f"--mined={args.negatives_tier}")
    if args.lenses_folder:
        n = write_lenses_folder(rows, args.lenses_folder, data=args.data)
        print(f"{args.lenses_folder}: {n:,} A/B-graded stamps; evaluate with --known-lenses {args.lenses_folder} "
              "--checkpoint CKPT")
    return 0


def cmd_report(args) -> int:
    from darkhaloscope.grade.report import write_grade_report
    from darkhaloscope.grade.store import open_store

    with open_store(args.db, create=False, read_only=True) as store:
        paths = write_grade_report(store, args.out)
    print(f"wrote {paths['md']} (+ .html, .json)")
    return 0


def add_serve_parser(gsub) -> None:
    s = gsub.add_parser("serve", help="the grading web app: one candidate per screen, keyboard first",
                        description="Add the best candidates of SCORES to the grades database and serve the "
                        "grading page (bound to 127.0.0.1 unless --host; any other host needs an access token).")
    s.add_argument("scores", help="scores parquet file written by `dhs score`")
    s.add_argument("--db", required=True, help="grades database (SQLite) to create or extend")
    s.add_argument("--top", type=int, default=None, help="add only the N best-scored rows (default: all)")
    s.add_argument("--data", default=None, help="where the scored stamps are now, when they moved since `dhs score`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                   "0.0.0.0 shares it and requires an access token)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--token", default=None, help="access token graders must present (default: generated and "
                   "printed once when --host is not loopback)")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from darkhaloscope.grade.serve import run_serve

    return run_serve(args)
