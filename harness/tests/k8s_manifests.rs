//! deploy/k8s: the manifests scripts/k8s-run.sh renders parse into the Kubernetes API's typed objects with no field left over, and wire shards, chaos runner and merge together.
//!
//! No cluster here: this is the whole check the manifests get before someone applies them.
//! Rendering goes through the script itself (`--render-only`), the same path `make
//! k8s-render` and a real run take.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PersistentVolumeClaim, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;

const RUN: &str = "bf-test";
const NAMESPACE: &str = "harness-test";
const IMAGE: &str = "registry.example/harness:test";
const START_AT: &str = "2026-12-05T01:00:00Z";
/// The example overlay's values (deploy/k8s/overlays/example/values.env).
const TARGET_URL: &str = "http://shop.shop.svc.cluster.local:8080";
const TARGET_NAMESPACE: &str = "shop";
const RESULTS_CLAIM: &str = "harness-results";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn example_scenario() -> PathBuf {
    repo().join("deploy/k8s/overlays/example/scenario.json")
}

/// Runs scripts/k8s-run.sh with `args`; returns (exit code, stderr).
fn script(args: &[&str]) -> (i32, String) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/k8s-run.sh"))
        .args(args)
        .output()
        .expect("run scripts/k8s-run.sh");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The rendered files of one run, name -> text.
fn render_files(shards: u32) -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 temp path").to_owned();
    let shards = shards.to_string();
    let scenario = example_scenario();
    let (code, stderr) = script(&[
        "--render-only",
        &out,
        "--run",
        RUN,
        "--start-at",
        START_AT,
        scenario.to_str().expect("utf-8 path"),
        &shards,
        NAMESPACE,
        IMAGE,
    ]);
    assert_eq!(code, 0, "render failed: {stderr}");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).expect("read render dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("file name").to_owned();
        files.insert(name, std::fs::read_to_string(&path).expect("read rendered file"));
    }
    (dir, files)
}

enum Object {
    ConfigMap(ConfigMap),
    Claim(Box<PersistentVolumeClaim>),
    Job(Box<Job>),
    Pod(Box<Pod>),
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
}

/// One YAML document into its typed object. Fails on a field the type does not have
/// (k8s-openapi's types ignore unknown fields; serde_ignored reports each one) and on
/// anything that does not come back the same from the typed object (a value the type
/// coerced or dropped).
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let object: T = serde_ignored::deserialize(value.clone(), |path| {
        // serde_ignored writes `?` for each Option it passed through.
        unknown.push(path.to_string().replace(".?", ""))
    })
    .map_err(|e| e.to_string())?;
    if !unknown.is_empty() {
        return Err(format!("fields the Kubernetes API does not have: {}", unknown.join(", ")));
    }
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    match difference(value, &back, String::new()) {
        Some(path) => Err(format!("{path}: not the same after a round trip through the typed object")),
        None => Ok(object),
    }
}

/// The path of the first place where `a` and `b` differ.
fn difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => difference(p, q, format!("{path}.{k}")),
                _ => Some(format!("{path}.{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| difference(p, q, format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(if path.is_empty() { ".".into() } else { path }),
    }
}

/// Every document of one file into its typed object; the error names the file, the
/// document and the field.
fn parse(file: &str, text: &str) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("{file} document {i}: not YAML: {e}"))?;
        if value.is_null() {
            continue;
        }
        let api = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let object = match (api, kind) {
            ("v1", "ConfigMap") => typed(&value).map(Object::ConfigMap),
            ("v1", "PersistentVolumeClaim") => typed(&value).map(|c| Object::Claim(Box::new(c))),
            ("v1", "Pod") => typed(&value).map(|p| Object::Pod(Box::new(p))),
            ("v1", "ServiceAccount") => typed(&value).map(Object::ServiceAccount),
            ("batch/v1", "Job") => typed(&value).map(|j| Object::Job(Box::new(j))),
            ("rbac.authorization.k8s.io/v1", "Role") => typed(&value).map(Object::Role),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed(&value).map(Object::RoleBinding),
            _ => Err(format!("no typed check for apiVersion {api:?} kind {kind:?}")),
        };
        objects.push(object.map_err(|e| format!("{file} document {i} ({kind}): {e}"))?);
    }
    Ok(objects)
}

/// One rendered run, typed.
struct Rendered {
    shards: u32,
    objects: Vec<Object>,
}

impl Rendered {
    fn new(shards: u32) -> Self {
        let (_dir, files) = render_files(shards);
        let mut objects = Vec::new();
        for (file, text) in &files {
            objects.extend(parse(file, text).unwrap_or_else(|e| panic!("{e}")));
        }
        Rendered { shards, objects }
    }

