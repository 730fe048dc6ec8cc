"""Optional LLM help: redaction first, an OpenAI-compatible endpoint (self-hosted works), evidence-checked output."""
