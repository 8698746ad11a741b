//! Tests of the cluster spec and TF_CONFIG parsing.

use super::*;
use rill_graph::Code;

fn err_of<T: fmt::Debug>(r: Result<T>) -> Error {
    r.expect_err("expected an error")
}

#[test]
fn task_names_parse_and_print() {
    let t = TaskName::new("ps", 1);
    for text in ["/job:ps/replica:0/task:1", "/job:ps/task:1", "ps:1"] {
        assert_eq!(TaskName::parse(text).unwrap(), t, "{text}");
    }
    assert_eq!(t.to_string(), "/job:ps/replica:0/task:1");
    assert_eq!(t.short(), "ps:1");
    assert_eq!(
        "worker:12".parse::<TaskName>().unwrap(),
        TaskName::new("worker", 12)
    );
    assert!(TaskName::new("ps", 3) < TaskName::new("worker", 0));
    for bad in [
        "",
        "ps",
        "ps:",
        "ps:x",
        ":1",
        "ps:-1",
        "1ps:0",
        "/job:ps",
        "/task:0",
        "/job:ps/task:0/task:1",
        "/job:ps/replica:1/task:0",
        "/job:ps/task:0/device:CPU:0",
        "/job:ps//task:0",
        "/job:p s/task:0",
    ] {
        let e = err_of(TaskName::parse(bad));
        assert_eq!(e.code, Code::InvalidArgument, "{bad}");
        assert!(e.message.contains(&format!("'{bad}'")), "{bad}: {e}");
    }
}

