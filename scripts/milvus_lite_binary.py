"""Does Milvus Lite (the embedded build) take hashlab's binary codes? docs/scale.md quotes its answer.

    uv venv /tmp/mv && VIRTUAL_ENV=/tmp/mv uv pip install "pymilvus[milvus_lite]"
    /tmp/mv/bin/python scripts/milvus_lite_binary.py

2026-11-30, pymilvus 3.0.2 / milvus-lite 3.2.2: refused ("field 'code' uses Milvus type BinaryVector which
MilvusLite does not support"). A Milvus server (standalone or cluster) has BINARY_VECTOR with BIN_FLAT and
BIN_IVF_FLAT under the HAMMING metric.
"""

import tempfile

import numpy as np
from pymilvus import DataType, MilvusClient

with tempfile.TemporaryDirectory() as folder:
    client = MilvusClient(f"{folder}/codes.db")
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("code", DataType.BINARY_VECTOR, dim=64)  # hashlab's packed 64-bit codes: 8 bytes
    index = client.prepare_index_params()
    index.add_index(field_name="code", index_type="BIN_IVF_FLAT", metric_type="HAMMING", params={"nlist": 16})
    try:
        client.create_collection("codes", schema=schema, index_params=index)
        codes = np.random.default_rng(0).integers(0, 256, (1000, 8), dtype=np.uint8)
        client.insert("codes", [{"id": i, "code": codes[i].tobytes()} for i in range(len(codes))])
        hits = client.search("codes", data=[codes[3].tobytes()], anns_field="code", limit=3)
        print(f"Milvus Lite searched binary codes by Hamming distance: {hits}")
    except Exception as error:  # noqa: BLE001 - the answer is what it refuses
        print(f"Milvus Lite refused binary codes: {error}")
