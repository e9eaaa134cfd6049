"""What the console shows: one progress display per level, plain lines when not a terminal, known noise filtered.

Levels nest: the study's jobs (or a worker's, or an import's runs), and inside a job its training steps or
scored items. On a terminal each level is a tqdm bar (inner bars vanish when done). When stderr is not a
terminal (a log file, CI, `mlflow run` under a scheduler) only the outermost level is shown, as whole lines
at most about every tenth of the way (no carriage-return frames); the inner levels are silent there.
`TRANSFERGRID_PROGRESS=lines|bars|off` overrides the choice.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings

PROGRESS_ENV = "TRANSFERGRID_PROGRESS"
_depth = 0  # how many progress displays are open (the nesting level of the next one)


def mode(stream=None) -> str:
    """`bars` on a terminal, `lines` otherwise; `$TRANSFERGRID_PROGRESS` (lines, bars, off) wins."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("lines", "bars", "off"):
        return forced
    stream = stream or sys.stderr
    return "bars" if getattr(stream, "isatty", lambda: False)() else "lines"


class Progress:
    """A tqdm-like display (`update`, `set_postfix_str`, `close`, iteration, `with`) for one level."""

    def __init__(self, iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False):
        global _depth
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self._total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.level, self.n, self.note, self.closed = _depth, 0, "", False
        self.start = time.monotonic()
        how = "off" if disable else mode()
        self.bar = None
        self.lines = how == "lines" and self.level == 0
        if how == "bars":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self._total, desc=desc, unit=unit, leave=self.level == 0, dynamic_ncols=True)
        _depth += 1

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:  # a total learnt on the way (a queue's jobs)
        self._total = value
        if self.bar is not None:
            self.bar.total = value

    @property
    def every(self) -> int:
        """Lines when not a terminal: every item up to 30 of them, else about every tenth of the way."""
        return max(1, math.ceil(self.total / 10)) if (self.total or 0) > 30 else 1

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix_str(self, note: str, refresh: bool = True) -> None:
        """A short note on the current item (the bar's postfix; the next printed line's tail)."""
        self.note = note
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=refresh)

    def update(self, n: int = 1) -> None:
        """`n` more done; when not a terminal, print a line every `every` items and at the end."""
        if not n:
            return
        before, self.n = self.n, self.n + n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines and (self.n // self.every > before // self.every or self.n == self.total):
            self._line()

    def _line(self) -> None:
        of = f"/{self.total}" if self.total else ""
        note = f"  {self.note}" if self.note else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}s, {time.monotonic() - self.start:.0f} s{note}", file=sys.stderr, flush=True)

    def close(self) -> None:
        global _depth
        if self.closed:
            return
        self.closed = True
        _depth = max(0, _depth - 1)
        if self.bar is not None:
            self.bar.close()


def progress(iterable=None, **kwargs) -> Progress:
    """`Progress(iterable, total=..., desc=..., unit=..., disable=...)`."""
    return Progress(iterable, **kwargs)


def training_callback():
    """A transformers `TrainerCallback` showing the training steps as one `Progress` level (loss as its note)."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        display: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.display = progress(total=state.max_steps, desc="training", unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            if self.display is not None:
                self.display.update(state.global_step - self.display.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.display is not None and logs and "loss" in logs:
                self.display.set_postfix_str(f"loss {logs['loss']:.3f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.display is not None:
                self.display.close()
                self.display = None

    return StepProgress()


# Third-party warnings that say nothing about the user's study: library deprecations inside transformers/PEFT/
# TRL/accelerate code paths we do not control. Warnings from statsmodels fits are kept with the report section
# they concern (`report`), not printed.
KNOWN_NOISE = (
    (FutureWarning, r"(transformers|peft|trl|accelerate|datasets)(\.|$)"),
    (DeprecationWarning, r"(transformers|peft|trl|accelerate|datasets|torch|mlflow)(\.|$)"),
)


def filter_known_noise(download_bars: bool = False) -> None:
    """Ignore the warnings in `KNOWN_NOISE` (by category and the module that warns); others stay visible. Library
    progress bars that repeat per run are off (model loading, artifact downloads, dataset maps); Hub download
    bars stay on with `download_bars` (`prefetch`, where a download is the work)."""
    for category, module in KNOWN_NOISE:
        warnings.filterwarnings("ignore", category=category, module=module)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per downloaded adapter otherwise
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # TRL's tokenizing `map` bars, per fine-tune
    if not download_bars:  # also transformers' "Loading weights" bar, per model load (read at its import)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
