use super::*;

/// A few operations as `sdk_operations` reads them, `delete_message` shared by two services.
fn operations() -> Operations {
    let mut ops = Operations::new();
    for (snake, prefix, pascal) in [
        ("invoke", "lambda", "Invoke"),
        ("send_message_batch", "sqs", "SendMessageBatch"),
        ("put_item", "dynamodb", "PutItem"),
        ("delete_message", "sqs", "DeleteMessage"),
        ("delete_message", "lambda", "DeleteMessage"),
    ] {
        ops.entry(snake.to_string())
            .or_default()
            .push((prefix, pascal.to_string()));
    }
    ops
}

#[test]
fn iam_action_names_the_authorizing_action() {
    assert_eq!(iam_action("lambda", "Invoke"), "lambda:InvokeFunction");
    assert_eq!(iam_action("sqs", "SendMessageBatch"), "sqs:SendMessage");
    assert_eq!(
        iam_action("states", "StopExecution"),
        "states:StopExecution"
    );
}

const SOURCE: &str = r#"
    pub async fn handler(clients: &Clients) {
        clients.lambda.invoke().send().await;
        helper(&clients.dynamodb);
        store::save();
    }
    fn helper(dynamodb: &Client) {
        tracing::info!(sent = ?sqs.send_message_batch().send());
    }
    impl Queue {
        fn purge(&self) { self.sqs.delete_message().send(); }
    }
    #[cfg(test)]
    mod tests {
        fn fake() { dynamodb.put_item(); }
    }
"#;

#[test]
fn finds_calls_in_code_and_in_macros_and_skips_tests() {
    let found = functions_in("a/main.rs", "a", SOURCE, &operations()).expect("scans");
    let by_name = |n: &str| found.iter().find(|f| f.name == n).expect(n).clone();
    assert_eq!(
        found.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["handler", "helper", "purge"]
    );
    assert_eq!(
        by_name("handler").calls,
        BTreeSet::from(["lambda:InvokeFunction".to_string()])
    );
    assert!(by_name("handler")
        .callees
        .contains(&(Some("store".to_string()), "save".to_string())));
    assert!(by_name("handler")
        .callees
        .contains(&(None, "helper".to_string())));
    assert_eq!(
        by_name("helper").calls,
        BTreeSet::from(["sqs:SendMessage".to_string()])
    );
    // The receiver's name picks the service of a shared operation name.
    assert_eq!(
        by_name("purge").calls,
        BTreeSet::from(["sqs:DeleteMessage".to_string()])
    );
}

#[test]
fn an_ambiguous_call_is_an_error() {
    let source = "fn f(client: &C) { client.delete_message(); }";
    let err = functions_in("a/lib.rs", "a", source, &operations()).expect_err("ambiguous");
    assert!(err.to_string().contains("fn f"), "{err:#}");
}

fn function(
    file: &str,
    module: &str,
    name: &str,
    calls: &[&str],
    callees: &[(Option<&str>, &str)],
) -> Function {
    Function {
        file: file.into(),
        module: module.into(),
        name: name.into(),
        calls: calls.iter().map(|c| c.to_string()).collect(),
        callees: callees
            .iter()
            .map(|(m, n)| (m.map(str::to_string), n.to_string()))
            .collect(),
    }
}

#[test]
fn reachable_follows_calls_from_every_function_of_the_entry_with_a_chain() {
    let functions = [
        function("main.rs", "main", "main", &[], &[(None, "run")]),
        function("app.rs", "app", "run", &[], &[(Some("store"), "save")]),
        function("store.rs", "store", "save", &["dynamodb:PutItem"], &[]),
        // Same name, other module: the path's module rules it out.
        function("other.rs", "other", "save", &["sqs:PurgeQueue"], &[]),
        function("unused.rs", "unused", "never", &["sqs:DeleteQueue"], &[]),
    ];
    let actions = reachable(&functions, "main.rs").expect("an entry");
    assert_eq!(
        actions,
        BTreeMap::from([(
            "dynamodb:PutItem".to_string(),
            "main.rs::main -> app.rs::run -> store.rs::save".to_string()
        )])
    );
    assert!(reachable(&functions, "nowhere.rs").is_err());
}

#[test]
fn a_bare_name_prefers_the_callers_own_file() {
    let functions = [
        function("main.rs", "main", "main", &[], &[(None, "save")]),
        function("main.rs", "main", "save", &["dynamodb:PutItem"], &[]),
        function("other.rs", "other", "save", &["sqs:PurgeQueue"], &[]),
    ];
    let actions = reachable(&functions, "main.rs").expect("an entry");
    assert_eq!(actions.keys().collect::<Vec<_>>(), ["dynamodb:PutItem"]);
}
