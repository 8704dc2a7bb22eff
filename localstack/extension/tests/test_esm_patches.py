"""The Kinesis poller correction (no LocalStack needed): an AT_TIMESTAMP position's time reaches
GetShardIterator as ``Timestamp``; every other call is left alone."""

from shardflow_localstack.esm_patches import LineageTracker, copy_starting_timestamp, shard_iterator_arguments


def test_an_at_timestamp_position_passes_its_time_as_timestamp():
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
    arguments = shard_iterator_arguments(arn, "shardId-000000000000", "AT_TIMESTAMP", 1700000000.0)
    assert arguments["Timestamp"] == 1700000000.0
    assert "StartingSequenceNumber" not in arguments
    assert arguments["ShardIteratorType"] == "AT_TIMESTAMP"


def test_other_positions_carry_no_timestamp():
    for position in ("TRIM_HORIZON", "LATEST"):
        arguments = shard_iterator_arguments("arn", "shardId-000000000001", position, 5)
        assert arguments == {"StreamARN": "arn", "ShardId": "shardId-000000000001", "ShardIteratorType": position}


def test_the_mappings_starting_timestamp_reaches_the_poller_only_for_at_timestamp():
    params = {"StartingPosition": "AT_TIMESTAMP", "BatchSize": 500}
    copy_starting_timestamp({"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": 1795701367.0}, params)
    assert params["StartingPositionTimestamp"] == 1795701367.0
    other = {"StartingPosition": "TRIM_HORIZON"}
    copy_starting_timestamp({"StartingPosition": "TRIM_HORIZON", "StartingPositionTimestamp": 1.0}, other)
    assert "StartingPositionTimestamp" not in other


def shard(shard_id, parent=None, adjacent=None):
    s = {"ShardId": shard_id}
    if parent:
        s["ParentShardId"] = parent
    if adjacent:
        s["AdjacentParentShardId"] = adjacent
    return s


def test_children_wait_for_their_parents_and_polled_shards_keep_their_iterators():
    stream = [shard("s0"), shard("s1"), shard("s2", parent="s0"), shard("s3", parent="s0")]
    t = LineageTracker()
    kept, new = t.plan(stream, {})
    assert kept == {} and new == [("s0", False), ("s1", False)], "only the roots start"
    kept, new = t.plan(stream, {"s0": "it0", "s1": "it1"})
    assert kept == {"s0": "it0", "s1": "it1"} and new == [], "the split's children wait for s0"
    t.finish("s0")
    kept, new = t.plan(stream, {"s0": "it0-end", "s1": "it1-later"})
    assert kept == {"s1": "it1-later"}, "s1 keeps its position; s0 is not polled again"
    assert new == [("s2", True), ("s3", True)], "the children start (at their trim horizon)"


def test_a_merge_child_waits_for_both_parents_and_trimmed_parents_do_not_block():
    stream = [shard("s2"), shard("s3"), shard("s4", parent="s2", adjacent="s3")]
    t = LineageTracker()
    t.finish("s2")
    _, new = t.plan(stream, {"s3": "it3"})
    assert new == [], "s4 waits for s3 too"
    t.finish("s3")
    kept, new = t.plan(stream, {"s3": "it3"})
    assert kept == {} and new == [("s4", True)]
    # parents no longer in the stream (trimmed) do not hold a shard back
    assert LineageTracker().plan([shard("s9", parent="gone")], {}) == ({}, [("s9", False)])


def test_apply_corrects_the_pinned_localstack_pollers():
    from localstack.services.lambda_.event_source_mapping.esm_worker_factory import EsmWorkerFactory
    from localstack.services.lambda_.event_source_mapping.pollers.kinesis_poller import KinesisPoller
    from localstack.services.lambda_.event_source_mapping.pollers.stream_poller import StreamPoller

    from shardflow_localstack import esm_patches

    esm_patches.apply()
    esm_patches.apply()  # idempotent
    for name in ("get_records", "poll_events_from_shard", "initialize_shards"):
        assert getattr(KinesisPoller, name) is not getattr(StreamPoller, name), name
    assert KinesisPoller.initialize_shards.__module__ == esm_patches.__name__
    assert EsmWorkerFactory.get_esm_worker.__wrapped__ is not None


def test_an_expired_shard_resumes_after_its_last_record_read_or_at_its_start():
    t = LineageTracker()
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
    assert t.resume_arguments(arn, "s0", "TRIM_HORIZON") == shard_iterator_arguments(arn, "s0", "TRIM_HORIZON")
    t.read("s0", [{"SequenceNumber": "10"}, {"SequenceNumber": "12"}])
    t.read("s0", [])
    assert t.resume_arguments(arn, "s0", "LATEST") == {
        "StreamARN": arn,
        "ShardId": "s0",
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "12",
    }
    assert t.resume_arguments(arn, "s1", "LATEST")["ShardIteratorType"] == "LATEST", "s1 read nothing"
