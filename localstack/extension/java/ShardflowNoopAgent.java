/*
 * A Java agent that does nothing.
 *
 * LocalStack starts DynamoDB Local with `-javaagent:<install dir>/ddb-local-loader-0.1.jar`,
 * an agent it downloads from GitHub that lifts DynamoDB Local's limit of 20 global
 * secondary indexes per table. Offline we cannot download it; DynamoDB Local runs the
 * same without it (with AWS's default limit of 20 GSIs), so localstack/up compiles this
 * class into a jar and places it where LocalStack expects the agent.
 */
package shardflow.localstack;

import java.lang.instrument.Instrumentation;

public final class ShardflowNoopAgent {
    private ShardflowNoopAgent() {}

    public static void premain(String args, Instrumentation instrumentation) {
        // Intentionally empty.
    }
}
