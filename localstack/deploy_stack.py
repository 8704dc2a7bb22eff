"""Creates or updates a CloudFormation stack and waits for it, polling every half second.

Used by localstack/deploy after `aws cloudformation package` (the AWS CLI's own
`cloudformation deploy` polls every 30 s, which dominates a local deploy).
Needs only boto3; the endpoint and credentials come from the usual AWS_* variables.

    python deploy_stack.py [--bucket BUCKET] STACK TEMPLATE_FILE [Key=Value ...]   # outputs as JSON on stdout

A template over CloudFormation's limit for an inline body (51,200 bytes) is uploaded to BUCKET
(under STACK/) and passed by URL, as `aws cloudformation deploy --s3-bucket` does.
"""

from __future__ import annotations

import json
import sys
import time

import boto3
from botocore.exceptions import ClientError

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
MAX_TEMPLATE_BODY = 51_200
TIMEOUT_S = 600


def _stack(cfn, name: str) -> dict | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise


def _failures(cfn, name: str) -> str:
    lines = []
    try:
        for event in cfn.describe_stack_events(StackName=name)["StackEvents"]:
            if "FAILED" in event.get("ResourceStatus", ""):
                lines.append(
                    f"  {event['LogicalResourceId']}: {event['ResourceStatus']}: {event.get('ResourceStatusReason', '')}"
                )
    except ClientError:
        pass
    return "\n".join(lines)


def _template(name: str, body: str, bucket: str | None) -> dict:
    """The template argument of create_stack/update_stack: the body inline, or by URL from S3."""
    if len(body.encode("utf-8")) <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body}
    if not bucket:
        raise SystemExit(
            f"[deploy] ERROR: the template is over {MAX_TEMPLATE_BODY} bytes: give --bucket to upload it"
        )
    s3 = boto3.client("s3")
    key = f"{name}/template-{int(time.time() * 1000)}.yaml"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"))
    return {"TemplateURL": f"{s3.meta.endpoint_url.rstrip('/')}/{bucket}/{key}"}


def deploy(name: str, template_body: str, parameters: dict[str, str], bucket: str | None = None) -> list[dict]:
    cfn = boto3.client("cloudformation")
    template = _template(name, template_body, bucket)
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    existing = _stack(cfn, name)
    if existing and existing["StackStatus"] in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"):
        # a stack that never got created cannot be updated: start over, as `sam deploy` does
        print(f"[deploy] deleting stack {name} in state {existing['StackStatus']}", file=sys.stderr)
        cfn.delete_stack(StackName=name)
        _wait(cfn, name, ("DELETE_COMPLETE",), deleting=True)
        existing = None
    try:
        if existing is None:
            cfn.create_stack(StackName=name, Parameters=params, Capabilities=CAPABILITIES, **template)
        else:
            cfn.update_stack(StackName=name, Parameters=params, Capabilities=CAPABILITIES, **template)
    except ClientError as e:
        if "No updates are to be performed" not in str(e):
            raise
        print(f"[deploy] stack {name}: no changes", file=sys.stderr)
    stack = _wait(cfn, name, ("CREATE_COMPLETE", "UPDATE_COMPLETE"))
    return stack.get("Outputs", [])


def _wait(cfn, name: str, success: tuple[str, ...], deleting: bool = False) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        stack = _stack(cfn, name)
        if stack is None:
            if deleting:
                return {}
            raise SystemExit(f"[deploy] ERROR: stack {name} disappeared")
        status = stack["StackStatus"]
        if status in success:
            return stack
        if status.endswith("_FAILED") or status.endswith("ROLLBACK_COMPLETE"):
            raise SystemExit(
                f"[deploy] ERROR: stack {name} is {status}: {stack.get('StackStatusReason', '')}\n{_failures(cfn, name)}"
            )
        if time.monotonic() > deadline:
            raise SystemExit(f"[deploy] ERROR: stack {name} still {status} after {TIMEOUT_S}s")
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    bucket = None
    if argv[:1] == ["--bucket"] and len(argv) >= 2:
        bucket, argv = argv[1], argv[2:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    name, template_file, *pairs = argv
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"[deploy] ERROR: parameter {pair!r} is not Key=Value", file=sys.stderr)
            return 2
        parameters[key] = value
    with open(template_file, encoding="utf-8") as f:
        body = f.read()
    outputs = deploy(name, body, parameters, bucket)
    print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in outputs}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