    fn job(&self, suffix: &str) -> &Job {
        let name = format!("{RUN}-{suffix}");
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Job(j) if j.metadata.name.as_deref() == Some(name.as_str()) => Some(&**j),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Job {name}"))
    }

    fn job_mut(&mut self, suffix: &str) -> &mut Job {
        let name = format!("{RUN}-{suffix}");
        self.objects
            .iter_mut()
            .find_map(|o| match o {
                Object::Job(j) if j.metadata.name.as_deref() == Some(name.as_str()) => Some(&mut **j),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Job {name}"))
    }

    fn config_map(&self, name: &str) -> &BTreeMap<String, String> {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::ConfigMap(c) if c.metadata.name.as_deref() == Some(name) => c.data.as_ref(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no ConfigMap {name} with data"))
    }

    fn role_mut(&mut self) -> &mut Role {
        self.objects
            .iter_mut()
            .find_map(|o| match o {
                Object::Role(r) => Some(r),
                _ => None,
            })
            .expect("a Role")
    }

    fn pod_specs(&self) -> Vec<(String, &PodSpec)> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::Job(j) => Some((j.metadata.name.clone()?, j.spec.as_ref()?.template.spec.as_ref()?)),
                Object::Pod(p) => Some((p.metadata.name.clone()?, p.spec.as_ref()?)),
                _ => None,
            })
            .collect()
    }
}

fn pod_spec(job: &Job) -> &PodSpec {
    job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a Job with a pod template")
}

fn only_container(job: &Job) -> &Container {
    let spec = pod_spec(job);
    assert_eq!(spec.containers.len(), 1, "one container per pod");
    &spec.containers[0]
}

