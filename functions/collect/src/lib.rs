//! tally-collect (being written).
