"""The benchmark's helpers: measuring a child process, subsets, medians, targets and tables.

The benchmark itself is never run here (it trains for hours); these are its pure parts, and its
driver against a stand-in for `catdog train`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from catdog.report import to_markdown

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import reference_recipe  # noqa: E402
import three_epochs  # noqa: E402

import bench  # noqa: E402
import benchkit  # noqa: E402


def test_run_measured_reports_the_childs_own_peak_memory_and_exit_status(tmp_path):
    # Measured from a fresh, small interpreter, as bench.py runs: a child forked from this
    # test process (which may hold TensorFlow) would start its peak at this process's size.
    script = f"""
import json, sys
sys.path.insert(0, {str(BENCHMARKS)!r})
import benchkit
big = benchkit.run_measured([sys.executable, "-c", "b = bytearray(300_000_000); b[::4096] = b'x' * len(b[::4096])"])
small = benchkit.run_measured([sys.executable, "-c", "raise SystemExit(3)"])
print(json.dumps([big.returncode, big.peak_rss_bytes, big.seconds, small.returncode, small.peak_rss_bytes]))
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    big_code, big_peak, big_seconds, small_code, small_peak = json.loads(output)
    assert big_code == 0 and small_code == 3
    assert big_peak > 300_000_000
    assert small_peak < 100_000_000  # not the earlier child's peak
    assert big_seconds > 0


def test_run_measured_splits_output_from_messages(tmp_path):
    code = "import sys; print('result'); print('message', file=sys.stderr)"
    benchkit.run_measured([sys.executable, "-c", code], stdout=tmp_path / "out", log=tmp_path / "log")
    assert (tmp_path / "out").read_text() == "result\n"
    assert (tmp_path / "log").read_text() == "message\n"


def test_the_driver_stays_light_and_the_reference_recipe_stands_alone():
    # bench.py and three_epochs.py run catdog in child processes: they must not load TensorFlow.
    # reference_recipe.py is the independent reference recipe: it must not load catdog.
    script = f"""
import sys
sys.path.insert(0, {str(BENCHMARKS)!r})
import reference_recipe
alone = sorted(m for m in sys.modules if m.split(".")[0] == "catdog")
import bench, three_epochs
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print(alone, heavy)
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["[]", "[]"]


def test_link_subset_links_the_first_images_of_each_class(tmp_path, make_image):
    source = tmp_path / "data"
    for split in ("train", "validation"):
        for label in ("cats", "dogs"):
            for i in range(4):
                make_image(source / split / label / f"{label}.{i}.jpg")
    (source / "train" / "cats" / ".hidden.jpg").write_bytes(b"")
    subset = benchkit.link_subset(source, tmp_path / "subset", {"train": 3, "validation": 1})
    assert sorted(p.name for p in (subset / "train" / "cats").iterdir()) == ["cats.0.jpg", "cats.1.jpg", "cats.2.jpg"]
    assert [p.name for p in (subset / "validation" / "dogs").iterdir()] == ["dogs.0.jpg"]
    linked = subset / "train" / "dogs" / "dogs.0.jpg"
    assert linked.is_symlink() and linked.read_bytes() == (source / "train" / "dogs" / "dogs.0.jpg").read_bytes()


def test_prediction_images_alternate_classes(tmp_path, make_image):
    for label in ("cats", "dogs"):
        for i in range(3):
            make_image(tmp_path / "validation" / label / f"{label}.{i}.jpg")
    names = [p.name for p in bench.prediction_images(tmp_path, 4)]
    assert names == ["cats.0.jpg", "dogs.0.jpg", "cats.1.jpg", "dogs.1.jpg"]


def test_reference_recipe_scores_on_the_test_rows_of_catdogs_manifest(tmp_path, make_image):
    for name in ("cats/a.jpg", "cats/b.jpg", "dogs/c.jpg"):
        make_image(tmp_path / "data" / "validation" / name)
    manifest = tmp_path / "splits.csv"
    manifest.write_text("path,class,split\nvalidation/cats/a.jpg,cats,test\nvalidation/cats/b.jpg,cats,validation\n"
                        "validation/dogs/c.jpg,dogs,test\n")
    test_dir = reference_recipe.link_manifest_test_split(manifest, tmp_path / "data", tmp_path / "test")
    assert sorted(str(p.relative_to(test_dir)) for p in test_dir.rglob("*.jpg")) == ["cats/00000-a.jpg",
                                                                                    "dogs/00000-c.jpg"]
    manifest.write_text("path,class,split\nvalidation/cats/a.jpg,cats,train\n")
    with pytest.raises(SystemExit, match="no test files"):
        reference_recipe.link_manifest_test_split(manifest, tmp_path / "data", tmp_path / "none")


def test_epoch_stats():
    assert bench.epoch_stats([9.0, 3.0, 5.0]) == {
        "epoch_mean": pytest.approx(17 / 3),
        "epoch_first": 9.0,
        "epoch_later": 4.0,
        "epoch_fastest": 3.0,
    }
    assert set(bench.epoch_stats([]).values()) == {None}
    assert bench.epoch_stats([7.0])["epoch_fastest"] is None  # the first epoch alone has no later one


FAKE_CATDOG = """
import json, sys
from pathlib import Path
from catdog.runs.folder import write_history
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
print(" ".join(args), file=sys.stderr)
if "--model" in args and args[args.index("--model") + 1] == "broken":
    raise SystemExit(4)
