//! Integration tests of tally-query.
