//! tally-scaler (being written).
