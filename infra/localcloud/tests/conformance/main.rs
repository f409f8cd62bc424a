//! Conformance: the same client-level tests against the local endpoint and `moto_server`.