write_history(out / "history.csv", [
    {"epoch": 0, "loss": 0.7, "accuracy": 0.5, "val_loss": 0.6, "val_accuracy": 0.6, "seconds": 9},
    {"epoch": 1, "loss": 0.5, "accuracy": 0.7, "val_loss": 0.5, "val_accuracy": 0.8, "seconds": 3},
    {"epoch": 2, "loss": 0.4, "accuracy": 0.8, "val_loss": 0.5, "val_accuracy": 0.7, "seconds": 5},
])
(out / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "loss": 0.5, "n": 200}))
"""


def test_train_catdog_times_the_command_and_reads_the_run_folder(tmp_path, monkeypatch):
    fake = tmp_path / "fake_catdog.py"
    fake.write_text(FAKE_CATDOG)
    monkeypatch.setattr(bench, "catdog_command", lambda *args: [sys.executable, str(fake), *args])
    job = bench.Job("transfer-160", "transfer", ["--image-size", "160"])
    record = bench.train_catdog(job, tmp_path / "data", tmp_path / "w.h5", 3, tmp_path / "run", tmp_path / "log", None)
    assert record["command"].endswith(f"--image-size 160 --epochs 3 --weights {tmp_path / 'w.h5'}")
    assert record["returncode"] == 0 and record["command_seconds"] > 0 and record["peak_rss_bytes"] > 0
    assert record["epochs"] == 3 and record["epoch_seconds"] == [9.0, 3.0, 5.0]
    assert record["epoch_fastest"] == 3.0 and record["history_seconds"] == 17.0
    assert (record["best_val_accuracy"], record["last_val_accuracy"]) == (0.8, 0.7)
    assert (record["test_accuracy"], record["test_n"]) == (0.75, 200)
    assert (tmp_path / "log").read_text().startswith("train --model transfer ")  # the child's messages

    failed = bench.train_catdog(bench.Job("broken", "broken"), tmp_path, tmp_path, None, tmp_path / "b",
                                tmp_path / "b.log", None)
    assert failed["error"].startswith("exit status 4") and "test_accuracy" not in failed
    assert "--epochs" not in failed["command"] and "--weights" not in failed["command"]


def test_median_record_takes_medians_of_numbers_and_skips_failed_repeats():
    records = [
        {"preset": "scratch", "seconds": 10.0, "test_accuracy": 0.6},
        {"preset": "scratch", "seconds": 30.0, "test_accuracy": None},
        {"preset": "scratch", "seconds": 20.0, "test_accuracy": 0.8},
        {"error": "exit status 1"},
    ]
    merged = bench.median_record(records)
    assert merged == {"preset": "scratch", "seconds": 20.0, "test_accuracy": pytest.approx(0.7), "repeats": 3}
    assert bench.median_record([{"error": "exit status 2"}]) == {"error": "exit status 2"}
    assert bench.median([None, None]) is None


def summary(**catdog) -> dict:
    reference = {
        "1": {"epoch_mean": 10.0, "epoch_fastest": 8.0, "test_accuracy": 0.55},
        "2": {"epoch_mean": 12.0, "epoch_fastest": 10.0, "test_accuracy": 0.6},
        "3": {"epoch_mean": 12.0},
        "4": {"fit_seconds": 800.0},
    }
    predict = {"speedup": 4.0, "catdog_images_per_second": 150.0, "catdog_steady_images_per_second": 400.0,
               "keras_test_accuracy": 0.985, "export_test_accuracy": 0.975, "serve_first_answer_seconds": 3.0}
    return {"reference": reference, "reference_total": {"fit_seconds": 1900.0}, "catdog": catdog, "predict": predict}


def test_targets_compare_with_the_reference_counterparts():
    found = bench.judge(
        summary(
            transfer={"test_accuracy": 0.975, "command_seconds": 90.0},
            finetune={"test_accuracy": 0.98, "command_seconds": 700.0},
            scratch={"epoch_mean": 5.0},
            augmented={"epoch_mean": 8.0, "epoch_fastest": 5.0},
            cnn={"error": "exit status 1"},
        ),
        {"peak_rss_bytes": 3.5e9, "command_seconds": 700.0,
         "models": {"scratch": {"test_accuracy": 0.6}, "augmented": {"test_accuracy": 0.5}}},
    )
    by_name = {t["name"]: t for t in found}
    assert [t["name"] for t in found] == [t.name for t in bench.TARGETS]
    transfer_time = by_name["transfer: command time / reference model 4 fit"]
    assert transfer_time["measured"] == pytest.approx(90 / 800)
    assert (transfer_time["needed"], transfer_time["at_most"], transfer_time["passed"]) == (0.125, True, True)
    assert by_name["transfer: test accuracy"]["passed"] is True
    assert by_name["finetune: test accuracy"]["passed"] is False
    assert by_name["finetune: command time / reference model 4 fit"]["passed"] is True
    assert by_name["scratch: time per epoch / reference model 1"]["measured"] == pytest.approx(0.5)
    assert by_name["augmented: time per epoch / reference model 2"]["passed"] is False  # 8/12 > 0.6
    assert by_name["preprocessed: time per epoch / reference model 3"]["passed"] is None  # not run
    assert by_name["augmented: fastest later epoch / reference model 2"]["measured"] == pytest.approx(0.5)
    assert by_name["scratch: fastest later epoch / reference model 1"]["passed"] is None  # no such figure
    assert by_name["cnn: test accuracy"]["passed"] is None  # failed
    assert by_name["predict: images/s, whole command"]["passed"] is False
    assert by_name["predict: images/s, steady (start-up left out)"]["passed"] is True
    assert by_name["memory: `catdog run` at its defaults, peak RSS"]["passed"] is True
    assert by_name["`catdog run` at its defaults: command time / the reference's four models' fit"]["measured"] == (
        pytest.approx(700 / 1900))
    assert by_name["`catdog run`: scratch test accuracy / reference model 1's"]["passed"] is True  # 0.6 >= 0.55
    assert by_name["`catdog run`: augmented test accuracy / reference model 2's"]["passed"] is False  # 0.5 < 0.6
    assert by_name["`catdog run`: transfer test accuracy / reference model 4's"]["passed"] is None  # not in the run
    assert by_name["predict: the export's test accuracy below the Keras model's"]["measured"] == pytest.approx(0.01)
    assert by_name["predict: the export's test accuracy below the Keras model's"]["passed"] is False
    assert by_name["serve: first answer after start"]["passed"] is True


def test_a_failed_memory_step_is_not_measured():
    found = bench.judge(summary(), {"error": "exit status 1", "peak_rss_bytes": 1})
    assert [t["passed"] for t in found if t["name"].startswith("memory")] == [None]


def test_every_target_names_a_figure_the_benchmark_records():
    # The committed full run measured every target: a row whose figure names a key bench does
    # not record (a typo, a renamed key) would come out as "not measured".
    results = json.loads((BENCHMARKS / "results.json").read_text())
    judged = bench.judge(results["summary"], results["exercise"])
    assert [t["name"] for t in judged if t["measured"] is None] == []
    assert judged == results["targets"]


def test_figure_reads_paths_and_ratios():
    found = {"catdog": {"a": {"x": 3.0}}, "reference": {"1": {"x": 4.0, "zero": 0.0}}}
    assert bench.figure("catdog.a.x", found) == 3.0
    assert bench.figure("catdog.a.x / reference.1.x", found) == 0.75
    assert bench.figure("catdog.a.x / reference.1.zero", found) is None
    assert bench.figure("catdog.b.x / reference.1.x", found) is None
    assert bench.figure("catdog.a.x.deeper", found) is None
    assert bench.figure("reference.1.x - catdog.a.x", found) == 1.0
    assert bench.figure("reference.1.x - catdog.b.x", found) is None


def test_fmt_and_record_table():
    assert bench.fmt(0.9712, "%") == "97.1 %"
    assert bench.fmt(42.04, "s") == "42.0 s"
    assert bench.fmt(1500, "s") == "25.0 min"
    assert bench.fmt(0.125, "x") == "0.125×"
    assert bench.fmt(3_456_000_000, "B") == "3,456 MB"
    assert bench.fmt(None, "%") == "–"
    table = bench.record_table(
        "preset", {"scratch": {"epoch_mean": 2.0}, "cnn": {"error": "exit status 1"}}, [("s/epoch", "epoch_mean", "s")]
    )
    assert to_markdown([table], BENCHMARKS).splitlines() == [
        "| preset | s/epoch |",
        "|---|---|",
        "| scratch | 2.0 s |",
        "| cnn | failed: exit status 1 |",
    ]


def test_commands_are_shown_as_typed_in_the_repository():
    command = [*bench.catdog_command("train", "--data", str(bench.REPO / "benchmarks/work/data")), "--out", "/tmp/x y"]
    assert bench.shown(command) == "catdog train --data benchmarks/work/data --out '/tmp/x y'"


def test_parse_job_reads_a_variant():
    assert bench.parse_job("transfer-aug=transfer --augment") == bench.Job("transfer-aug", "transfer", ["--augment"])
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_job("transfer")


def test_count_predictions_ignores_other_lines(tmp_path):
    path = tmp_path / "predict.jsonl"
    path.write_text('{"path": "a.jpg", "label": "cats"}\nnot json\n{"path": "b.jpg", "label": "dogs"}\n[1]\n')
    assert bench.count_predictions(path) == 2


def recorded_results(catdog: dict, jobs: list[dict] | None = None) -> dict:
    """A results.json as bench.py writes it, before its summary: one repeat of the reference's model 1 and `catdog`."""
    return {
        "date": "2026-11-22 00:00 UTC",
        "command": "bench.py",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "usable_cores": 2, "bfloat16": True, "memory_bytes": 2.5e10,
                    "python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1", "os": "Linux"},
        "load_average": {"start": None, "end": None},
        "settings": {"quick": False, "data": "d", "subset": None, "weights": "w", "reference_epochs": 3,
                     "catdog_epochs": None, "repeat": 1, "jobs": jobs or []},
        "repeats": [{"catdog": catdog, "reference": {"models": {"1": {"model": 1, "epoch_seconds": [12.0, 8.0, 10.0]}}},
                     "failures": []}],
        "exercise": None,
        "seconds": 1.0,
    }


