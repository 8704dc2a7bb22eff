#!/bin/bash
# LocalStack init hook of the Docker setup (docker-compose.yml mounts the repository at
# /shardflow): once LocalStack is ready, deploy SHARDFLOW_STACKS with the same script as
# localstack/up on the host.
set -euo pipefail
export AWS_ENDPOINT_URL="http://localhost:4566"
exec /shardflow/localstack/deploy-stacks
