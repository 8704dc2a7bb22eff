"""End-to-end smoke test of the offline LocalStack (localstack/up) with a Rust Lambda.

One CloudFormation stack (template.yaml): Kinesis stream -> event source mapping with
ReportBatchItemFailures -> localstack-probe (provided.al2023, run on the host) ->
DynamoDB + S3 + SNS -> SQS. Run by tests/localstack_smoke/run, which builds the function,
starts LocalStack and stops it again; set SMOKE_MANAGED=1 to let the last test stop
LocalStack and prove that nothing is left running.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK = ROOT / "localstack"
TEMPLATE = Path(__file__).with_name("template.yaml")
STACK = os.environ.get("SMOKE_STACK", "shardflow-localstack-smoke")
PORT = int(os.environ.get("SHARDFLOW_LOCALSTACK_PORT", "4566"))
FUNCTION_TIMEOUT_S = 3

os.environ.setdefault("AWS_ENDPOINT_URL", f"http://127.0.0.1:{PORT}")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])


def wait_for(what: str, probe, timeout: float, interval: float = 0.25):
    """Calls probe() until it returns something truthy; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    started = time.monotonic()
    out = subprocess.run(
        [str(LOCALSTACK / "deploy"), STACK, str(TEMPLATE), f"FunctionTimeout={FUNCTION_TIMEOUT_S}"],
        check=True,
        capture_output=True,
        text=True,
    )
    outputs = json.loads(out.stdout)
    print(f"deployed {STACK} in {time.monotonic() - started:.1f}s: {outputs}")
    return outputs


@pytest.fixture(scope="session")
def aws():
    class Clients:
        kinesis = boto3.client("kinesis")
        dynamodb = boto3.client("dynamodb")
        s3 = boto3.client("s3")
        sqs = boto3.client("sqs")
        lambda_ = boto3.client("lambda")
        logs = boto3.client("logs")

    return Clients


@pytest.fixture(scope="module")
def stream_run(stack, aws) -> dict:
    """Puts three records into the stream and waits until the function has processed them.

    `retry` fails on its first delivery: the function reports it in batchItemFailures,
    Lambda retries the batch from it, and it succeeds on the second delivery.
    """
    run = uuid.uuid4().hex[:8]
    commands = [
        {"id": f"{run}-first", "fail_attempts": 0},
        {"id": f"{run}-retry", "fail_attempts": 1},
        {"id": f"{run}-last", "fail_attempts": 0},
    ]
    data = {c["id"]: json.dumps(c) for c in commands}
    started = time.monotonic()
    result = aws.kinesis.put_records(
        StreamName=stack["StreamName"],
        Records=[{"Data": data[c["id"]].encode(), "PartitionKey": run} for c in commands],
    )
    assert result["FailedRecordCount"] == 0

    def processed():
        items = [
            aws.dynamodb.get_item(
                TableName=stack["TableName"], Key={"pk": {"S": f"record#{i}"}}, ConsistentRead=True
            ).get("Item")
            for i in data
        ]
        return items if all(items) else None

    items = wait_for("the function's DynamoDB items", processed, timeout=90)
    print(f"records processed {time.monotonic() - started:.1f}s after PutRecords")
    return {"run": run, "ids": [c["id"] for c in commands], "data": data, "items": items}


def attempts(aws, stack, record_id: str) -> int:
    item = aws.dynamodb.get_item(
        TableName=stack["TableName"], Key={"pk": {"S": f"attempt#{record_id}"}}, ConsistentRead=True
    )["Item"]
    return int(item["attempts"]["N"])


def test_records_are_written_to_dynamodb(stream_run, stack, aws):
    first, retry, last = stream_run["ids"]
    by_id = {item["pk"]["S"].removeprefix("record#"): item for item in stream_run["items"]}
    for record_id in stream_run["ids"]:
        assert by_id[record_id]["data"]["S"] == stream_run["data"][record_id]
        assert by_id[record_id]["partition_key"]["S"] == stream_run["run"]
    assert int(by_id[retry]["attempts"]["N"]) == 2
    # sequence numbers are increasing in put order
    seqs = [int(by_id[i]["sequence_number"]["S"]) for i in stream_run["ids"]]
    assert seqs == sorted(seqs)


def test_failed_record_is_retried_from_its_sequence_number(stream_run, stack, aws):
    first, retry, last = stream_run["ids"]
    # first: processed once, before the failure (the checkpoint moved past it)
    # retry: reported in batchItemFailures on delivery 1, processed on delivery 2
    # last:  after the failed record, so not attempted in the first batch: delivered once
    assert attempts(aws, stack, first) == 1
    assert attempts(aws, stack, retry) == 2
    assert attempts(aws, stack, last) == 1


def test_records_are_written_to_s3(stream_run, stack, aws):
    for record_id in stream_run["ids"]:
        body = aws.s3.get_object(Bucket=stack["BucketName"], Key=f"records/{record_id}.json")["Body"].read()
        assert body.decode() == stream_run["data"][record_id]


