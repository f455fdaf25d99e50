"""ragops: operate a RAG service in production (deploy, back up, fail over, run the checklists)."""

__version__ = "0.1.0"
