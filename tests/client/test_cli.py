"""cxr-client against the real service on 127.0.0.1 with real images."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxr_client.cli import main
from tests.client.conftest import BROKEN, REFUSED, SCORABLE, SKIPPED
from tests.conftest import REPO_ROOT
from tests.servers import free_port


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_scores_a_mixed_folder_and_reports_the_bad_file(service_url, mixed_folder, tmp_path, capsys):
    out = tmp_path / "results.csv"
    code = main(["predict", str(mixed_folder), "--recursive", "--url", service_url, "--out", str(out)])
    assert code == 1  # one file failed
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert set(rows) == SCORABLE | {BROKEN, REFUSED}
    assert rows[REFUSED]["code"] == "not_chest_xray" and "Modality" in rows[REFUSED]["error"]
    assert rows[BROKEN]["code"] == "undecodable_image"
    for name in SCORABLE:
        assert rows[name]["label"] in ("normal", "pneumonia") and not rows[name]["error"], rows[name]
        assert float(rows[name]["p_pneumonia"]) + float(rows[name]["p_normal"]) == pytest.approx(1)
        assert rows[name]["model_version"] and rows[name]["request_id"] and rows[name]["threshold"]
    assert "422" in rows[BROKEN]["error"] and "undecodable_image" in rows[BROKEN]["error"]
    assert not rows[BROKEN]["label"]
    err = capsys.readouterr().err
    assert f"scored {len(SCORABLE)}, refused 1 (not chest X-rays), failed 1, skipped {len(SKIPPED)}" in err
    assert "rate" in err and "elapsed" in err


def test_all_scored_exits_0_and_writes_json_lines(service_url, mixed_folder, tmp_path):
    (mixed_folder / BROKEN).unlink()
    out = tmp_path / "results.jsonl"
    assert main(["predict", str(mixed_folder), "--recursive", "--url", service_url, "--out", str(out),
                 "--concurrency", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {Path(r["path"]).name for r in rows} == SCORABLE | {REFUSED}  # a refusal is an answer: exit 0
    # --resume: scored and refused files are done; nothing is sent again
    assert main(["predict", str(mixed_folder), "--recursive", "--url", service_url, "--out", str(out),
                 "--resume"]) == 0
    assert len(out.read_text().splitlines()) == len(rows)


def test_without_recursive_only_the_top_folder(service_url, mixed_folder, tmp_path):
    out = tmp_path / "top.csv"
    main(["predict", str(mixed_folder), "--url", service_url, "--out", str(out)])
    assert {Path(r["path"]).name for r in _rows(out)} == {"a_normal.jpeg", "c_normal.png", "d_study.dcm", BROKEN, REFUSED}


def test_csv_to_stdout_by_default(service_url, val_images, capsys):
    assert main(["predict", str(val_images[0]), "--url", service_url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ("path,label,p_pneumonia,p_normal,pneumonia_type,p_bacterial,p_viral,threshold,"
                        "model_version,request_id,warning,code,error")
    assert len(lines) == 2


def test_interrupted_run_resumes_and_scores_each_file_once(front_factory, val_images, tmp_path):
    folder = tmp_path / "sixteen"
    folder.mkdir()
    for path in val_images:
        (folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "results.csv"
    with front_factory(delay_s=0.25) as (url, front):  # slow enough to interrupt half-way
        command = [sys.executable, "-m", "cxr_client.cli", "predict", str(folder), "--url", url,
                   "--out", str(out), "--concurrency", "1"]
        # SIGINT as a foreground program in a terminal has it: a suite started in the background
        # (`cmd &` in a script) runs with SIGINT ignored, which Python and its children inherit
        first = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 30
        while (not out.exists() or len(_rows(out)) < 4) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)  # as Ctrl-C would
        _, err = first.communicate(timeout=30)
        assert first.returncode == 130, err
        assert "--resume" in err
        done_first = len(_rows(out))
        assert 4 <= done_first < 16
        second = subprocess.run(command + ["--resume"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert f"{done_first} already in the output" in second.stderr
    names = [Path(r["path"]).name for r in _rows(out)]
    assert sorted(names) == sorted(p.name for p in val_images)  # every file exactly once
    assert all(r["label"] for r in _rows(out))


def test_service_down_exits_2_with_one_line(val_images, capsys):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    started = time.monotonic()
    code = main(["predict", str(val_images[0]), "--url", url, "--retries", "3"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the service" in err[0] and "3 attempts" in err[0]
    assert time.monotonic() - started < 30


def test_api_key_from_the_environment(front_factory, val_images, tmp_path, monkeypatch):
    with front_factory(settings={"api_keys": "s3cret"}) as (url, _):
        out = tmp_path / "k.csv"
        assert main(["predict", str(val_images[0]), "--url", url, "--out", str(out)]) == 1
        assert "401" in _rows(out)[0]["error"]
        monkeypatch.setenv("CXR_API_KEY", "s3cret")
        out2 = tmp_path / "k2.csv"
        assert main(["predict", str(val_images[0]), "--url", url, "--out", str(out2)]) == 0


def test_health_and_model_commands(service_url, capsys):
    assert main(["health", "--url", service_url]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "ready"}
    assert main(["model", "--url", service_url]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == ["normal", "pneumonia"]


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "cxr-client"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0 and "predict" in result.stdout