fn args(c: &Container) -> &[String] {
    c.args.as_deref().unwrap_or_default()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// Where a container's env var comes from: ("field", path) or ("configmap:NAME", key).
fn env_source(c: &Container, name: &str) -> Option<(String, String)> {
    let var = c.env.as_ref()?.iter().find(|e| e.name == name)?;
    let from = var.value_from.as_ref()?;
    if let Some(f) = &from.field_ref {
        return Some(("field".into(), f.field_path.clone()));
    }
    let c = from.config_map_key_ref.as_ref()?;
    Some((format!("configmap:{}", c.name), c.key.clone()))
}

/// The checks on the shard Job that tie the pod index to `--shard K/N`.
fn check_shards_job(r: &Rendered) -> Result<(), String> {
    let n = i32::try_from(r.shards).map_err(|e| e.to_string())?;
    let job = r.job("shards");
    let spec = job.spec.as_ref().ok_or("shards Job has no spec")?;
    if spec.completion_mode.as_deref() != Some("Indexed") {
        return Err(format!("completionMode is {:?}, not Indexed", spec.completion_mode));
    }
    if spec.completions != Some(n) || spec.parallelism != Some(n) {
        return Err(format!("completions {:?} and parallelism {:?}, not both {n}", spec.completions, spec.parallelism));
    }
    let c = only_container(job);
    let shard = flag(args(c), "--shard").ok_or("no --shard in the shard args")?;
    if shard != format!("$(JOB_COMPLETION_INDEX)/{n}") {
        return Err(format!("--shard {shard}, not $(JOB_COMPLETION_INDEX)/{n}"));
    }
    let index = env_source(c, "JOB_COMPLETION_INDEX");
    let want = ("field".to_owned(), "metadata.annotations['batch.kubernetes.io/job-completion-index']".to_owned());
    if index.as_ref() != Some(&want) {
        return Err(format!("JOB_COMPLETION_INDEX comes from {index:?}, not the completion-index annotation"));
    }
    if spec.backoff_limit_per_index != Some(0) || pod_spec(job).restart_policy.as_deref() != Some("Never") {
        return Err("a shard must not be retried: backoffLimitPerIndex 0, restartPolicy Never".into());
    }
    Ok(())
}

#[test]
fn every_rendered_manifest_is_a_typed_kubernetes_object() {
    for n in [1, 3, 8] {
        let r = Rendered::new(n);
        let kinds: BTreeSet<&str> = r
            .objects
            .iter()
            .map(|o| match o {
                Object::ConfigMap(_) => "ConfigMap",
                Object::Claim(_) => "PersistentVolumeClaim",
                Object::Job(_) => "Job",
                Object::Pod(_) => "Pod",
                Object::ServiceAccount(_) => "ServiceAccount",
                Object::Role(_) => "Role",
                Object::RoleBinding(_) => "RoleBinding",
            })
            .collect();
        let want = ["ConfigMap", "Job", "PersistentVolumeClaim", "Pod", "Role", "RoleBinding", "ServiceAccount"];
        assert_eq!(kinds, want.into_iter().collect(), "N={n}");
        for suffix in ["shards", "chaos", "merge"] {
            r.job(suffix);
        }
    }
}

#[test]
fn a_misspelt_or_mistyped_field_fails_the_typed_check() {
    let (_dir, files) = render_files(3);
    let job = &files["30-shards-job.yaml"];
    assert!(parse("30-shards-job.yaml", job).is_ok());

    let misspelt = job.replace("completionMode: Indexed", "completionsMode: Indexed");
    assert_ne!(&misspelt, job);
    let err = parse("30-shards-job.yaml", &misspelt).err().expect("a misspelt field must fail");
    assert!(err.contains("spec.completionsMode"), "{err}");

    let deep = job.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true");
    let err = parse("30-shards-job.yaml", &deep).err().expect("a misspelt nested field must fail");
    assert!(err.contains("readOnlyRootFileSystem"), "{err}");

    let mistyped = job.replace("backoffLimitPerIndex: 0", "backoffLimitPerIndex: none");
    let err = parse("30-shards-job.yaml", &mistyped).err().expect("a mistyped field must fail");
    assert!(err.contains("30-shards-job.yaml"), "{err}");

    let unknown_kind = job.replace("kind: Job", "kind: Jobs");
    assert!(parse("30-shards-job.yaml", &unknown_kind).is_err());
}

#[test]
fn the_shard_index_and_n_reach_every_place_they_must() {
    for n in [3, 8] {
        let r = Rendered::new(n);
        check_shards_job(&r).unwrap_or_else(|e| panic!("N={n}: {e}"));
        assert_eq!(r.config_map(&format!("{RUN}-run"))["SHARDS"], n.to_string());
        let merge = only_container(r.job("merge"));
        let inputs: Vec<String> = (0..n).map(|k| format!("/results/{RUN}/shard-{k}")).collect();
        let merge_args = args(merge);
        assert_eq!(merge_args[..2], ["merge".to_owned(), format!("/results/{RUN}/merged")]);
        assert_eq!(merge_args[2..2 + n as usize], inputs[..], "N={n}: every shard folder, in order");
        assert_eq!(merge_args[2 + n as usize], format!("/results/{RUN}/chaos"));
        let init = pod_spec(r.job("merge")).init_containers.as_deref().unwrap_or_default();
        let wait = init.first().and_then(|c| c.args.as_ref()).map(|a| a.join("\n")).unwrap_or_default();
        assert!(wait.contains(&format!("\"$i\" -lt \"{n}\"")), "the merge waits for {n} shards: {wait}");
    }
}

#[test]
fn the_shard_check_fails_when_n_disagrees() {
    let mut r = Rendered::new(3);
    r.job_mut("shards").spec.as_mut().expect("spec").parallelism = Some(2);
    let err = check_shards_job(&r).expect_err("parallelism 2 with --shard K/3");
    assert!(err.contains("parallelism"), "{err}");

    let mut r = Rendered::new(3);
    let spec = r.job_mut("shards").spec.as_mut().expect("spec");
    spec.completion_mode = Some("NonIndexed".into());
    assert!(check_shards_job(&r).is_err());
}

#[test]
fn shards_and_the_chaos_runner_share_one_start_at_and_target() {
    let r = Rendered::new(3);
    let run = r.config_map(&format!("{RUN}-run"));
    assert_eq!(run["START_AT"], START_AT);
    assert_eq!(run["TARGET_URL"], TARGET_URL);
    let from_run = |key: &str| Some((format!("configmap:{RUN}-run"), key.to_owned()));
    for suffix in ["shards", "chaos"] {
        let c = only_container(r.job(suffix));
        assert_eq!(flag(args(c), "--start-at"), Some("$(START_AT)"), "{suffix}");
        assert_eq!(env_source(c, "START_AT"), from_run("START_AT"), "{suffix}");
        assert_eq!(flag(args(c), "--target"), Some("$(TARGET_URL)"), "{suffix}");
        assert_eq!(env_source(c, "TARGET_URL"), from_run("TARGET_URL"), "{suffix}");
        assert_eq!(args(c)[1], "/scenario/scenario.json", "{suffix}");
    }
    let shard = only_container(r.job("shards"));
    assert_eq!(args(shard)[0], "run");
    assert!(args(shard).iter().any(|a| a == "--allow-remote"), "the shop is not on loopback");
    assert_eq!(args(only_container(r.job("chaos")))[0], "chaos");
}

#[test]
fn writers_and_the_merge_use_one_volume_and_one_folder_per_run() {
    let r = Rendered::new(3);
    let claim = r
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Claim(c) => Some(c),
            _ => None,
        })
        .expect("a PersistentVolumeClaim");
    assert_eq!(claim.metadata.name.as_deref(), Some(RESULTS_CLAIM));
    let modes = claim.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default();
    assert_eq!(modes, ["ReadWriteMany"], "shards on many nodes write at once");

    let outs = [
        ("shards", format!("/results/{RUN}/shard-$(JOB_COMPLETION_INDEX)"), false),
        ("chaos", format!("/results/{RUN}/chaos"), false),
        ("merge", format!("/results/{RUN}/merged"), false),
    ];
    for (suffix, out, read_only) in outs {
        let job = r.job(suffix);
        let c = only_container(job);
        let written = match suffix {
            "merge" => args(c).get(1).map(String::as_str),
            _ => flag(args(c), "--out"),
        };
        assert_eq!(written, Some(out.as_str()), "{suffix}");
        let volume = pod_spec(job)
            .volumes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|v| v.persistent_volume_claim.as_ref().is_some_and(|p| p.claim_name == RESULTS_CLAIM))
            .unwrap_or_else(|| panic!("{suffix}: no volume from {RESULTS_CLAIM}"));
        let mount = c
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("{suffix}: {RESULTS_CLAIM} not mounted"));
        assert_eq!(mount.mount_path, "/results", "{suffix}");
        assert_eq!(mount.read_only.unwrap_or(false), read_only, "{suffix} writes under /results");
        let scenario = pod_spec(job).volumes.as_deref().unwrap_or_default().iter().find_map(|v| v.config_map.as_ref());
        if suffix != "merge" {
            assert_eq!(scenario.map(|c| c.name.as_str()), Some(format!("{RUN}-scenario").as_str()), "{suffix}");
        }
    }
}