def test_sns_messages_reach_the_sqs_subscriber(stream_run, stack, aws):
    expected = set(stream_run["ids"])
    seen: dict[str, dict] = {}

    def receive():
        for message in aws.sqs.receive_message(
            QueueUrl=stack["QueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            body = json.loads(message["Body"])  # raw message delivery: the function's message
            if body.get("id") in expected:
                seen[body["id"]] = body
            aws.sqs.delete_message(QueueUrl=stack["QueueUrl"], ReceiptHandle=message["ReceiptHandle"])
        return set(seen) == expected

    wait_for("the SNS messages in SQS", receive, timeout=30, interval=0)
    assert seen[stream_run["ids"][1]]["attempts"] == 2


def test_function_logs_reach_cloudwatch(stream_run, stack, aws):
    group = f"/aws/lambda/{stack['FunctionName']}"
    first = stream_run["ids"][0]

    def messages():
        try:
            events = aws.logs.filter_log_events(logGroupName=group)["events"]
        except aws.logs.exceptions.ResourceNotFoundException:
            return None
        text = "\n".join(e["message"] for e in events)
        return text if f"processed record id={first}" in text else None

    text = wait_for(f"the function's logs in {group}", messages, timeout=20)
    assert "START RequestId: " in text
    assert "END RequestId: " in text
    assert "REPORT RequestId: " in text and "Max Memory Used: " in text


def kinesis_event(stack, records: list[dict]) -> dict:
    """A Kinesis event as the event source mapping delivers it."""
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{seq}",
                "eventName": "aws:kinesis:record",
                "awsRegion": os.environ["AWS_REGION"],
                "eventSourceARN": f"arn:aws:kinesis:{os.environ['AWS_REGION']}:000000000000:stream/{stack['StreamName']}",
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "direct",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(json.dumps(record).encode()).decode(),
                    "approximateArrivalTimestamp": round(time.time(), 3),
                    "encryptionType": "NONE",
                },
            }
            for seq, record in records
        ]
    }


def invoke(aws, stack, event: dict, function: str = "FunctionName") -> tuple[dict, bool, float]:
    started = time.monotonic()
    response = aws.lambda_.invoke(FunctionName=stack[function], Payload=json.dumps(event).encode())
    elapsed = time.monotonic() - started
    payload = json.loads(response["Payload"].read() or b"null")
    return payload, "FunctionError" in response, elapsed


def test_batch_item_failures_name_the_failed_sequence_number(stack, aws):
    run = uuid.uuid4().hex[:8]
    event = kinesis_event(
        stack,
        [
            ("49000000000000000000000000000000000000000000000000000001", {"id": f"{run}-ok"}),
            ("49000000000000000000000000000000000000000000000000000002", {"id": f"{run}-bad", "fail_attempts": 99}),
            ("49000000000000000000000000000000000000000000000000000003", {"id": f"{run}-after"}),
        ],
    )
    payload, is_error, _ = invoke(aws, stack, event)
    assert not is_error, payload
    assert payload == {
        "batchItemFailures": [{"itemIdentifier": "49000000000000000000000000000000000000000000000000000002"}]
    }
    assert attempts(aws, stack, f"{run}-ok") == 1
    assert attempts(aws, stack, f"{run}-bad") == 1


def test_timeout_is_enforced_and_the_environment_recovers(stack, aws):
    run = uuid.uuid4().hex[:8]
    slow = kinesis_event(stack, [("1", {"id": f"{run}-slow", "sleep_ms": (FUNCTION_TIMEOUT_S + 3) * 1000})])
    payload, is_error, elapsed = invoke(aws, stack, slow)
    assert is_error, payload
    assert payload["errorType"] == "Sandbox.Timedout", payload
    assert f"Task timed out after {FUNCTION_TIMEOUT_S:.2f} seconds" in payload["errorMessage"]
    assert FUNCTION_TIMEOUT_S <= elapsed < FUNCTION_TIMEOUT_S + 3, elapsed

    quick = kinesis_event(stack, [("2", {"id": f"{run}-quick"})])
    payload, is_error, _ = invoke(aws, stack, quick)
    assert not is_error, payload
    assert payload == {"batchItemFailures": []}


def test_memory_size_is_enforced(stack, aws):
    run = uuid.uuid4().hex[:8]
    # MemorySize is 128 MB
    hungry = kinesis_event(stack, [("1", {"id": f"{run}-hungry", "alloc_mb": 200})])
    payload, is_error, _ = invoke(aws, stack, hungry)
    assert is_error, payload
    assert payload["errorType"] == "Runtime.OutOfMemory", payload

    modest = kinesis_event(stack, [("2", {"id": f"{run}-modest", "alloc_mb": 32})])
    payload, is_error, _ = invoke(aws, stack, modest)
    assert not is_error, payload
    assert payload == {"batchItemFailures": []}


def test_a_runtime_that_exits_during_init_fails_the_invocation(stack, aws):
    # no TABLE_NAME etc.: the probe's main() returns an error before polling for events
    payload, is_error, _ = invoke(aws, stack, kinesis_event(stack, []), function="MisconfiguredFunctionName")
    assert is_error, payload
    assert payload["errorType"] == "Runtime.ExitError", payload
    assert "exit status 1" in payload["errorMessage"], payload


@pytest.mark.skipif(os.environ.get("SMOKE_MANAGED") != "1", reason="LocalStack is not managed by this run")
def test_down_leaves_no_process_behind():
    """Last test: localstack/down stops LocalStack and everything it started."""
    pidfile = LOCALSTACK / ".state" / "localstack.pid"
    sid = pidfile.read_text().strip()

    def ours() -> list[str]:
        out = subprocess.run(
            ["bash", "-c", f'source "{LOCALSTACK}/lib.sh"; ls_our_pids "$1"', "_", sid],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.split()

    before = ours()
    # LocalStack, DynamoDB Local, kinesis-local and at least one Lambda bootstrap
    assert len(before) >= 4, before

    subprocess.run([str(LOCALSTACK / "down")], check=True, timeout=60)

    assert ours() == []
    for pid in before:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} is still there"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", PORT)) != 0, f"port {PORT} still accepts connections"
    status = subprocess.run([str(LOCALSTACK / "status")], capture_output=True, text=True)
    assert status.returncode == 1, status.stdout