def test_render_recomputes_epoch_figures_from_the_recorded_times(tmp_path):
    record = {"preset": "scratch", "epoch_seconds": [9.0, 20.0, 4.0], "epoch_mean": 1.0}
    results = recorded_results({"scratch": record})
    results["exercise"] = {"error": "exit status 1; see run.log", "peak_rss_bytes": 1e9}
    (tmp_path / "results.json").write_text(json.dumps(results))

    bench.rerender(tmp_path / "results.md")

    written = json.loads((tmp_path / "results.json").read_text())
    assert written["summary"]["catdog"]["scratch"]["epoch_mean"] == pytest.approx(11.0)
    assert written["summary"]["catdog"]["scratch"]["epoch_fastest"] == 4.0
    by_name = {t["name"]: t for t in written["targets"]}
    assert by_name["scratch: fastest later epoch / reference model 1"]["measured"] == pytest.approx(0.5)
    page = (tmp_path / "results.md").read_text()
    assert "| scratch | model 1 | fastest later epoch | 4.0 s | 8.0 s | 0.5× |" in page
    assert "| scratch: fastest later epoch / reference model 1 | 0.5× | ≤ 0.6× | pass |" in page
    assert "| transfer: test accuracy | – | ≥ 97.0 % | not measured |" in page
    assert "Failed: exit status 1; see run.log (peak RSS until then 1,000 MB)." in page
    assert written["failures"] == ["catdog run: exit status 1; see run.log"]  # reported, and bench.py exits 1