/// The (apiGroup, resource, verb) triples one kubectl command line needs, and the
/// namespaces it names. Only the subcommands the example uses are known; any other fails
/// the test, so a new fault cannot slip past the Role.
fn kubectl_rules(
    command: &str,
    needed: &mut BTreeSet<(String, String, String)>,
    namespaces: &mut BTreeSet<String>,
) -> Result<(), String> {
    let mut piped: Option<(&str, &str)> = None;
    for segment in command.split("&&").flat_map(|s| s.split('|')).flat_map(|s| s.split(';')) {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let Some(start) = words.iter().position(|w| *w == "kubectl") else { continue };
        let (mut positional, mut selector, mut output) = (Vec::new(), false, None);
        let mut rest = words[start + 1..].iter();
        while let Some(w) = rest.next() {
            match *w {
                "-n" | "--namespace" => {
                    namespaces.insert(rest.next().ok_or("-n without a value")?.to_string());
                }
                "-l" | "--selector" => selector = rest.next().is_some(),
                "-o" | "--output" => output = rest.next().copied(),
                w if w.starts_with('-') => {}
                w => positional.push(w),
            }
        }
        let resource = |r: &str| match r.split('/').next().unwrap_or_default() {
            "deployment" | "deployments" | "deploy" => Ok(("apps", "deployments")),
            "pod" | "pods" | "po" => Ok(("", "pods")),
            other => Err(format!("kubectl {}: unknown resource {other}", positional.join(" "))),
        };
        let mut need = |(group, res): (&str, &str), verbs: &[&str]| {
            for v in verbs {
                needed.insert((group.to_owned(), res.to_owned(), (*v).to_owned()));
            }
        };
        match positional.as_slice() {
            ["rollout", "restart", r] => need(resource(r)?, &["get", "patch"]),
            ["rollout", "status", r] => need(resource(r)?, &["get", "list", "watch"]),
            ["get", r] if selector => {
                need(resource(r)?, &["list"]);
                piped = (output == Some("name")).then_some(resource(r)?);
            }
            ["delete"] => need(piped.ok_or("kubectl delete with no resource piped in")?, &["delete"]),
            ["delete", r, ..] => need(resource(r)?, if selector { &["list", "delete"] } else { &["delete"] }),
            other => return Err(format!("kubectl {}: verbs unknown to this test; add them", other.join(" "))),
        }
    }
    Ok(())
}

