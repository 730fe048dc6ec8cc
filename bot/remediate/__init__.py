"""Remediation: runbook catalog, scope and approver policy, the approval state machine, execution, verification."""
