"""Corrections to LocalStack's Kinesis event source mapping poller, applied when the host
executor plugin loads (before the Lambda provider serves any mapping).

``StartingPosition=AT_TIMESTAMP`` does not work in LocalStack 2026.3.0: the worker factory
leaves the mapping's ``StartingPositionTimestamp`` out of the poller's stream parameters (the
poller then fails on the missing key at every poll), and the Kinesis poller passes it to
``GetShardIterator`` as ``StartingSequenceNumber``, which Kinesis (and kinesis-local) refuse
("Timestamp must be provided for ShardIteratorType AT_TIMESTAMP"). So such a mapping never
delivers a record. On AWS it starts at the first record that arrived at or after the
timestamp; :func:`copy_starting_timestamp` and :func:`shard_iterator_arguments` make the
emulator do the same. A restored blue/green copy
starts its mappings this way (see ``shardflow savepoint restore``).

Resharding: LocalStack's Kinesis poller polls every shard of the stream round-robin, children
before their parents have ended, and when it reaches the end of a closed shard it starts every
shard over from the mapping's starting position (reading ``BatchSize`` records per call, so a
shard with more records than that is never read past them). On AWS a parent shard is processed
to its end before its children, which then start at their trim horizon, and the other shards
keep their positions. :class:`LineageTracker` makes the poller do that: a shard whose
``GetRecords`` returns no next iterator is finished (its records still in the batcher are sent
first); the shards polled are the ones not finished whose parents (those still in the stream)
are all finished; shards already polled keep their iterators.

Expired iterators: a shard iterator is valid for five minutes, and the poller's one thread per
mapping can stay on one shard longer than that (a batch retried with backoff), so the other
shards' iterators expire. LocalStack then starts every shard over from the mapping's starting
position (re-delivering or skipping records); AWS resumes where the mapping was. The tracker
remembers the last sequence number read from each shard and an expired shard resumes
``AFTER_SEQUENCE_NUMBER`` of it (:meth:`LineageTracker.resume_arguments`); so does an open
shard whose ``GetRecords`` answer lacked a next iterator (only a closed shard's may: the shard is
looked up before it is taken for finished).
"""

from __future__ import annotations

import functools
import logging

LOG = logging.getLogger(__name__)

_APPLIED = False
#: The localstack-core release whose poller internals the corrections patch.
PINNED_RELEASE = "2026.3.0"


def shard_iterator_arguments(stream_arn: str, shard_id: str, position: str, timestamp=None) -> dict:
    """The ``GetShardIterator`` arguments of a shard starting at ``position``; an
    ``AT_TIMESTAMP`` position's time goes in ``Timestamp`` (LocalStack passed it as
    ``StartingSequenceNumber``, which Kinesis refuses)."""
    arguments = {"StreamARN": stream_arn, "ShardId": shard_id, "ShardIteratorType": position}
    if position == "AT_TIMESTAMP":
        arguments["Timestamp"] = timestamp
    return arguments


def copy_starting_timestamp(esm_config: dict, stream_parameters: dict) -> None:
    """Gives the poller's stream parameters the mapping's ``StartingPositionTimestamp`` when it
    starts ``AT_TIMESTAMP`` (and has one)."""
    if esm_config.get("StartingPosition") != "AT_TIMESTAMP":
        return
    if "StartingPositionTimestamp" in esm_config:
        stream_parameters.setdefault("StartingPositionTimestamp", esm_config["StartingPositionTimestamp"])


