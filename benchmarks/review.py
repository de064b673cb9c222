#!/usr/bin/env python3
"""`catdog review` on the reference photos with 5 % of their labels flipped: what it restores, and what that is worth.

For each draw (a seed), in `benchmarks/work/review/seed<N>/`:

1. `data/`: a copy of the reference's training photos (999 cats, 1,000 dogs) in a flat layout,
   with 50 cats moved into `dogs/` and 50 dogs into `cats/`, chosen by the seed;
2. `catdog audit --data data --out audit`, timed;
3. `catdog review --data data --audit audit --accept-suggestions --export fixed.csv --json`, timed:
   how many of the 100 flipped files get their true class back (target: 90), how many correct
   labels change (target: at most 20), and that no file of `data/` moved or changed (sha256 and
   modification time of every file, before and after);
4. `catdog review --data data --audit audit --port P` serves the page (its start-up time, to the
   page's first answer);
5. the `transfer` preset trained at its defaults with the same seed on the flipped labels (`catdog
   train --data data`) and on the reviewed ones (`--labels fixed.csv`), each scored on its own test
   split (whose labels are those it trained with) and on the reference's 1,000 validation photos,
   which no run saw and whose labels are right (`catdog evaluate RUN --data validation/`); and how
   many files the two runs put in the same split (splits are stratified by class, so a file whose
   label changed can change split).

Writes `review.md` and `review.json` beside this file.

    python benchmarks/review.py [--seeds 0,1,2] [--no-train] [--render]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from catdog.files import write_json, write_text

from bench import catdog_command, child_env, shown
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "work" / "review"
FLIPPED_PER_CLASS = 50


def info(message: str) -> None:
    print(f"[review] {message}", file=sys.stderr, flush=True)


def flipped_copy(reference: Path, target: Path, seed: int) -> set[str]:
    """Copy the training photos into `target` (flat), `FLIPPED_PER_CLASS` of each class into the other's
    folder; the flipped files as `folder/name`."""
    shutil.rmtree(target, ignore_errors=True)
    rng = np.random.default_rng(seed)
    flipped = set()
    for name, other in (("cats", "dogs"), ("dogs", "cats")):
        photos = sorted((reference / "train" / name).glob("*.jpg"))
        chosen = set(rng.choice(len(photos), FLIPPED_PER_CLASS, replace=False).tolist())
        for i, photo in enumerate(photos):
            folder = other if i in chosen else name
            (target / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, target / folder / photo.name)
            if i in chosen:
                flipped.add(f"{folder}/{photo.name}")
    return flipped


def file_states(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(command: list[str], log: Path, env: dict, stdout: Path | None = None) -> float:
    measured = run_measured(command, log=log, stdout=stdout, env=env)
    if measured.returncode != 0:
        raise SystemExit(f"{shown(command)} failed (exit {measured.returncode}); see {log}")
    return round(measured.seconds, 1)


def page_start(folder: Path, env: dict) -> dict:
    """Start `catdog review --port P` on the draw's audit; the seconds to the page's first answer."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = catdog_command("review", "--data", str(folder / "data"), "--audit", str(folder / "audit"), "--out",
                             str(folder / "page-review"), "--port", str(port))
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stderr=open(folder / "page.log", "wb"))
    try:
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                items = len(httpx.get(f"http://127.0.0.1:{port}/api/review", timeout=30).json()["items"])
                break
            except httpx.TransportError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit(f"{shown(command)} did not serve the page; see {folder / 'page.log'}") from None
                time.sleep(0.1)
        seconds = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    return {"command": shown(command).replace(str(port), "P"), "seconds": round(seconds, 1),
            "status": page.status_code, "items": items}


