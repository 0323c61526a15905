"""The rule that keeps a long-running app's executors on different YARN nodes (spark/executor_spread.py)."""

from spark.executor_spread import container_mb, spread_move


def test_container_size_is_heap_plus_overhead_rounded_to_the_schedulers_increment():
    assert container_mb(640, None, 256) == 1024  # 640 + 384 (the minimum overhead)
    assert container_mb(4096, None, 256) == 4608  # 4096 + 409 (10 %) -> 4505 -> 18 x 256
    assert container_mb(640, 100, 1024) == 1024
    assert container_mb(1000, 24, 1) == 1024


def test_two_executors_on_one_node_move_one_to_the_empty_node_with_room():
    move = spread_move({"1": "worker1", "2": "worker1"}, {"worker1": 1000, "worker2": 2048}, 1024)
    assert move == ("2", "worker2")


def test_nothing_moves_when_spread_or_when_no_other_node_has_room():
    assert spread_move({"1": "worker1", "2": "worker2"}, {"worker1": 4000, "worker2": 4000}, 1024) is None
    assert spread_move({"1": "worker1", "2": "worker1"}, {"worker1": 4000, "worker2": 1023}, 1024) is None
    # one NodeManager (the local profile): nowhere to go
    assert spread_move({"1": "127.0.0.1", "2": "127.0.0.1"}, {"127.0.0.1": 4000}, 1024) is None
    # a node that died (no longer RUNNING) is no target
    assert spread_move({"1": "worker1", "2": "worker1"}, {"worker1": 4000}, 1024) is None


def test_the_newest_executor_leaves_the_most_crowded_node_for_the_node_with_most_room():
    hosts = {"9": "a", "10": "a", "11": "a", "12": "b", "13": "b"}
    free = {"a": 0, "b": 0, "c": 2048, "d": 4096}
    assert spread_move(hosts, free, 1024) == ("11", "d")
    # an executor id sorts by number, not as text ("10" > "9")
    assert spread_move({"9": "a", "10": "a"}, {"a": 0, "b": 2048}, 1024) == ("10", "b")
