"""Where a trial runs. ``InlineRunner`` trains in this process (debugging, tests)."""

from __future__ import annotations

from spp_search.trial import Reporter, TrialResult, TrialSpec, run_trial


class InlineRunner:
    """Run each trial in the calling process; a hard crash here ends the whole study."""

    def run(self, spec: TrialSpec, reporter: Reporter) -> TrialResult:
        return run_trial(spec, reporter)

    def close(self) -> None:
        """Nothing to release."""
