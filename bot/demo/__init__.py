"""``onwatch demo``: a seeded simulation of a small shop's incident, handled end to end on embedded defaults.

``simulate`` writes a case bundle (``../shared/datasets/FORMAT.md`` plus ``changes.json``); ``terminal``
renders the incident thread in a terminal; ``run`` wires them to the real intake, engine, approval and
execution path.
"""
