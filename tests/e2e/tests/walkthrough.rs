//! The README's LocalStack walkthrough ("Deploy") as a new user follows it. `scripts/walkthrough`
//! runs the README's commands: the first test checks that the README still holds them (so the
//! two cannot drift apart), the second runs the script against the running LocalStack, with a
//! stack of its own (deleted by a guard), and checks what the README promises: closed one-minute
//! revenue windows in Postgres, receipts from the queue subscribed to the topic, an enriched order
//! read from S3, and the status of every stage.

use std::process::Command;
use std::time::Instant;

use shardflow_e2e::{repo_root, shardflow_dir, StackGuard};

const START: &str = "# >>> README\n";
const END: &str = "# <<< README\n";

fn script() -> String {
    std::fs::read_to_string(repo_root().join("scripts/walkthrough")).expect("read scripts/walkthrough")
}

/// The commands between the script's README markers.
fn script_commands() -> String {
    let script = script();
    let start = script.find(START).expect("the script's start marker") + START.len();
    let end = script.find(END).expect("the script's end marker");
    script[start..end].to_owned()
}

#[test]
fn the_readme_holds_the_walkthrough_commands() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("read README.md");
    let commands = script_commands();
    assert!(commands.lines().count() > 20, "the walkthrough is between the markers");
    assert!(
        script().contains(r#"stack="${SHARDFLOW_WALKTHROUGH_STACK:-shop}""#),
        "the script's stack is the README's unless a test names another"
    );
    let missing: Vec<&str> = commands.lines().filter(|l| !readme.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "README.md lacks these lines of scripts/walkthrough: {missing:#?}"
    );
    let block = format!("```sh\nstack=shop\n{commands}```\n");
    assert!(
        readme.contains(&block),
        "README.md (\"Deploy\") holds scripts/walkthrough's commands as one sh block after `stack=shop`, in the script's order:\n{block}"
    );
    // after the commands, before the template's parameters: what a user needs to read the output
    let after = &readme[readme.find(&block).unwrap_or_default() + block.len()..];
    let notes = &after[..after.find("\nParameters:").unwrap_or(after.len())];
    for note in [
        "--orders-per-sec",
        "WM LAG",
        "--rate 200",
        "records/s",
        "emulator's rate, not shardflow's",
    ] {
        assert!(notes.contains(note), "the walkthrough's notes explain {note}:\n{notes}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_shows_every_stages_results() {
    let started = Instant::now();
    let path = format!(
        "{}:{}",
        shardflow_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // a CloudFormation name that is also a Postgres identifier (the revenue table's prefix)
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let stack = format!("walkthrough{nanos}");
    let _guard = StackGuard(stack.clone());
    let run = Command::new(repo_root().join("scripts/walkthrough"))
        .env("SHARDFLOW_WALKTHROUGH_STACK", &stack)
        .env("PATH", path)
        .current_dir(repo_root())
        .output()
        .expect("run scripts/walkthrough");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "scripts/walkthrough failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        run.status
    );

    let table = format!("{stack}_revenue");
    let postgres = shardflow_testkit::postgres().await;
    let row = postgres
        .query_one(
            &format!("SELECT count(DISTINCT window_start_ms) FILTER (WHERE pane = 'on_time'), count(*) FROM {table}"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("the revenue table {table}: {e}\n--- stdout\n{stdout}"));
    let (closed, rows): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        closed >= 5,
        "the 10 minutes of event time close one-minute revenue windows: {closed} closed minutes in {rows} rows\n{stdout}"
    );

    assert!(
        stdout.contains(r#""receipt_id":"rcpt-"#),
        "receipts are read from the queue:\n{stdout}"
    );
    assert!(
        stdout.contains(r#""order_status":"completed""#),
        "an enriched order is read from S3:\n{stdout}"
    );
    for stage in [
        "receipts",
        "revenue-keyby",
        "revenue-shuffled",
        "order-enrich-keyby",
        "order-enrich-shuffled",
        "archive",
    ] {
        assert!(
            stdout.contains(&format!("stage {stage} (table {stack}-StateTable")),
            "the status of {stage} is shown:\n{stdout}"
        );
    }
    let put = stdout.lines().find(|l| l.starts_with("gen shop:")).unwrap_or_default();
    eprintln!(
        "walkthrough: {closed} closed revenue minutes ({rows} rows) in {:.0} s; {put}",
        started.elapsed().as_secs_f64()
    );

    let _ = postgres.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await;
    let sqs = shardflow_testkit::sqs();
    if let Ok(queue) = sqs.get_queue_url().queue_name(format!("{stack}-receipts")).send().await {
        let _ = sqs
            .delete_queue()
            .queue_url(queue.queue_url().unwrap_or_default())
            .send()
            .await;
    }
}