#[test]
fn lists_and_sparse_dicts() {
    let spec = ClusterSpec::from_json(
        r#"{"worker": ["w0:2222", "w1:2222"], "ps": {"0": "p0:2222", "3": "p3:2222"},
            "evaluator": [], "chief": ["c:1"], "aux": {"1": "[::1]:80"}}"#,
    )
    .unwrap();
    assert_eq!(spec.jobs(), ["chief", "worker", "ps", "aux", "evaluator"]);
    let tasks: Vec<String> = spec.tasks().iter().map(TaskName::short).collect();
    assert_eq!(
        tasks,
        ["chief:0", "worker:0", "worker:1", "ps:0", "ps:3", "aux:1"]
    );
    assert_eq!(spec.address(&TaskName::new("ps", 3)).unwrap(), "p3:2222");
    assert_eq!(spec.address(&TaskName::new("aux", 1)).unwrap(), "[::1]:80");
    assert_eq!(spec.num_tasks("ps"), 2);
    assert_eq!(spec.num_tasks("evaluator"), 0);
    assert_eq!(spec.num_tasks("nope"), 0);
    assert!(!spec.is_empty());
    let json = spec.to_json();
    assert_eq!(
        json,
        r#"{"chief":["c:1"],"worker":["w0:2222","w1:2222"],"ps":{"0":"p0:2222","3":"p3:2222"},"aux":{"1":"[::1]:80"},"evaluator":[]}"#
    );
    assert_eq!(ClusterSpec::from_json(&json).unwrap(), spec);
    // A dict that happens to be dense is written as a list.
    let dense = ClusterSpec::from_json(r#"{"ps": {"1": "b:1", "0": "a:1"}}"#).unwrap();
    assert_eq!(dense.to_json(), r#"{"ps":["a:1","b:1"]}"#);
}

#[test]
fn built_by_hand() {
    let mut spec = ClusterSpec::new();
    assert!(spec.is_empty());
    assert_eq!(spec.to_json(), "{}");
    spec.add_task("worker", 0, "localhost:5000").unwrap();
    spec.add_task("ps", 0, "127.0.0.1:5001").unwrap();
    assert_eq!(
        spec.to_json(),
        r#"{"worker":["localhost:5000"],"ps":["127.0.0.1:5001"]}"#
    );
    let e = err_of(spec.add_task("ps", 0, "127.0.0.1:5002"));
    assert!(
        e.message.contains("/job:ps/replica:0/task:0 appears twice"),
        "{e}"
    );
    assert!(spec.add_task("bad-job", 0, "h:1").is_err());
    assert!(spec.add_task("ps", 1, "h").is_err());
    assert_eq!(spec.tasks().len(), 2);
}

#[test]
fn unknown_tasks_are_not_found() {
    let spec = ClusterSpec::from_json(r#"{"ps": ["a:1", "b:1"]}"#).unwrap();
    let e = err_of(spec.address(&TaskName::new("ps", 2)));
    assert_eq!(e.code, Code::NotFound);
    assert!(e.message.contains("/job:ps/replica:0/task:2"), "{e}");
    assert!(e.message.contains("(0, 1)"), "{e}");
    let e = err_of(spec.address(&TaskName::new("worker", 0)));
    assert_eq!(e.code, Code::NotFound);
    assert!(e.message.contains("no job 'worker' (jobs: ps)"), "{e}");
    assert!(!spec.contains(&TaskName::new("worker", 0)));
}

#[test]
fn bad_cluster_specs_are_errors() {
    let cases = [
        (r#"{"ps": ["localhost"]}"#, "missing port"),
        (r#"{"ps": ["localhost:"]}"#, "missing port"),
        (r#"{"ps": [":80"]}"#, "missing host"),
        (r#"{"ps": ["h:http"]}"#, "port must be a number"),
        (r#"{"ps": ["h:70000"]}"#, "port must be a number"),
        (r#"{"ps": ["::1:80"]}"#, "must be in brackets"),
        (r#"{"ps": ["[::1]"]}"#, "missing port after the IPv6"),
        (r#"{"ps": ["grpc://h:1"]}"#, "scheme"),
        (r#"{"ps": ["h :1"]}"#, "whitespace"),
        (r#"{"ps": [1234]}"#, "must be a string"),
        (r#"{"ps": "h:1"}"#, "must be a list of addresses or a dict"),
        (r#"{"ps": {"x": "h:1"}}"#, "task index 'x'"),
        (r#"{"ps": {"-1": "h:1"}}"#, "task index '-1'"),
        (r#"{"ps": {"0": "h:1", "00": "h:2"}}"#, "appears twice"),
        (r#"{"ps": {"0": "h:1", "0": "h:2"}}"#, "appears twice"),
        (
            r#"{"ps": ["h:1"], "ps": ["h:2"]}"#,
            "job 'ps' appears twice",
        ),
        (r#"{"2ps": ["h:1"]}"#, "job name '2ps'"),
        (r#"{"": ["h:1"]}"#, "job name ''"),
        (r#"["h:1"]"#, "must be a JSON object"),
        (r#"{"ps": ["h:1"]"#, "not valid JSON"),
        ("", "not valid JSON"),
        (
            &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            "not valid JSON",
        ),
    ];
    for (text, want) in cases {
        let e = err_of(ClusterSpec::from_json(text));
        assert_eq!(e.code, Code::InvalidArgument, "{text}");
        assert!(e.message.contains(want), "{text}: {e}");
    }
    let e = err_of(ClusterSpec::from_json(r#"{"worker": ["a:1", "b"]}"#));
    assert!(
        e.message.contains("task /job:worker/replica:0/task:1"),
        "{e}"
    );
}

#[test]
fn tfjob_tf_config() {
    let text = r#"{
        "cluster": {
            "chief": ["dist-mnist-chief-0.kubeflow.svc:2222"],
            "worker": ["dist-mnist-worker-0.kubeflow.svc:2222",
                       "dist-mnist-worker-1.kubeflow.svc:2222"],
            "ps": ["dist-mnist-ps-0.kubeflow.svc:2222"]
        },
        "task": {"type": "worker", "index": 1},
        "environment": "cloud"
    }"#;
    let config = TfConfig::parse(text).unwrap();
    assert_eq!(config.task, Some(TaskName::new("worker", 1)));
    assert_eq!(config.cluster.jobs(), ["chief", "worker", "ps"]);
    assert_eq!(
        config
            .cluster
            .address(config.task.as_ref().unwrap())
            .unwrap(),
        "dist-mnist-worker-1.kubeflow.svc:2222"
    );
    assert_eq!(TfConfig::parse(&config.to_json()).unwrap(), config);
    assert!(config
        .to_json()
        .ends_with(r#","task":{"type":"worker","index":1}}"#));
}

#[test]
fn tf_config_task_forms() {
    let cluster = r#""cluster": {"worker": ["a:1", "b:1"], "ps": ["c:1"]}"#;
    let parse = |task: &str| TfConfig::parse(&format!("{{{cluster}{task}}}"));
    assert_eq!(parse("").unwrap().task, None);
    assert_eq!(parse(r#", "task": {}"#).unwrap().task, None);
    assert_eq!(parse(r#", "task": null"#).unwrap().task, None);
    let ps0 = Some(TaskName::new("ps", 0));
    assert_eq!(
        parse(r#", "task": {"type": "ps", "index": "0"}"#)
            .unwrap()
            .task,
        ps0
    );
    assert_eq!(parse(r#", "task": {"type": "ps"}"#).unwrap().task, ps0);
    assert_eq!(
        parse(r#", "task": {"type": "worker", "index": 1, "trial": "7"}, "x": [1]"#)
            .unwrap()
            .task,
        Some(TaskName::new("worker", 1))
    );
    let client = parse("").unwrap();
    assert_eq!(
        client.to_json(),
        r#"{"cluster":{"worker":["a:1","b:1"],"ps":["c:1"]}}"#
    );
    for (task, want) in [
        (
            r#", "task": {"type": "worker", "index": 2}"#,
            "task:2 is not in the cluster",
        ),
        (
            r#", "task": {"type": "evaluator", "index": 0}"#,
            "no job 'evaluator'",
        ),
        (
            r#", "task": {"type": "ps", "index": -1}"#,
            "not a non-negative integer",
        ),
        (
            r#", "task": {"type": "ps", "index": 0.5}"#,
            "not a non-negative integer",
        ),
        (
            r#", "task": {"type": "ps", "index": "one"}"#,
            "not a non-negative integer",
        ),
        (
            r#", "task": {"type": "ps", "index": [0]}"#,
            "index must be a number",
        ),
        (r#", "task": {"type": 3}"#, "type must be a string"),
        (r#", "task": {"index": 0}"#, "no type"),
        (r#", "task": "ps:0""#, "must be an object"),
        (
            r#", "task": {"type": "ps", "type": "worker"}"#,
            "'type' appears twice",
        ),
        (r#", "cluster": {}"#, "'cluster' twice"),
    ] {
        let e = err_of(parse(task));
        assert_eq!(e.code, Code::InvalidArgument, "{task}");
        assert!(e.message.contains(want), "{task}: {e}");
    }
    let e = err_of(TfConfig::parse(r#"{"cluster": {"ps": ["nope"]}}"#));
    assert!(
        e.message.starts_with("TF_CONFIG cluster: task /job:ps"),
        "{e}"
    );
    assert!(e.message.contains("missing port"), "{e}");
    let e = err_of(TfConfig::parse(r#"{"task": {"type": "ps"}}"#));
    assert!(e.message.contains("no job 'ps' (jobs: none)"), "{e}");
    assert!(err_of(TfConfig::parse("cluster=a:1"))
        .message
        .contains("not valid JSON"));
    assert!(err_of(TfConfig::parse("[]"))
        .message
        .contains("must be a JSON object"));
    assert_eq!(TfConfig::parse("{}").unwrap(), TfConfig::default());
}

#[test]
fn tf_config_from_env_value() {
    use std::env::VarError;
    assert_eq!(
        TfConfig::from_env_value(Err(VarError::NotPresent)).unwrap(),
        None
    );
    assert_eq!(TfConfig::from_env_value(Ok("  ".into())).unwrap(), None);
    let config = TfConfig::from_env_value(Ok(r#"{"cluster":{"ps":["h:1"]}}"#.into()))
        .unwrap()
        .unwrap();
    assert_eq!(config.cluster.num_tasks("ps"), 1);
    assert!(TfConfig::from_env_value(Ok("{".into())).is_err());
    let not_unicode = VarError::NotUnicode(std::ffi::OsString::from("x"));
    assert!(TfConfig::from_env_value(Err(not_unicode)).is_err());
}

#[test]
fn from_file() {
    let path = std::env::temp_dir().join(format!("rill-cluster-test-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"worker": ["h:1"]}"#).unwrap();
    let spec = ClusterSpec::from_file(&path).unwrap();
    assert_eq!(spec.num_tasks("worker"), 1);
    std::fs::write(&path, r#"{"worker": ["h"]}"#).unwrap();
    let e = err_of(ClusterSpec::from_file(&path));
    assert!(e.message.starts_with(&path.display().to_string()), "{e}");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(err_of(ClusterSpec::from_file(&path)).code, Code::NotFound);
}
