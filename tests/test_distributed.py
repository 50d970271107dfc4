"""The evaluation under torchrun: 2 CPU ranks (gloo) give the rows of one process, and a
rank killed mid-run fails the job, whose rerun goes on from the finished batches."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kwta_demo import build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = "pgd:interactive@0.031,square:interactive@0.031"


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory, image_folder):
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "data").symlink_to(image_folder)
    torch.manual_seed(0)
    save_checkpoint(build_model("alexnet", "kwta", 0.1).eval(),
                    tmp / "ckpts" / "alexnet-kwta-0.1", half=True)
    env = {**os.environ, "KWTA_CHECKPOINTS": str(tmp / "ckpts"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return tmp, env


def _command(tmp: Path, out: str, ranks: int, attacks: str = ATTACKS) -> list[str]:
    evaluate = ["-m", "kwta_demo", "evaluate", "--models", "alexnet-kwta-0.1", "--attacks",
                attacks, "--images", "12", "--batch-size", "2", "--data", str(tmp / "data"),
                "--device", "cpu", "--out", str(tmp / out)]
    if ranks == 1:
        return [sys.executable, *evaluate]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={ranks}", *evaluate]


def _rows(path: Path) -> list[tuple]:
    result = json.loads(path.read_text())
    return [(r["attack"], r["preset"], r["robust_acc"], r.get("robust_per_image"), r["clean_acc"])
            for r in result["rows"]]


def test_two_ranks_give_the_rows_of_one_process(setup):
    tmp, env = setup
    one = subprocess.run(_command(tmp, "one", 1), env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_command(tmp, "two", 2), env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr
    assert _rows(tmp / "two.json") == _rows(tmp / "one.json")
    meta = json.loads((tmp / "two.json").read_text())["meta"]
    assert meta["processes"] == 2 and json.loads((tmp / "one.json").read_text())["meta"]["processes"] == 1
    assert two.stdout.count("| alexnet-kwta-0.1 |") == 1  # rank 0 alone prints the table


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc: no procps needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_killed_rank_fails_the_job_and_the_rerun_resumes(setup):
    tmp, env = setup
    slow = "square:cpu@0.031"  # 1,000 queries an image: seconds per batch
    job = subprocess.Popen(_command(tmp, "killed", 2, slow), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    parts = tmp / "killed.parts"
    deadline = time.monotonic() + 240
    # the clean row is written first (its parts then go); wait for a finished attack batch
    while not ((tmp / "killed.json").is_file() and any(parts.glob("*/seeds-*.json"))):
        assert time.monotonic() < deadline
        assert job.poll() is None, job.communicate()
        time.sleep(0.2)
    ranks = _children(job.pid)
    assert len(ranks) == 2 and any(parts.glob("*/seeds-*.json"))
    os.kill(ranks[1], signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0
    assert "FAILED" in err and "Signal 9" in err  # torchrun names the rank and its signal
    finished = len(list(parts.glob("*/seeds-*.json")))
    assert 0 < finished < 6

    rerun = subprocess.run(_command(tmp, "killed", 2, slow), env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"square:cpu: {finished} of 6 batches read from finished parts" in rerun.stderr
    whole = subprocess.run(_command(tmp, "whole", 1, slow), env=env, capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert _rows(tmp / "killed.json") == _rows(tmp / "whole.json")


def test_a_stop_under_torchrun_is_not_reported_as_a_failure(setup, tmp_path):
    tmp, env = setup
    stop = tmp_path / "STOP"
    stop.touch()  # asked before the first batch: the run stops at once, saving nothing new
    job = subprocess.run(_command(tmp, "stopped", 2) + ["--stop-file", str(stop)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr
    assert job.stderr.count("stopped: ") == 1  # rank 0 says so, once
    assert "ChildFailedError" not in job.stderr and "FAILED" not in job.stderr
    alone = subprocess.run(_command(tmp, "stopped", 1) + ["--stop-file", str(stop)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 3 and "stopped: " in alone.stderr  # evaluate.STOPPED_EXIT
