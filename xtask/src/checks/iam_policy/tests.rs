use super::*;
use serde_json::json;

fn template(statement: Value) -> Value {
    json!({"Resources": {"R": {"Properties": {"Policies": [{"Statement": [statement]}]}}}})
}

#[test]
fn iam_check_catches_broad_grants() {
    let broad = [
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
               "Resource": ["arn:aws:dynamodb:us-east-1:123456789012:table/t", "*"]}),
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": "arn:aws:sqs:*"}),
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"}}),
        json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:*:${AWS::AccountId}:function:f"}}),
        json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}*"}}),
        json!({"Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:event-source-mapping:*"}}),
        json!({"Effect": "Allow", "Action": "events:PutEvents",
               "Resource": {"Fn::If": ["C", {"Fn::GetAtt": ["Bus", "Arn"]}, "*"]}}),
        json!({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
               "Condition": {"StringLike": {"cloudwatch:namespace": "*"}}}),
        json!({"Effect": "Allow", "Action": "sqs:*", "Resource": {"Ref": "QueueArn"}}),
        json!({"Effect": "Allow", "NotAction": "iam:*", "Resource": {"Ref": "QueueArn"}}),
    ];
    for statement in broad {
        let findings = iam_findings(&template(statement.clone()));
        assert!(!findings.is_empty(), "not flagged: {statement}");
    }
    let fine = [
        json!({"Effect": "Allow", "Action": "lambda:ListEventSourceMappings", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": {"Ref": "QueueArn"}}),
        json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
               "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}:*"},
                            {"Fn::If": ["C", {"Fn::GetAtt": ["F", "Arn"]}, {"Ref": "AWS::NoValue"}]}]}),
        json!({"Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:event-source-mapping:*"},
               "Condition": {"ArnLike": {"lambda:FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}}}),
        json!({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
               "Condition": {"StringEquals": {"cloudwatch:namespace": {"Ref": "Ns"}}}}),
        json!({"Effect": "Deny", "Action": "*", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": "sts:AssumeRole",
               "Principal": {"Service": "lambda.amazonaws.com"}}),
    ];
    for statement in fine {
        let findings = iam_findings(&template(statement.clone()));
        assert!(findings.is_empty(), "flagged {statement}: {findings:?}");
    }
}

#[test]
fn opaque_policies_names_templates_and_managed_policies() {
    let with_template_policy = json!({"Resources": {"F": {"Properties": {
        "Policies": [{"SQSPollerPolicy": {"QueueName": "q"}}, "AmazonSQSFullAccess"]}}}});
    assert_eq!(opaque_policies(&with_template_policy).len(), 2);
    let managed = json!({"Resources": {
        "Sam": {"Properties": {"ManagedPolicyArns": [ACCEPTED_MANAGED_POLICIES[0]]}},
        "Other": {"Properties": {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}},
        "Inline": {"Properties": {"Policies": [{"PolicyDocument": {"Statement": []}}]}},
    }});
    assert_eq!(
        opaque_policies(&managed),
        ["Other: managed policy arn:aws:iam::aws:policy/AdministratorAccess"]
    );
}

#[test]
fn statements_are_found_anywhere_with_where_they_are() {
    let value = json!({"Resources": {"R": {"Properties": {"Policies": [
        {"Statement": [{"Sid": "One", "Effect": "Allow"}, {"Effect": "Deny"}]},
        {"PolicyDocument": {"Statement": {"Sid": "Two", "Effect": "Allow"}}},
    ]}}}});
    let found: Vec<String> = statements(&value).into_iter().map(|(at, _)| at).collect();
    assert_eq!(
        found,
        [
            ".Resources.R.Properties.Policies[0].Statement[One]",
            ".Resources.R.Properties.Policies[0].Statement[1]",
            ".Resources.R.Properties.Policies[1].PolicyDocument.Statement[Two]",
        ]
    );
    assert_eq!(statements_with_sid(&value, "Two").len(), 1);
    assert!(statements_with_sid(&value, "Three").is_empty());
}

#[test]
fn allowed_actions_ignores_denials() {
    let value = json!([
        {"Effect": "Allow", "Action": "sqs:SendMessage"},
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:SendMessage"]},
        {"Effect": "Deny", "Action": "sqs:PurgeQueue"},
    ]);
    assert_eq!(
        allowed_actions(&value),
        BTreeSet::from([
            "sqs:ReceiveMessage".to_string(),
            "sqs:SendMessage".to_string()
        ])
    );
}

#[test]
fn the_comparison_names_both_directions() {
    let granted: BTreeSet<String> = ["sqs:SendMessage", "sqs:PurgeQueue", "logs:PutLogEvents"]
        .map(String::from)
        .into();
    let called = BTreeMap::from([
        ("sqs:SendMessage".to_string(), "a -> b".to_string()),
        ("sqs:ReceiveMessage".to_string(), "a -> c".to_string()),
    ]);
    let problems = compare("role R", &granted, &called, &["logs:PutLogEvents"]);
    assert_eq!(
        problems,
        [
            "role R lacks sqs:ReceiveMessage, called by a -> c",
            "role R grants sqs:PurgeQueue, which nobody calls",
        ]
    );
    let implied = compare(
        "role R",
        &BTreeSet::new(),
        &BTreeMap::new(),
        &["kms:Decrypt"],
    );
    assert_eq!(
        implied,
        ["role R lacks kms:Decrypt, which AWS uses with it"]
    );
}

#[test]
fn too_broad_explains_each_kind_of_wildcard() {
    assert_eq!(too_broad("arn:aws:sqs:us-east-1:1:q", false), None);
    assert_eq!(too_broad("*", true), Some("Resource \"*\""));
    assert_eq!(too_broad("q*", false), Some("a wildcard resource"));
    assert_eq!(
        too_broad("arn:aws:sqs:*", false),
        Some("a wildcard ARN for a whole service")
    );
    assert_eq!(
        too_broad("arn:aws:lambda:us-east-1:1:function:f*", false),
        Some("a partial-name wildcard")
    );
    assert_eq!(
        too_broad("arn:aws:sqs:us-east-1:1:*", false),
        Some("every resource of the service")
    );
    assert_eq!(
        too_broad("arn:aws:lambda:us-east-1:1:event-source-mapping:*", false),
        Some("every resource of a type, without a condition")
    );
    assert_eq!(
        too_broad("arn:aws:lambda:us-east-1:1:event-source-mapping:*", true),
        None
    );
    assert_eq!(
        too_broad("arn:aws:lambda:us-east-1:1:function:f:*", false),
        None
    );
}

#[test]
fn assuming_roles_on_a_path_is_scoped_and_on_every_role_is_not() {
    assert_eq!(
        too_broad(
            "arn:aws:iam::123456789012:role/sqs-circuit-breaker/team/*",
            false
        ),
        None
    );
    assert_eq!(
        too_broad("arn:aws:iam::123456789012:role/*", false),
        Some("every resource of a type, without a condition")
    );
}

#[test]
fn the_clients_under_an_assumed_role_are_read_from_the_code_that_builds_them() {
    let source = r#"
impl Roles for AssumedRoles {
    fn clients(&self) {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn).build();
        let clients = Clients {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            ..own.clone()
        };
    }
}
fn elsewhere() { aws_sdk_dynamodb::Client::new(&sdk); }
"#;
    assert_eq!(
        clients_under_assumed_role(source),
        Some(BTreeSet::from(["sqs", "lambda"]))
    );
    assert_eq!(
        clients_under_assumed_role("fn f() { aws_sdk_sqs::Client::new(&c); }"),
        None
    );
}

