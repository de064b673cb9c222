"""`catdog review`: a local page to act on what the audit found, or its confident suggestions applied in one go."""

from __future__ import annotations

import argparse
from pathlib import Path

from catdog import defaults
from catdog.cli.common import (
    add_backbone_option,
    add_data_option,
    add_json_option,
    add_runtime_option,
    add_seed_option,
    add_weights_option,
    data_source,
    info,
    positive_int,
    print_json,
    probability,
)
from catdog.errors import CatdogError


def register(subparsers) -> None:
    from catdog.cli.serve import port_number
    from catdog.review.app import HOST, PORT

    parser = subparsers.add_parser(
        "review",
        help="review what the audit found (or a pool of unlabelled images) on a local page; export corrected labels",
        description="Serve a local page that queues what to look at in a data set, most likely problems first "
        "(suspected label errors, duplicates, outliers, files the scan skipped), from the audit in --audit, or one "
        "it runs and keeps. Decide with the keyboard: keep, change the label, exclude from training, keep one of a "
        "group; undo. Decisions are appended to decisions.jsonl in the review folder as they are made (restarting "
        "continues where it was); the images are never changed. --export writes the labels they amount to (a CSV "
        "that `catdog train --labels` reads). With --pool and --run: the pool's images the run is least sure about "
        "first, its guess pre-selected.",
    )
    add_data_option(parser, min_images=False,
                    help="the data set to review: a folder of labelled images (with --pool: the folder the exported "
                    "paths are relative to, holding the pool)")
    parser.add_argument("--audit", metavar="AUDIT_DIR",
                        help="the audit to review (a folder written by `catdog audit --out`, or its audit.json); "
                        "default: the one the review ran itself and kept in its folder, else a new one")
    parser.add_argument("--against", metavar="DIR", action="append", default=[],
                        help="without --audit: a folder whose images must not duplicate the data set's (see "
                        "`catdog audit`); repeat for several")
    add_seed_option(parser)
    add_backbone_option(parser)
    add_weights_option(parser)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE, metavar="B",
                        help="batch size for the audit's backbone (default: %(default)s)")
    parser.add_argument("--pool", metavar="UNLABELLED_DIR",
                        help="label the unlabelled: a folder of images to queue, least certain first (needs --run)")
    parser.add_argument("--run", metavar="RUN", help="with --pool: the run whose predictions order the queue")
    add_runtime_option(parser)
    parser.add_argument("--out", metavar="DIR",
                        help="the review folder: decisions, the audit it ran, the page's export (default: "
                        "runs/review-<name of the data or pool folder>)")
    parser.add_argument("--who", metavar="NAME",
                        help="who decides, as the decisions record it (default: your user name)")
    parser.add_argument("--accept-suggestions", action="store_true",
                        help="without the page: change the label of every suspected label error that confident "
                        "learning flags to the class the audit suggests, and nothing else")
    parser.add_argument("--min-score", type=probability, default=None, metavar="S",
                        help="--accept-suggestions: only those whose score (1 - the probability the other images "
                        "give the label) is at least S")
    parser.add_argument("--export", metavar="FILE.csv",
                        help="write the reviewed labels (path,label; excluded files left out) and exit, without the "
                        "page")
    parser.add_argument("--host", default=HOST, help="address the page listens on (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=PORT,
                        help="port the page listens on, 0 to 65535; 0 takes a free one (default: %(default)s)")
    add_json_option(parser)
    parser.set_defaults(func=execute, needs_tensorflow=False)


def execute(args: argparse.Namespace) -> int:
    from catdog.review import review_data, review_pool

    if args.min_score is not None and not args.accept_suggestions:
        raise CatdogError("--min-score goes with --accept-suggestions")
    if args.pool or args.run:
        if not (args.pool and args.run):
            raise CatdogError("--pool and --run go together: the run's predictions order the pool's images")
        if args.accept_suggestions or args.audit or args.labels:
            raise CatdogError("--pool reviews unlabelled images: leave out --accept-suggestions, --audit and --labels")
        review = _open_pool(args, review_pool)
    else:
        if args.data is None:
            raise CatdogError("name the data set to review (--data DIR), or a pool of unlabelled images "
                              "(--pool DIR --run RUN)")
        if args.audit is None:
            _load_tensorflow()  # the audit runs the backbone over every image (unless the review kept one)
        review = review_data(data_source(args), audit=args.audit, out=args.out, against=args.against,
                             seed=args.seed, backbone=args.backbone, weights=args.weights,
                             batch_size=args.batch_size, who=args.who)
    with review:
        if not (args.accept_suggestions or args.export):
            from catdog.review.app import serve

            info(f"{len(review.items)} items to review, {review.state()['progress']['decided']} decided; "
                 f"decisions go to {review.log.path}")
            serve(review, host=args.host, port=args.port)
            return 0
        changed = review.accept_suggestions(args.min_score or 0.0) if args.accept_suggestions else []
        exported = review.export(Path(args.export)) if args.export else None
    if args.json:
        print_json({"review": str(review.path), "changed": changed, "export": exported})
        return 0
    for change in changed:
        print(f"{change['path']}: {change['from']} -> {change['to']} ({change['score']:.2f})")
    if args.accept_suggestions:
        info(f"changed {len(changed)} labels to the audit's confident suggestions; recorded in {review.log.path}")
    if exported:
        info(f"wrote {exported['path']}: {exported['rows']} rows, {exported['excluded']} excluded; retrain with: "
             f"catdog train --data {exported['root']} --labels {exported['path']}")
    return 0


def _open_pool(args: argparse.Namespace, review_pool):
    from catdog.cli.common import import_tensorflow_if_needed
    from catdog.runs import Run

    run = Run.open(args.run)
    import_tensorflow_if_needed(run, args.runtime)
    return review_pool(args.pool, run, data=args.data, out=args.out, runtime=args.runtime, who=args.who)


def _load_tensorflow() -> None:
    from catdog import environment

    environment.check_tensorflow()
    environment.import_tensorflow_quietly()
    environment.configure_devices()
