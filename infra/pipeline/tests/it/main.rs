//! Integration tests of the pipeline stack: snapshot, structure, validation, linters.

mod defences;
mod least_privilege;
mod lint;
mod snapshot;
mod template;
mod validation;

use serde_json::{Map, Value};
use tally_pipeline::{synth_value, PipelineOptions, Stage};

/// The template of `stage` with the default options.
fn template(stage: &str) -> Value {
    template_with(stage, &PipelineOptions::default())
}

fn template_with(stage: &str, options: &PipelineOptions) -> Value {
    match synth_value(&Stage::new(stage), options) {
        Ok(template) => template,
        Err(error) => panic!("synth of {stage:?} failed: {error}"),
    }
}

fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"]
        .as_object()
        .expect("Resources is an object")
}

/// `(logical id, resource)` of every resource of type `ty`.
fn of_type<'t>(template: &'t Value, ty: &str) -> Vec<(&'t String, &'t Value)> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

/// The one resource of type `ty` whose logical id starts with `prefix`.
fn find<'t>(template: &'t Value, ty: &str, prefix: &str) -> (&'t String, &'t Value) {
    let found: Vec<_> = of_type(template, ty)
        .into_iter()
        .filter(|(id, _)| id.starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {ty} starting with {prefix}, found {found:?}"
    );
    found[0]
}