#[test]
fn the_calls_under_a_role_are_its_services_but_not_the_programs_own_clients() {
    let function = |file: &str, calls: &[&str]| Function {
        file: file.into(),
        module: "m".into(),
        name: "f".into(),
        calls: calls.iter().map(|c| c.to_string()).collect(),
        callees: BTreeSet::new(),
    };
    let functions = [
        function(
            "consumer.rs",
            &["lambda:InvokeFunction", "cloudwatch:DescribeAlarms"],
        ),
        function(
            "signals.rs",
            &["cloudwatch:PutMetricData", "events:PutEvents"],
        ),
        function("store.rs", &["dynamodb:GetItem"]),
    ];
    let called: BTreeMap<String, String> = functions
        .iter()
        .flat_map(|f| f.calls.iter().map(|c| (c.clone(), f.file.clone())))
        .collect();
    let under = calls_under_role(
        &called,
        &BTreeSet::from(["lambda", "cloudwatch"]),
        &functions,
        &["signals.rs"],
    );
    assert_eq!(
        under.keys().collect::<Vec<_>>(),
        ["cloudwatch:DescribeAlarms", "lambda:InvokeFunction"]
    );
}

#[test]
fn a_mirrored_role_keeps_the_originals_sids_actions_and_conditions() {
    let original = json!([{"PolicyDocument": {"Statement": [
        {"Sid": "Update", "Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
         "Resource": "arn:aws:lambda:r:1:event-source-mapping:*",
         "Condition": {"ArnLike": {"lambda:FunctionArn": ["a"]}}},
        {"Fn::If": ["K", {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt"],
                          "Resource": "k"}, {"Ref": "AWS::NoValue"}]},
    ]}}]);
    let same = json!([{"PolicyDocument": {"Statement": [
        {"Sid": "Update", "Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
         "Resource": "arn:aws:lambda:r:1:event-source-mapping:*",
         "Condition": {"ArnLike": {"lambda:FunctionArn": ["b"]}}},
        {"Fn::If": ["K", {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt"],
                          "Resource": "other"}, {"Ref": "AWS::NoValue"}]},
    ]}}]);
    assert_eq!(mirror_differences(&original, &same), Vec::<String>::new());
    let unscoped = json!([{"PolicyDocument": {"Statement": [
        {"Sid": "Update", "Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
         "Resource": "arn:aws:lambda:r:1:event-source-mapping:*"},
        {"Sid": "Extra", "Effect": "Allow", "Action": "sqs:PurgeQueue", "Resource": "q"},
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "q"},
    ]}}]);
    let problems = mirror_differences(&original, &unscoped);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("Sid Update differs"), "{problems:?}");
    assert!(problems[1].contains("Sid Extra is not one of the original's"));
    assert!(problems[2].contains("without a Sid"));
}
