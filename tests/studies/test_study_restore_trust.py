"""A study's restore unpickles Tune's state, so it loads only a folder of this user's that svgap wrote (issue 23
item 5): a symlink, a file others can write, a foreign owner or a study.json svgap did not write for this study is
refused in one line before Tune reads anything. Pure file checks (the restore itself: test_sweep.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.errors import SvgapError
from orchestrator.studies.study import check_restorable

KIND, SID = "sweep", "0123456789ab"


def _study(tmp_path: Path) -> Path:
    """What svgap and Tune leave: study.json, tune/ with its pickles and state, a trial folder."""
    folder = tmp_path / "studies" / f"{KIND}-{SID}"
    (folder / "tune" / "trial_1").mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({"parent_run_id": "abc", "kind": KIND, "id": SID}))
    (folder / "tune" / "tuner.pkl").write_bytes(b"\x80\x04N.")
    (folder / "tune" / "experiment_state-2026.json").write_text("{}")
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return folder


def _refused(folder: Path, needle: str) -> None:
    with pytest.raises(SvgapError) as e:
        check_restorable(folder, folder / "study.json", KIND, SID)
    msg = str(e.value)
    assert needle in msg and f"study folder {folder}: not restoring it" in msg and "\n" not in msg, msg


def test_a_folder_svgap_wrote_is_restored(tmp_path):
    folder = _study(tmp_path)
    (folder / "tune").chmod(0o775)  # a umask of 002 (the user's own group) is fine
    check_restorable(folder, folder / "study.json", KIND, SID)


def test_a_pickle_others_can_write_is_refused(tmp_path):
    folder = _study(tmp_path)
    (folder / "tune" / "tuner.pkl").chmod(0o666)
    _refused(folder, "tuner.pkl is writable by other users")


def test_a_symlink_in_the_folder_is_refused(tmp_path):
    folder = _study(tmp_path)
    evil = tmp_path / "elsewhere.pkl"
    evil.write_bytes(b"\x80\x04N.")
    (folder / "tune" / "tuner.pkl").unlink()
    (folder / "tune" / "tuner.pkl").symlink_to(evil)
    _refused(folder, "tuner.pkl is a symbolic link")


@pytest.mark.parametrize("marker", [{"parent_run_id": "abc", "kind": KIND, "id": "ffffffffffff"},
                                    {"kind": KIND, "id": SID}, "not json"])
def test_a_study_json_svgap_did_not_write_for_this_study_is_refused(tmp_path, marker):
    folder = _study(tmp_path)
    (folder / "study.json").write_text(marker if isinstance(marker, str) else json.dumps(marker))
    _refused(folder, "study.json is not the one svgap writes for this sweep")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_folder_of_another_user_is_refused(tmp_path):
    folder = _study(tmp_path)
    os.chown(folder / "tune" / "experiment_state-2026.json", 12345, 12345)
    _refused(folder, "belongs to another user (uid 12345)")


def test_the_study_checks_before_tune_restores():
    """The one place a study calls Tuner.restore is behind the check."""
    import inspect

    from orchestrator.studies.study import Study

    src = inspect.getsource(Study.run)
    assert src.index("check_restorable(") < src.index("self._tuner(")
