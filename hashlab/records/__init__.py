"""Run records, tables and figures."""

from hashlab.records.record import RECORD_NAME, config_hash, read_record, write_json_atomic

__all__ = ["RECORD_NAME", "config_hash", "read_record", "write_json_atomic"]
