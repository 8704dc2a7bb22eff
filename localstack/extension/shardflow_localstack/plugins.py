"""Plugin entry points (plux) that LocalStack discovers in this distribution."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class HostRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """``LAMBDA_RUNTIME_EXECUTOR=host``: run OS-only Lambda runtimes as host processes."""

    name = "host"

    def load(self, *args, **kwargs):
        from shardflow_localstack import esm_patches
        from shardflow_localstack.executor import HostRuntimeExecutor

        # Loaded when the Lambda provider initialises, before it serves any event source mapping.
        esm_patches.apply()

        return HostRuntimeExecutor