/// The Role grants exactly what the scenario's command faults use, where they use it, to
/// the account the chaos runner runs as.
fn check_rbac(r: &Rendered) -> Result<(), String> {
    let scenario: Value = serde_json::from_str(&r.config_map(&format!("{RUN}-scenario"))["scenario.json"])
        .map_err(|e| format!("scenario ConfigMap: {e}"))?;
    let (mut needed, mut namespaces) = (BTreeSet::new(), BTreeSet::new());
    for fault in scenario["chaos"].as_array().ok_or("no chaos in the scenario")? {
        if fault["action"] != "command" {
            continue;
        }
        let argv: Vec<&str> = fault["argv"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let line = match argv.as_slice() {
            ["sh", "-c", script] => script.to_string(),
            argv => argv.join(" "),
        };
        kubectl_rules(&line, &mut needed, &mut namespaces)?;
    }
    if needed.is_empty() {
        return Err("the scenario's command faults run no kubectl".into());
    }
    let mut role_ns = None;
    let mut granted = BTreeSet::new();
    let mut binding = None;
    for o in &r.objects {
        match o {
            Object::Role(role) => {
                role_ns = role.metadata.namespace.clone();
                for rule in role.rules.as_deref().unwrap_or_default() {
                    for g in rule.api_groups.as_deref().unwrap_or_default() {
                        for res in rule.resources.as_deref().unwrap_or_default() {
                            for v in &rule.verbs {
                                granted.insert((g.clone(), res.clone(), v.clone()));
                            }
                        }
                    }
                    if rule.resource_names.is_some() || rule.non_resource_urls.is_some() {
                        return Err("a rule the check does not model".into());
                    }
                }
            }
            Object::RoleBinding(b) => binding = Some(b),
            _ => {}
        }
    }
    if granted != needed {
        let extra: Vec<_> = granted.difference(&needed).collect();
        let missing: Vec<_> = needed.difference(&granted).collect();
        return Err(format!("Role grants more than the faults use: {extra:?}; less: {missing:?}"));
    }
    let want_ns: BTreeSet<String> = [TARGET_NAMESPACE.to_owned()].into();
    if namespaces != want_ns || role_ns.as_deref() != Some(TARGET_NAMESPACE) {
        return Err(format!("commands act in {namespaces:?}, the Role is in {role_ns:?}"));
    }
    let binding = binding.ok_or("no RoleBinding")?;
    let account = pod_spec(r.job("chaos")).service_account_name.clone().ok_or("chaos runs as no account")?;
    let exists = r.objects.iter().any(|o| {
        matches!(o, Object::ServiceAccount(s)
            if s.metadata.name.as_deref() == Some(account.as_str()) && s.metadata.namespace.as_deref() == Some(NAMESPACE))
    });
    if !exists {
        return Err(format!("no ServiceAccount {NAMESPACE}/{account}"));
    }
    let subject = binding.subjects.as_deref().unwrap_or_default();
    let bound = subject
        .iter()
        .any(|s| s.kind == "ServiceAccount" && s.name == account && s.namespace.as_deref() == Some(NAMESPACE));
    if !bound || binding.role_ref.kind != "Role" || binding.metadata.namespace.as_deref() != Some(TARGET_NAMESPACE) {
        return Err(format!("the RoleBinding does not bind the Role to {NAMESPACE}/{account}"));
    }
    Ok(())
}

#[test]
fn the_chaos_role_grants_exactly_the_verbs_its_commands_use() {
    let r = Rendered::new(3);
    check_rbac(&r).unwrap_or_else(|e| panic!("{e}"));
    for suffix in ["shards", "merge"] {
        let spec = pod_spec(r.job(suffix));
        assert_eq!(spec.automount_service_account_token, Some(false), "{suffix} needs no API access");
        assert_eq!(spec.service_account_name, None, "{suffix}");
    }
}

#[test]
fn the_rbac_check_fails_on_an_extra_or_a_missing_verb() {
    let mut r = Rendered::new(3);
    r.role_mut().rules.as_mut().expect("rules")[0].verbs.push("create".into());
    let err = check_rbac(&r).expect_err("an extra verb");
    assert!(err.contains("create"), "{err}");

    let mut r = Rendered::new(3);
    r.role_mut().rules.as_mut().expect("rules")[1].verbs.retain(|v| v != "delete");
    let err = check_rbac(&r).expect_err("a missing verb");
    assert!(err.contains("delete"), "{err}");

    let mut needed = BTreeSet::new();
    let err = kubectl_rules("kubectl -n shop scale deployment/shop --replicas=0", &mut needed, &mut BTreeSet::new())
        .expect_err("an unknown subcommand");
    assert!(err.contains("scale"), "{err}");
}

#[test]
fn every_pod_runs_as_non_root_with_requests_and_limits() {
    let r = Rendered::new(3);
    let specs = r.pod_specs();
    assert_eq!(specs.len(), 4, "shards, chaos, merge, fetch");
    for (name, spec) in specs {
        let pod = spec.security_context.as_ref().unwrap_or_else(|| panic!("{name}: no securityContext"));
        assert_eq!(pod.run_as_non_root, Some(true), "{name}");
        assert_eq!(pod.run_as_user, Some(10001), "{name}: the image's user");
        let containers = spec.containers.iter().chain(spec.init_containers.as_deref().unwrap_or_default());
        for c in containers {
            let sc = c.security_context.as_ref().unwrap_or_else(|| panic!("{name}/{}: no securityContext", c.name));
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}/{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}/{}", c.name);
            let res = c.resources.as_ref().unwrap_or_else(|| panic!("{name}/{}: no resources", c.name));
            for (what, map) in [("requests", &res.requests), ("limits", &res.limits)] {
                let map = map.as_ref().unwrap_or_else(|| panic!("{name}/{}: no {what}", c.name));
                assert!(map.contains_key("cpu") && map.contains_key("memory"), "{name}/{}: {what}", c.name);
            }
        }
    }
}

