//! docs/ci/github-actions.yml: the example sharded workflow agrees with itself (matrix indexes, the N in --shard, the merged folders, one start instant, merge gating the workflow).

use std::path::Path;

use serde_json::Value;

fn workflow() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ci/github-actions.yml");
    let text = std::fs::read_to_string(&path).expect("read docs/ci/github-actions.yml");
    serde_yaml_ng::from_str(&text).expect("docs/ci/github-actions.yml is YAML")
}

fn steps(job: &Value) -> &[Value] {
    job["steps"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The `run:` of the job's step whose command line starts with `prefix`, with the spaces
/// inside `${{ ... }}` expressions removed so that each is one word.
fn run_step(job: &Value, prefix: &str) -> Option<String> {
    let run = steps(job).iter().filter_map(|s| s["run"].as_str()).find(|r| r.trim_start().starts_with(prefix))?;
    Some(run.replace("${{ ", "${{").replace(" }}", "}}"))
}

/// The words after `flag` in a command line.
fn flag_value<'a>(command: &'a str, flag: &str) -> Option<&'a str> {
    let mut words = command.split_whitespace();
    words.by_ref().find(|w| *w == flag)?;
    words.next()
}

fn needs(job: &Value) -> Vec<&str> {
    match &job["needs"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The job's upload-artifact step named `name`, uploaded even when the run failed.
fn uploads_always(job: &Value, name: &str) -> bool {
    steps(job).iter().any(|s| {
        s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact@"))
            && s["with"]["name"] == name
            && s["if"].as_str().is_some_and(|c| c.contains("always()"))
    })
}

fn check(w: &Value) -> Result<(), String> {
    let jobs = &w["jobs"];
    let shard = &jobs["shard"];
    let run = run_step(shard, "bin/harness run").ok_or("the shard job runs no `harness run`")?;
    let spec = flag_value(&run, "--shard").ok_or("no --shard")?;
    let n: usize = spec
        .strip_prefix("${{matrix.index}}/")
        .ok_or(format!("--shard {spec} is not the matrix index"))?
        .parse()
        .map_err(|_| format!("--shard {spec}: N is not a number"))?;
    let indexes: Vec<u64> =
        shard["strategy"]["matrix"]["index"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    if indexes != (0..n as u64).collect::<Vec<_>>() {
        return Err(format!("matrix indexes {indexes:?} are not 0..{n} (--shard K/{n})"));
    }
    if shard["strategy"]["fail-fast"] != false {
        return Err("fail-fast would cancel the other shards when one fails".into());
    }
    if flag_value(&run, "--out") != Some("shard-${{matrix.index}}")
        || !uploads_always(shard, "shard-${{ matrix.index }}")
    {
        return Err("each shard must write shard-<index> and upload it as artifact shard-<index>".into());
    }

    // One start instant: every --start-at in the workflow is the same job output, and
    // that job computes it from one step.
    let chaos = &jobs["chaos"];
    let chaos_run = run_step(chaos, "bin/harness chaos").ok_or("the chaos job runs no `harness chaos`")?;
    let starts = [flag_value(&run, "--start-at"), flag_value(&chaos_run, "--start-at")];
    let [Some(start), Some(chaos_start)] = starts else { return Err("a --start-at is missing".into()) };
    if start != chaos_start {
        return Err(format!("shards start at {start}, chaos at {chaos_start}"));
    }
    let source = start
        .strip_prefix("${{needs.")
        .and_then(|s| s.strip_suffix(".outputs.start-at}}"))
        .ok_or(format!("--start-at {start} is not an earlier job's output"))?;
    for (name, job) in [("shard", shard), ("chaos", chaos)] {
        if !needs(job).contains(&source) {
            return Err(format!("{name} does not need {source}, whose output is its start"));
        }
    }
    let output = jobs[source]["outputs"]["start-at"].as_str().unwrap_or_default();
    if !output.starts_with("${{ steps.") {
        return Err(format!("job {source} has no start-at output from a step"));
    }
    let all = serde_json::to_string(w).map_err(|e| e.to_string())?;
    if all.matches("--start-at").count() != 2 {
        return Err("a --start-at other than the shards' and the chaos runner's".into());
    }

    // The merge: after every shard and the chaos runner, over exactly their folders, with
    // its exit code as the workflow's verdict.
    let merge = &jobs["merge"];
    for need in ["shard", "chaos"] {
        if !needs(merge).contains(&need) {
            return Err(format!("merge does not need {need}"));
        }
    }
    if !merge["if"].as_str().is_some_and(|c| c.contains("!cancelled()")) {
        return Err("merge must also run after a failed shard, to refuse the run".into());
    }
    let merge_run = run_step(merge, "bin/harness merge").ok_or("the merge job runs no `harness merge`")?;
    let dirs: Vec<&str> = merge_run.split_whitespace().filter(|w| w.starts_with("runs/")).collect();
    let mut want: Vec<String> = (0..n).map(|k| format!("runs/shard-{k}")).collect();
    want.push("runs/chaos".into());
    if dirs != want {
        return Err(format!("merge reads {dirs:?}, not {want:?}"));
    }
    let downloads_shards =
        steps(merge).iter().any(|s| s["with"]["pattern"] == "shard-*" && s["with"]["path"] == "runs");
    if !downloads_shards {
        return Err("merge does not download the shard artifacts into runs/".into());
    }
    if merge_run.contains("|| true") || merge_run.contains("set +e") || merge["continue-on-error"] == true {
        return Err("merge's exit code must fail the workflow".into());
    }
    if !uploads_always(merge, "blackfriday-report") {
        return Err("the report is not uploaded when a gate failed".into());
    }
    Ok(())
}

#[test]
fn the_example_workflow_is_wired_consistently() {
    check(&workflow()).unwrap_or_else(|e| panic!("docs/ci/github-actions.yml: {e}"));
}

#[test]
fn the_workflow_check_fails_when_the_wiring_disagrees() {
    let mut w = workflow();
    w["jobs"]["shard"]["strategy"]["matrix"]["index"] = serde_json::json!([0, 1, 2]);
    assert!(check(&w).is_err_and(|e| e.contains("matrix indexes")));

    let mut w = workflow();
    w["jobs"]["merge"]["needs"] = serde_json::json!(["build", "chaos"]);
    assert!(check(&w).is_err_and(|e| e.contains("merge does not need shard")));

    let mut w = workflow();
    let step = w["jobs"]["chaos"]["steps"]
        .as_array_mut()
        .and_then(|s| s.iter_mut().find(|s| s["name"] == "harness chaos"))
        .expect("the chaos step");
    let run = step["run"].as_str().expect("run").replace("${{ needs.plan.outputs.start-at }}", "$(date +%s000)");
    step["run"] = Value::String(run);
    assert!(check(&w).is_err_and(|e| e.contains("chaos at")));

    let mut w = workflow();
    let step = w["jobs"]["merge"]["steps"]
        .as_array_mut()
        .and_then(|s| s.iter_mut().find(|s| s["name"] == "harness merge"))
        .expect("the merge step");
    let run = step["run"].as_str().expect("run").replace(" runs/shard-3", "");
    step["run"] = Value::String(run);
    assert!(check(&w).is_err_and(|e| e.contains("merge reads")));
}
