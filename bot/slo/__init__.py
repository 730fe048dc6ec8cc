"""Service level objectives: the SLO model and the multiwindow, multi-burn-rate policy (issue 20)."""
