"""Corrections to LocalStack's Kinesis event source mapping poller, applied when the host
executor plugin loads (before the Lambda provider serves any mapping).

``StartingPosition=AT_TIMESTAMP`` does not work in LocalStack 2026.3.0: the worker factory
leaves the mapping's ``StartingPositionTimestamp`` out of the poller's stream parameters (the
poller then fails on the missing key at every poll), and the Kinesis poller passes it to
``GetShardIterator`` as ``StartingSequenceNumber``, which Kinesis (and kinesis-local) refuse
("Timestamp must be provided for ShardIteratorType AT_TIMESTAMP"). So such a mapping never
delivers a record. On AWS it starts at the first record that arrived at or after the
timestamp; the two adapters below make the emulator do the same. A restored blue/green copy
starts its mappings this way (see ``shardflow savepoint restore``).
"""

from __future__ import annotations

import functools
import logging

LOG = logging.getLogger(__name__)

_APPLIED = False


def at_timestamp_arguments(kwargs: dict) -> dict:
    """The ``GetShardIterator`` arguments with an ``AT_TIMESTAMP`` position's time given as
    ``Timestamp`` (other iterator types, and calls that already pass ``Timestamp``, unchanged)."""
    if kwargs.get("ShardIteratorType") != "AT_TIMESTAMP" or "Timestamp" in kwargs:
        return kwargs
    fixed = dict(kwargs)
    if "StartingSequenceNumber" in fixed:
        fixed["Timestamp"] = fixed.pop("StartingSequenceNumber")
    return fixed


def copy_starting_timestamp(esm_config: dict, stream_parameters: dict) -> None:
    """Gives the poller's stream parameters the mapping's ``StartingPositionTimestamp`` when it
    starts ``AT_TIMESTAMP`` (and has one)."""
    if esm_config.get("StartingPosition") != "AT_TIMESTAMP":
        return
    if "StartingPositionTimestamp" in esm_config:
        stream_parameters.setdefault("StartingPositionTimestamp", esm_config["StartingPositionTimestamp"])


def apply() -> None:
    """Wraps the Kinesis poller's client so that its ``GetShardIterator`` calls go through
    :func:`at_timestamp_arguments`, and the worker factory so that Kinesis pollers get the
    mapping's starting timestamp (:func:`copy_starting_timestamp`). Idempotent."""
    global _APPLIED
    if _APPLIED:
        return
    from localstack.services.lambda_.event_source_mapping.pollers.kinesis_poller import KinesisPoller

    original_init = KinesisPoller.__init__

    @functools.wraps(original_init)
    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        client = getattr(self, "source_client", None)
        if client is None:
            return
        get_shard_iterator = client.get_shard_iterator

        def fixed_get_shard_iterator(**call_kwargs):
            return get_shard_iterator(**at_timestamp_arguments(call_kwargs))

        client.get_shard_iterator = fixed_get_shard_iterator

    KinesisPoller.__init__ = init

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
    LOG.debug("shardflow: Kinesis poller AT_TIMESTAMP correction applied")