def test_render_reads_results_written_before_the_reference_was_named(tmp_path):
    # A results.json from before the tutorial's side was called the reference keeps its figures.
    results = recorded_results({})
    results["settings"]["seed_epochs"] = results["settings"].pop("reference_epochs")
    models = results["repeats"][0].pop("reference")["models"]
    models["1"]["seed_test_accuracy"] = 0.5
    results["repeats"][0]["seed"] = {"models": models}
    (tmp_path / "results.json").write_text(json.dumps(results))

    bench.rerender(tmp_path / "results.md")

    written = json.loads((tmp_path / "results.json").read_text())
    assert written["settings"]["reference_epochs"] == 3 and "seed_epochs" not in written["settings"]
    assert written["summary"]["reference"]["1"]["epoch_fastest"] == 8.0
    assert written["repeats"][0]["reference"]["models"]["1"]["reference_test_accuracy"] == 0.5
    assert "| epochs | reference 3; catdog each preset at its defaults |" in (tmp_path / "results.md").read_text()


def test_three_epochs_page_counts_wins_and_averages_over_seeds():
    def run(preset, seed, accuracy, loss):
        return {"preset": preset, "seed": seed, "test_accuracy": accuracy, "test_loss": loss, "best_val_accuracy": 0.99}

    results = {
        "date": "today", "command": "python benchmarks/three_epochs.py", "seconds": 600.0, "epochs": 3,
        "seeds": [42, 1, 2],
        "runs": [run("transfer", 42, 0.99, 0.05), run("finetune", 42, 0.985, 0.04),
                 run("transfer", 1, 0.98, 0.05), run("finetune", 1, 0.995, 0.02),
                 run("transfer", 2, 0.97, 0.06), {"preset": "finetune", "seed": 2, "error": "exit status 1"}],
    }
    page = three_epochs.render(results)
    assert "| seed | transfer test accuracy | finetune test accuracy | transfer test loss |" in page
    assert "| 42 | 99.0 % | 98.5 % | 0.050 | 0.040 |" in page
    assert "| 2 | 97.0 % | – |" in page
    assert "| **mean** | 98.0 % | 99.0 % |" in page  # each preset over the seeds it finished
    assert "ahead on test accuracy for 1 of 2 seeds, level for 0, behind for 1" in page
    assert "not measured: finetune, seed 2: exit status 1" in page


