"""Deterministic table bytes for CSV and Parquet sidecars."""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import Any

from ..errors import ArtifactStoreError

TABLE_FORMATS = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}


def table_format(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ArtifactStoreError(f"table sidecar {path!r} must end in .csv or .parquet")
    return suffix


def table_bytes(frame: Any, suffix: str) -> tuple[bytes, int]:
    """CSV: fixed line ends, no index; Parquet: no index, fixed compression.

    Parquet bytes embed the pyarrow version ('created_by'): stable on one installation,
    not across pyarrow upgrades. CSV bytes depend only on the data and pandas' float repr.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    if suffix == ".csv":
        return frame.to_csv(index=False, lineterminator="\n").encode("utf-8"), len(frame)
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer,
                   compression="zstd")
    return buffer.getvalue(), len(frame)


def read_table(path: Any, suffix: str) -> Any:
    import pandas as pd

    if suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)
