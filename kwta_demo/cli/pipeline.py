"""``python -m kwta_demo pipeline run|status|stop``: the whole remaining job, resumable, in
the background (kwta_demo.pipeline)."""

from __future__ import annotations

import argparse
import logging
import signal
import time

from ..pipeline.plan import load_plan
from ..pipeline.runner import (
    PipelineStopped,
    alive,
    detach,
    pipeline_files,
    request_stop,
    run_pipeline,
    running_pid,
)
from ..pipeline.status import format_status, pipeline_status

log = logging.getLogger(__name__)




def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kwta_demo pipeline``."""
    parser.add_argument("action", choices=("run", "status", "stop"))
    parser.add_argument("--plan", default=None, help="a plan as JSON (default: the built-in plan)")
    parser.add_argument("--foreground", action="store_true",
                        help="run in this process instead of detaching")
    parser.add_argument("--wait", action="store_true", help="stop: wait until it has stopped")


def main(args: argparse.Namespace) -> int:
    """Run ``python -m kwta_demo pipeline run|status|stop``; returns the exit status."""
    plan = load_plan(args.plan)
    files = pipeline_files(plan)
    if args.action == "status":
        print(format_status(pipeline_status(plan)))
        return 0
    if args.action == "stop":
        pid = request_stop(plan)
        if pid is None:
            print("the pipeline is not running")
            return 0
        print(f"stop requested (pid {pid}); it stops at its next step, after saving")
        while args.wait and alive(pid):
            time.sleep(1)
        return 0
    other = running_pid(files)
    if other is not None:
        print(f"the pipeline is already running (pid {other}); `pipeline status` shows it")
        return 1
    if not args.foreground:
        return detach(files, args.plan)
    signal.signal(signal.SIGTERM, lambda *_: files.stop.touch())  # SIGTERM: a clean stop
    try:
        run_pipeline(plan, progress=False)
    except PipelineStopped as e:
        log.info("pipeline: %s", e)
        return 0
    except RuntimeError as e:
        if "already running" not in str(e):
            raise
        print(e)
        return 1
    print(format_status(pipeline_status(plan)))
    return 0
