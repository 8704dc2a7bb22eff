"""shardflow's LocalStack extension: offline DynamoDB Local provisioning and a host Lambda executor."""

__version__ = "0.1.0"
