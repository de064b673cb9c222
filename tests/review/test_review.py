"""`catdog review` without the page: the queue, decisions (append-only, locked, resumable), undo, accepting
the audit's confident suggestions, and the labels CSV they export, on a generated data set with an audit
written as `catdog audit` writes one (conftest.write_review_set)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from catdog.cli import main
from catdog.data.labels import LabelsFile, read_labels
from catdog.errors import CatdogError, ParameterError
from catdog.review import review_data
from catdog.review.decisions import DECISIONS_FILE

from conftest import REPO, REVIEW_SUSPECTS, file_states, live_server, one_line_error, write_review_set


@pytest.fixture
def review_set(tmp_path):
    data, audit = write_review_set(tmp_path)
    return data, audit, tmp_path / "review"


def read_csv(path) -> dict[str, str]:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["path", "label"]
        return dict(reader)


def test_the_queue_puts_the_likeliest_problems_first_with_a_reason_each(review_set):
    data, audit, out = review_set
    with review_data(data, audit=audit, out=out) as review:
        ids = [item.id for item in review.items]
        assert ids == [
            "label:cats/d-flip0.jpg", "label:dogs/c-flip0.jpg", "label:cats/c5.jpg",  # confident, by score
            "duplicate:cats/c0.jpg",  # a leak
            "label:cats/d-flip1.jpg", "label:dogs/d3.jpg", "label:dogs/d4.jpg", "label:cats/c6.jpg",
            "outlier:dogs/d7.jpg",
            "skipped:cats/notes.jpg",
        ]
        first = review.items[0]
        assert (first.members[0].label, first.suggested, first.score, first.confident) == ("cats", "dogs", 0.95, True)
        assert first.reason == ("Labelled cats, but a model trained on the other images gives cats only 5% and says "
                                "dogs; confident learning flags it too.")
        group = review.items[3]
        assert group.leak and [m.split for m in group.members] == ["train", "test"]
        assert group.reason == "These 2 files hold the same bytes; they span test and train."
        assert review.items[-1].reason == "The scan left it out of the data set: not an image."
        assert all(item.reason.endswith(".") and "\n" not in item.reason for item in review.items)
        assert review.state()["progress"] == {"decided": 0, "total": 10}


def test_decisions_are_appended_with_who_and_when_and_a_restart_sees_them(review_set):
    data, audit, out = review_set
    with review_data(data, audit=audit, out=out, who="alice") as review:
        review.decide("label:cats/d-flip0.jpg", "change", label="dogs")
        review.decide("duplicate:cats/c0.jpg", "keep_one", keep=0)
        review.decide("outlier:dogs/d7.jpg", "exclude")
        review.decide("label:dogs/d3.jpg", "keep")
    lines = (out / DECISIONS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["seq"], r["who"], r["action"]) for r in records] == [
        (1, "alice", "change"), (2, "alice", "keep_one"), (3, "alice", "exclude"), (4, "alice", "keep")]
    assert records[0]["changes"] == {"cats/d-flip0.jpg": "dogs"}
    assert records[0]["before"] == {"cats/d-flip0.jpg": "cats"}
    assert records[1]["changes"] == {"cats/c0.jpg": "cats", "cats/c0-copy.jpg": None}
    assert all(r["time"].endswith("+00:00") for r in records)

    with review_data(data, audit=audit, out=out, who="bob") as again:
        decided = {item["id"]: item["decision"] for item in again.state()["items"] if item["decision"]}
        assert set(decided) == {"label:cats/d-flip0.jpg", "duplicate:cats/c0.jpg", "outlier:dogs/d7.jpg",
                                "label:dogs/d3.jpg"}
        assert decided["label:cats/d-flip0.jpg"]["who"] == "alice"
        again.undo()  # bob takes back alice's last decision
        again.decide("label:cats/c6.jpg", "change", label="lion")  # a class the data set does not have
    records = [json.loads(line) for line in (out / DECISIONS_FILE).read_text().splitlines()]
    assert lines == (out / DECISIONS_FILE).read_text().splitlines()[:4]  # appended, never rewritten
    assert records[4] == {**records[4], "who": "bob", "action": "undo", "undoes": 4, "item": "label:dogs/d3.jpg"}


def test_the_export_is_every_usable_image_with_its_reviewed_label_as_labels_reads_it(review_set, tmp_path):
    data, audit, out = review_set
    before = file_states(data)
    with review_data(data, audit=audit, out=out) as review:
        review.decide("label:cats/d-flip0.jpg", "change", label="dogs")
        review.decide("duplicate:cats/c0.jpg", "keep_one", keep=1)
        review.decide("outlier:dogs/d7.jpg", "exclude")
        review.decide("label:dogs/d4.jpg", "exclude")
        review.undo()  # d4 stays in
        review.decide("label:cats/c6.jpg", "change", label="lion")
        summary = review.export(tmp_path / "reviewed.csv")
    labels = read_csv(tmp_path / "reviewed.csv")
    assert summary["rows"] == len(labels) == 28 - 2  # usable images less the copy kept out and the outlier
    assert summary["excluded"] == 2 and summary["classes"] == {"cats": 12, "dogs": 13, "lion": 1}
    assert labels["cats/d-flip0.jpg"] == "dogs" and labels["cats/c6.jpg"] == "lion" and labels["dogs/d4.jpg"] == "dogs"
    assert "cats/c0.jpg" not in labels and labels["cats/c0-copy.jpg"] == "cats" and "dogs/d7.jpg" not in labels
    assert "cats/notes.jpg" not in labels and labels["cats/d-flip1.jpg"] == "cats"  # undecided: as it was
    assert list(labels) == sorted(labels)
    # The file is what `--labels` reads: every row names one usable file.
    files = [p.relative_to(data).as_posix() for p in data.rglob("*.jpg")]
    read = read_labels(LabelsFile(tmp_path / "reviewed.csv"), data, files)
    assert read.task == "multiclass" and read.labels == {path: (label,) for path, label in labels.items()}
    assert file_states(data) == before  # no image moved or changed


def test_accepting_suggestions_changes_the_confident_ones_and_nothing_else(review_set, tmp_path, capsys):
    data, audit, out = review_set
    assert main(["review", "--data", str(data), "--audit", str(audit), "--out", str(out), "--accept-suggestions",
                 "--min-score", "0.6", "--export", str(tmp_path / "fixed.csv"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    confident = [(path, suggested) for path, suggested, score, sure in REVIEW_SUSPECTS if sure and score >= 0.6]
    assert [(c["path"], c["to"]) for c in printed["changed"]] == confident
    assert printed["changed"][0] == {"path": "cats/d-flip0.jpg", "from": "cats", "to": "dogs", "score": 0.95}
    labels = read_csv(tmp_path / "fixed.csv")
    changed = {path for path, label in labels.items() if label != path.split("/")[0]}
    assert changed == {path for path, _ in confident}
    assert printed["export"]["rows"] == len(labels) == 28

    # Again, without --min-score: only the confident one left; those already decided stay as they are.
    assert main(["review", "--data", str(data), "--audit", str(audit), "--out", str(out), "--accept-suggestions",
                 "--export", str(tmp_path / "fixed.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["cats/c5.jpg: cats -> dogs (0.52)"]
    assert "changed 1 labels" in captured.err and "catdog train --data" in captured.err


def test_one_process_writes_a_review_folder(review_set):
    data, audit, out = review_set
    command = [sys.executable, "-m", "catdog", "review", "--data", str(data), "--audit", str(audit), "--out", str(out),
               "--export", str(out / "elsewhere.csv")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with review_data(data, audit=audit, out=out):
        refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "is being written by process" in refused.stderr
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=120).returncode == 0


def test_a_decision_cut_off_by_a_crash_is_dropped_and_an_edited_file_refused(review_set):
    data, audit, out = review_set
    with review_data(data, audit=audit, out=out) as review:
        review.decide("label:cats/d-flip0.jpg", "change", label="dogs")
    path = out / DECISIONS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq": 2, "time": "2026-')  # the process died in the middle of a write
    with review_data(data, audit=audit, out=out) as review:
        assert review.state()["progress"]["decided"] == 1
        review.decide("label:dogs/c-flip0.jpg", "change", label="cats")
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2]
    path.write_text(path.read_text().replace('"seq": 2', '"seq": 7'))
    with pytest.raises(CatdogError, match="line 2, is damaged"):
        review_data(data, audit=audit, out=out)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda r: r.decide("label:nope.jpg", "keep"), ParameterError, "no item 'label:nope.jpg'"),
    (lambda r: r.decide("label:cats/c5.jpg", "relabel"), ParameterError, "unknown action 'relabel'"),
    (lambda r: r.decide("label:cats/c5.jpg", "change", label=" "), ParameterError, "label must be a class name"),
    (lambda r: r.decide("label:cats/c5.jpg", "change", label="a/b"), ParameterError, "label must be a class name"),
    (lambda r: r.decide("label:cats/c5.jpg", "keep_one", keep=0), ParameterError, "is for duplicate groups"),
    (lambda r: r.decide("duplicate:cats/c0.jpg", "keep_one", keep=5), ParameterError, "keep must name a file"),
    (lambda r: r.decide("duplicate:cats/c0.jpg", "keep_one", keep="0"), ParameterError, "keep must name a file"),
    (lambda r: r.decide("label:cats/c5.jpg", "change", label=5), ParameterError, "label must be a class name"),
])
def test_a_decision_that_cannot_be_made_is_refused_and_not_recorded(review_set, call, error, message):
    data, audit, out = review_set
    with review_data(data, audit=audit, out=out) as review:
        with pytest.raises(error, match=message):
            call(review)
        assert review.log.records == [] and not (out / DECISIONS_FILE).exists()
        assert review.undo() is None


def test_cli_errors_are_one_line(review_set, tmp_path, capsys):
    data, audit, out = review_set
    one_line_error(capsys, main(["review", "--pool", str(data)]), "--pool and --run go together")
    one_line_error(capsys, main(["review", "--data", str(data), "--audit", str(audit), "--min-score", "0.5"]),
                   "--min-score goes with --accept-suggestions")
    nothing = tmp_path / "nothing"
    one_line_error(capsys, main(["review", "--data", str(data), "--audit", str(nothing), "--out", str(tmp_path / "r2"),
                                 "--export", str(tmp_path / "x.csv")]), "nothing does not exist")
    assert not (tmp_path / "r2").exists()  # nothing is written for a review that cannot start
    (tmp_path / "mine.csv").write_text("path,label\n")
    one_line_error(capsys, main(["review", "--data", str(data), "--audit", str(audit), "--out", str(out),
                                 "--export", str(tmp_path / "mine.csv")]), "will not replace it")
    assert (tmp_path / "mine.csv").read_text() == "path,label\n"
    one_line_error(capsys, main(["review", "--data", str(data), "--audit", str(write_review_set(tmp_path / "2")[1]),
                                 "--out", str(out), "--export", str(tmp_path / "y.csv")]), "2/data, not of")
    other, other_audit = write_review_set(tmp_path / "other")
    one_line_error(capsys, main(["review", "--data", str(other), "--audit", str(other_audit), "--out", str(out),
                                 "--export", str(tmp_path / "y.csv")]), f"is the review of data {data.resolve()}")


def test_the_api_takes_json_only_and_answers_loopback_names_only(review_set):
    import httpx

    from catdog.review.app import create_app

    data, audit, out = review_set
    with review_data(data, audit=audit, out=out) as review, live_server(create_app(review)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        state = client.get("/api/review").json()
        assert state["classes"] == ["cats", "dogs"] and len(state["items"]) == 10
        assert "file" not in state["items"][0]["members"][0]  # where files are on disk stays on the server
        assert client.get("/api/items/0/files/0").content == (data / "cats" / "d-flip0.jpg").read_bytes()
        assert client.get("/api/items/0/files/9").status_code == 404

        form = client.post("/api/decide", data={"item": "label:cats/c5.jpg", "action": "keep"})
        assert form.status_code == 415 and form.json()["detail"] == "send JSON (Content-Type: application/json)"
        bad = client.post("/api/decide", json={"item": "label:cats/c5.jpg", "action": "change", "label": ""})
        assert bad.status_code == 422 and "label must be a class name" in bad.json()["detail"]
        assert client.post("/api/undo", json={}).status_code == 409
        decided = client.post("/api/decide", json={"item": "label:cats/c5.jpg", "action": "keep"}).json()
        assert decided["progress"] == {"decided": 1, "total": 10} and decided["decision"]["action"] == "keep"
        undone = client.post("/api/undo", json={}).json()
        assert undone["item"] == "label:cats/c5.jpg" and undone["decision"] is None

        rebinding = client.get("/api/review", headers={"Host": "evil.example"})
        assert rebinding.status_code == 400 and "not a loopback name" in rebinding.json()["detail"]
        assert not (out / "reviewed.csv").exists()
        assert client.post("/api/export", json={}).json()["rows"] == 28
        assert (out / "reviewed.csv").is_file()
