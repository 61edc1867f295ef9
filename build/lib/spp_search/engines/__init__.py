"""Search engines: each asks the search space for trials and tells results back."""
