"""distinct_rows / padded_rows: byte-identical rows grouped, by hand on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.distinct_rows import distinct_rows, padded_rows


def test_rows_equal_in_every_array_share_their_first_row():
    ego = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [1.0, 2.0], [3.0, 4.0]], np.float32)
    bev = np.zeros((5, 2, 3), np.uint8)
    bev[3, 1, 2] = 255                         # row 3: ego like rows 0 and 2, bev not
    first, inverse = distinct_rows([ego], checked=[bev])
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1]
    assert first.dtype == inverse.dtype == np.int64
    for row in range(5):                        # every row is its representative's bytes
        assert np.array_equal(ego[row], ego[first[inverse[row]]])
        assert np.array_equal(bev[row], bev[first[inverse[row]]])


def test_bytes_not_values_decide():
    """-0.0 == 0.0 and NaN != NaN as values; as bytes -0.0 and 0.0 differ, and two NaNs of
    the same bits are the same row."""
    ego = np.array([[0.0], [-0.0], [np.nan], [np.nan], [0.0]], np.float32)
    first, inverse = distinct_rows([ego])
    assert first.tolist() == [0, 1, 2]
    assert inverse.tolist() == [0, 1, 2, 2, 0]


def test_every_keyed_array_and_state_row_counts():
    """Rows equal in the observation but not in a second keyed array (a recurrent state)
    stay apart; a row split off by a checked array is not merged with another one split
    off (exact, not maximal)."""
    obs = np.ones((4, 3), np.float32)
    state = np.array([[0.5], [0.5], [0.25], [0.5]], np.float32)
    first, inverse = distinct_rows([obs, state])
    assert first.tolist() == [0, 2] and inverse.tolist() == [0, 0, 1, 0]
    bev = np.array([[0], [1], [1], [0]], np.uint8)
    first, inverse = distinct_rows([obs], checked=[bev])
    assert first.tolist() == [0, 1, 2] and inverse.tolist() == [0, 1, 2, 0]


def test_no_duplicates_and_empty_batches():
    ego = np.arange(12, dtype=np.float32).reshape(6, 2)
    first, inverse = distinct_rows([ego], checked=[ego[:, ::-1]])   # not contiguous: fine
    assert first.tolist() == inverse.tolist() == list(range(6))
    first, inverse = distinct_rows([np.zeros((0, 2), np.float32)])
    assert first.size == inverse.size == 0
    with pytest.raises(ValueError, match="at least one keyed array"):
        distinct_rows([])
    with pytest.raises(ValueError, match="different numbers of rows: 3, 2"):
        distinct_rows([np.zeros((3, 1))], checked=[np.zeros((2, 1))])


def test_padding_fills_whole_chunks_with_the_first_row():
    assert padded_rows(np.array([4, 7, 9]), 4).tolist() == [4, 7, 9, 4]
    assert padded_rows(np.array([4, 7, 9]), 8).tolist() == [4, 7, 9, 4, 4, 4, 4, 4]
    assert padded_rows(np.arange(8), 4).tolist() == list(range(8))        # whole already
    assert padded_rows(np.arange(9), 4).tolist() == list(range(9)) + [0, 0, 0]
    assert padded_rows(np.zeros(0, np.int64), 4).size == 0
