"""Service level objectives: the SLO model, the multiwindow, multi-burn-rate policy, its rules and its evaluation."""