def train_and_score(folder: Path, args, env: dict, name: str, *labels: str) -> dict:
    out = folder / f"run-{name}"
    shutil.rmtree(out, ignore_errors=True)
    command = catdog_command("train", "--model", "transfer", "--data", str(folder / "data"), *labels, "--weights",
                             str(args.weights), "--out", str(out))
    seconds = run(command, folder / f"train-{name}.log", env)
    metrics = json.loads((out / "metrics.json").read_text())
    evaluation = folder / f"evaluate-{name}.json"
    run(catdog_command("evaluate", str(out), "--data", str(args.data / "validation"), "--json"),
        folder / f"evaluate-{name}.log", env, stdout=evaluation)
    clean = json.loads(evaluation.read_text())
    return {"command": shown(command), "seconds": seconds, "test_accuracy": metrics["accuracy"], "test_n": metrics["n"],
            "validation_accuracy": clean["accuracy"], "validation_n": clean["n"],
            "splits": {row[0]: row[2] for row in (line.split(",") for line in
                                                  (out / "splits.csv").read_text().splitlines()[1:])}}


def measure(seed: int, args) -> dict:
    folder = WORK / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    env = child_env(args.weights)
    data = folder / "data"
    info(f"seed {seed}: copying the photos, {2 * FLIPPED_PER_CLASS} labels flipped")
    flipped = flipped_copy(args.data, data, seed)
    before = file_states(data)

    for name in ("audit", "review", "page-review", "fixed.csv"):
        path = folder / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    audit = catdog_command("audit", "--data", str(data), "--out", str(folder / "audit"))
    info(f"seed {seed}: {shown(audit)}")
    audit_seconds = run(audit, folder / "audit.log", env)
    review = catdog_command("review", "--data", str(data), "--audit", str(folder / "audit"), "--out",
                            str(folder / "review"), "--accept-suggestions", "--export", str(folder / "fixed.csv"),
                            "--json")
    review_seconds = run(review, folder / "review.log", env, stdout=folder / "review.json")
    changed = json.loads((folder / "review.json").read_text())["changed"]
    other = {"cats": "dogs", "dogs": "cats"}
    true_class = {path: other[path.split("/")[0]] if path in flipped else path.split("/")[0] for path in before}
    rows = dict(line.split(",") for line in (folder / "fixed.csv").read_text().splitlines()[1:])
    result = {
        "seed": seed, "images": len(before), "flipped": len(flipped),
        "audit": {"command": shown(audit), "seconds": audit_seconds},
        "review": {"command": shown(review), "seconds": review_seconds},
        "changed": len(changed),
        "restored": sum(c["path"] in flipped and c["to"] == true_class[c["path"]] for c in changed),
        "correct_changed": sum(c["path"] not in flipped for c in changed),
        "csv_rows": len(rows), "csv_right": sum(label == true_class[path] for path, label in rows.items()),
        "folder_right": len(before) - len(flipped),
        "images_unchanged": file_states(data) == before,
    }
    info(f"seed {seed}: restored {result['restored']} of {len(flipped)}, {result['correct_changed']} correct labels "
         f"changed, images unchanged: {result['images_unchanged']}")
    result["page"] = page_start(folder, env)
    if not args.no_train:
        info(f"seed {seed}: training transfer on the flipped labels, then on the reviewed ones")
        flipped_run = train_and_score(folder, args, env, "flipped")
        reviewed_run = train_and_score(folder, args, env, "reviewed", "--labels", str(folder / "fixed.csv"))
        same = sum(flipped_run["splits"][p] == reviewed_run["splits"].get(p) for p in flipped_run["splits"])
        test_same = [p for p, s in flipped_run["splits"].items() if s == "test" and reviewed_run["splits"].get(p) == s]
        result["training"] = {"flipped": {k: v for k, v in flipped_run.items() if k != "splits"},
                              "reviewed": {k: v for k, v in reviewed_run.items() if k != "splits"},
                              "same_split": same, "test_files_in_both": len(test_same)}
    return result


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def render(results: dict) -> str:
    from catdog.report import Heading, Paragraph, Table, to_markdown

    draws = results["draws"]
    blocks = [Heading("Reviewing what the audit found: flipped labels restored", 1),
              Paragraph(f"Measured by `python benchmarks/review.py` on {results['started']} on the 2-core machine, "
                        f"shared with other work (load average {results['load_at_start']} at the start). Each draw "
                        f"copies the reference's {draws[0]['images']:,} training photos into a flat layout with "
                        f"{FLIPPED_PER_CLASS} cats moved into `dogs/` and {FLIPPED_PER_CLASS} dogs into `cats/` "
                        "(seeded), runs `catdog audit --data data --out audit`, then `catdog review --data data "
                        "--audit audit --accept-suggestions --export fixed.csv`. Targets: at least 90 of the 100 "
                        "flipped files get their true class back, at most 20 correct labels change, no image "
                        "file moves or changes.")]
    rows = [[str(d["seed"]), f"{d['restored']} of {d['flipped']}", str(d["correct_changed"]), str(d["changed"]),
             f"{d['csv_right']:,} of {d['csv_rows']:,} (folders: {d['folder_right']:,})",
             "yes" if d["images_unchanged"] else "**NO**", f"{d['audit']['seconds']:.0f} s",
             f"{d['review']['seconds']:.1f} s", f"{d['page']['seconds']:.1f} s ({d['page']['items']} items)"]
            for d in draws]
    blocks += [Table(["draw", "flipped restored", "correct labels changed", "labels changed", "right in fixed.csv",
                      "images unchanged", "audit", "review --accept-suggestions", "page up"], rows),
               Paragraph("`images unchanged`: the sha256 and the modification time of every file of the data folder "
                         "are the same after the audit and the review as before. `page up`: `catdog review --data "
                         "data --audit audit --port P` from its start to its page's first answer, and the items it "
                         "queues.")]
    trained = [d for d in draws if "training" in d]
    if trained:
        rows = []
        for d in trained:
            t = d["training"]
            for name in ("flipped", "reviewed"):
                r = t[name]
                rows.append([str(d["seed"]), name, pct(r["test_accuracy"]) + f" of {r['test_n']}",
                             pct(r["validation_accuracy"]) + f" of {r['validation_n']:,}", f"{r['seconds']:.0f} s"])
        blocks += [Heading("What the review is worth: `transfer` trained on each"),
                   Paragraph("`catdog train --model transfer --data data --weights WEIGHTS` (the flipped labels, from "
                             "the folders) against the same with `--labels fixed.csv` (the reviewed labels), at the "
                             "preset's defaults and the same seed (42). Both see the same 1,999 files; the splits are "
                             "drawn per class, so a file whose label changed can land in another split: "
                             + "; ".join(f"draw {d['seed']}: {d['training']['same_split']:,} of {d['images']:,} files "
                                         f"in the same split, and {d['training']['test_files_in_both']} of the flipped "
                                         f"run's {d['training']['flipped']['test_n']} test files in the reviewed run's "
                                         "test split too" for d in trained)
                             + ". `own test split` scores each run on its test split with the labels it trained with "
                             "(the flipped run's test labels are 5 % wrong); `clean validation photos` scores both on "
                             "the reference's 1,000 validation photos (`catdog evaluate RUN --data validation/`), "
                             "which neither saw and whose labels are right: that is the comparison that holds."),
                   Table(["draw", "labels", "own test split", "clean validation photos", "training"], rows)]
    return to_markdown(blocks, BENCH_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the reference data set (default: %(default)s)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 weights (no top)")
    parser.add_argument("--seeds", default="0,1,2", help="the draws of flipped labels (default: %(default)s)")
    parser.add_argument("--no-train", action="store_true", help="leave out the training comparison")
    parser.add_argument("--render", action="store_true", help="measure nothing: write review.md from review.json")
    args = parser.parse_args(argv)
    if args.render:
        write_text(BENCH_DIR / "review.md", render(json.loads((BENCH_DIR / "review.json").read_text())))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"started": time.strftime("%Y-%m-%d %H:%M"), "load_at_start": round(os.getloadavg()[0], 1),
               "draws": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        results["draws"].append(measure(seed, args))
        write_json(BENCH_DIR / "review.json", results)
    write_text(BENCH_DIR / "review.md", render(results))
    print(BENCH_DIR / "review.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
