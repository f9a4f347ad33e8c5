//! The machinery of the static checks of the breaker's deployable definitions (the SAM
//! template and the Step Functions workflow): loading them, evaluating CloudFormation's
//! intrinsic and rule functions, analysing IAM grants, comparing the sections two templates
//! share, finding the AWS calls of the workspace's programs in their source, checking the
//! workflow's structure.
//! The assertions about this breaker's definitions stay in `xtask/tests/`.

pub mod aws_calls;
pub mod iam_policy;
pub mod intrinsics;
pub mod shared_section;
pub mod template;
pub mod workflow;