class LineageTracker:
    """Which shards of one mapping are finished, and which to poll next (see the module
    documentation). Pure bookkeeping over ``DescribeStream``'s shard list."""

    def __init__(self) -> None:
        self.finished: set[str] = set()
        self.last_read: dict[str, str] = {}

    def finish(self, shard_id: str) -> None:
        """Marks a shard read to its end."""
        self.finished.add(shard_id)

    def read(self, shard_id: str, records: list[dict]) -> None:
        """Remembers the last of ``records``, just read from ``shard_id``."""
        if records:
            self.last_read[shard_id] = records[-1]["SequenceNumber"]

    def resume_arguments(self, stream_arn: str, shard_id: str, position: str, timestamp=None) -> dict:
        """The ``GetShardIterator`` arguments that resume ``shard_id`` after its last record read,
        or (nothing read yet) start it at ``position``."""
        last = self.last_read.get(shard_id)
        if last is None:
            return shard_iterator_arguments(stream_arn, shard_id, position, timestamp)
        return {
            "StreamARN": stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "StartingSequenceNumber": last,
        }

    def plan(self, shards: list[dict], polled: dict[str, str]) -> tuple[dict[str, str], list[tuple[str, bool]]]:
        """The shards to poll: ``(kept, new)`` where ``kept`` maps the shards already polled (in
        ``polled``, shard id -> iterator) that are not finished to their iterators, and ``new``
        lists ``(shard id, is_child)`` for shards to start, ``is_child`` when it has a parent in
        the stream (a child starts at its trim horizon)."""
        present = {s["ShardId"] for s in shards}
        kept: dict[str, str] = {}
        new: list[tuple[str, bool]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self.finished:
                continue
            if shard_id in polled:
                kept[shard_id] = polled[shard_id]
                continue
            parents = [
                p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p and p in present
            ]
            if all(p in self.finished for p in parents):
                new.append((shard_id, bool(parents)))
        return kept, new


def _patch_lineage(kinesis_poller) -> None:
    """Makes ``kinesis_poller`` (LocalStack's ``KinesisPoller`` class) follow shard lineage."""
    original_get_records = kinesis_poller.get_records
    original_poll_shard = kinesis_poller.poll_events_from_shard

    def tracker(self) -> LineageTracker:
        if not hasattr(self, "_shardflow_lineage"):
            self._shardflow_lineage = LineageTracker()
        return self._shardflow_lineage

    def get_records(self, shard_iterator):
        polling = getattr(self, "_shardflow_polling", None)
        try:
            response = original_get_records(self, shard_iterator)
        except Exception as e:
            if polling is not None and isinstance(e.__cause__, self.source_client.exceptions.ExpiredIteratorException):
                resume(self, polling)
            raise
        if polling is not None:
            tracker(self).read(polling, response.get("Records", []))
            if not response.get("NextShardIterator"):
                if shard_closed(self, polling):
                    tracker(self).finish(polling)
                else:
                    # Kinesis ends only a closed shard's iterators: never stop polling an open one
                    LOG.warning("shardflow: GetRecords of open shard %s %s ended its iterator", self.source_arn, polling)
                    self._shardflow_lost = polling
        return response

    def shard_closed(self, shard_id) -> bool:
        """Whether ``shard_id`` is closed (has an ending sequence number) or gone."""
        description = self.source_client.describe_stream(StreamARN=self.source_arn)["StreamDescription"]
        shard = next((s for s in description.get("Shards", []) if s["ShardId"] == shard_id), None)
        return shard is None or bool(shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))

    def resume(self, shard_id):
        """Replaces the expired (or wrongly ended) iterator of ``shard_id`` by one after its last
        record read."""
        is_child = False  # a child read nothing yet starts at its trim horizon, as in initialize_shards
        if shard_id not in tracker(self).last_read:
            description = self.source_client.describe_stream(StreamARN=self.source_arn)["StreamDescription"]
            shard = next((s for s in description.get("Shards", []) if s["ShardId"] == shard_id), {})
            is_child = bool(shard.get("ParentShardId") or shard.get("AdjacentParentShardId"))
        position = "TRIM_HORIZON" if is_child else self.stream_parameters["StartingPosition"]
        arguments = tracker(self).resume_arguments(
            self.source_arn, shard_id, position, self.stream_parameters.get("StartingPositionTimestamp")
        )
        LOG.warning("shardflow: the iterator of %s %s expired or ended; resuming with %s", self.source_arn, shard_id, arguments)
        self.shards[shard_id] = self.source_client.get_shard_iterator(**arguments)["ShardIterator"]

    def poll_events_from_shard(self, shard_id, shard_iterator):
        self._shardflow_polling = shard_id
        try:
            original_poll_shard(self, shard_id, shard_iterator)
        finally:
            self._shardflow_polling = None
            if getattr(self, "_shardflow_lost", None) == shard_id:
                self._shardflow_lost = None
                resume(self, shard_id)
        if shard_id in tracker(self).finished:
            # Send what the batcher still holds of the finished shard before it is dropped.
            batcher = self.shard_batcher.get(shard_id)
            rest = batcher.flush() if batcher is not None else []
            size = max(1, int(self.stream_parameters.get("BatchSize") or 100))
            for start in range(0, len(rest), size):
                self.forward_events_to_target(shard_id, rest[start : start + size])

    def initialize_shards(self):
        description = self.source_client.describe_stream(StreamARN=self.source_arn)["StreamDescription"]
        if description.get("StreamStatus") not in ("ACTIVE", "UPDATING"):
            # Being created or deleted: nothing to poll yet (LocalStack's own answer too).
            return {}
        kept, new = tracker(self).plan(description.get("Shards", []), dict(self.shards or {}))
        for shard_id, is_child in new:
            position = "TRIM_HORIZON" if is_child else self.stream_parameters["StartingPosition"]
            arguments = shard_iterator_arguments(
                self.source_arn, shard_id, position, self.stream_parameters.get("StartingPositionTimestamp")
            )
            kept[shard_id] = self.source_client.get_shard_iterator(**arguments)["ShardIterator"]
        # Restart the round-robin over the new set of shards.
        self.iterator_over_shards = None
        return kept

    kinesis_poller.get_records = get_records
    kinesis_poller.poll_events_from_shard = poll_events_from_shard
    kinesis_poller.initialize_shards = initialize_shards


def apply() -> None:
    """Wraps the worker factory so that Kinesis pollers get the mapping's starting timestamp
    (:func:`copy_starting_timestamp`), and replaces the poller's shard handling with one that
    follows lineage (:class:`LineageTracker`) and asks for iterators with
    :func:`shard_iterator_arguments`. Idempotent. The patched
    methods are LocalStack's internals of the pinned release (``requirements.lock``); another
    release fails here loudly rather than polling wrongly."""
    global _APPLIED
    if _APPLIED:
        return
    from localstack.services.lambda_.event_source_mapping.pollers.kinesis_poller import KinesisPoller

    missing = [
        name
        for name in ("get_records", "poll_events_from_shard", "initialize_shards", "forward_events_to_target")
        if not callable(getattr(KinesisPoller, name, None))
    ]
    if missing:
        raise RuntimeError(
            f"shardflow's LocalStack extension cannot correct this LocalStack's Kinesis poller "
            f"(no {', '.join(missing)}); it was written for localstack-core {PINNED_RELEASE}"
        )

    _patch_lineage(KinesisPoller)

    from localstack.services.lambda_.event_source_mapping.esm_worker_factory import EsmWorkerFactory

    original_get_worker = EsmWorkerFactory.get_esm_worker

    @functools.wraps(original_get_worker)
    def get_esm_worker(self):
        worker = original_get_worker(self)
        poller = getattr(worker, "poller", None)
        if isinstance(poller, KinesisPoller):
            copy_starting_timestamp(self.esm_config, poller.stream_parameters)
        return worker

    EsmWorkerFactory.get_esm_worker = get_esm_worker
    _APPLIED = True
    LOG.debug("shardflow: Kinesis poller corrections applied (AT_TIMESTAMP, shard lineage)")
