"""Console output of a study: a progress bar, one line per finished trial, a summary table."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spp_search.trial import failures
from spp_search.trial.outcomes import Outcome
from spp_search.trial.run import TrialResult

STYLE = {Outcome.OK: "green", Outcome.PRUNED: "yellow"}


class StudyProgress:
    """A rich progress bar over the study's total; prints each trial's outcome as it ends."""

    def __init__(self, console: Console, total: int, done: int, label: str) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(label, total=total, completed=done)

    def __enter__(self) -> StudyProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def trial_done(
        self, number: int, result: TrialResult, seconds: float, factors: str, counted: int | None = None
    ) -> None:
        """Print the trial's line; the bar shows ``counted`` (the study's counted trials, every
        worker's: a retried trial does not count, its re-run does), else one more."""
        style = STYLE.get(result.outcome, "red")
        value = f" val_acc={result.value:.3f}" if result.value is not None else ""
        where = f" at step {result.failed_step}" if result.outcome.failed and result.failed_step else ""
        self.console.print(
            f"trial {number:>3} [{style}]{result.outcome.value}[/{style}]{value}{where} ({seconds:.1f} s) {factors}",
            highlight=False,
        )
        if result.outcome.failed:  # the one-line reason (the rest is in the trial's MLflow run)
            self.console.print(f"          {escape(failures.one_line(result))}", highlight=False, soft_wrap=True)
        if counted is None:
            self.progress.advance(self.task)
        else:
            self.progress.update(self.task, completed=min(counted, self.progress.tasks[0].total or counted))


def summary_table(outcomes: Counter, wall_s: float) -> Table:
    """Outcome counts of the whole study, printed at the end of a run."""
    table = Table(title=f"study outcomes ({wall_s / 60:.1f} min this run)")
    table.add_column("outcome")
    table.add_column("trials", justify="right")
    for outcome in Outcome:
        if outcomes.get(outcome.value):
            table.add_row(outcome.value, str(outcomes[outcome.value]))
    table.add_row("[bold]total", f"[bold]{sum(outcomes.values())}")
    return table
