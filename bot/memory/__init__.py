"""Memory: resolved incidents, their causes and fixes, and recall of look-alikes for the next alert."""
