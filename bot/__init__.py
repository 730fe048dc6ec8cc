"""onwatch: an AI SRE that lives in the incident channel."""

__version__ = "0.1.0"