def test_three_epochs_rejects_a_bad_seed_list():
    with pytest.raises(argparse.ArgumentTypeError, match="whole numbers"):
        three_epochs.seed_list("42,x")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one"):
        three_epochs.seed_list(" , ")


def test_remeasure_replaces_only_the_named_rows_and_says_when(tmp_path, monkeypatch):
    old = {"preset": "scratch", "epoch_seconds": [9.0, 9.0], "test_accuracy": 0.6}
    kept = {"preset": "augmented", "epoch_seconds": [7.0, 7.0], "test_accuracy": 0.65}
    jobs = [{"name": name, "preset": preset, "extra": extra} for name, preset, extra in
            [("scratch", "scratch", []), ("augmented", "augmented", []), ("transfer", "transfer", [])]]
    results = recorded_results({"scratch": old, "augmented": kept}, jobs)
    results["repeats"][0]["failures"] = ["scratch: exit status 1; see scratch.log"]  # an earlier failure of the row
    (tmp_path / "results.json").write_text(json.dumps(results))
    trained = []

    def train_catdog(job, data, weights, epochs, out, log, env):
        trained.append((job.name, str(data), epochs, env["CATDOG_WEIGHTS"]))
        return {"preset": job.preset, "epoch_seconds": [4.0, 4.0], **bench.epoch_stats([4.0, 4.0]),
                "test_accuracy": 0.7}

    monkeypatch.setattr(bench, "train_catdog", train_catdog)
    monkeypatch.setattr(bench, "warm_page_cache", lambda root: None)
    monkeypatch.setattr(bench, "WORK_DIR", tmp_path / "work")
    results_md = tmp_path / "results.md"

    assert bench.remeasure(results_md, ["scratch"], "bench.py --remeasure scratch") == 0

    assert trained == [("scratch", "d", None, "w")]  # with the recorded run's data, epochs and weights
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["repeats"][0]["catdog"]["scratch"]["test_accuracy"] == 0.7
    assert written["repeats"][0]["catdog"]["augmented"] == kept
    assert written["repeats"][0]["failures"] == [] and written["failures"] == []
    assert written["summary"]["catdog"]["scratch"]["epoch_mean"] == pytest.approx(4.0)
    page = results_md.read_text()
    assert "| re-measured | scratch on " in page and "`bench.py --remeasure scratch`" in page


def test_remeasure_refuses_the_prediction_model_and_unknown_rows(tmp_path, monkeypatch, capsys):
    jobs = [{"name": "transfer", "preset": "transfer", "extra": []}]
    (tmp_path / "results.json").write_text(json.dumps(recorded_results({}, jobs)))
    monkeypatch.setattr(bench, "train_catdog", lambda *a: pytest.fail("nothing may be trained"))
    for name in ("transfer", "nosuch"):
        assert bench.remeasure(tmp_path / "results.md", [name], "bench.py") == 2
        assert f"cannot re-measure {name}" in capsys.readouterr().err
    assert bench.remeasure(tmp_path / "missing" / "results.md", ["scratch"], "bench.py") == 2
    assert not (tmp_path / "results.md").exists()