#[test]
fn shard_pods_prefer_distinct_nodes_and_are_sized_as_documented() {
    let r = Rendered::new(3);
    let job = r.job("shards");
    let anti = pod_spec(job)
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
        .and_then(<[_]>::first)
        .expect("a preferred podAntiAffinity");
    assert_eq!(anti.pod_affinity_term.topology_key, "kubernetes.io/hostname");
    let selector = anti.pod_affinity_term.label_selector.as_ref().and_then(|s| s.match_labels.as_ref());
    let labels = job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let (selector, labels) = (selector.expect("matchLabels"), labels.expect("pod labels"));
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "the selector matches the shard pods");
    assert!(selector.values().any(|v| v == RUN), "only this run's shards");

    // deploy/k8s/README.md "Sizing": a whole core and 256 MiB, requests == limits.
    let res = only_container(job).resources.as_ref().expect("resources");
    let quantity = |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    for k in ["cpu", "memory"] {
        assert_eq!(quantity(&res.requests, k), quantity(&res.limits, k), "{k}: Guaranteed QoS");
    }
    assert_eq!(quantity(&res.requests, "cpu").as_deref(), Some("1"));
    assert_eq!(quantity(&res.requests, "memory").as_deref(), Some("256Mi"));
}

#[test]
fn the_scenario_config_map_is_the_file_and_harness_validate_accepts_it() {
    let r = Rendered::new(3);
    let text = &r.config_map(&format!("{RUN}-scenario"))["scenario.json"];
    let source = std::fs::read_to_string(example_scenario()).expect("read the example scenario");
    assert_eq!(text, &source, "the ConfigMap carries the file byte for byte");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, text).expect("write scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_harness")).arg("validate").arg(&path).output().expect("run harness");
    assert!(out.status.success(), "harness validate: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn rendering_is_deterministic_and_bad_input_is_named() {
    let (_a, first) = render_files(3);
    let (_b, second) = render_files(3);
    assert_eq!(first, second);
    assert!(
        first.values().all(|t| !t.contains("${")),
        "a placeholder left in the output (the merge's shell script uses $name, not ${{NAME}})"
    );

    let scenario = example_scenario();
    let scenario = scenario.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 path");
    let cases: [(&[&str], &str); 6] = [
        (&[scenario, "0", NAMESPACE, IMAGE], "SHARDS"),
        (&[scenario, "three", NAMESPACE, IMAGE], "SHARDS"),
        (&[scenario, "3", "Harness_NS", IMAGE], "NAMESPACE"),
        (&[scenario, "3", NAMESPACE, "image with space"], "IMAGE"),
        (&["/no/such/scenario.json", "3", NAMESPACE, IMAGE], "SCENARIO"),
        (&["--start-at", "tomorrow", scenario, "3", NAMESPACE, IMAGE], "--start-at"),
    ];
    for (args, field) in cases {
        let mut all = vec!["--render-only", out];
        all.extend_from_slice(args);
        let (code, stderr) = script(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(field), "{args:?}: the message names {field}: {stderr}");
    }

    let overlay = tempfile::tempdir().expect("tempdir");
    let values = std::fs::read_to_string(repo().join("deploy/k8s/overlays/example/values.env")).expect("values.env");
    std::fs::write(overlay.path().join("values.env"), format!("{values}STORAGE_CLAS=fast\n")).expect("write");
    let overlay_dir = overlay.path().to_str().expect("utf-8 path");
    let (code, stderr) = script(&["--render-only", out, "--overlay", overlay_dir, scenario, "3", NAMESPACE, IMAGE]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown key STORAGE_CLAS"), "{stderr}");
}

/// One `FROM ... AS name` stage of a Dockerfile: its base and its instructions, with
/// continuation lines joined and comments dropped.
struct Stage {
    name: String,
    from: String,
    lines: Vec<String>,
}

fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in joined {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", from, as_, name] if as_.eq_ignore_ascii_case("as") => {
                stages.push(Stage { name: (*name).to_owned(), from: (*from).to_owned(), lines: Vec::new() })
            }
            ["FROM", from] => stages.push(Stage { name: String::new(), from: (*from).to_owned(), lines: Vec::new() }),
            _ => {
                if let Some(stage) = stages.last_mut() {
                    stage.lines.push(line);
                }
            }
        }
    }
    stages
}

