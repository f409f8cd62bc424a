//! Integration tests of tally-collect.
