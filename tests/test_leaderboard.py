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


def test_catalogue_rows_name_their_entry_and_say_when_a_substitute_runs():
    scores = pd.DataFrame(
        {
            "dataset": ["d"] * 3,
            "task": ["attribution"] * 3,
            "split": ["dev"] * 3,
            "method": ["a", "fused_b", "mine"],
            "kind": ["method", "fusion", "method"],
            "n": [10] * 3,
            "ari": [0.9, 0.5, 0.1],
        }
    )
    catalogue = {"a": {"id": "e1", "substitute": True}, "b": {"id": "e2", "substitute": False}}
    board = rank([scores], catalogue=catalogue).set_index("method")
    assert board.catalogue.to_dict() == {"a": "e1", "fused_b": "e2", "mine": ""}
    assert board.substitute.to_dict() == {"a": True, "fused_b": False, "mine": False}
