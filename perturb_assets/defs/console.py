"""The code location's console logger: one line per finished step instead of every event.

Dagster's default console logger prints every event at DEBUG (about 800 lines for the main
job). This one prints, to stderr: a line when a step succeeds or fails (with its duration or
error), a failed or warning asset check, and the assets' own INFO-and-above messages (training
epochs, warnings). Every event still goes to the instance's event log, so the UI shows all of
them.
"""

from __future__ import annotations

import logging
import sys
import time

import dagster as dg
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR  # the record's Dagster metadata

__all__ = ["ProgressHandler", "progress_console"]


class ProgressHandler(logging.Handler):
    """Formats Dagster log records as short progress lines."""

    def __init__(self, stream=None) -> None:
        super().__init__(logging.DEBUG)  # step events are DEBUG records; line() filters
        self.stream = stream or sys.stderr
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        line = self.line(record)
        if line:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
            self.stream.flush()

    def line(self, record: logging.LogRecord) -> str | None:
        meta = getattr(record, LOG_RECORD_METADATA_ATTR, None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:  # an asset's own message
            if record.levelno >= logging.INFO:
                return f"  {step}: {meta.get('orig_message', record.getMessage())}"
            return None
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.perf_counter()
        elif kind == "STEP_SUCCESS":
            seconds = time.perf_counter() - self.started.pop(step, time.perf_counter())
            return f"ok   {step} ({seconds:.1f} s)"
        elif kind == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = error.message.strip().splitlines()[-1] if error else "failed"
            return f"FAIL {step}: {message}"
        elif kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                asset = evaluation.asset_key.to_user_string()
                return f"check {evaluation.check_name} on {asset}: {evaluation.severity.value}"
            return None
        elif kind in ("RUN_FAILURE", "PIPELINE_FAILURE"):
            return f"run failed: {meta.get('orig_message', '')}"
        return None


@dg.logger(description="One line per finished step, failed checks and the assets' messages.")
def progress_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.getLogger("perturb_assets.progress")
    logger.setLevel(logging.DEBUG)  # the handler filters
    logger.propagate = False
    if not any(isinstance(h, ProgressHandler) for h in logger.handlers):
        logger.addHandler(ProgressHandler())
    return logger
