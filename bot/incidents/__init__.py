"""The incident lifecycle: statuses and phases, the allowed moves, and the outbox chat renders from."""