/// The essentials of deploy/k8s/Dockerfile: multi-stage, both binaries built with the lock
/// file and copied into a slim runtime with CA certificates, a non-root user in every
/// image the manifests run, kubectl pinned in the chaos image.
fn check_dockerfile(text: &str) -> Result<(), String> {
    let stages = stages(text);
    let stage = |name: &str| stages.iter().find(|s| s.name == name).ok_or(format!("no stage {name}"));
    let has = |s: &Stage, words: &[&str]| s.lines.iter().any(|l| words.iter().all(|w| l.contains(w)));
    let build = stages.iter().find(|s| s.from.starts_with("rust:")).ok_or("no rust builder stage")?;
    if !build.from.ends_with("-bookworm") {
        return Err(format!("builder {} is not on bookworm (the runtime's glibc)", build.from));
    }
    if !has(build, &["cargo build", "--release", "--locked", "--bin harness", "--bin reference-server"]) {
        return Err("the builder does not build both binaries with --release --locked".into());
    }
    let runtime = stage("runtime")?;
    if runtime.from != "debian:bookworm-slim" {
        return Err(format!("runtime is FROM {}, not debian:bookworm-slim", runtime.from));
    }
    if !has(runtime, &["apt-get install", "ca-certificates"]) {
        return Err("runtime has no ca-certificates".into());
    }
    for bin in ["harness", "reference-server"] {
        let from = format!("--from={}", build.name);
        let src = format!("/target/release/{bin} ");
        if !has(runtime, &["COPY", &from, &src, &format!("/usr/local/bin/{bin}")]) {
            return Err(format!("runtime does not copy {bin} from {} to /usr/local/bin", build.name));
        }
    }
    if !has(runtime, &["COPY scenarios "]) {
        return Err("runtime has no scenarios".into());
    }
    let chaos = stage("chaos")?;
    if chaos.from != "runtime" || !has(chaos, &["COPY", "kubectl", "/usr/local/bin/kubectl"]) {
        return Err("chaos is not the runtime plus kubectl".into());
    }
    let kubectl = stage("kubectl")?;
    let pinned = kubectl.lines.iter().any(|l| {
        l.strip_prefix("ARG KUBECTL_VERSION=v").is_some_and(|v| {
            v.split('.').count() == 3 && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
    });
    if !pinned || !has(kubectl, &["sha256sum --check"]) {
        return Err("kubectl is not a pinned, checksum-verified release".into());
    }
    for s in [runtime, chaos] {
        let user = s.lines.iter().rev().find_map(|l| l.strip_prefix("USER ")).or_else(|| {
            // A stage built FROM another inherits its USER.
            (s.from == "runtime").then(|| runtime.lines.iter().rev().find_map(|l| l.strip_prefix("USER ")))?
        });
        let uid = user.and_then(|u| u.split(':').next()).unwrap_or("root");
        if uid != "10001" {
            return Err(format!("stage {} runs as {uid}, not 10001 (the manifests' runAsUser)", s.name));
        }
    }
    Ok(())
}

#[test]
fn the_dockerfile_has_its_essentials() {
    let text = std::fs::read_to_string(repo().join("deploy/k8s/Dockerfile")).expect("read deploy/k8s/Dockerfile");
    check_dockerfile(&text).unwrap_or_else(|e| panic!("deploy/k8s/Dockerfile: {e}"));

    let root = text.replace("USER 10001:10001\nWORKDIR", "USER root\nWORKDIR");
    assert_ne!(root, text);
    let err = check_dockerfile(&root).expect_err("a runtime running as root");
    assert!(err.contains("runs as root"), "{err}");
    let no_ca = text.replace("ca-certificates \\\n", "tzdata \\\n");
    assert_ne!(no_ca, text);
    assert!(check_dockerfile(&no_ca).is_err_and(|e| e.contains("ca-certificates")));
    let one_bin = text.replace("--bin reference-server", "");
    assert!(check_dockerfile(&one_bin).is_err());
    let unpinned = text.replace("ARG KUBECTL_VERSION=v1.33.4", "ARG KUBECTL_VERSION=stable");
    assert!(check_dockerfile(&unpinned).is_err_and(|e| e.contains("pinned")));

    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect("read .dockerignore");
    let ignored: Vec<&str> = ignore.lines().map(str::trim).collect();
    assert!(ignored.contains(&"target/") && ignored.contains(&"reports/"), "{ignore}");
    let readme = std::fs::read_to_string(repo().join("deploy/k8s/README.md")).expect("read deploy/k8s/README.md");
    assert!(readme.contains("docker build -f deploy/k8s/Dockerfile --target runtime"), "the build line is documented");
}

/// A stand-in for kubectl: logs every call, answers the Job and pod queries the script
/// makes from FAKE_* variables, and "copies" a report folder.
const FAKE_KUBECTL: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
[ "$1" = "-n" ] && shift 2
case "$1 $2" in
    "get job") case "$5 $3" in
        *failedIndexes*) echo 1 ;;
        *-shards) echo "$FAKE_SHARDS" ;;
        *) echo Complete ;; esac ;;
    "get pods") echo "$FAKE_MERGE_CODE" ;;
    "cp "*) mkdir -p "$3" && echo report > "$3/index.html" ;;
