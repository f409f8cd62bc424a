//! Integration tests of the local cloud's runtime, Function URLs, event source mappings and template loader.

mod cloud;
mod lambda;
mod mappings;
mod support;
mod template;
