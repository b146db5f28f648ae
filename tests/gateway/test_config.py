"""Settings: every option from a CXR_GATEWAY_* variable, bad values refused with their name."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from gateway.cli import main
from gateway.config import Peer, add_serve_options, from_args
from tests.conftest import REPO_ROOT


def parsed(argv: list[str], env: dict[str, str] | None = None):
    parser = argparse.ArgumentParser()
    add_serve_options(parser, env or {})
    return from_args(parser.parse_args(argv))


def test_options_come_from_the_environment_and_the_command_line_wins():
    env = {"CXR_GATEWAY_DICOMWEB": "http://pacs/dicom-web/", "CXR_GATEWAY_QUIET_S": "7",
           "CXR_GATEWAY_ALLOW_AET": "PACS1, PACS2", "CXR_GATEWAY_LISTEN": "0.0.0.0:104"}
    config = parsed(["--quiet-s", "2"], env)
    assert config.dicomweb == "http://pacs/dicom-web" and config.quiet_s == 2.0
    assert config.allow_aets == {"PACS1", "PACS2"} and config.listen == ("0.0.0.0", 104)


def test_store_to_is_parsed():
    assert parsed(["--store-to", "ORTHANC@10.0.0.5:4242"]).store_to == Peer("ORTHANC", "10.0.0.5", 4242)


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give exactly one of --dicomweb"),
    (["--dicomweb", "http://p", "--store-to", "A@h:1"], "give exactly one of --dicomweb"),
    (["--store-to", "ORTHANC:4242"], "--store-to has value 'ORTHANC:4242'"),
    (["--dicomweb", "http://p", "--quiet-s", "soon"], "--quiet-s has value 'soon'. Not a valid number."),
    (["--dicomweb", "http://p", "--max-attempts", "0"], "--max-attempts has value '0'; it must be at least 1"),
    (["--dicomweb", "http://p", "--ae-title", "A_TITLE_LONGER_THAN_16"], "an AE title has 1-16 characters"),
])
def test_bad_settings_are_refused_by_name(argv, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parsed(argv)


def test_the_command_exits_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--state", "/nonexistent"], env={})
    assert exit_info.value.code == 2
    assert "give exactly one of --dicomweb (STOW-RS) or --store-to (C-STORE)" in capsys.readouterr().err


def test_jobs_on_a_missing_state_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no job table at"):
        main(["jobs", "--state", str(tmp_path / "none")], env={})


def test_the_admin_commands_load_no_dicom_networking():
    # `cxr-gateway jobs` and `retry` read the job table; pynetdicom and highdicom load only to serve
    loaded = subprocess.run([sys.executable, "-c", "import sys, gateway.cli; print(sorted(sys.modules))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "'pynetdicom'" not in loaded and "'highdicom'" not in loaded