esac
exit 0
"#;

/// Runs scripts/k8s-run.sh (not --render-only) against the fake kubectl; returns the exit
/// code, stderr, the kubectl calls and the report folder.
fn run_with_fake_kubectl(shards_state: &str, merge_code: &str) -> (i32, String, Vec<String>, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().expect("tempdir");
    let kubectl = bin.path().join("kubectl");
    std::fs::write(&kubectl, FAKE_KUBECTL).expect("write fake kubectl");
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let log = bin.path().join("calls.log");
    let report = tempfile::tempdir().expect("tempdir");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg(repo().join("scripts/k8s-run.sh"))
        .args(["--run", RUN, "--start-at", START_AT, "--report"])
        .arg(report.path())
        .arg(example_scenario())
        .args(["3", NAMESPACE, IMAGE])
        .env("PATH", path)
        .env("FAKE_LOG", &log)
        .env("FAKE_SHARDS", shards_state)
        .env("FAKE_MERGE_CODE", merge_code)
        .output()
        .expect("run scripts/k8s-run.sh");
    let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), calls, report)
}

#[test]
fn the_run_script_merges_after_the_jobs_and_exits_with_the_merge_code() {
    for code in ["0", "1", "2"] {
        let (exit, stderr, calls, report) = run_with_fake_kubectl("Complete", code);
        assert_eq!(exit.to_string(), code, "{stderr}\n{calls:#?}");
        let position = |needle: &str| {
            calls.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("no call with {needle}: {calls:#?}"))
        };
        let applied_jobs = position("30-shards-job.yaml").max(position("50-chaos-job.yaml"));
        let waited = position(&format!("get job {RUN}-shards")).max(position(&format!("get job {RUN}-chaos")));
        let merged = position("90-merge-job.yaml");
        let copied = position(&format!("cp {RUN}-fetch:/results/{RUN}/merged"));
        assert!(applied_jobs < waited && waited < merged && merged < copied, "{calls:#?}");
        assert!(report.path().join("merged/index.html").is_file(), "the report is copied out");
        assert!(report.path().join("manifests/30-shards-job.yaml").is_file(), "the manifests are kept");
    }
}

#[test]
fn the_run_script_never_merges_a_run_with_a_failed_shard() {
    let (exit, stderr, calls, report) = run_with_fake_kubectl("Failed", "0");
    assert_eq!(exit, 2, "{stderr}");
    assert!(stderr.contains("invalid") && stderr.contains("failed indexes: 1"), "{stderr}");
    assert!(!calls.iter().any(|c| c.contains("90-merge-job.yaml")), "{calls:#?}");
    assert!(!report.path().join("merged").exists());
}
