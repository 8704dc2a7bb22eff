"""The Kinesis poller correction (no LocalStack needed): an AT_TIMESTAMP position's time reaches
GetShardIterator as ``Timestamp``; every other call is left alone."""

from shardflow_localstack.esm_patches import at_timestamp_arguments, copy_starting_timestamp


def test_an_at_timestamp_position_passes_its_time_as_timestamp():
    call = {
        "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
        "ShardId": "shardId-000000000000",
        "ShardIteratorType": "AT_TIMESTAMP",
        "StartingSequenceNumber": 1700000000.0,
    }
    fixed = at_timestamp_arguments(call)
    assert fixed["Timestamp"] == 1700000000.0
    assert "StartingSequenceNumber" not in fixed
    assert call["StartingSequenceNumber"] == 1700000000.0, "the caller's arguments are not modified"


def test_other_positions_and_explicit_timestamps_are_unchanged():
    for call in (
        {"ShardIteratorType": "TRIM_HORIZON"},
        {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": "4965"},
        {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 5},
    ):
        assert at_timestamp_arguments(call) == call


def test_the_mappings_starting_timestamp_reaches_the_poller_only_for_at_timestamp():
    params = {"StartingPosition": "AT_TIMESTAMP", "BatchSize": 500}
    copy_starting_timestamp({"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": 1795701367.0}, params)
    assert params["StartingPositionTimestamp"] == 1795701367.0
    other = {"StartingPosition": "TRIM_HORIZON"}
    copy_starting_timestamp({"StartingPosition": "TRIM_HORIZON", "StartingPositionTimestamp": 1.0}, other)
    assert "StartingPositionTimestamp" not in other
