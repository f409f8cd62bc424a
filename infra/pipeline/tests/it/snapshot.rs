//! The synthesized stack, byte for byte. A change here is a change to what gets deployed:
//! review the diff (`cargo insta review`) like code.

use tally_pipeline::{synth_json, PipelineOptions, Stage};

#[test]
fn default_stack_for_main() {
    let json =
        synth_json(&Stage::new("main"), &PipelineOptions::default()).expect("main synthesizes");
    insta::assert_snapshot!("main", json);
}

#[test]
fn synth_is_byte_identical_across_runs() {
    for stage in ["main", "feature/ÜBER_new--thing", &"x".repeat(200)] {
        let a = synth_json(&Stage::new(stage), &PipelineOptions::default()).expect("synthesizes");
        let b = synth_json(&Stage::new(stage), &PipelineOptions::default()).expect("synthesizes");
        assert_eq!(a, b, "stage {stage:?}");
        assert!(a.ends_with("}\n"), "pretty JSON with a trailing newline");
    }
}

#[test]
fn stages_differ_only_in_names() {
    // Logical ids do not depend on the stage, so two stages' templates have the same shape.
    let a = super::template("main");
    let b = super::template("feature/ÜBER_new--thing");
    let ids = |t: &serde_json::Value| super::resources(t).keys().cloned().collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
}
