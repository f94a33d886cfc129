"""Run records: one JSON per run (record.py) and the codes beside it (codes.npz); reading, writing, W&B."""

from hashlab.records.record import RECORD_NAME, config_hash, read_record

__all__ = ["RECORD_NAME", "config_hash", "read_record"]
