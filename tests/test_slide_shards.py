"""How a slide's tiles are split into tasks: whole batches, contiguous, every tile once."""

import pytest

from healer.slides.state import shard_range, task_count


@pytest.mark.parametrize("total, count, batch", [(133, 3, 2), (10, 4, 4), (7, 1, 4), (0, 1, 4), (100, 50, 2)])
def test_shards_cover_every_tile_once_in_whole_batches(total, count, batch):
    shards = [shard_range(total, index, count, batch) for index in range(count)]
    assert [tile for shard in shards for tile in shard] == list(range(total))
    for shard in shards:
        assert shard.start % batch == 0  # so each task scores the batches one process would


@pytest.mark.parametrize("tiles, per_task, most, expected", [
    (133, 50, 50, 3),  # as many as SLIDE_TILES_PER_TASK asks
    (5000, 50, 20, 20),  # within SLIDE_MAX_TASKS
    (6, 1, 50, 3),  # never a task without a whole batch (batch of 2)
    (0, 50, 50, 1),  # a slide without tissue still has its one task
])
def test_the_task_count_follows_the_tissue(tiles, per_task, most, expected):
    assert task_count(tiles, 2, per_task, most) == expected
