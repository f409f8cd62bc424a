//! tally-query (being written).
