//! The justfile hands a recipe's arguments to the shell as arguments: pasted into a shell line as
//! text (`{{args}}`), an argument such as `$(touch pwned)` ran (`just mutants '$(...)'` did).

use std::path::Path;

#[test]
fn recipe_arguments_reach_the_shell_as_arguments_never_as_text() {
    let justfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../justfile");
    let text = std::fs::read_to_string(&justfile).unwrap();
    assert!(
        text.lines().any(|l| l.trim() == "set positional-arguments"),
        "the justfile must set positional-arguments"
    );
    let pasted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with([' ', '\t']) && l.contains("{{"))
        .collect();
    assert!(
        pasted.is_empty(),
        "recipe lines that paste arguments into the shell: {pasted:?}"
    );
}
