//! Integration tests of tally-scaler.
