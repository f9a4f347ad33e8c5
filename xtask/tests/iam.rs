#[path = "support/aws_calls.rs"]
mod aws_calls;

#[test]
fn explore() -> anyhow::Result<()> {
    let ops = aws_calls::sdk_operations()?;
    for (dirs, entry) in [
        (&["controller/src"][..], "controller/src/main.rs"),
        (&["rejitter/src"][..], "rejitter/src/main.rs"),
        (&["cli/src", "controller/src"][..], "cli/src/main.rs"),
    ] {
        let fns = aws_calls::functions(&ops, dirs)?;
        let fns: Vec<_> = if entry.starts_with("controller") { fns.into_iter().filter(|f| !f.file.starts_with("controller/src/operator")).collect() } else { fns };
        let r = aws_calls::reachable(&fns, entry)?;
        println!("== {entry}");
        for (a, by) in r { println!("{a}  <- {by:?}"); }
    }
    Ok(())
}
