"""The code location's console logger: one line per finished step instead of every event.

Dagster's default console logger prints every event at DEBUG (about 800 lines for the main
job). This one prints, to stderr: a line when a step ends, with its position in the run and its
duration (``[12/44] ok   metrics (6.3 s)``) or, when it fails, the root cause's type and
message (not Dagster's wrapper); a failed or warning asset check; and the assets' own
INFO-and-above messages (training epochs, warnings). Every event still goes to the instance's
event log, so the UI shows all of them.

Steps of the multiprocess executor end in their own processes, each with its own logger; they
count positions in one shared ``tally`` file (one line per finished step, appended under a
lock), which ``perturb-assets run`` creates per run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR  # the record's Dagster metadata

__all__ = ["ProgressHandler", "StepTally", "progress_console", "root_cause"]


class StepTally:
    """Counts finished steps: in memory, or in a file shared by several processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self.count = 0

    def add(self) -> int:
        """Record one finished step; the number finished so far, this one included."""
        if self.path is None:
            self.count += 1
            return self.count
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released on close
            handle.write("\n")
            handle.flush()
            handle.seek(0)
            return handle.read().count("\n")


def root_cause(error) -> str:
    """``"Type: message"`` of the innermost cause of a Dagster ``SerializableErrorInfo``.

    A failing step's error is Dagster's ``DagsterExecutionStepExecutionError`` ("Error occurred
    while executing op ..."); what went wrong is in its ``cause`` chain.
    """
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = [line.strip() for line in (error.message or "").strip().splitlines()]
    text = " ".join(line for line in lines if line) or "failed"
    name = error.cls_name or ""
    return text if not name or text.startswith(f"{name}:") else f"{name}: {text}"


class ProgressHandler(logging.Handler):
    """Formats Dagster log records as short progress lines."""

    def __init__(self, stream=None, total_steps: int = 0, tally: StepTally | None = None) -> None:
        super().__init__(logging.DEBUG)  # step events are DEBUG records; line() filters
        self.stream = stream or sys.stderr
        self.total_steps = total_steps
        self.tally = tally or StepTally()
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        line = self.line(record)
        if line:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
            self.stream.flush()

    def _position(self) -> str:
        done = self.tally.add()
        return f"[{done}/{self.total_steps}] " if self.total_steps else f"[{done}] "

    def line(self, record: logging.LogRecord) -> str | None:
        meta = getattr(record, LOG_RECORD_METADATA_ATTR, None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:  # an asset's own message
            if record.levelno < logging.INFO:
                return None
            message = str(meta.get("orig_message", record.getMessage()))
            return f"  {step}: {message.removeprefix(f'{step}: ')}"  # the name once
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.perf_counter()
        elif kind == "STEP_SUCCESS":
            seconds = time.perf_counter() - self.started.pop(step, time.perf_counter())
            return f"{self._position()}ok   {step} ({seconds:.1f} s)"
        elif kind == "STEP_FAILURE":
            error = event.step_failure_data.error
            return f"{self._position()}FAIL {step}: {root_cause(error) if error else 'failed'}"
        elif kind == "STEP_SKIPPED":
            return f"{self._position()}skip {step} (an upstream step failed or yielded nothing)"
        elif kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                asset = evaluation.asset_key.to_user_string()
                return f"check {evaluation.check_name} on {asset}: {evaluation.severity.value}"
        return None


@dg.logger(
    config_schema={
        "total_steps": dg.Field(int, default_value=0, description="steps in the run (0: unknown)"),
        "tally": dg.Field(str, default_value="", description="file shared by step processes"),
    },
    description="One line per finished step (with its position), failed checks and the "
    "assets' messages.",
)
def progress_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    logger = logging.getLogger("perturb_assets.progress")
    logger.setLevel(logging.DEBUG)  # the handler filters
    logger.propagate = False
    for handler in [h for h in logger.handlers if isinstance(h, ProgressHandler)]:
        logger.removeHandler(handler)  # one per run: positions restart
    tally = StepTally(config["tally"] or None)
    logger.addHandler(ProgressHandler(total_steps=config["total_steps"], tally=tally))
    return logger
