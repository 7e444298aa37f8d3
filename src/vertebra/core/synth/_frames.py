"""pandas helpers for building the output tables from numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd


def categorical(
    codes: npt.NDArray[np.integer[Any]], categories: Sequence[str], ordered: bool = False
) -> pd.Categorical:
    """A categorical from integer codes (-1 = missing) without materialising the strings.

    Fixed category lists keep the Parquet dictionary identical in every chunk.
    """
    # pandas-stubs types `codes` as Sequence[int]; an int ndarray is what pandas really takes.
    return pd.Categorical.from_codes(
        cast(Sequence[int], codes), categories=pd.Index(list(categories)), ordered=ordered
    )
