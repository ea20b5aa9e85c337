"""The leaderboard of runs whose datasets have no ground truth."""

import pandas as pd

from gantrace.evaluation.leaderboard import EMPTY_COLUMNS, rank


def test_rank_of_only_unscored_datasets_is_an_empty_board():
    """One unlabelled attribution folder (the README's quickstart) scores nothing: the
    leaderboard is empty, not an error."""
    empty = pd.DataFrame(columns=["dataset", "task", "method", "kind", "split", "n"])
    for scores in ([], [empty], [empty, empty]):
        board = rank(scores)
        assert list(board.columns) == EMPTY_COLUMNS
        assert not len(board)
