"""Batch runs over recorded footage: drone video with its SRT, photo folders, camera
recordings, sampled into the same frames queue as live frames (see ingest/batch/run.py)."""
